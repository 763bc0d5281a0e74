"""Sessions: an access token (EdDSA JWT, 15 min) and an opaque refresh token (SHA-256 at rest,
rotated on every use, 30 days absolute). Presenting a refresh token that was already rotated
revokes every session of the user, except within a short grace window where a concurrent double
submit gets the same successor back."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from argus_auth import queries
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, prepare, user
from argus_auth.queries import Conn
from argus_shared import crypto
from argus_shared.access import Revocations
from argus_shared.errors import Problem

log = logging.getLogger("argus.auth.sessions")
REFRESH_PREFIX = "art_"


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    session_id: UUID
    expires_in: int


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def access_token(auth: Auth, session: dict[str, object], now: datetime) -> str:
    issued = int(now.timestamp())
    claims = {
        "iss": auth.config.issuer, "aud": auth.config.audience, "sub": str(session["user_id"]),
        "sid": str(session["id"]), "amr": list(session["amr"]),  # type: ignore[arg-type]
        "auth_time": int(session["auth_time"].timestamp()),  # type: ignore[attr-defined]
        "iat": issued, "exp": issued + auth.config.access_ttl,
    }
    if session.get("org_id"):
        claims["org"], claims["role"] = str(session["org_id"]), session["role"]
    return auth.signing.sign(claims)


async def start(auth: Auth, conn: Conn, user_id: UUID, amr: list[str], ctx: Ctx, *,
                clear_throttle: bytes | None = None) -> Issued:
    """A new session for a user who just logged in; one event, `auth.login.succeeded`, records
    both the login and the session it opened. Session, refresh token, event (and the cleared
    failure count) go in one statement, so this is atomic even outside a transaction."""
    now = auth.now()
    session = {
        "id": uuid.uuid4(), "user_id": user_id, "org_id": None, "role": None, "amr": amr,
        "auth_time": now, "ip": ctx.ip, "user_agent": (ctx.user_agent or "")[:500] or None,
        "expires_at": now + timedelta(seconds=auth.config.refresh_ttl), "now": now,
    }
    refresh = new_refresh_token()
    event = prepare(ctx, "auth.login.succeeded", actor=user(user_id),
                    resource=("session", str(session["id"])), data={"amr": amr})
    await queries.start_session(conn, session, crypto.sha256(refresh), event, clear_throttle)
    return Issued(access_token(auth, session, now), refresh, session["id"],
                  auth.config.access_ttl)


async def reissue(auth: Auth, conn: Conn, session_id: UUID) -> str:
    """A new access token for a session whose claims changed (step-up, org switch)."""
    row = await queries.session_by_id(conn, session_id)
    assert row is not None
    return access_token(auth, dict(row), auth.now())


def _refused() -> Problem:
    return Problem(401, "the refresh token is not valid", title="Unauthenticated")


async def refresh(auth: Auth, token: str, ctx: Ctx) -> Issued:
    now = auth.now()
    token_hash = crypto.sha256(token)
    async with auth.pool.acquire() as conn:
        async with conn.transaction():
            row = await queries.refresh_for_update(conn, token_hash)
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                raise _refused()
            if row["used_at"] is None:
                return await _rotate(auth, conn, row, now, ctx)
            replay = await _grace_replay(auth, conn, row, now)
            if replay is not None:
                return replay
            revoked = await queries.revoke_sessions(conn, row["user_id"], "refresh_token_reuse")
            await emit(conn, ctx, "auth.refresh_token.reused", actor=user(row["user_id"]),
                       resource=("session", str(row["session_id"])),
                       data={"revoked_sessions": len(revoked)})
        await Revocations.revoke_user(auth.js, str(row["user_id"]), auth.timestamp())
        log.warning("refresh token reuse: every session revoked",
                    extra={"user_id": str(row["user_id"])})
        raise _refused()


async def _rotate(auth: Auth, conn: Conn, row: queries.Row, now: datetime, ctx: Ctx) -> Issued:
    successor = new_refresh_token()
    successor_hash = crypto.sha256(successor)
    sealed = crypto.seal(auth.master, successor.encode(), row["token_hash"])
    await queries.spend_refresh(conn, row["token_hash"], successor_hash, sealed, now)
    await queries.insert_refresh(conn, successor_hash, row["session_id"], now)
    await queries.touch_session(conn, row["session_id"], now, ctx.ip, ctx.user_agent)
    session = {**dict(row), "id": row["session_id"]}
    return Issued(access_token(auth, session, now), successor, row["session_id"],
                  auth.config.access_ttl)


async def _grace_replay(auth: Auth, conn: Conn, row: queries.Row, now: datetime) -> Issued | None:
    """A double submit within the grace window gets the same successor, if that is unused."""
    if (now - row["used_at"]).total_seconds() > auth.config.refresh_grace:
        return None
    if row["successor_ct"] is None or await queries.refresh_used(conn, row["successor"]):
        return None
    successor = crypto.open_sealed(auth.master, row["successor_ct"], row["token_hash"]).decode()
    session = {**dict(row), "id": row["session_id"]}
    return Issued(access_token(auth, session, now), successor, row["session_id"],
                  auth.config.access_ttl)


async def revoke(auth: Auth, user_id: UUID, session_id: UUID, ctx: Ctx, why: str) -> bool:
    async with auth.pool.acquire() as conn, conn.transaction():
        revoked = await queries.revoke_session(conn, user_id, session_id, why)
        if revoked:
            await emit(conn, ctx, "auth.session.revoked", actor=user(user_id),
                       resource=("session", str(session_id)), data={"reason": why})
    if revoked:
        await Revocations.revoke_session(auth.js, str(session_id))
    return revoked


async def revoke_all(auth: Auth, user_id: UUID, ctx: Ctx, why: str,
                     keep: UUID | None = None) -> int:
    async with auth.pool.acquire() as conn, conn.transaction():
        revoked = await queries.revoke_sessions(conn, user_id, why, keep)
        if revoked:
            await emit(conn, ctx, "auth.sessions.revoked", actor=user(user_id),
                       resource=("user", str(user_id)),
                       data={"reason": why, "count": len(revoked)})
    for session_id in revoked:
        await Revocations.revoke_session(auth.js, str(session_id))
    return len(revoked)
