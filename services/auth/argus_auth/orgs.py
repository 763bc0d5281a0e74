"""Step-up re-authentication and switching the session to an org (membership from tenant-api
over NATS request-reply, see membership.py; the org's MFA policy is enforced there)."""

from __future__ import annotations

from uuid import UUID

from argus_auth import membership, mfa, queries, sessions
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, user
from argus_shared.access import AccessClaims
from argus_shared.errors import Problem
from argus_shared.event_types import REAUTH_FAILED, REAUTH_SUCCEEDED, SESSION_ORG_SWITCHED


async def step_up(auth: Auth, claims: AccessClaims, password: str | None, code: str | None,
                  ctx: Ctx) -> str:
    """Prove it is still you: the password, or for an account with MFA its second factor (the
    code alone, or with the password), never the password alone. `amr` of the new token says
    which were used."""
    if password is None and code is None:
        raise Problem(422, "send your password, or your TOTP code")
    user_id, session_id = UUID(claims.sub), UUID(claims.sid)
    async with auth.pool.acquire() as conn:
        account = await queries.user_by_id(conn, user_id)
        has_mfa = await mfa.enabled(conn, user_id)
    if has_mfa and code is None:
        raise Problem(401, "this account has MFA: step up with your TOTP code (the password is "
                      "optional)", title="Second factor required",
                      type="urn:argus:problem:second-factor-required")
    if code is not None and not has_mfa:
        raise Problem(422, "this account has no second factor: step up with your password")
    ok, outcome = account is not None, None
    if account is not None and password is not None:
        ok = await auth.passwords.verify(account["password_hash"], password)
    if ok and code is not None:
        async with auth.pool.acquire() as conn:
            outcome = await mfa.totp_outcome(auth, conn, user_id, code)
        ok = outcome is None
    amr = (["pwd"] if password is not None else []) + (["otp"] if code is not None else [])
    async with auth.pool.acquire() as conn, conn.transaction():
        if not ok:
            await emit(conn, ctx, REAUTH_FAILED, actor=user(user_id),
                       resource=("session", claims.sid))
        else:
            await queries.set_session_auth(conn, session_id, auth.now(), amr)
            await emit(conn, ctx, REAUTH_SUCCEEDED, actor=user(user_id),
                       resource=("session", claims.sid), data={"amr": amr})
    if ok:
        return await sessions.reissue(auth, session_id, ctx)
    if outcome == mfa.USED:
        raise mfa.code_refused(outcome)
    raise Problem(401, "re-authentication failed", title="Unauthenticated")


async def switch(auth: Auth, claims: AccessClaims, org_id: UUID, ctx: Ctx) -> str:
    try:
        found = await membership.lookup(auth, claims.sub, org_id, ctx.request_id,
                                        signed_in=membership.SignedIn(claims.idp, claims.amr))
    except membership.SsoRequired as exc:
        raise membership.sso_required(exc) from None
    if found is None:
        raise Problem(404, "not found")
    if found.mfa_missing(claims.amr):
        raise membership.mfa_required()
    async with auth.pool.acquire() as conn, conn.transaction():
        await queries.set_session_org(conn, UUID(claims.sid), org_id, found.role)
        await emit(conn, ctx, SESSION_ORG_SWITCHED, actor=user(claims.sub),
                   resource=("session", claims.sid), org_id=str(org_id),
                   data={"role": found.role})
        row = await queries.session_by_id(conn, UUID(claims.sid))
    assert row is not None
    return sessions.access_token(auth, row, auth.now())
