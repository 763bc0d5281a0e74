"""Single sign-on through OpenID Connect providers (the protocol is `argus_auth.oidc`, on
authlib): start a sign-in, come back from it, link and unlink identities, step up.

A sign-in's `state`, `nonce`, PKCE verifier and return path are sealed (AES-GCM under the
master key) into a short-lived `__Host-` cookie; the state is also stored (hashed) and spent
once by the callback. The identity is the provider's (issuer, subject), never the email: a
first sign-in whose verified email belongs to an existing account links nothing and signs in
nothing (the user signs in with the password and links from the account), an unverified email
never creates or links anything, and a new email gets a verified account without a password
(just in time). A session opened here has `fed` in its `amr` (with `mfa` when the provider
says so, and the provider's own methods as `idp:<value>`) and the issuer as `idp`."""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from argus_auth import queries, sessions, sso_orgs
from argus_auth.core import Auth
from argus_auth.events import ANONYMOUS, Ctx, emit, user
from argus_auth.oidc import IdpUnavailable, IdTokenRefused, OidcClient, Verified
from argus_auth.sso_providers import Provider
from argus_shared import b64, crypto, emails
from argus_shared.errors import Problem
from argus_shared.event_types import (
    IDENTITY_LINKED,
    IDENTITY_UNLINKED,
    REAUTH_SUCCEEDED,
    SSO_REFUSED,
    USER_SIGNED_UP,
)
from argus_shared.problem_types import (
    IDENTITY_IN_USE,
    IDP_UNAVAILABLE,
    LAST_SIGN_IN_METHOD,
    SSO_DOMAIN_NOT_ALLOWED,
    SSO_EMAIL_UNVERIFIED,
    SSO_LINK_REQUIRED,
)
from argus_shared.problem_types import SSO_REFUSED as SSO_REFUSED_PROBLEM
from argus_shared.problem_types import SSO_STATE as SSO_STATE_PROBLEM

log = logging.getLogger("argus.auth.sso")
STATE_COOKIE = "__Host-argus_sso"
_CONTEXT = b"auth.sso_state"
LOGIN, LINK, REAUTH = "login", "link", "reauth"
# a relative path on this site: one leading '/', then no second '/' or '\' (`//evil`, `/\evil`
# are other hosts to a browser), no backslash, control or space anywhere
_RETURN_TO = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$")
_AMR = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_RETURN_TO = 1024
TOUCH_SECONDS = 60  # an identity's last_used_at is kept to the minute


@dataclass(frozen=True)
class Started:
    url: str
    cookie: str  # the sealed state, for the __Host- cookie
    max_age: int


@dataclass(frozen=True)
class Done:
    """What a callback did: where to send the browser, and the tokens of a new session (a
    sign-in) or the new access token of a stepped-up one."""

    return_to: str
    mode: str
    issued: sessions.Issued | None = None
    access_token: str | None = None
    identity_id: UUID | None = None


def safe_return_to(value: str | None) -> str:
    """The path to come back to: same-origin and relative, else a 400 (no open redirect)."""
    if value is None or value == "":
        return "/"
    parts = urlsplit(value)
    if len(value) > MAX_RETURN_TO or not _RETURN_TO.match(value) or parts.scheme \
            or parts.netloc:
        raise Problem(400, "return_to must be a path on this site (such as /app/settings), "
                      "not another site's address")
    return value


async def client_of(auth: Auth, name: str) -> OidcClient:
    """A configured provider, or an org's own connection (`org-<org id>`, sso_orgs)."""
    client = auth.oidc.get(name) or await auth.org_sso.client(auth, name)
    if client is None:
        raise Problem(404, "no such provider")
    return client


def refused(detail: str) -> Problem:
    return Problem(401, detail, title="Sign-in refused", type=SSO_REFUSED_PROBLEM)


def bad_state(detail: str) -> Problem:
    return Problem(400, detail, title="Sign-in not recognised", type=SSO_STATE_PROBLEM)


def unavailable(exc: IdpUnavailable) -> Problem:
    return Problem(502, f"the identity provider did not answer: {exc}",
                   title="Identity provider unavailable", type=IDP_UNAVAILABLE)


# start -------------------------------------------------------------------------------------------

async def start(auth: Auth, name: str, return_to: str | None, *, mode: str = LOGIN,
                user_id: UUID | None = None, session_id: UUID | None = None,
                step_up: bool = False) -> Started:
    """The provider's authorization URL and the sealed state cookie for it. A step-up asks
    the provider to sign the user in again (`prompt=login`, `max_age=0`)."""
    back = safe_return_to(return_to)
    client = await client_of(auth, name)
    extra = {"prompt": "login", "max_age": "0"} if step_up else {}
    try:
        request = await client.authorization(auth.config.sso.redirect_uri(name), **extra)
    except IdpUnavailable as exc:
        raise unavailable(exc) from exc
    ttl = auth.config.sso.state_ttl
    now = auth.now()
    payload = {"p": name, "s": request.state, "n": request.nonce, "v": request.code_verifier,
               "r": back, "m": mode, "u": str(user_id) if user_id else None,
               "sid": str(session_id) if session_id else None,
               "t": int(now.timestamp()), "x": int(now.timestamp()) + ttl,
               "ma": 0 if step_up else None}
    async with auth.pool.acquire() as conn:
        await queries.insert_sso_state(conn, crypto.sha256(request.state), name,
                                       now + timedelta(seconds=ttl))
    sealed = crypto.seal(auth.master, json.dumps(payload).encode(), _CONTEXT)
    return Started(request.url, b64.encode(sealed), ttl)


# callback ----------------------------------------------------------------------------------------

async def callback(auth: Auth, name: str, query: dict[str, str], cookie: str | None,
                   ctx: Ctx) -> Done:
    """The provider sent the browser back: check it is this browser's sign-in, spend its
    state, exchange the code, verify the ID token, then sign in, link or step up."""
    client = await client_of(auth, name)
    try:
        flow = await _spend_state(auth, name, query, cookie)
        verified = await _verified(auth, client, flow, query)
        if flow["m"] == LINK:
            return await _link(auth, client.provider, flow, verified, ctx)
        if flow["m"] == REAUTH:
            return await _reauth(auth, client.provider, flow, verified, ctx)
        return await _sign_in(auth, client.provider, flow, verified, ctx)
    except Problem as problem:
        if problem.status != 404:
            await _record_refusal(auth, name, problem, ctx)
        raise


async def _spend_state(auth: Auth, name: str, query: dict[str, str],
                       cookie: str | None) -> dict[str, Any]:
    if not cookie:
        raise bad_state("no sign-in was started in this browser (the sign-in cookie is "
                        "missing): start again")
    try:
        flow = json.loads(crypto.open_sealed(auth.master, b64.decode(cookie), _CONTEXT))
    except (crypto.SealError, ValueError, TypeError):
        raise bad_state("the sign-in cookie is not valid: start again") from None
    state = query.get("state") or ""
    if flow.get("p") != name or not crypto.equal(state, str(flow.get("s", ""))):
        raise bad_state("the answer's state is not this browser's sign-in: start again")
    if flow["x"] <= auth.timestamp():
        raise bad_state("the sign-in took too long: start again")
    async with auth.pool.acquire() as conn:
        if not await queries.spend_sso_state(conn, crypto.sha256(state), name, auth.now()):
            raise bad_state("this sign-in was already completed (or expired): start again")
    return dict(flow)


async def _verified(auth: Auth, client: OidcClient, flow: dict[str, Any],
                    query: dict[str, str]) -> Verified:
    if "error" in query:
        error = re.sub(r"[^A-Za-z0-9_.-]", "", query["error"])[:64]
        raise refused(f"the identity provider refused the sign-in ({error})")
    code = query.get("code")
    if not code or len(code) > 2048:
        raise refused("the identity provider's answer has no code")
    redirect_uri = auth.config.sso.redirect_uri(flow["p"])
    try:
        await client.check_response_issuer(query.get("iss"))
        tokens = await client.exchange(code, redirect_uri, flow["v"])
        return await client.verify(tokens, flow["n"], flow.get("ma"))
    except IdTokenRefused as exc:
        raise refused(str(exc)) from exc
    except IdpUnavailable as exc:
        raise unavailable(exc) from exc


def verified_email(provider: Provider, claims: dict[str, Any]) -> str:
    """The email the provider vouches for, normalised; 403 when it does not vouch for it.
    Entra ID does not send `email_verified`: its `xms_edov` (email domain owner verified)
    optional claim says the same."""
    email = claims.get("email")
    vouched = claims.get("email_verified") is True or (
        provider.preset == "microsoft" and claims.get("xms_edov") is True)
    if not isinstance(email, str) or not vouched:
        raise Problem(403, "the identity provider does not say this email is verified; "
                      "nothing was created or linked", title="Email not verified by the provider",
                      type=SSO_EMAIL_UNVERIFIED)
    try:
        normal = emails.normalise(email)
    except emails.EmailRefused:
        raise Problem(403, "the identity provider's email is not usable",
                      title="Email not verified by the provider",
                      type=SSO_EMAIL_UNVERIFIED) from None
    # Google: a consumer account may carry any verified address; a Workspace domain's own
    # accounts say so in `hd`, which Google asks relying parties to check
    hosted = provider.preset != "google" or not provider.allowed_domains \
        or claims.get("hd") in provider.allowed_domains
    if not provider.email_allowed(normal) or not hosted:
        raise Problem(403, f"{provider.display_name} signs in only accounts of "
                      f"{', '.join(provider.allowed_domains)}", title="Email domain not allowed",
                      type=SSO_DOMAIN_NOT_ALLOWED)
    return normal


def session_amr(claims: dict[str, Any]) -> list[str]:
    """`fed`, `mfa` when the provider says so, and its methods as `idp:<value>` (never one of
    auth's own, so an IdP's `otp` does not pass for auth's TOTP)."""
    raw = claims.get("amr")
    theirs = [v for v in raw if isinstance(v, str) and _AMR.match(v)][:8] \
        if isinstance(raw, list) else []
    return ["fed", *(["mfa"] if "mfa" in theirs else []), *(f"idp:{v}" for v in theirs)]


async def _sign_in(auth: Auth, provider: Provider, flow: dict[str, Any], verified: Verified,
                   ctx: Ctx) -> Done:
    async with auth.pool.acquire() as conn, conn.transaction():
        user_id = await _account_for(auth, conn, provider, verified, ctx)
        issued = await sessions.start(auth, conn, user_id, session_amr(verified.claims), ctx,
                                      idp=verified.issuer, idp_provider=provider.name)
    return Done(flow["r"], LOGIN, issued=issued)


async def _account_for(auth: Auth, conn: queries.Conn, provider: Provider, verified: Verified,
                       ctx: Ctx) -> UUID:
    """The account of this identity; for a new identity, a new account (just in time)."""
    identity = await queries.identity_by_subject(conn, verified.issuer, verified.subject)
    if identity is None:
        email = verified_email(provider, verified.claims)
        await sso_orgs.check_domain(auth, provider, email)
        created = await _new_account(auth, conn, provider, verified, email, ctx)
        if created is not None:
            return created
        # a concurrent first sign-in made the email's account: of this same identity?
        identity = await queries.identity_by_subject(conn, verified.issuer, verified.subject)
        if identity is None:
            raise _link_required(provider)
    known = verified_email(provider, verified.claims) if provider.allowed_domains \
        else _asserted_email(verified.claims)
    if identity["deactivated_at"] is not None:
        raise refused("this account is deactivated")
    now = auth.now()
    if (known is not None and known != identity["email"]) \
            or (now - identity["last_used_at"]).total_seconds() > TOUCH_SECONDS:
        await queries.touch_identity(conn, identity["id"], known, now)
    return UUID(str(identity["user_id"]))


def _asserted_email(claims: dict[str, Any]) -> str | None:
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        return None
    try:
        return emails.normalise(email)
    except emails.EmailRefused:
        return None


def _link_required(provider: Provider) -> Problem:
    return Problem(409, "an account with this email already exists: sign in with your "
                   "password, then link this provider from your account "
                   f"(POST /sso/{provider.name}/link); nothing was linked",
                   title="Sign in with your password to link", type=SSO_LINK_REQUIRED)


async def _new_account(auth: Auth, conn: queries.Conn, provider: Provider, verified: Verified,
                       email: str, ctx: Ctx) -> UUID | None:
    """Just in time: a verified account without a password, with this identity; None when a
    concurrent sign-in created the email's account first. An existing account with the email
    is never signed in or linked here (that would hand it to whoever controls the email at
    any configured provider)."""
    if await queries.user_by_email(conn, email) is not None:
        raise _link_required(provider)
    user_id = uuid.uuid4()
    if not await queries.insert_sso_user(conn, user_id, email, auth.now()):
        return None
    await emit(conn, ctx, USER_SIGNED_UP, actor=user(user_id), resource=("user", str(user_id)),
               data={"via": "sso", "provider": provider.name, "idp": verified.issuer})
    await _add_identity(conn, provider, verified, user_id, email, ctx)
    return user_id


async def _add_identity(conn: queries.Conn, provider: Provider, verified: Verified,
                        user_id: UUID, email: str | None, ctx: Ctx) -> UUID:
    identity_id = uuid.uuid4()
    if not await queries.insert_identity(conn, {
            "id": identity_id, "user_id": user_id, "provider": provider.name,
            "issuer": verified.issuer, "subject": verified.subject, "email": email}):
        raise Problem(409, "that identity is already linked to another account",
                      title="Identity linked elsewhere", type=IDENTITY_IN_USE)
    await emit(conn, ctx, IDENTITY_LINKED, actor=user(user_id),
               resource=("identity", str(identity_id)),
               data={"provider": provider.name, "issuer": verified.issuer})
    return identity_id


async def _link(auth: Auth, provider: Provider, flow: dict[str, Any], verified: Verified,
                ctx: Ctx) -> Done:
    """Link the provider's identity to the signed-in account that started this (its fresh
    sign-in is the proof); the email must be verified, and may differ from the account's."""
    user_id = UUID(flow["u"])
    email = verified_email(provider, verified.claims)
    await sso_orgs.check_domain(auth, provider, email)
    async with auth.pool.acquire() as conn, conn.transaction():
        account = await queries.lock_user(conn, user_id)
        if account is None or account["deactivated_at"] is not None:
            raise refused("this account is deactivated")
        await _live_session(conn, flow, user_id)
        identity = await queries.identity_by_subject(conn, verified.issuer, verified.subject)
        if identity is not None:
            if identity["user_id"] != user_id:
                raise Problem(409, "that identity is already linked to another account",
                              title="Identity linked elsewhere", type=IDENTITY_IN_USE)
            return Done(flow["r"], LINK, identity_id=identity["id"])
        identity_id = await _add_identity(conn, provider, verified, user_id, email, ctx)
    return Done(flow["r"], LINK, identity_id=identity_id)


async def _reauth(auth: Auth, provider: Provider, flow: dict[str, Any], verified: Verified,
                  ctx: Ctx) -> Done:
    """Step-up through the provider: the same identity as the account's, signed in again
    just now (auth_time checked against max_age=0 and the leeway)."""
    user_id = UUID(flow["u"])
    if verified.claims.get("auth_time", 0) < flow["t"] - auth.config.sso.leeway:
        raise refused("the provider did not sign you in again (auth_time)")
    amr = session_amr(verified.claims)
    async with auth.pool.acquire() as conn, conn.transaction():
        identity = await queries.identity_by_subject(conn, verified.issuer, verified.subject)
        if identity is None or identity["user_id"] != user_id:
            raise refused("that identity is not linked to this account")
        session_id = await _live_session(conn, flow, user_id)
        await queries.set_session_auth(conn, session_id, auth.now(), amr)
        await emit(conn, ctx, REAUTH_SUCCEEDED, actor=user(user_id),
                   resource=("session", str(session_id)),
                   data={"amr": amr, "via": "sso", "provider": provider.name})
    token = await sessions.reissue(auth, session_id, ctx)
    return Done(flow["r"], REAUTH, access_token=token)


async def _live_session(conn: queries.Conn, flow: dict[str, Any], user_id: UUID) -> UUID:
    """The session that started a link or step-up must still be the user's and live."""
    if not flow.get("sid"):
        raise refused("this sign-in did not start from a session: sign in and start again")
    session = await queries.session_by_id(conn, UUID(flow["sid"]), lock=True)
    if session is None or session["revoked_at"] is not None or session["user_id"] != user_id:
        raise refused("the session that started this has ended: sign in and start again")
    return UUID(str(session["id"]))


async def _record_refusal(auth: Auth, name: str, problem: Problem, ctx: Ctx) -> None:
    try:
        async with auth.pool.acquire() as conn:
            await emit(conn, ctx, SSO_REFUSED, actor=ANONYMOUS, resource=("provider", name),
                       data={"status": problem.status, "type": problem.type,
                             "reason": (problem.detail or "")[:200]})
    except Exception:  # the refusal stands even if its record cannot be written
        log.exception("could not record an SSO refusal")


# identities --------------------------------------------------------------------------------------

async def identities(auth: Auth, user_id: UUID) -> list[dict[str, Any]]:
    async with auth.pool.acquire() as conn:
        rows = await queries.identities_of(conn, user_id)
    return [{"id": str(r["id"]), "provider": r["provider"], "issuer": r["issuer"],
             "subject": r["subject"], "email": r["email"],
             "created_at": r["created_at"].isoformat(),
             "last_used_at": r["last_used_at"].isoformat()} for r in rows]


async def unlink(auth: Auth, user_id: UUID, identity_id: UUID, ctx: Ctx) -> None:
    """Unlink one identity, never the last way to sign in (no password, no other identity)."""
    async with auth.pool.acquire() as conn, conn.transaction():
        account = await queries.lock_user(conn, user_id)
        rows = await queries.identities_of(conn, user_id)
        if account is None or not any(r["id"] == identity_id for r in rows):
            raise Problem(404, "not found")
        if account["password_hash"] is None and len(rows) == 1:
            raise Problem(409, "this is the account's only way to sign in: set a password "
                          "(POST /password/change) or link another provider first",
                          title="Last way to sign in", type=LAST_SIGN_IN_METHOD)
        gone = await queries.delete_identity(conn, user_id, identity_id)
        assert gone is not None
        await emit(conn, ctx, IDENTITY_UNLINKED, actor=user(user_id),
                   resource=("identity", str(identity_id)),
                   data={"provider": gone["provider"], "issuer": gone["issuer"]})


async def logout_url(auth: Auth, provider_name: str | None) -> str | None:
    """Where to end the provider's session too (RP-initiated logout), when it says."""
    if not provider_name:
        return None
    try:
        client = await client_of(auth, provider_name)
    except Problem:
        return None
    return await client.end_session_url(auth.config.mail.public_url.rstrip("/") + "/")
