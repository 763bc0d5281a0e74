"""Step-up re-authentication and switching the session to an org (membership from tenant-api
over NATS request-reply; the org's MFA policy is enforced here)."""

from __future__ import annotations

from uuid import UUID

from argus_auth import mfa, queries, sessions
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, user
from argus_shared import xut
from argus_shared.access import AccessClaims
from argus_shared.errors import Problem
from argus_shared.nats import RpcError, request

MFA_METHODS = {"otp", "recovery"}


async def step_up(auth: Auth, claims: AccessClaims, password: str | None, code: str | None,
                  ctx: Ctx) -> str:
    if (password is None) == (code is None):
        raise Problem(422, "send either password or code")
    user_id, session_id = UUID(claims.sub), UUID(claims.sid)
    async with auth.pool.acquire() as conn:
        account = await queries.user_by_id(conn, user_id)
    ok = False
    if account is not None and password is not None:
        ok = await auth.passwords.verify(account["password_hash"], password)
    elif account is not None and code is not None:
        async with auth.pool.acquire() as conn:
            ok = await mfa.check_totp(auth, conn, user_id, code)
    async with auth.pool.acquire() as conn, conn.transaction():
        if not ok:
            await emit(conn, ctx, "auth.reauth.failed", actor=user(user_id),
                       resource=("session", claims.sid))
        else:
            amr = sorted(set(claims.amr) | {"pwd" if password else "otp"})
            await queries.set_session_auth(conn, session_id, auth.now(), amr)
            await emit(conn, ctx, "auth.reauth.succeeded", actor=user(user_id),
                       resource=("session", claims.sid), data={"amr": amr})
            return await sessions.reissue(auth, conn, session_id)
    raise Problem(401, "re-authentication failed", title="Unauthenticated")


async def switch(auth: Auth, claims: AccessClaims, org_id: UUID, ctx: Ctx) -> str:
    identity = xut.Identity(sub=f"user:{claims.sub}", request_id=ctx.request_id or "")
    try:
        membership = await request(
            auth.nc, auth.xut_keys, issuer="auth", service="tenant-api",  # type: ignore[arg-type]
            method="membership", payload={"user_id": claims.sub, "org_id": str(org_id)},
            identity=identity,
        )
    except RpcError as exc:
        if exc.status == 404:
            raise Problem(404, "not found") from None
        raise Problem(503, "memberships cannot be checked right now (tenant-api is not "
                      "answering); try again later", title="Service unavailable") from None
    role = membership["role"]
    if membership.get("require_mfa") and role in membership.get("mfa_roles", ["owner", "admin"]) \
            and not MFA_METHODS & set(claims.amr):
        raise Problem(403, "this organisation requires MFA for your role: enrol TOTP and log in "
                      "with it", title="MFA required", type="urn:argus:problem:mfa-required")
    async with auth.pool.acquire() as conn, conn.transaction():
        await queries.set_session_org(conn, UUID(claims.sid), org_id, role)
        await emit(conn, ctx, "auth.session.org_switched", actor=user(claims.sub),
                   resource=("session", claims.sid), org_id=str(org_id), data={"role": role})
        return await sessions.reissue(auth, conn, UUID(claims.sid))
