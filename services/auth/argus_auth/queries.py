"""Every SQL statement of the auth service, as named functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from argus_shared import outbox
from argus_shared.db import Conn, one

Row = asyncpg.Record


# users ------------------------------------------------------------------------------------------

async def user_by_email(conn: Conn, email: str) -> Row | None:
    return await conn.fetchrow("select * from users where email = $1", email)


async def user_by_id(conn: Conn, user_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from users where id = $1", user_id)


async def insert_user(conn: Conn, user_id: UUID, email: str, password_hash: str) -> bool:
    status = await conn.execute(
        "insert into users (id, email, password_hash) values ($1, $2, $3)"
        " on conflict (email) do nothing",
        user_id, email, password_hash,
    )
    return status.endswith(" 1")


async def mark_verified(conn: Conn, user_id: UUID) -> None:
    await conn.execute(
        "update users set email_verified_at = coalesce(email_verified_at, now()) where id = $1",
        user_id,
    )


async def set_password(conn: Conn, user_id: UUID, password_hash: str) -> None:
    await conn.execute(
        "update users set password_hash = $2, password_changed_at = now() where id = $1",
        user_id, password_hash,
    )


async def rehash_password(conn: Conn, user_id: UUID, old_hash: str, new_hash: str) -> None:
    await conn.execute(
        "update users set password_hash = $3 where id = $1 and password_hash = $2",
        user_id, old_hash, new_hash,
    )


async def deactivate(conn: Conn, user_id: UUID) -> None:
    await conn.execute(
        "update users set deactivated_at = coalesce(deactivated_at, now()) where id = $1",
        user_id,
    )


async def purge_user(conn: Conn, user_id: UUID) -> None:
    """Sessions, tokens, factors and codes go with the row (ON DELETE CASCADE)."""
    await conn.execute("delete from users where id = $1", user_id)


async def set_email(conn: Conn, user_id: UUID, email: str) -> bool:
    status = await conn.execute(
        "update users set email = $2 where id = $1"
        " and not exists (select 1 from users where email = $2)",
        user_id, email,
    )
    return status.endswith(" 1")


async def user_emails(conn: Conn) -> list[Row]:
    return await conn.fetch("select id, email from users order by created_at, id")


async def login_state(conn: Conn, email: str, email_hash: bytes) -> Row:
    """One round trip for a login: the account (if any), its lock, whether MFA is on."""
    return one(await conn.fetchrow(
        """
        select u.id, u.password_hash, u.email_verified_at, u.deactivated_at,
               t.failures, t.locked_until,
               exists (select 1 from totp_factors f
                       where f.user_id = u.id and f.confirmed_at is not null) as mfa
        from (select 1) as one
        left join users u on u.email = $1
        left join login_throttle t on t.email_hash = $2
        """,
        email, email_hash,
    ))


# login throttle ---------------------------------------------------------------------------------

async def throttle(conn: Conn, email_hash: bytes) -> Row | None:
    return await conn.fetchrow(
        "select failures, locked_until from login_throttle where email_hash = $1", email_hash
    )


async def record_failure(conn: Conn, email_hash: bytes, now: datetime) -> int:
    """Count one more consecutive failure for this email; returns the count."""
    return await conn.fetchval(
        "insert into login_throttle as t (email_hash, failures, updated_at) values ($1, 1, $2)"
        " on conflict (email_hash) do update set failures = t.failures + 1, updated_at = $2"
        " returning failures",
        email_hash, now,
    )


async def set_lock(conn: Conn, email_hash: bytes, locked_until: datetime | None) -> None:
    await conn.execute(
        "update login_throttle set locked_until = $2 where email_hash = $1",
        email_hash, locked_until,
    )


async def clear_failures(conn: Conn, email_hash: bytes) -> None:
    await conn.execute("delete from login_throttle where email_hash = $1", email_hash)


# email tokens -----------------------------------------------------------------------------------

async def insert_email_token(conn: Conn, token_hash: bytes, user_id: UUID, purpose: str,
                             expires_at: datetime, new_email: str | None = None) -> None:
    await conn.execute(
        "insert into email_tokens (token_hash, user_id, purpose, expires_at, new_email)"
        " values ($1, $2, $3, $4, $5)",
        token_hash, user_id, purpose, expires_at, new_email,
    )


async def use_email_token(conn: Conn, token_hash: bytes, purpose: str, now: datetime) -> Row | None:
    """Spend a token once: returns its row only if it was unused and unexpired."""
    return await conn.fetchrow(
        "update email_tokens set used_at = $3 where token_hash = $1 and purpose = $2"
        " and used_at is null and expires_at > $3 returning user_id, new_email",
        token_hash, purpose, now,
    )


# sessions and refresh tokens --------------------------------------------------------------------

async def start_session(conn: Conn, values: dict[str, Any], refresh_hash: bytes,
                        event: outbox.Row, clear_throttle: bytes | None) -> None:
    """Session, first refresh token, the login event and a cleared failure count in one
    statement (one round trip, atomic on its own)."""
    await conn.execute(
        """
        with session as (
            insert into sessions (id, user_id, org_id, role, amr, auth_time, ip, user_agent,
                                  expires_at, created_at, last_used_at, idp, idp_provider)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $18, $19)
        ), refresh as (
            insert into refresh_tokens (token_hash, session_id, created_at)
            values ($11, $1, $10)
        ), throttle as (
            delete from login_throttle where $12::bytea is not null and email_hash = $12
        )
        insert into outbox (id, subject, org_id, payload, headers)
        values ($13, $14, $15, $16, $17)
        """,
        values["id"], values["user_id"], values["org_id"], values["role"], values["amr"],
        values["auth_time"], values["ip"], values["user_agent"], values["expires_at"],
        values["now"], refresh_hash, clear_throttle, *event.values(), values.get("idp"),
        values.get("idp_provider"),
    )


async def session_by_id(conn: Conn, session_id: UUID, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        "select * from sessions where id = $1" + (" for update" if lock else ""), session_id
    )


async def insert_refresh(conn: Conn, token_hash: bytes, session_id: UUID, now: datetime) -> None:
    await conn.execute(
        "insert into refresh_tokens (token_hash, session_id, created_at) values ($1, $2, $3)",
        token_hash, session_id, now,
    )


REFRESH_SESSION = """
    select r.token_hash, r.used_at, r.successor, r.successor_ct, s.id as session_id,
           s.user_id, s.org_id, s.role, s.amr, s.auth_time, s.expires_at, s.revoked_at,
           s.idp
    from refresh_tokens r join sessions s on s.id = r.session_id
    where r.token_hash = $1
"""


async def refresh_session(conn: Conn, token_hash: bytes) -> Row | None:
    """A refresh token and its session, read without a lock."""
    return await conn.fetchrow(REFRESH_SESSION, token_hash)


async def refresh_for_update(conn: Conn, token_hash: bytes) -> Row | None:
    return await conn.fetchrow(REFRESH_SESSION + " for update of r, s", token_hash)


async def refresh_used(conn: Conn, token_hash: bytes) -> bool:
    return bool(await conn.fetchval(
        "select used_at is not null from refresh_tokens where token_hash = $1", token_hash
    ))


async def spend_refresh(conn: Conn, token_hash: bytes, successor: bytes, sealed: bytes,
                        now: datetime) -> None:
    await conn.execute(
        "update refresh_tokens set used_at = $4, successor = $2, successor_ct = $3"
        " where token_hash = $1",
        token_hash, successor, sealed, now,
    )


async def touch_session(conn: Conn, session_id: UUID, now: datetime, ip: str | None,
                        user_agent: str | None) -> None:
    await conn.execute(
        "update sessions set last_used_at = $2, ip = coalesce($3, ip),"
        " user_agent = coalesce($4, user_agent) where id = $1",
        session_id, now, ip, user_agent,
    )


async def set_session_auth(conn: Conn, session_id: UUID, auth_time: datetime,
                           amr: list[str]) -> None:
    await conn.execute(
        "update sessions set auth_time = $2, amr = $3 where id = $1", session_id, auth_time, amr
    )


async def set_session_org(conn: Conn, session_id: UUID, org_id: UUID | None,
                          role: str | None) -> None:
    await conn.execute(
        "update sessions set org_id = $2, role = $3 where id = $1", session_id, org_id, role
    )


async def end_org_scope(conn: Conn, user_id: UUID, org_id: UUID) -> list[UUID]:
    """A removed member's sessions lose the org (their next token is minted without it)."""
    rows = await conn.fetch(
        "update sessions set org_id = null, role = null"
        " where user_id = $1 and org_id = $2 and revoked_at is null returning id",
        user_id, org_id,
    )
    return [row["id"] for row in rows]


async def sessions_of(conn: Conn, user_id: UUID, now: datetime) -> list[Row]:
    return await conn.fetch(
        "select id, created_at, last_used_at, ip, user_agent, org_id from sessions"
        " where user_id = $1 and revoked_at is null and expires_at > $2"
        " order by last_used_at desc",
        user_id, now,
    )


async def revoke_session(conn: Conn, user_id: UUID, session_id: UUID, why: str) -> bool:
    status = await conn.execute(
        "update sessions set revoked_at = now(), revoked_why = $3"
        " where id = $2 and user_id = $1 and revoked_at is null",
        user_id, session_id, why,
    )
    return status.endswith(" 1")


async def revoke_sessions(conn: Conn, user_id: UUID, why: str,
                          keep: UUID | None = None) -> list[UUID]:
    rows = await conn.fetch(
        "update sessions set revoked_at = now(), revoked_why = $2"
        " where user_id = $1 and revoked_at is null and id is distinct from $3 returning id",
        user_id, why, keep,
    )
    return [row["id"] for row in rows]


# MFA --------------------------------------------------------------------------------------------

async def insert_challenge(conn: Conn, token_hash: bytes, user_id: UUID, expires_at: datetime,
                           ip: str | None, user_agent: str | None) -> None:
    await conn.execute(
        "insert into mfa_challenges (token_hash, user_id, expires_at, ip, user_agent)"
        " values ($1, $2, $3, $4, $5)",
        token_hash, user_id, expires_at, ip, user_agent,
    )


async def challenge(conn: Conn, token_hash: bytes, now: datetime) -> Row | None:
    return await conn.fetchrow(
        "select user_id from mfa_challenges where token_hash = $1 and used_at is null"
        " and expires_at > $2 for update",
        token_hash, now,
    )


async def spend_challenge(conn: Conn, token_hash: bytes, now: datetime) -> None:
    await conn.execute("update mfa_challenges set used_at = $2 where token_hash = $1",
                       token_hash, now)


async def fail_challenge(conn: Conn, token_hash: bytes, max_tries: int) -> None:
    await conn.execute(
        "update mfa_challenges set attempts = attempts + 1,"
        " used_at = case when attempts + 1 >= $2 then now() else used_at end"
        " where token_hash = $1",
        token_hash, max_tries,
    )


async def totp_factor(conn: Conn, user_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from totp_factors where user_id = $1", user_id)


async def put_totp_factor(conn: Conn, user_id: UUID, sealed: bytes) -> None:
    await conn.execute(
        "insert into totp_factors (user_id, secret_sealed) values ($1, $2)"
        " on conflict (user_id) do update set secret_sealed = $2, confirmed_at = null,"
        " last_step = 0, created_at = now() where totp_factors.confirmed_at is null",
        user_id, sealed,
    )


async def confirm_totp(conn: Conn, user_id: UUID) -> None:
    await conn.execute("update totp_factors set confirmed_at = now() where user_id = $1", user_id)


async def use_totp_step(conn: Conn, user_id: UUID, step: int) -> bool:
    """Accept a time step once: only a step newer than the last accepted one."""
    status = await conn.execute(
        "update totp_factors set last_step = $2 where user_id = $1 and last_step < $2",
        user_id, step,
    )
    return status.endswith(" 1")


async def delete_mfa(conn: Conn, user_id: UUID) -> None:
    await conn.execute("delete from totp_factors where user_id = $1", user_id)
    await conn.execute("delete from recovery_codes where user_id = $1", user_id)


async def replace_recovery_codes(conn: Conn, user_id: UUID, hashes: list[bytes]) -> None:
    await conn.execute("delete from recovery_codes where user_id = $1", user_id)
    await conn.executemany(
        "insert into recovery_codes (code_hash, user_id) values ($1, $2)",
        [(h, user_id) for h in hashes],
    )


async def use_recovery_code(conn: Conn, user_id: UUID, code_hash: bytes) -> bool:
    status = await conn.execute(
        "update recovery_codes set used_at = now()"
        " where user_id = $1 and code_hash = $2 and used_at is null",
        user_id, code_hash,
    )
    return status.endswith(" 1")


# signing keys -----------------------------------------------------------------------------------

async def signing_keys(conn: Conn) -> list[Row]:
    return await conn.fetch("select * from signing_keys order by created_at desc")


async def insert_signing_key(conn: Conn, kid: str, sealed: bytes, jwk: dict[str, Any]) -> None:
    await conn.execute(
        "insert into signing_keys (kid, private_sealed, public_jwk) values ($1, $2, $3)",
        kid, sealed, jwk,
    )


async def retire_signing_keys_except(conn: Conn, kid: str) -> None:
    await conn.execute(
        "update signing_keys set retired_at = now() where kid <> $1 and retired_at is null", kid
    )


async def lock_signing_keys(conn: Conn) -> None:
    await conn.execute("select pg_advisory_xact_lock(hashtext('auth.signing_keys'))")


# API keys (tenant table: call inside a tenant transaction) --------------------------------------

async def insert_api_key(conn: Conn, values: dict[str, Any]) -> Row:
    return one(await conn.fetchrow(
        """
        insert into api_keys (org_id, id, project_id, name, prefix, key_hash, scopes, created_by,
                              expires_at, rotated_from_id)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        returning org_id, id, project_id, name, prefix, scopes, created_at, expires_at,
                  last_used_at, revoked_at, rotated_from_id
        """,
        values["org_id"], values["id"], values["project_id"], values["name"], values["prefix"],
        values["key_hash"], values["scopes"], values["created_by"], values["expires_at"],
        values.get("rotated_from_id"),
    ))


API_KEY_COLUMNS = ("org_id, id, project_id, name, prefix, scopes, created_at, expires_at,"
                   " last_used_at, revoked_at, rotated_from_id")


async def api_keys_of_project(conn: Conn, org_id: UUID, project_id: UUID) -> list[Row]:
    return await conn.fetch(
        f"select {API_KEY_COLUMNS} from api_keys where org_id = $1 and project_id = $2"
        " order by created_at",
        org_id, project_id,
    )


async def api_key(conn: Conn, org_id: UUID, project_id: UUID, key_id: UUID) -> Row | None:
    return await conn.fetchrow(
        f"select {API_KEY_COLUMNS} from api_keys where org_id = $1 and project_id = $2"
        " and id = $3 for update",
        org_id, project_id, key_id,
    )


async def revoke_api_key(conn: Conn, org_id: UUID, key_id: UUID, at: datetime) -> None:
    await conn.execute(
        "update api_keys set revoked_at = least(coalesce(revoked_at, $3), $3)"
        " where org_id = $1 and id = $2",
        org_id, key_id, at,
    )


async def delete_org_api_keys(conn: Conn, org_id: UUID) -> list[UUID]:
    rows = await conn.fetch("delete from api_keys where org_id = $1 returning id", org_id)
    return [r["id"] for r in rows]


async def introspect(conn: Conn, key_hash: bytes) -> Row | None:
    return await conn.fetchrow("select * from introspect_api_key($1)", key_hash)


async def touch_api_key(conn: Conn, org_id: UUID, key_id: UUID, now: datetime) -> None:
    await conn.execute(
        "update api_keys set last_used_at = $3 where org_id = $1 and id = $2"
        " and (last_used_at is null or last_used_at < $3::timestamptz - interval '1 minute')",
        org_id, key_id, now,
    )


# single sign-on: federated identities and login states ------------------------------------------

async def insert_sso_state(conn: Conn, state_hash: bytes, provider: str,
                           expires_at: datetime) -> None:
    """A sign-in in flight; states that expired an hour ago go in the same statement."""
    await conn.execute(
        """
        with expired as (
            delete from sso_states where expires_at < $3::timestamptz - interval '1 hour'
        )
        insert into sso_states (state_hash, provider, expires_at) values ($1, $2, $3)
        """,
        state_hash, provider, expires_at,
    )


async def spend_sso_state(conn: Conn, state_hash: bytes, provider: str,
                          now: datetime) -> bool:
    """Spend a state once: True only if it was there, for this provider, and unexpired."""
    expires_at = await conn.fetchval(
        "delete from sso_states where state_hash = $1 and provider = $2 returning expires_at",
        state_hash, provider,
    )
    return expires_at is not None and expires_at > now


async def identity_by_subject(conn: Conn, issuer: str, subject: str) -> Row | None:
    """The identity (locked), with whether its account is deactivated, in one round trip."""
    return await conn.fetchrow(
        "select f.*, u.deactivated_at from federated_identities f"
        " join users u on u.id = f.user_id"
        " where f.issuer = $1 and f.subject = $2 for update of f",
        issuer, subject,
    )


async def insert_identity(conn: Conn, values: dict[str, Any]) -> bool:
    status = await conn.execute(
        "insert into federated_identities (id, user_id, provider, issuer, subject, email)"
        " values ($1, $2, $3, $4, $5, $6) on conflict (issuer, subject) do nothing",
        values["id"], values["user_id"], values["provider"], values["issuer"],
        values["subject"], values["email"],
    )
    return status.endswith(" 1")


async def touch_identity(conn: Conn, identity_id: UUID, email: str | None,
                         now: datetime) -> None:
    await conn.execute(
        "update federated_identities set last_used_at = $3, email = coalesce($2, email)"
        " where id = $1",
        identity_id, email, now,
    )


async def identities_of(conn: Conn, user_id: UUID) -> list[Row]:
    return await conn.fetch(
        "select id, provider, issuer, subject, email, created_at, last_used_at"
        " from federated_identities where user_id = $1 order by created_at, id",
        user_id,
    )


async def lock_user(conn: Conn, user_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from users where id = $1 for update", user_id)


async def delete_identity(conn: Conn, user_id: UUID, identity_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "delete from federated_identities where id = $2 and user_id = $1"
        " returning id, provider, issuer",
        user_id, identity_id,
    )


async def insert_sso_user(conn: Conn, user_id: UUID, email: str, now: datetime) -> bool:
    """An account made by a first SSO sign-in: verified (the provider said so), no password."""
    status = await conn.execute(
        "insert into users (id, email, password_hash, email_verified_at, created_at)"
        " values ($1, $2, null, $3, $3) on conflict (email) do nothing",
        user_id, email, now,
    )
    return status.endswith(" 1")
