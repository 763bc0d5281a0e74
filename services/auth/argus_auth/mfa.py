"""TOTP (RFC 6238: 30 s steps, one step of drift, each step accepted once) with the secret
sealed under the master key, ten single-use recovery codes stored hashed, login challenges,
and step-up re-authentication."""

from __future__ import annotations

import secrets
from datetime import timedelta
from uuid import UUID

import pyotp

from argus_auth import queries, sessions
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, user
from argus_shared import crypto
from argus_shared.errors import Problem
from argus_shared.event_types import LOGIN_FAILED, MFA_DISABLED, MFA_ENABLED

STEP = 30
RECOVERY_CODES = 10
MAX_CHALLENGE_TRIES = 5
ISSUER_NAME = "Argus"


def _context(user_id: UUID) -> bytes:
    return f"auth.totp:{user_id}".encode()


async def enabled(conn: queries.Conn, user_id: UUID) -> bool:
    factor = await queries.totp_factor(conn, user_id)
    return factor is not None and factor["confirmed_at"] is not None


async def challenge(auth: Auth, conn: queries.Conn, user_id: UUID, ctx: Ctx) -> str:
    token = secrets.token_urlsafe(32)
    await queries.insert_challenge(
        conn, crypto.sha256(token), user_id,
        auth.now() + timedelta(seconds=auth.config.challenge_ttl), ctx.ip, ctx.user_agent,
    )
    return token


async def enrol(auth: Auth, user_id: UUID, email: str) -> tuple[str, str]:
    secret = pyotp.random_base32(32)
    async with auth.pool.acquire() as conn:
        if await enabled(conn, user_id):
            raise Problem(409, "a TOTP factor is already enabled; disable it first")
        await queries.put_totp_factor(
            conn, user_id, crypto.seal(auth.master, secret.encode(), _context(user_id))
        )
    uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER_NAME)
    return secret, uri


USED, WRONG = "used", "wrong"


async def totp_outcome(auth: Auth, conn: queries.Conn, user_id: UUID, code: str,
                       require_confirmed: bool = True) -> str | None:
    """None when the code is accepted; `USED` for a right code whose time step was already
    accepted (a replay, or a second use within 30 s), `WRONG` for anything else."""
    factor = await queries.totp_factor(conn, user_id)
    if factor is None or (require_confirmed and factor["confirmed_at"] is None):
        return WRONG
    secret = crypto.open_sealed(auth.master, factor["secret_sealed"], _context(user_id)).decode()
    totp = pyotp.TOTP(secret)
    now_step = int(auth.timestamp()) // STEP
    for step in (now_step - 1, now_step, now_step + 1):
        if secrets.compare_digest(totp.at(step * STEP), code):
            return None if await queries.use_totp_step(conn, user_id, step) else USED
    return WRONG


async def check_totp(auth: Auth, conn: queries.Conn, user_id: UUID, code: str,
                     require_confirmed: bool = True) -> bool:
    return await totp_outcome(auth, conn, user_id, code, require_confirmed) is None


def code_refused(outcome: str | None) -> Problem:
    if outcome == USED:
        return Problem(401, "this code was already used: wait for the next one (30 s) and try "
                       "again", title="Code already used", type="urn:argus:problem:code-used")
    return Problem(401, "the code is not valid", title="Unauthenticated")


async def check_recovery(conn: queries.Conn, user_id: UUID, code: str) -> bool:
    return await queries.use_recovery_code(conn, user_id, crypto.sha256(_canonical(code)))


def _canonical(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(6)  # 48 bits, single use, hashed at rest
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


async def confirm(auth: Auth, user_id: UUID, code: str, ctx: Ctx) -> list[str]:
    async with auth.pool.acquire() as conn, conn.transaction():
        factor = await queries.totp_factor(conn, user_id)
        if factor is None or factor["confirmed_at"] is not None:
            raise Problem(409, "start TOTP enrolment first")
        if not await check_totp(auth, conn, user_id, code, require_confirmed=False):
            raise Problem(422, "the code is not valid", title="Invalid code")
        await queries.confirm_totp(conn, user_id)
        codes = new_recovery_codes()
        await queries.replace_recovery_codes(
            conn, user_id, [crypto.sha256(_canonical(c)) for c in codes]
        )
        await emit(conn, ctx, MFA_ENABLED, actor=user(user_id),
                   resource=("user", str(user_id)), data={"factor": "totp"})
    return codes


async def disable(auth: Auth, user_id: UUID, ctx: Ctx) -> None:
    async with auth.pool.acquire() as conn, conn.transaction():
        if not await enabled(conn, user_id):
            raise Problem(409, "MFA is not enabled")
        await queries.delete_mfa(conn, user_id)
        await emit(conn, ctx, MFA_DISABLED, actor=user(user_id),
                   resource=("user", str(user_id)), data={"factor": "totp"})


async def complete_login(auth: Auth, token: str, code: str | None, recovery_code: str | None,
                         ctx: Ctx) -> sessions.Issued:
    """Spend a login challenge with a TOTP or recovery code (five tries per challenge)."""
    if (code is None) == (recovery_code is None):
        raise Problem(422, "send either code or recovery_code")
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await queries.challenge(conn, crypto.sha256(token), auth.now())
        if row is None:
            raise Problem(401, "the MFA challenge is invalid or expired", title="Unauthenticated")
        user_id = row["user_id"]
        if code:
            outcome = await totp_outcome(auth, conn, user_id, code)
        else:
            outcome = None if await check_recovery(conn, user_id, recovery_code or "") else WRONG
        if outcome is not None:
            await queries.fail_challenge(conn, crypto.sha256(token), MAX_CHALLENGE_TRIES)
            await emit(conn, ctx, LOGIN_FAILED, actor=user(user_id),
                       resource=("user", str(user_id)),
                       data={"reason": "used_mfa_code" if outcome == USED else "bad_mfa_code"})
    if outcome is not None:
        raise code_refused(outcome)
    amr = ["pwd", "otp" if code else "recovery"]
    async with auth.pool.acquire() as conn, conn.transaction():
        await queries.spend_challenge(conn, crypto.sha256(token), auth.now())
        return await sessions.start(auth, conn, user_id, amr, ctx)
