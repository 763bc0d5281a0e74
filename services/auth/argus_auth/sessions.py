"""Sessions: an access token (EdDSA JWT, 15 min) and an opaque refresh token (SHA-256 at rest,
rotated on every use, 30 days absolute). Presenting a refresh token that was already rotated
revokes every session of the user, except within a short grace window where a concurrent double
submit gets the same successor back. An org-scoped session's every new access token carries
the role tenant-api gives the member now: a removed member's refresh yields a token without the
org, a demoted member's one with the new role."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from argus_auth import membership, queries
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, prepare, user
from argus_auth.queries import Conn
from argus_shared import crypto
from argus_shared.access import Revocations, issued_at
from argus_shared.db import RowLike
from argus_shared.errors import Problem
from argus_shared.event_types import (
    LOGIN_SUCCEEDED,
    REFRESH_TOKEN_REUSED,
    SESSION_ORG_SCOPE_CHANGED,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
)

log = logging.getLogger("argus.auth.sessions")
REFRESH_PREFIX = "art_"
SCOPE_ATTEMPTS = 3  # a session that switches org during its refresh is asked about again


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    session_id: UUID
    expires_in: int


@dataclass(frozen=True)
class Scope:
    """The org scope a token of a session may carry now, asked of tenant-api for the org the
    session had when it was asked (`asked_for`); no org once the membership has ended."""

    asked_for: UUID | None
    org_id: UUID | None = None
    role: str | None = None


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def access_token(auth: Auth, session: RowLike, now: datetime) -> str:
    issued = issued_at(now.timestamp())
    claims = {
        "iss": auth.config.issuer, "aud": auth.config.audience, "sub": str(session["user_id"]),
        "sid": str(session["id"]), "amr": list(session["amr"]),
        "auth_time": int(session["auth_time"].timestamp()),
        "iat": issued, "exp": int(issued) + auth.config.access_ttl,
    }
    if session.get("org_id"):
        claims["org"], claims["role"] = str(session["org_id"]), session["role"]
    if session.get("idp"):  # signed in through a provider: its issuer (argus_auth.sso)
        claims["idp"] = session["idp"]
    return auth.signing.sign(claims)


async def start(auth: Auth, conn: Conn, user_id: UUID, amr: list[str], ctx: Ctx, *,
                clear_throttle: bytes | None = None, idp: str | None = None,
                idp_provider: str | None = None) -> Issued:
    """A new session for a user who just logged in; one event, `auth.login.succeeded`, records
    both the login and the session it opened. Session, refresh token, event (and the cleared
    failure count) go in one statement, so this is atomic even outside a transaction. A
    sign-in through a provider records its issuer (`idp`) and configured name on the session."""
    now = auth.now()
    session: dict[str, Any] = {
        "id": uuid.uuid4(), "user_id": user_id, "org_id": None, "role": None, "amr": amr,
        "auth_time": now, "ip": ctx.ip, "user_agent": (ctx.user_agent or "")[:500] or None,
        "expires_at": now + timedelta(seconds=auth.config.refresh_ttl), "now": now,
        "idp": idp, "idp_provider": idp_provider,
    }
    refresh = new_refresh_token()
    data: dict[str, Any] = {"amr": amr}
    if idp:
        data.update(idp=idp, provider=idp_provider)
    event = prepare(ctx, LOGIN_SUCCEEDED, actor=user(user_id),
                    resource=("session", str(session["id"])), data=data)
    await queries.start_session(conn, session, crypto.sha256(refresh), event, clear_throttle)
    return Issued(access_token(auth, session, now), refresh, session["id"],
                  auth.config.access_ttl)


async def current_scope(auth: Auth, session: RowLike, ctx: Ctx) -> Scope:
    """Ask tenant-api what the session's org scope may be now (no round trip without an org)."""
    org_id = session["org_id"]
    if org_id is None:
        return Scope(None)
    role = await membership.role_for_token(auth, session["user_id"], org_id, session["amr"],
                                           ctx.request_id, session.get("idp"))
    return Scope(org_id, org_id if role else None, role)


async def scoped(conn: Conn, session: RowLike, scope: Scope,
                 ctx: Ctx) -> dict[str, Any]:
    """The session as a token may now carry it; a scope that changed (a removed or demoted
    member) is stored on the session, with its event, so it holds for every later token."""
    current = dict(session)
    if (current["org_id"], current["role"]) == (scope.org_id, scope.role):
        return current
    await queries.set_session_org(conn, current["id"], scope.org_id, scope.role)
    await emit(conn, ctx, SESSION_ORG_SCOPE_CHANGED, actor=("service", "auth"),
               resource=("session", str(current["id"])), org_id=str(current["org_id"]),
               data={"from_role": current["role"], "to_role": scope.role})
    return {**current, "org_id": scope.org_id, "role": scope.role}


async def reissue(auth: Auth, session_id: UUID, ctx: Ctx) -> str:
    """A new access token for a session whose claims changed (step-up): its org scope is
    asked of tenant-api again, never copied from the session."""
    async with auth.pool.acquire() as conn:
        row = await queries.session_by_id(conn, session_id)
    assert row is not None
    scope = await current_scope(auth, row, ctx)
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await queries.session_by_id(conn, session_id, lock=True)
        assert row is not None
        if row["org_id"] != scope.asked_for:  # switched meanwhile: that switch asked already
            return access_token(auth, row, auth.now())
        return access_token(auth, await scoped(conn, row, scope, ctx), auth.now())


def _refused() -> Problem:
    return Problem(401, "the refresh token is not valid", title="Unauthenticated")


def _mints(auth: Auth, row: queries.Row, now: datetime) -> bool:
    """Presenting this refresh token would mint an access token: it is live, and unused or
    within the grace window of a double submit."""
    if row["revoked_at"] is not None or row["expires_at"] <= now:
        return False
    return row["used_at"] is None or \
        (now - row["used_at"]).total_seconds() <= auth.config.refresh_grace


async def refresh(auth: Auth, token: str, ctx: Ctx) -> Issued:
    """Rotate a refresh token. The new access token's org scope is asked of tenant-api first
    (before any row is locked, so a slow answer holds no connection), then the rotation checks
    that the session still has the org it was asked about, or asks again."""
    token_hash = crypto.sha256(token)
    for _ in range(SCOPE_ATTEMPTS):
        issued = await _spend(auth, token_hash, await _scope_of(auth, token_hash, ctx), ctx)
        if issued is not None:
            return issued
    raise Problem(503, "the session changed while it was refreshed; try again",
                  title="Service unavailable", headers={"Retry-After": "1"})


async def _scope_of(auth: Auth, token_hash: bytes, ctx: Ctx) -> Scope:
    async with auth.pool.acquire() as conn:
        row = await queries.refresh_session(conn, token_hash)
    if row is None or not _mints(auth, row, auth.now()):
        return Scope(row["org_id"] if row else None)  # nothing will be minted: nothing to ask
    return await current_scope(auth, row, ctx)


async def _spend(auth: Auth, token_hash: bytes, scope: Scope, ctx: Ctx) -> Issued | None:
    """The rotation (or a double submit's same successor), or None to ask for the scope again;
    a rotated token presented again ends every session of the user."""
    now = auth.now()
    async with auth.pool.acquire() as conn:
        async with conn.transaction():
            row = await queries.refresh_for_update(conn, token_hash)
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                raise _refused()
            if _mints(auth, row, now) and row["org_id"] != scope.asked_for:
                return None
            if row["used_at"] is None:
                return await _rotate(auth, conn, row, scope, now, ctx)
            replay = await _grace_replay(auth, conn, row, scope, now, ctx)
            if replay is not None:
                return replay
            revoked = await queries.revoke_sessions(conn, row["user_id"], "refresh_token_reuse")
            await emit(conn, ctx, REFRESH_TOKEN_REUSED, actor=user(row["user_id"]),
                       resource=("session", str(row["session_id"])),
                       data={"revoked_sessions": len(revoked)})
        await Revocations.revoke_user(auth.js, str(row["user_id"]), auth.timestamp())
        log.warning("refresh token reuse: every session revoked",
                    extra={"user_id": str(row["user_id"])})
        raise _refused()


async def _rotate(auth: Auth, conn: Conn, row: queries.Row, scope: Scope, now: datetime,
                  ctx: Ctx) -> Issued:
    successor = new_refresh_token()
    successor_hash = crypto.sha256(successor)
    sealed = crypto.seal(auth.master, successor.encode(), row["token_hash"])
    await queries.spend_refresh(conn, row["token_hash"], successor_hash, sealed, now)
    await queries.insert_refresh(conn, successor_hash, row["session_id"], now)
    await queries.touch_session(conn, row["session_id"], now, ctx.ip, ctx.user_agent)
    session = await scoped(conn, {**dict(row), "id": row["session_id"]}, scope, ctx)
    return Issued(access_token(auth, session, now), successor, row["session_id"],
                  auth.config.access_ttl)


async def _grace_replay(auth: Auth, conn: Conn, row: queries.Row, scope: Scope, now: datetime,
                        ctx: Ctx) -> Issued | None:
    """A double submit within the grace window gets the same successor, if that is unused."""
    if (now - row["used_at"]).total_seconds() > auth.config.refresh_grace:
        return None
    if row["successor_ct"] is None or await queries.refresh_used(conn, row["successor"]):
        return None
    successor = crypto.open_sealed(auth.master, row["successor_ct"], row["token_hash"]).decode()
    session = await scoped(conn, {**dict(row), "id": row["session_id"]}, scope, ctx)
    return Issued(access_token(auth, session, now), successor, row["session_id"],
                  auth.config.access_ttl)


async def revoke(auth: Auth, user_id: UUID, session_id: UUID, ctx: Ctx, why: str) -> bool:
    async with auth.pool.acquire() as conn, conn.transaction():
        revoked = await queries.revoke_session(conn, user_id, session_id, why)
        if revoked:
            await emit(conn, ctx, SESSION_REVOKED, actor=user(user_id),
                       resource=("session", str(session_id)), data={"reason": why})
    if revoked:
        await Revocations.revoke_session(auth.js, str(session_id))
    return revoked


async def revoke_all(auth: Auth, user_id: UUID, ctx: Ctx, why: str,
                     keep: UUID | None = None) -> int:
    async with auth.pool.acquire() as conn, conn.transaction():
        revoked = await queries.revoke_sessions(conn, user_id, why, keep)
        if revoked:
            await emit(conn, ctx, SESSIONS_REVOKED, actor=user(user_id),
                       resource=("user", str(user_id)),
                       data={"reason": why, "count": len(revoked)})
    for session_id in revoked:
        await Revocations.revoke_session(auth.js, str(session_id))
    return len(revoked)
