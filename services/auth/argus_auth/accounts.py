"""Sign-up, email verification, login with lockout, password reset and change, email change.

No answer tells whether an email has an account. Sign-up, reset and email-change requests do
only work that is the same for every email before they answer 202 (normalise, the
breached-password check, queue); the look-up, hashing, rows and mail run after the answer in
`background` (so neither the answer nor its timing depends on the account). Login failures
for unknown emails run the same Argon2id work (against a sentinel hash), count towards the same
per-email lockout and return the same problem. Every email is taken in the one normal form of
`argus_shared.emails` (what is stored, looked up, locked out, rate-limited and mailed to)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import uuid
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

from argus_auth import mail, mfa, queries, sessions
from argus_auth.core import Auth
from argus_auth.events import ANONYMOUS, Ctx, emit, user
from argus_shared import crypto, emails
from argus_shared.access import Revocations
from argus_shared.errors import Problem
from argus_shared.event_types import (
    EMAIL_CHANGE_REQUESTED,
    EMAIL_CHANGED,
    LOGIN_FAILED,
    LOGIN_LOCKED,
    LOGIN_MFA_REQUIRED,
    PASSWORD_CHANGED,
    PASSWORD_RESET,
    PASSWORD_RESET_REQUESTED,
    USER_DEACTIVATED,
    USER_EMAIL_VERIFIED,
    USER_PURGED,
    USER_SIGNED_UP,
)
from argus_shared.nats import RpcError

log = logging.getLogger("argus.auth.accounts")
INVALID_LOGIN = "invalid email or password"


def normalise(email: str) -> str:
    """The normal form of an email (`argus_shared.emails`); a refused one is a 422."""
    return emails.required(email)


def email_key(auth: Auth, email: str) -> bytes:
    """The throttle key of an email: keyed, so the table does not list who tried to log in."""
    return hmac.new(auth.xut_keys.current_key, b"login:" + email.encode(), hashlib.sha256).digest()


def new_email_token() -> str:
    return secrets.token_urlsafe(32)


async def _check_not_breached(auth: Auth, password: str) -> None:
    if await auth.breach.breached(auth.http, password):
        raise Problem(422, "this password appears in known data breaches; choose another",
                      title="Password refused")


async def sign_up(auth: Auth, email: str, password: str, ctx: Ctx) -> None:
    """Check what does not depend on the account (the address, the password against breaches)
    and queue the rest: the answer is the same, and as quick, whether the email is known."""
    email = normalise(email)
    await _check_not_breached(auth, password)
    auth.background.submit("sign_up", partial(_sign_up, auth, email, password, ctx))


async def _sign_up(auth: Auth, email: str, password: str, ctx: Ctx) -> None:
    password_hash = await auth.passwords.hash(password)  # for a known email too: same work
    async with auth.pool.acquire() as conn, conn.transaction():
        existing = await queries.user_by_email(conn, email)
        if existing is not None:
            await _mail_existing_account(auth, existing)
            return
        user_id = uuid.uuid4()
        if not await queries.insert_user(conn, user_id, email, password_hash):
            return  # a concurrent sign-up won; answer the same
        token = new_email_token()
        expires = auth.now() + timedelta(seconds=auth.config.verify_ttl)
        await queries.insert_email_token(conn, crypto.sha256(token), user_id, "verify_email",
                                         expires)
        await emit(conn, ctx, USER_SIGNED_UP, actor=user(user_id),
                   resource=("user", str(user_id)))
    await auth.mailer.send(email, *mail.verification(auth.config.mail.public_url, token,
                                                     auth.config.verify_ttl))


async def _mail_existing_account(auth: Auth, existing: queries.Row) -> None:
    await auth.mailer.send(existing["email"], *mail.sign_up_attempt())


async def verify_email(auth: Auth, token: str, ctx: Ctx) -> None:
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await queries.use_email_token(conn, crypto.sha256(token), "verify_email",
                                            auth.now())
        if row is None:
            raise Problem(400, "the verification link is invalid, used or expired")
        await queries.mark_verified(conn, row["user_id"])
        await emit(conn, ctx, USER_EMAIL_VERIFIED, actor=user(row["user_id"]),
                   resource=("user", str(row["user_id"])))


async def login(auth: Auth, email: str, password: str, ctx: Ctx) -> sessions.Issued | str:
    """Tokens, or an MFA challenge token when the account has a second factor."""
    email = normalise(email)
    key = email_key(auth, email)
    async with auth.pool.acquire() as conn:
        state = await queries.login_state(conn, email, key)
    account = state if state["id"] is not None else None
    if state["locked_until"] and state["locked_until"] > auth.now():
        await _record_attempt(auth, account, ctx, "locked")
        wait = math.ceil((state["locked_until"] - auth.now()).total_seconds())
        raise Problem(429, "too many failed logins; try again later", title="Locked",
                      headers={"Retry-After": str(max(wait, 1))})
    stored = account["password_hash"] if account else None
    if not await auth.passwords.verify(stored, password):
        await _failure(auth, key, account, ctx, "unknown_email" if account is None
                       else "bad_password")
        raise Problem(401, INVALID_LOGIN, title="Unauthenticated")
    assert account is not None
    if account["deactivated_at"] is not None:
        await _failure(auth, key, account, ctx, "deactivated")
        raise Problem(401, INVALID_LOGIN, title="Unauthenticated")
    if account["email_verified_at"] is None:
        await _record_attempt(auth, account, ctx, "unverified")
        raise Problem(403, "verify your email address before logging in",
                      title="Email not verified")
    return await _succeed(auth, key, state, password, ctx)


async def _succeed(auth: Auth, key: bytes, account: queries.Row, password: str,
                   ctx: Ctx) -> sessions.Issued | str:
    if auth.passwords.needs_rehash(account["password_hash"]):
        new_hash = await auth.passwords.hash(password)
        async with auth.pool.acquire() as conn:
            await queries.rehash_password(conn, account["id"], account["password_hash"], new_hash)
    if not account["mfa"]:
        async with auth.pool.acquire() as conn:
            return await sessions.start(auth, conn, account["id"], ["pwd"], ctx,
                                        clear_throttle=key if account["failures"] else None)
    async with auth.pool.acquire() as conn, conn.transaction():
        if account["failures"]:
            await queries.clear_failures(conn, key)
        token = await mfa.challenge(auth, conn, account["id"], ctx)
        await emit(conn, ctx, LOGIN_MFA_REQUIRED, actor=user(account["id"]),
                   resource=("user", str(account["id"])))
        return token


async def _failure(auth: Auth, key: bytes, account: queries.Row | None, ctx: Ctx,
                   reason: str) -> None:
    config = auth.config
    async with auth.pool.acquire() as conn, conn.transaction():
        failures = await queries.record_failure(conn, key, auth.now())
        locked = failures >= config.lockout_threshold
        if locked:
            delay = min(config.lockout_cap,
                        config.lockout_base * 2 ** (failures - config.lockout_threshold))
            await queries.set_lock(conn, key, auth.now() + timedelta(seconds=delay))
        await _emit_attempt(conn, account, ctx, reason, failures=failures, locked=locked)


async def _record_attempt(auth: Auth, account: queries.Row | None, ctx: Ctx,
                          reason: str) -> None:
    async with auth.pool.acquire() as conn:
        await _emit_attempt(conn, account, ctx, reason)


async def _emit_attempt(conn: queries.Conn, account: queries.Row | None, ctx: Ctx, reason: str,
                        **data: object) -> None:
    actor = user(account["id"]) if account else ANONYMOUS
    resource = ("user", str(account["id"])) if account else ("user", "-")
    event_type = LOGIN_LOCKED if data.get("locked") else LOGIN_FAILED
    await emit(conn, ctx, event_type, actor=actor, resource=resource,
               data={"reason": reason, **data})


async def request_reset(auth: Auth, email: str, ctx: Ctx) -> None:
    """Queue the reset mail (if the email has an active account) after the answer."""
    auth.background.submit("request_reset", partial(_request_reset, auth, normalise(email), ctx))


async def _request_reset(auth: Auth, email: str, ctx: Ctx) -> None:
    async with auth.pool.acquire() as conn, conn.transaction():
        account = await queries.user_by_email(conn, email)
        if account is None or account["deactivated_at"] is not None:
            return
        token = new_email_token()
        await queries.insert_email_token(
            conn, crypto.sha256(token), account["id"], "reset_password",
            auth.now() + timedelta(seconds=auth.config.reset_ttl),
        )
        await emit(conn, ctx, PASSWORD_RESET_REQUESTED, actor=user(account["id"]),
                   resource=("user", str(account["id"])))
    await auth.mailer.send(email, *mail.password_reset(auth.config.mail.public_url, token,
                                                       auth.config.reset_ttl))


async def reset_password(auth: Auth, token: str, new_password: str, ctx: Ctx) -> None:
    await _check_not_breached(auth, new_password)
    password_hash = await auth.passwords.hash(new_password)
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await queries.use_email_token(conn, crypto.sha256(token), "reset_password",
                                            auth.now())
        if row is None:
            raise Problem(400, "the reset link is invalid, used or expired")
        await queries.set_password(conn, row["user_id"], password_hash)
        await queries.mark_verified(conn, row["user_id"])  # the mailbox was proven
        await emit(conn, ctx, PASSWORD_RESET, actor=user(row["user_id"]),
                   resource=("user", str(row["user_id"])))
    await sessions.revoke_all(auth, row["user_id"], ctx, "password_reset")


async def change_password(auth: Auth, user_id: UUID, session_id: UUID, new_password: str,
                          ctx: Ctx) -> int:
    """Set a new password (step-up already checked); other sessions end."""
    await _check_not_breached(auth, new_password)
    password_hash = await auth.passwords.hash(new_password)
    async with auth.pool.acquire() as conn, conn.transaction():
        await queries.set_password(conn, user_id, password_hash)
        await emit(conn, ctx, PASSWORD_CHANGED, actor=user(user_id),
                   resource=("user", str(user_id)))
    return await sessions.revoke_all(auth, user_id, ctx, "password_changed", keep=session_id)


async def request_email_change(auth: Auth, user_id: UUID, new_email: str, ctx: Ctx) -> None:
    """Queue the confirmation mail to the new address (unless it already has an account)."""
    auth.background.submit("request_email_change",
                           partial(_request_email_change, auth, user_id, normalise(new_email),
                                   ctx))


async def _request_email_change(auth: Auth, user_id: UUID, new_email: str, ctx: Ctx) -> None:
    async with auth.pool.acquire() as conn, conn.transaction():
        if await queries.user_by_email(conn, new_email) is not None:
            return  # answer the same: no enumeration through email change either
        token = new_email_token()
        await queries.insert_email_token(
            conn, crypto.sha256(token), user_id, "change_email",
            auth.now() + timedelta(seconds=auth.config.verify_ttl), new_email,
        )
        await emit(conn, ctx, EMAIL_CHANGE_REQUESTED, actor=user(user_id),
                   resource=("user", str(user_id)))
    await auth.mailer.send(new_email, *mail.email_change(auth.config.mail.public_url, token,
                                                         auth.config.verify_ttl))


async def confirm_email_change(auth: Auth, token: str, ctx: Ctx) -> None:
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await queries.use_email_token(conn, crypto.sha256(token), "change_email",
                                            auth.now())
        if row is None or not await queries.set_email(conn, row["user_id"], row["new_email"]):
            raise Problem(400, "the confirmation link is invalid, used or expired")
        await emit(conn, ctx, EMAIL_CHANGED, actor=user(row["user_id"]),
                   resource=("user", str(row["user_id"])))


async def normalise_stored_emails(conn: queries.Conn) -> tuple[int, list[str]]:
    """Rewrite every stored email that is not in its normal form, when no other account holds
    that form: (how many were rewritten, one line per account left for a person to resolve)."""
    rewritten, problems = 0, []
    for row in await queries.user_emails(conn):
        try:
            normal = emails.normalise(row["email"])
        except emails.EmailRefused as exc:
            problems.append(f"user {row['id']}: the stored address is refused now: {exc}")
            continue
        if normal == row["email"]:
            continue
        if await queries.set_email(conn, row["id"], normal):
            rewritten += 1
        else:
            problems.append(f"user {row['id']}: its normal form is another account's address")
    return rewritten, problems


async def user_rpc(auth: Auth, claims: Any, payload: Any) -> dict[str, Any]:
    """Another service asks for the email of the user it acts for (never of someone else)."""
    user_id = _own_user(claims, payload)
    async with auth.pool.acquire() as conn:
        account = await queries.user_by_id(conn, user_id)
    if account is None:
        raise RpcError(404, "no such user")
    return {"email": account["email"], "verified": account["email_verified_at"] is not None}


async def export_rpc(auth: Auth, claims: Any, payload: Any) -> dict[str, Any]:
    """The user's own data held by auth (never secrets: no hashes, no tokens, no TOTP seed)."""
    user_id = _own_user(claims, payload)
    async with auth.pool.acquire() as conn:
        account = await queries.user_by_id(conn, user_id)
        if account is None:
            raise RpcError(404, "no such user")
        sessions_rows = await queries.sessions_of(conn, user_id, auth.now())
        mfa_on = await mfa.enabled(conn, user_id)
        identities = await queries.identities_of(conn, user_id)
    return {
        "email": account["email"], "created_at": account["created_at"].isoformat(),
        "email_verified": account["email_verified_at"] is not None, "mfa_enabled": mfa_on,
        "sessions": [{"created_at": r["created_at"].isoformat(), "ip": r["ip"],
                      "user_agent": r["user_agent"]} for r in sessions_rows],
        "identities": [{"provider": r["provider"], "issuer": r["issuer"],
                        "subject": r["subject"], "email": r["email"],
                        "created_at": r["created_at"].isoformat()} for r in identities],
    }


async def deactivate_rpc(auth: Auth, claims: Any, payload: Any) -> dict[str, Any]:
    """Step one of "delete my account": the account stops working at once, everywhere."""
    user_id = _own_user(claims, payload)
    ctx = Ctx(request_id=claims.rid)
    async with auth.pool.acquire() as conn, conn.transaction():
        await queries.deactivate(conn, user_id)
        await emit(conn, ctx, USER_DEACTIVATED, actor=user(user_id),
                   resource=("user", str(user_id)))
    await sessions.revoke_all(auth, user_id, ctx, "account_deleted")
    await Revocations.revoke_user(auth.js, str(user_id), auth.timestamp())
    return {"deactivated": True}


async def purge_rpc(auth: Auth, claims: Any, payload: Any) -> dict[str, Any]:
    """Step two, asked by tenant-api's purge job: remove the deactivated account's data."""
    if claims.sub != "service:tenant-api":
        raise RpcError(403, "only the data-subject request job purges accounts")
    try:
        user_id = UUID(payload["user_id"])
    except (KeyError, TypeError, ValueError):
        raise RpcError(400, "send user_id") from None
    async with auth.pool.acquire() as conn, conn.transaction():
        account = await queries.user_by_id(conn, user_id)
        if account is not None and account["deactivated_at"] is None:
            raise RpcError(409, "the account is still active")
        await queries.purge_user(conn, user_id)
        await emit(conn, Ctx(request_id=claims.rid), USER_PURGED,
                   actor=("service", "tenant-api"), resource=("user", str(user_id)))
    return {"purged": True}


def _own_user(claims: Any, payload: Any) -> UUID:
    try:
        user_id = UUID(payload["user_id"])
    except (KeyError, TypeError, ValueError):
        raise RpcError(400, "send user_id") from None
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "only the user's own account")
    return user_id
