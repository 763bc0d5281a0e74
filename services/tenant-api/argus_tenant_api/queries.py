"""Every SQL statement of tenant-api, as named functions. Org-scoped ones run inside a tenant
transaction (RLS) and also filter by org_id."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from argus_shared.db import Conn, one

Row = asyncpg.Record


async def insert_org(conn: Conn, org_id: UUID, name: str, slug: str) -> bool:
    status = await conn.execute(
        "insert into orgs (org_id, name, slug) values ($1, $2, $3) on conflict (slug) do nothing",
        org_id, name, slug,
    )
    return status.endswith(" 1")


async def insert_wallet(conn: Conn, org_id: UUID) -> None:
    await conn.execute("insert into wallets (org_id) values ($1)", org_id)


async def org(conn: Conn, org_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "select * from orgs where org_id = $1 and deleted_at is null", org_id
    )


async def update_org(conn: Conn, org_id: UUID, changes: dict[str, Any]) -> Row:
    columns = list(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(columns))
    return one(await conn.fetchrow(
        f"update orgs set {assignments} where org_id = $1 returning *",
        org_id, *changes.values(),
    ))


async def delete_org(conn: Conn, org_id: UUID) -> None:
    await conn.execute("update orgs set deleted_at = now() where org_id = $1", org_id)


async def deleted_orgs_due(conn: Conn, before: datetime, limit: int) -> list[UUID]:
    rows = await conn.fetch("select org_id from deleted_orgs_due($1, $2)", before, limit)
    return [r["org_id"] for r in rows]


async def purge_org(conn: Conn, org_id: UUID) -> dict[str, int]:
    """What a deleted org leaves behind that is not a financial record (see 0003_org_purge)."""
    removed = {}
    for table in ("scim_group_members", "scim_groups", "scim_users", "scim_tokens",
                  "scim_role_mappings", "sso_domains", "sso_connections"):
        await conn.execute(f"delete from {table} where org_id = $1", org_id)
    for table in ("invitations", "memberships", "projects"):
        status = await conn.execute(f"delete from {table} where org_id = $1", org_id)
        removed[table] = int(status.rsplit(" ", 1)[1])
    await conn.execute(
        "update orgs set purged_at = now(), name = 'deleted',"
        " slug = 'deleted-' || replace(org_id::text, '-', '')"
        " where org_id = $1 and deleted_at is not null", org_id)
    return removed


async def orgs_of_user(conn: Conn, user_id: UUID) -> list[Row]:
    return await conn.fetch("select * from orgs_of_user($1)", user_id)


async def role_of(conn: Conn, org_id: UUID, user_id: UUID) -> str | None:
    return await conn.fetchval(
        "select m.role from memberships m join orgs o on o.org_id = m.org_id"
        " where m.org_id = $1 and m.user_id = $2 and o.deleted_at is null",
        org_id, user_id,
    )


async def insert_member(conn: Conn, org_id: UUID, user_id: UUID, role: str,
                        email: str | None) -> bool:
    status = await conn.execute(
        "insert into memberships (org_id, user_id, role, email) values ($1, $2, $3, $4)"
        " on conflict do nothing",
        org_id, user_id, role, email,
    )
    return status.endswith(" 1")


async def members(conn: Conn, org_id: UUID, user_id: UUID | str | None) -> list[Row]:
    """Scopes its own transaction (one round trip; see 0004_scoped_reads.sql)."""
    return await conn.fetch("select * from scoped_members($1, $2)", org_id, user_id)


async def owners_for_update(conn: Conn, org_id: UUID) -> list[UUID]:
    rows = await conn.fetch(
        "select user_id from memberships where org_id = $1 and role = 'owner' for update", org_id
    )
    return [row["user_id"] for row in rows]


async def set_member_email(conn: Conn, org_id: UUID, user_id: UUID, email: str) -> None:
    await conn.execute(
        "update memberships set email = $3 where org_id = $1 and user_id = $2"
        " and email is distinct from $3",
        org_id, user_id, email,
    )


async def set_role(conn: Conn, org_id: UUID, user_id: UUID, role: str) -> bool:
    status = await conn.execute(
        "update memberships set role = $3 where org_id = $1 and user_id = $2",
        org_id, user_id, role,
    )
    return status.endswith(" 1")


async def delete_member(conn: Conn, org_id: UUID, user_id: UUID) -> bool:
    status = await conn.execute(
        "delete from memberships where org_id = $1 and user_id = $2", org_id, user_id
    )
    return status.endswith(" 1")


async def insert_invitation(conn: Conn, values: dict[str, Any]) -> Row:
    return one(await conn.fetchrow(
        "insert into invitations (org_id, id, email, role, token_hash, invited_by, expires_at)"
        " values ($1, $2, $3, $4, $5, $6, $7)"
        " returning org_id, id, email, role, expires_at, accepted_at, revoked_at, created_at",
        values["org_id"], values["id"], values["email"], values["role"], values["token_hash"],
        values["invited_by"], values["expires_at"],
    ))


INVITATION_COLUMNS = "org_id, id, email, role, expires_at, accepted_at, revoked_at, created_at"


async def invitation_for_update(conn: Conn, org_id: UUID, invitation_id: UUID) -> Row | None:
    return await conn.fetchrow(
        f"select {INVITATION_COLUMNS} from invitations where org_id = $1 and id = $2"
        " for update", org_id, invitation_id,
    )


async def renew_invitation(conn: Conn, org_id: UUID, invitation_id: UUID, token_hash: bytes,
                           expires_at: datetime) -> Row:
    """A new token (the old one's hash is gone: it stops working) and a new expiry."""
    return one(await conn.fetchrow(
        "update invitations set token_hash = $3, expires_at = $4 where org_id = $1 and id = $2"
        f" returning {INVITATION_COLUMNS}", org_id, invitation_id, token_hash, expires_at,
    ))


async def member_email(conn: Conn, org_id: UUID, user_id: UUID) -> str | None:
    return await conn.fetchval(
        "select email from memberships where org_id = $1 and user_id = $2", org_id, user_id,
    )


async def invitations(conn: Conn, org_id: UUID, user_id: UUID | str | None) -> list[Row]:
    """Scopes its own transaction (one round trip; see 0004_scoped_reads.sql)."""
    return await conn.fetch("select * from scoped_invitations($1, $2)", org_id, user_id)


async def revoke_invitation(conn: Conn, org_id: UUID, invitation_id: UUID) -> bool:
    status = await conn.execute(
        "update invitations set revoked_at = now() where org_id = $1 and id = $2"
        " and revoked_at is null and accepted_at is null", org_id, invitation_id,
    )
    return status.endswith(" 1")


async def invitation_by_token(conn: Conn, token_hash: bytes) -> Row | None:
    return await conn.fetchrow("select * from invitation_by_token($1)", token_hash)


async def accept_invitation(conn: Conn, org_id: UUID, invitation_id: UUID) -> bool:
    status = await conn.execute(
        "update invitations set accepted_at = now() where org_id = $1 and id = $2"
        " and accepted_at is null and revoked_at is null and expires_at > now()",
        org_id, invitation_id,
    )
    return status.endswith(" 1")


async def insert_project(conn: Conn, org_id: UUID, project_id: UUID, name: str,
                         created_by: UUID) -> Row:
    return one(await conn.fetchrow(
        "insert into projects (org_id, id, name, created_by) values ($1, $2, $3, $4)"
        " returning *", org_id, project_id, name, created_by,
    ))


async def projects(conn: Conn, org_id: UUID, user_id: UUID | str | None) -> list[Row]:
    """Scopes its own transaction (one round trip; see 0004_scoped_reads.sql)."""
    return await conn.fetch("select * from scoped_projects($1, $2)", org_id, user_id)


async def project(conn: Conn, org_id: UUID, project_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "select * from projects where org_id = $1 and id = $2", org_id, project_id
    )


async def delete_project(conn: Conn, org_id: UUID, project_id: UUID) -> bool:
    status = await conn.execute(
        "delete from projects where org_id = $1 and id = $2", org_id, project_id
    )
    return status.endswith(" 1")


async def wallet_for_update(conn: Conn, org_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "select * from wallets where org_id = $1 for update", org_id
    )


async def wallet(conn: Conn, org_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from wallets where org_id = $1", org_id)


async def insert_entry(conn: Conn, values: dict[str, Any]) -> Row:
    return one(await conn.fetchrow(
        "insert into ledger_entries (org_id, id, kind, amount_cents, description, actor)"
        " values ($1, $2, $3, $4, $5, $6) returning *",
        values["org_id"], values["id"], values["kind"], values["amount_cents"],
        values["description"], values["actor"],
    ))


async def add_to_balance(conn: Conn, org_id: UUID, cents: int) -> int:
    return await conn.fetchval(
        "update wallets set balance_cents = balance_cents + $2, updated_at = now()"
        " where org_id = $1 returning balance_cents", org_id, cents,
    )


async def entries_page(conn: Conn, org_id: UUID, after: tuple[Any, UUID] | None,
                       limit: int) -> list[Row]:
    if after is None:
        return await conn.fetch(
            "select * from ledger_entries where org_id = $1 order by created_at, id limit $2",
            org_id, limit,
        )
    return await conn.fetch(
        "select * from ledger_entries where org_id = $1 and (created_at, id) > ($2, $3)"
        " order by created_at, id limit $4", org_id, after[0], after[1], limit,
    )


ENTRIES_EXPORT = ("select id, kind, amount_cents, description, actor, created_at"
                  " from ledger_entries where org_id = $1 order by created_at, id")
MEMBERS_EXPORT = ("select user_id, email, role, created_at from memberships"
                  " where org_id = $1 order by created_at, user_id")


async def lock_idempotency(conn: Conn, org_id: UUID, endpoint: str, key: str) -> None:
    await conn.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"{org_id}:{endpoint}:{key}")


async def idempotency(conn: Conn, org_id: UUID, endpoint: str, key: str) -> Row | None:
    return await conn.fetchrow(
        "select request_hash, status, response, response_body, content_type"
        " from idempotency_keys where org_id = $1 and endpoint = $2 and key = $3",
        org_id, endpoint, key,
    )


async def insert_idempotency(conn: Conn, org_id: UUID, endpoint: str, key: str,
                             request_hash: bytes, answer: tuple[int, bytes, str],
                             response: Any) -> None:
    """`answer` (status, body, content type) as sent; `response` the same body as a value, for
    replicas that still replay from the jsonb column."""
    status, body, content_type = answer
    await conn.execute(
        "insert into idempotency_keys (org_id, endpoint, key, request_hash, status, response,"
        " response_body, content_type) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        org_id, endpoint, key, request_hash, status, response, body, content_type,
    )


async def wallet_mismatches(conn: Conn) -> list[Row]:
    return await conn.fetch("select * from reconcile_wallets()")


async def owner_count(conn: Conn, org_id: UUID) -> int:
    return await conn.fetchval(
        "select count(*) from memberships where org_id = $1 and role = 'owner'", org_id
    )


async def insert_deletion(conn: Conn, user_id: UUID, due_at: Any, confirmed: Any) -> Row:
    return one(await conn.fetchrow(
        "insert into user_deletions (user_id, due_at, confirmations) values ($1, $2, $3)"
        " on conflict (user_id) do update set user_id = excluded.user_id returning *",
        user_id, due_at, confirmed,
    ))


async def deletion(conn: Conn, user_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from user_deletions where user_id = $1", user_id)


async def pending_deletions(conn: Conn) -> list[Row]:
    return await conn.fetch(
        "select * from user_deletions where completed_at is null order by requested_at limit 100"
    )


async def confirm_deletion(conn: Conn, user_id: UUID, service: str, services: list[str],
                           answer: Any) -> None:
    """Record a service's confirmation with what it answered (for example what it keeps)."""
    await conn.execute(
        """
        update user_deletions
        set confirmations = confirmations
            || jsonb_build_object($2::text, jsonb_build_object('at', now(), 'answer', $4::jsonb)),
            completed_at = case when (select bool_and(confirmations ? s or s = $2)
                                      from unnest($3::text[]) s) then now() end
        where user_id = $1
        """,
        user_id, service, services, answer,
    )


async def overdue_deletions(conn: Conn) -> int:
    return await conn.fetchval(
        "select count(*) from user_deletions where completed_at is null and due_at < now()"
    )


async def unless_taken(conn: Conn, sql: str, *args: Any) -> Row | None:
    """One row from `sql` in a savepoint: None (and the transaction still usable) when it
    would break a unique index."""
    await conn.execute("savepoint unless_taken")
    try:
        row = await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError:
        await conn.execute("rollback to savepoint unless_taken")
        return None
    await conn.execute("release savepoint unless_taken")
    return row


# SCIM tokens ------------------------------------------------------------------------------------

SCIM_KEY_COLUMNS = "id, prefix, created_by, created_at, revoked_at"


async def insert_scim_token(conn: Conn, org_id: UUID, token_id: UUID, prefix: str,
                            token_hash: bytes, created_by: UUID) -> Row:
    return one(await conn.fetchrow(
        "insert into scim_tokens (org_id, id, prefix, token_hash, created_by)"
        f" values ($1, $2, $3, $4, $5) returning {SCIM_KEY_COLUMNS}",
        org_id, token_id, prefix, token_hash, created_by,
    ))


async def scim_tokens(conn: Conn, org_id: UUID) -> list[Row]:
    return await conn.fetch(
        f"select {SCIM_KEY_COLUMNS} from scim_tokens where org_id = $1 order by created_at",
        org_id,
    )


async def revoke_scim_token(conn: Conn, org_id: UUID, token_id: UUID) -> bool:
    status = await conn.execute(
        "update scim_tokens set revoked_at = now() where org_id = $1 and id = $2"
        " and revoked_at is null", org_id, token_id,
    )
    return status.endswith(" 1")


async def scim_token_by_hash(conn: Conn, token_hash: bytes) -> Row | None:
    return await conn.fetchrow("select * from scim_token_by_hash($1)", token_hash)


# SCIM users and groups --------------------------------------------------------------------------

async def insert_scim_user(conn: Conn, org_id: UUID, values: dict[str, Any]) -> Row | None:
    return await conn.fetchrow(
        "insert into scim_users (org_id, id, user_name, email, external_id, active, resource)"
        " values ($1, $2, $3, $4, $5, $6, $7) on conflict do nothing returning *",
        org_id, values["id"], values["user_name"], values["email"], values["external_id"],
        values["active"], values["resource"],
    )


async def scim_user(conn: Conn, org_id: UUID, scim_id: UUID, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        "select * from scim_users where org_id = $1 and id = $2" + (" for update" if lock else ""),
        org_id, scim_id,
    )


async def update_scim_user(conn: Conn, org_id: UUID, scim_id: UUID,
                           values: dict[str, Any]) -> Row | None:
    """None when the new userName is another user's."""
    return await unless_taken(
        conn, "update scim_users set user_name = $3, email = $4, external_id = $5,"
        " active = $6, resource = $7, version = version + 1, updated_at = now()"
        " where org_id = $1 and id = $2 returning *",
        org_id, scim_id, values["user_name"], values["email"], values["external_id"],
        values["active"], values["resource"],
    )


async def link_scim_user(conn: Conn, org_id: UUID, scim_id: UUID, user_id: UUID | None,
                         invitation_id: UUID | None) -> None:
    await conn.execute(
        "update scim_users set user_id = $3, invitation_id = $4 where org_id = $1 and id = $2",
        org_id, scim_id, user_id, invitation_id,
    )


async def link_invited(conn: Conn, org_id: UUID, invitation_id: UUID, user_id: UUID) -> None:
    """An invitation provisioning sent was accepted: its SCIM user is that account now."""
    await conn.execute(
        "update scim_users set user_id = $3, invitation_id = null"
        " where org_id = $1 and invitation_id = $2", org_id, invitation_id, user_id,
    )


async def delete_scim_user(conn: Conn, org_id: UUID, scim_id: UUID) -> None:
    await conn.execute("delete from scim_users where org_id = $1 and id = $2", org_id, scim_id)


async def scim_page(conn: Conn, table: str, org_id: UUID, where: str, value: str | None,
                    offset: int, limit: int) -> tuple[int, list[Row]]:
    """`table` is scim_users or scim_groups and `where` one of scim_filter's fixed conditions
    on `{v}` (never request text); the total that match and one page of them, in one
    statement (a second counts only when the page is empty)."""
    assert table in ("scim_users", "scim_groups")
    values = [] if value is None else [value]
    page_where = f" and {where.format(v='$4')}" if where else ""
    rows = await conn.fetch(
        f"select *, count(*) over () as total from {table} where org_id = $1{page_where}"
        " order by created_at, id offset $2 limit $3", org_id, offset, limit, *values)
    if rows:
        return rows[0]["total"], rows
    count_where = f" and {where.format(v='$2')}" if where else ""
    total = await conn.fetchval(
        f"select count(*) from {table} where org_id = $1{count_where}", org_id, *values)
    return total, rows


async def groups_of_scim_users(conn: Conn, org_id: UUID, scim_ids: list[UUID]) -> list[Row]:
    return await conn.fetch(
        "select m.user_id, g.id, g.display_name from scim_group_members m"
        " join scim_groups g on g.org_id = m.org_id and g.id = m.group_id"
        " where m.org_id = $1 and m.user_id = any($2) order by g.display_name",
        org_id, scim_ids,
    )


async def insert_scim_group(conn: Conn, org_id: UUID, group_id: UUID, display_name: str,
                            external_id: str | None) -> Row | None:
    return await conn.fetchrow(
        "insert into scim_groups (org_id, id, display_name, external_id)"
        " values ($1, $2, $3, $4) on conflict do nothing returning *",
        org_id, group_id, display_name, external_id,
    )


async def scim_group(conn: Conn, org_id: UUID, group_id: UUID, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        "select * from scim_groups where org_id = $1 and id = $2" + (" for update" if lock else ""),
        org_id, group_id,
    )


async def update_scim_group(conn: Conn, org_id: UUID, group_id: UUID, display_name: str,
                            external_id: str | None) -> Row | None:
    """None when the new displayName is another group's."""
    return await unless_taken(
        conn, "update scim_groups set display_name = $3, external_id = $4,"
        " version = version + 1, updated_at = now()"
        " where org_id = $1 and id = $2 returning *",
        org_id, group_id, display_name, external_id,
    )


async def delete_scim_group(conn: Conn, org_id: UUID, group_id: UUID) -> None:
    await conn.execute("delete from scim_groups where org_id = $1 and id = $2", org_id, group_id)


async def group_members(conn: Conn, org_id: UUID, group_ids: list[UUID]) -> list[Row]:
    return await conn.fetch(
        "select m.group_id, u.id, u.user_name from scim_group_members m"
        " join scim_users u on u.org_id = m.org_id and u.id = m.user_id"
        " where m.org_id = $1 and m.group_id = any($2) order by u.user_name",
        org_id, group_ids,
    )


async def existing_scim_users(conn: Conn, org_id: UUID, scim_ids: list[UUID]) -> set[UUID]:
    rows = await conn.fetch("select id from scim_users where org_id = $1 and id = any($2)",
                            org_id, scim_ids)
    return {r["id"] for r in rows}


async def add_group_members(conn: Conn, org_id: UUID, group_id: UUID,
                            scim_ids: list[UUID]) -> None:
    await conn.execute(
        "insert into scim_group_members (org_id, group_id, user_id)"
        " select $1, $2, unnest($3::uuid[]) on conflict do nothing", org_id, group_id, scim_ids,
    )


async def remove_group_members(conn: Conn, org_id: UUID, group_id: UUID,
                               scim_ids: list[UUID] | None) -> list[UUID]:
    """Remove these members (None: all); the ones that were members."""
    rows = await conn.fetch(
        "delete from scim_group_members where org_id = $1 and group_id = $2"
        " and ($3::uuid[] is null or user_id = any($3)) returning user_id",
        org_id, group_id, scim_ids,
    )
    return [r["user_id"] for r in rows]


async def touch_scim_group(conn: Conn, org_id: UUID, group_id: UUID) -> None:
    await conn.execute("update scim_groups set version = version + 1, updated_at = now()"
                       " where org_id = $1 and id = $2", org_id, group_id)


async def group_names_of(conn: Conn, org_id: UUID, scim_id: UUID) -> list[str]:
    rows = await conn.fetch(
        "select lower(g.display_name) as name from scim_group_members m"
        " join scim_groups g on g.org_id = m.org_id and g.id = m.group_id"
        " where m.org_id = $1 and m.user_id = $2", org_id, scim_id,
    )
    return [r["name"] for r in rows]


async def role_mappings(conn: Conn, org_id: UUID) -> dict[str, str]:
    rows = await conn.fetch("select display_name, role from scim_role_mappings"
                            " where org_id = $1 order by display_name", org_id)
    return {r["display_name"]: r["role"] for r in rows}


async def set_role_mappings(conn: Conn, org_id: UUID, mappings: dict[str, str]) -> None:
    await conn.execute("delete from scim_role_mappings where org_id = $1", org_id)
    await conn.executemany(
        "insert into scim_role_mappings (org_id, display_name, role) values ($1, $2, $3)",
        [(org_id, name, role) for name, role in mappings.items()],
    )


async def member_by_email(conn: Conn, org_id: UUID, email: str) -> Row | None:
    return await conn.fetchrow(
        "select user_id, role from memberships where org_id = $1 and email = $2", org_id, email,
    )


async def set_invitation_role(conn: Conn, org_id: UUID, invitation_id: UUID, role: str) -> None:
    await conn.execute(
        "update invitations set role = $3 where org_id = $1 and id = $2"
        " and accepted_at is null and revoked_at is null", org_id, invitation_id, role,
    )


# SSO --------------------------------------------------------------------------------------------

async def sso_connection(conn: Conn, org_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from sso_connections where org_id = $1", org_id)


async def upsert_sso_connection(conn: Conn, org_id: UUID, issuer: str, client_id: str,
                                sealed_secret: bytes) -> Row:
    return one(await conn.fetchrow(
        "insert into sso_connections (org_id, issuer, client_id, client_secret)"
        " values ($1, $2, $3, $4) on conflict (org_id) do update set issuer = excluded.issuer,"
        " client_id = excluded.client_id, client_secret = excluded.client_secret,"
        " updated_at = now() returning *", org_id, issuer, client_id, sealed_secret,
    ))


async def delete_sso_connection(conn: Conn, org_id: UUID) -> bool:
    status = await conn.execute("delete from sso_connections where org_id = $1", org_id)
    return status.endswith(" 1")


async def sso_domains(conn: Conn, org_id: UUID) -> list[Row]:
    return await conn.fetch("select * from sso_domains where org_id = $1 order by domain",
                            org_id)


async def sso_domain(conn: Conn, org_id: UUID, domain: str) -> Row | None:
    return await conn.fetchrow("select * from sso_domains where org_id = $1 and domain = $2",
                               org_id, domain)


async def insert_sso_domain(conn: Conn, org_id: UUID, domain: str, token: str) -> Row | None:
    return await conn.fetchrow(
        "insert into sso_domains (org_id, domain, token) values ($1, $2, $3)"
        " on conflict do nothing returning *", org_id, domain, token,
    )


async def verify_sso_domain(conn: Conn, org_id: UUID, domain: str) -> Row | None:
    """None when another org verified the domain first."""
    return await unless_taken(
        conn, "update sso_domains set verified_at = coalesce(verified_at, now())"
        " where org_id = $1 and domain = $2 returning *", org_id, domain,
    )


async def delete_sso_domain(conn: Conn, org_id: UUID, domain: str) -> bool:
    status = await conn.execute("delete from sso_domains where org_id = $1 and domain = $2",
                                org_id, domain)
    return status.endswith(" 1")


async def sso_domain_taken(conn: Conn, domain: str, org_id: UUID) -> bool:
    return bool(await conn.fetchval("select sso_domain_taken($1, $2)", domain, org_id))


async def sso_domain_owner(conn: Conn, domain: str) -> Row | None:
    return await conn.fetchrow("select * from sso_domain_owner($1)", domain)


async def scim_pending_for(conn: Conn, email: str, issuer: str) -> list[Row]:
    return await conn.fetch("select * from scim_pending_for($1, $2)", email, issuer)
