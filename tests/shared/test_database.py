"""Roles, schemas, migrations and the tenant transaction, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from argus_shared.db import connect, create_pool, tenant_tx
from argus_shared.migrate import Migration, MigrationError, migrate
from argus_shared.settings import OWNER_ROLE, SERVICES, role_of
from support.infra import Infra

RLS_TABLE = """
create table notes (
    org_id uuid not null,
    id uuid not null default gen_random_uuid(),
    body text not null,
    primary key (org_id, id)
);
alter table notes enable row level security;
alter table notes force row level security;
create policy notes_tenant on notes
    using (org_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
    with check (org_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
grant select, insert on notes to argus_files;
"""


async def _runtime_pool(infra: Infra, url: str, service: str) -> asyncpg.Pool:
    password = infra.secrets.service_passwords()[service]
    return await create_pool(url, role_of(service), password, schema=service.replace("-", "_"))


async def test_runtime_roles_have_no_privilege_beyond_dml(admin: asyncpg.Connection) -> None:
    for service in SERVICES:
        row = await admin.fetchrow(
            "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit"
            " from pg_roles where rolname = $1",
            role_of(service),
        )
        assert row is not None
        assert not any(row.values()), f"{service}: {dict(row)}"
        schema = service.replace("-", "_")
        owner = await admin.fetchval(
            "select pg_get_userbyid(nspowner) from pg_namespace where nspname = $1", schema
        )
        assert owner == OWNER_ROLE


async def test_runtime_role_cannot_run_ddl_or_touch_other_schemas(
    infra: Infra, database_url: str
) -> None:
    pool = await _runtime_pool(infra, database_url, "auth")
    try:
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("create table auth.evil (id int)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("create table public.evil (id int)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("select * from audit.outbox")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("drop table auth.outbox")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("set role argus_owner")
    finally:
        await pool.close()


async def test_pool_sessions_carry_the_timeouts(infra: Infra, database_url: str) -> None:
    pool = await _runtime_pool(infra, database_url, "files")
    try:
        async with pool.acquire() as conn:
            values = {
                name: await conn.fetchval(f"show {name}")
                for name in (
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                )
            }
        assert values == {
            "statement_timeout": "10s",
            "lock_timeout": "5s",
            "idle_in_transaction_session_timeout": "30s",
        }
    finally:
        await pool.close()


async def _notes_schema(infra: Infra, url: str, owner_password: str) -> None:
    conn = await connect(url, OWNER_ROLE, owner_password)
    try:
        await migrate(conn, "files", [Migration("9000_test_notes.sql", RLS_TABLE)])
    finally:
        await conn.close()


async def test_tenant_transaction_scopes_rls_and_fails_closed(
    infra: Infra, owner_password: str
) -> None:
    url = await infra.create_database(migrate_services=("files",))
    await _notes_schema(infra, url, owner_password)
    pool = await _runtime_pool(infra, url, "files")
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    try:
        for org in (org_a, org_b):
            async with tenant_tx(pool, org, uuid.uuid4()) as conn:
                await conn.execute("insert into notes (org_id, body) values ($1, 'x')", org)
        async with tenant_tx(pool, org_a) as conn:
            assert await conn.fetchval("select count(*) from notes") == 1
            assert await conn.fetchval("select current_setting('app.org_id')") == str(org_a)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK refuses
                await conn.execute("insert into notes (org_id, body) values ($1, 'y')", org_b)
        async with tenant_tx(pool, None) as conn:
            assert await conn.fetchval("select count(*) from notes") == 0
        async with pool.acquire() as conn:  # no tenant transaction at all: still nothing
            assert await conn.fetchval("select count(*) from notes") == 0
            # the setting was transaction-local: a pooled connection does not keep it
            assert await conn.fetchval("select current_setting('app.org_id', true)") in (None, "")
    finally:
        await pool.close()


async def test_migrations_apply_once_under_concurrent_replicas(
    infra: Infra, owner_password: str
) -> None:
    url = await infra.create_database(migrate_services=())
    counter = Migration(
        "0001_counter.sql",
        "create table applied_counter (n int); insert into applied_counter values (1);",
    )

    async def replica() -> list[str]:
        conn = await connect(url, OWNER_ROLE, owner_password)
        try:
            return await migrate(conn, "audit", [counter])
        finally:
            await conn.close()

    results = await asyncio.gather(*(replica() for _ in range(6)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, 1]
    conn = await connect(url, OWNER_ROLE, owner_password)
    try:
        assert await conn.fetchval("select count(*) from audit.applied_counter") == 1
        assert await conn.fetchval("select count(*) from audit.schema_migrations") == 1
        edited = Migration(counter.name, counter.sql + " -- edited")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, "audit", [edited])
        broken = Migration("0002_broken.sql", "create tabel nope (id int);")
        with pytest.raises(MigrationError, match="0002_broken.sql failed"):
            await migrate(conn, "audit", [counter, broken])
        assert await conn.fetchval("select count(*) from audit.schema_migrations") == 1
    finally:
        await conn.close()
