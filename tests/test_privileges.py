"""Least privilege, read from the catalogue: every privilege of every runtime role on the
database, every schema, table (partitions included), sequence and function is listed and compared
with the declaration below, which is what each service's code runs (its queries.py and the other
SQL of its package) and nothing more. A grant nobody declared, or a declared one that is gone,
fails with a readable diff. Then the holes the declaration closes are attacked as the roles
themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from argus_audit import queries as audit_queries
from argus_shared.db import connect
from argus_shared.migrate import migrate, migrations_for
from argus_shared.provision import provision
from argus_shared.settings import OWNER_ROLE, SERVICES, role_of, schema_of
from support.infra import Infra, migrate_all

RUNTIME_ROLES = tuple(role_of(service) for service in SERVICES)
ALL_DML = "SELECT INSERT UPDATE DELETE"


def _common(schema: str) -> dict[str, str]:
    """What every service holds: its database and schema, the outbox (emit inserts; the relay
    claims with UPDATE ... RETURNING and purges sent rows) and `current_org()`, which its RLS
    policies call as the querying role. Nothing on `schema_migrations`: no runtime code reads it."""
    return {
        "database": "CONNECT",
        f"schema {schema}": "USAGE",
        f"table {schema}.outbox": ALL_DML,
        f"function {schema}.current_org()": "EXECUTE",
    }


# role -> object -> privileges. Anything not listed is refused: no TRUNCATE, REFERENCES or TRIGGER
# anywhere, no sequence privilege (identity columns need none), nothing in another schema.
EXPECTED: dict[str, dict[str, str]] = {
    "argus_auth": {
        **_common("auth"),
        "table auth.users": ALL_DML,  # purge_user deletes (its rows cascade as the owner)
        "table auth.login_throttle": ALL_DML,
        "table auth.email_tokens": "SELECT INSERT UPDATE",
        "table auth.sessions": "SELECT INSERT UPDATE",
        "table auth.refresh_tokens": "SELECT INSERT UPDATE",  # FOR UPDATE needs UPDATE
        "table auth.mfa_challenges": "SELECT INSERT UPDATE",
        "table auth.totp_factors": ALL_DML,
        "table auth.recovery_codes": ALL_DML,
        "table auth.signing_keys": "SELECT INSERT UPDATE",
        "table auth.api_keys": ALL_DML,
        "table auth.federated_identities": ALL_DML,  # unlink deletes
        "table auth.sso_states": "SELECT INSERT DELETE",  # a state is spent by its delete
        "function auth.introspect_api_key(bytea)": "EXECUTE",
    },
    "argus_tenant_api": {
        **_common("tenant_api"),
        "table tenant_api.orgs": "SELECT INSERT UPDATE",  # deletion is a soft delete
        "table tenant_api.memberships": ALL_DML,
        "table tenant_api.invitations": ALL_DML,
        "table tenant_api.projects": "SELECT INSERT DELETE",
        "table tenant_api.wallets": "SELECT INSERT UPDATE",
        "table tenant_api.ledger_entries": "SELECT INSERT",  # append-only
        "table tenant_api.idempotency_keys": "SELECT INSERT",
        "table tenant_api.user_deletions": "SELECT INSERT UPDATE",
        "function tenant_api.orgs_of_user(uuid)": "EXECUTE",
        "function tenant_api.invitation_by_token(bytea)": "EXECUTE",
        "function tenant_api.reconcile_wallets()": "EXECUTE",
        "function tenant_api.deleted_orgs_due(timestamp with time zone,integer)": "EXECUTE",
        "function tenant_api.scope_to(uuid,uuid)": "EXECUTE",
        "function tenant_api.scoped_projects(uuid,uuid)": "EXECUTE",
        "function tenant_api.scoped_members(uuid,uuid)": "EXECUTE",
        "function tenant_api.scoped_invitations(uuid,uuid)": "EXECUTE",
        # SCIM (0007) and org SSO (0008); tokens are revoked by UPDATE, purged by DELETE
        "table tenant_api.scim_tokens": ALL_DML,
        "table tenant_api.scim_users": ALL_DML,
        "table tenant_api.scim_groups": ALL_DML,
        "table tenant_api.scim_group_members": ALL_DML,
        "table tenant_api.scim_role_mappings": ALL_DML,
        "table tenant_api.sso_connections": ALL_DML,
        "table tenant_api.sso_domains": ALL_DML,
        "function tenant_api.scim_token_by_hash(bytea)": "EXECUTE",
        "function tenant_api.sso_domain_owner(text)": "EXECUTE",
        "function tenant_api.sso_domain_taken(text,uuid)": "EXECUTE",
        "function tenant_api.scim_pending_for(text,text)": "EXECUTE",
    },
    "argus_audit": {
        **_common("audit"),
        # appends, heads, seen ids, periodic checkpoints and plans go through definer functions
        "table audit.audit_events": "SELECT",
        "table audit.checkpoints": "SELECT",
        "table audit.quarantine": "SELECT INSERT",
        "function audit.lock_chains(uuid[],uuid[])": "EXECUTE",
        "function audit.append_events(uuid[],text)": "EXECUTE",
        "function audit.all_chain_heads()": "EXECUTE",
        "function audit.record_checkpoint(uuid,bigint,bytea,text,bytea)": "EXECUTE",
        "function audit.events_of_user(text)": "EXECUTE",
        "function audit.ensure_partitions(timestamp with time zone,integer)": "EXECUTE",
        "function audit.upsert_org_plan(uuid,text,integer)": "EXECUTE",
    },
    "argus_webhooks": {
        **_common("webhooks"),
        "table webhooks.endpoints": ALL_DML,  # deleting one cascades as the owner
        "table webhooks.endpoint_secrets": "SELECT INSERT UPDATE",
        "table webhooks.deliveries": "SELECT INSERT UPDATE",
        "table webhooks.attempts": "SELECT INSERT",
        "table webhooks.inbound_events": "INSERT",  # ON CONFLICT DO NOTHING reads nothing
        "function webhooks.claim_deliveries(integer,interval)": "EXECUTE",
        "function webhooks.queue_stats()": "EXECUTE",
        "function webhooks.settle_succeeded(uuid[],uuid[],integer[],timestamp with time zone[],"
        "integer[],integer[],text[])": "EXECUTE",
    },
    "argus_files": {
        **_common("files"),
        "table files.objects": ALL_DML,
        "function files.unfinished_objects(timestamp with time zone,integer)": "EXECUTE",
        "function files.keys_to_rewrap(text,integer)": "EXECUTE",
        "function files.orgs_of_owner(uuid)": "EXECUTE",
        "function files.stored_object_count()": "EXECUTE",
    },
}

Grant = tuple[str, str, str]  # (role, object, privilege)

# every schema but the system ones (pg_catalog and information_schema are PUBLIC's by design)
USER_SCHEMAS = ("n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema'")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@pytest.fixture
async def catalogue(admin: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The superuser connection with a search path under which every name reads qualified."""
    async with admin.transaction():
        await admin.execute("set local search_path = pg_catalog")
        yield admin


async def actual_grants(conn: asyncpg.Connection) -> set[Grant]:
    table_privileges = list(TABLE_PRIVILEGES)
    if await conn.fetchval("select current_setting('server_version_num')::int") >= 170000:
        table_privileges.append("MAINTAIN")
    rows = await conn.fetch(
        f"""
        with roles as (select unnest($1::text[]) as role),
        relations as (
            select c.oid, c.relkind, quote_ident(n.nspname) || '.' || quote_ident(c.relname) as name
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and {USER_SCHEMAS})
        select r.role, 'table ' || t.name as object, p.privilege
        from roles r, relations t, unnest($2::text[]) as p(privilege)
        where t.relkind <> 'S' and has_table_privilege(r.role, t.oid, p.privilege)
        union all  -- a column-level grant is a grant too
        select r.role, 'table ' || t.name, p.privilege || '(columns)'
        from roles r, relations t, unnest(array['SELECT', 'INSERT', 'UPDATE', 'REFERENCES'])
             as p(privilege)
        where t.relkind <> 'S' and has_any_column_privilege(r.role, t.oid, p.privilege)
          and not has_table_privilege(r.role, t.oid, p.privilege)
        union all
        select r.role, 'sequence ' || t.name, p.privilege
        from roles r, relations t, unnest(array['USAGE', 'SELECT', 'UPDATE']) as p(privilege)
        where t.relkind = 'S' and has_sequence_privilege(r.role, t.oid, p.privilege)
        union all
        select r.role, case f.prokind when 'p' then 'procedure ' else 'function ' end
               || f.oid::regprocedure::text, 'EXECUTE'
        from roles r, pg_proc f join pg_namespace n on n.oid = f.pronamespace
        where {USER_SCHEMAS} and has_function_privilege(r.role, f.oid, 'EXECUTE')
        union all
        select r.role, 'schema ' || quote_ident(n.nspname), p.privilege
        from roles r, pg_namespace n, unnest(array['USAGE', 'CREATE']) as p(privilege)
        where {USER_SCHEMAS} and has_schema_privilege(r.role, n.oid, p.privilege)
        union all
        select r.role, 'database', p.privilege
        from roles r, unnest(array['CONNECT', 'CREATE', 'TEMPORARY']) as p(privilege)
        where has_database_privilege(r.role, current_database(), p.privilege)
        union all  -- membership of any role (pg_read_all_data, another service's role...)
        select r.role, 'role ' || m.roleid::regrole::text, 'MEMBER'
        from roles r join pg_auth_members m on m.member = r.role::regrole
        """,
        list(RUNTIME_ROLES), table_privileges,
    )
    return {(row[0], row[1], row[2]) for row in rows}


def expected_grants() -> set[Grant]:
    return {(role, obj, privilege) for role, objects in EXPECTED.items()
            for obj, privileges in objects.items() for privilege in privileges.split()}


def diff(actual: set[Grant], expected: set[Grant]) -> str:
    lines = [f"+ {role} may {privilege} on {obj}   (granted, not declared)"
             for role, obj, privilege in sorted(actual - expected)]
    lines += [f"- {role} may not {privilege} on {obj}   (declared, not granted)"
              for role, obj, privilege in sorted(expected - actual)]
    return "\n".join(lines)


async def test_every_runtime_privilege_is_the_declared_one(
    catalogue: asyncpg.Connection,
) -> None:
    assert set(EXPECTED) == set(RUNTIME_ROLES)
    actual, expected = await actual_grants(catalogue), expected_grants()
    assert actual == expected, "\n" + diff(actual, expected)


def _before_least_privilege(service: str) -> list[Any]:
    """The migrations a deployment had before least privilege came: those before the
    service's `_least_privilege.sql` (a later one grants its own objects explicitly)."""
    earlier = []
    for m in migrations_for("argus_" + schema_of(service)):
        if m.name.endswith("_least_privilege.sql"):
            break
        if m.name != "shared/0003_runtime_grants.sql":
            earlier.append(m)
    return earlier


async def test_a_database_of_the_earlier_grants_ends_with_the_declared_ones(
    infra: Infra, owner_password: str,
) -> None:
    """An existing deployment: provisioned when every table, sequence and function was granted by
    default (and PUBLIC executed every function), migrated that way; then upgraded. Its
    migrations alone (no privileged connection) reach the declared set, provisioning again keeps
    it, and a partition made afterwards grants nothing."""
    url = await infra.create_database(migrate_services=())
    admin = await asyncpg.connect(infra.url_for(url.rsplit("/", 1)[1], with_admin=True))
    try:
        await admin.execute(f"alter default privileges for role {OWNER_ROLE}"
                            " grant execute on functions to public")
        for service in SERVICES:
            schema, role = schema_of(service), role_of(service)
            defaults = f"alter default privileges for role {OWNER_ROLE} in schema {schema}"
            await admin.execute(
                f"{defaults} grant select, insert, update, delete on tables to {role};"
                f" {defaults} grant usage, select on sequences to {role};"
                f" {defaults} grant execute on functions to {role}")
        owner = await connect(url, OWNER_ROLE, owner_password)
        try:
            for service in SERVICES:
                await migrate(owner, schema_of(service), _before_least_privilege(service))
        finally:
            await owner.close()
        await admin.execute("set search_path = pg_catalog")
        assert ("argus_audit", "table audit.chain_heads", "DELETE") in await actual_grants(admin)

        await migrate_all(url, infra.secrets, SERVICES)
        actual, expected = await actual_grants(admin), expected_grants()
        assert actual == expected, "\n" + diff(actual, expected)
        await provision(admin, owner_password, infra.secrets.service_passwords())
        audit = await _as_runtime(infra, url, "audit")
        try:
            await audit.execute("select ensure_partitions('2040-01-01', 0)")
        finally:
            await audit.close()
        assert await admin.fetchval("select to_regclass('audit.audit_events_2040_01')")
        actual = await actual_grants(admin)
        assert actual == expected, "\n" + diff(actual, expected)
    finally:
        await admin.close()


async def test_public_holds_nothing_in_the_service_schemas(catalogue: asyncpg.Connection) -> None:
    """No ACL entry for PUBLIC on any table, sequence or routine (invoker ones too; a routine
    without an ACL is PUBLIC-executable, hence acldefault), the public schema or the database."""
    found = await catalogue.fetch(
        f"""
        select 'table ' || c.oid::regclass::text as object, a.privilege_type
        from pg_class c join pg_namespace n on n.oid = c.relnamespace,
             aclexplode(c.relacl) a
        where {USER_SCHEMAS} and a.grantee = 0
        union all
        select 'function ' || f.oid::regprocedure::text, a.privilege_type
        from pg_proc f join pg_namespace n on n.oid = f.pronamespace,
             aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
        where {USER_SCHEMAS} and a.grantee = 0
        union all
        select 'schema ' || n.nspname, a.privilege_type
        from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
        where {USER_SCHEMAS} and a.grantee = 0
        union all
        select 'database', a.privilege_type
        from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
        where d.datname = current_database() and a.grantee = 0
        """
    )
    assert [tuple(row) for row in found] == []


async def test_definer_functions_pin_their_path_and_serve_one_role(
    catalogue: asyncpg.Connection,
) -> None:
    rows = await catalogue.fetch(
        f"""
        select f.oid::regprocedure::text as name, n.nspname as schema, f.proconfig,
               array(select r from unnest($1::text[]) r
                     where has_function_privilege(r, f.oid, 'EXECUTE')) as callers
        from pg_proc f join pg_namespace n on n.oid = f.pronamespace
        where f.prosecdef and {USER_SCHEMAS}
        order by 1
        """,
        list(RUNTIME_ROLES),
    )
    assert len(rows) >= 19  # every service has some; a catalogue query that finds none is wrong
    schemas = {schema_of(service): role_of(service) for service in SERVICES}
    problems = []
    for row in rows:
        if row["schema"] not in schemas:
            problems.append(f"{row['name']}: a definer function outside the service schemas")
            continue
        if f"search_path={row['schema']}, pg_temp" not in (row["proconfig"] or []):
            problems.append(f"{row['name']}: search_path not pinned ({row['proconfig']})")
        if row["callers"] != [schemas[row["schema"]]]:
            problems.append(f"{row['name']}: executable by {row['callers']}, "
                            f"not by {schemas[row['schema']]} alone")
    assert problems == []


async def test_what_the_owner_creates_later_grants_nothing(
    infra: Infra, database_url: str, owner_password: str,
) -> None:
    """No default privileges: a table, sequence or function a future migration creates gives no
    runtime role (and PUBLIC no EXECUTE) anything until that migration grants it."""
    conn = await connect(database_url, OWNER_ROLE, owner_password)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            for service in SERVICES:
                schema = schema_of(service)
                await conn.execute(
                    f"create table {schema}.probe (id int generated always as identity);"
                    f" create sequence {schema}.probe_seq;"
                    f" create function {schema}.probe() returns int language sql as 'select 1';"
                    f" create function {schema}.probe_definer() returns int language sql"
                    f" security definer set search_path = {schema}, pg_temp as 'select 1'")
            granted = await conn.fetch(
                """
                select r, c.oid::regclass::text from unnest($1::text[]) r, pg_class c
                where c.relname in ('probe', 'probe_seq', 'probe_id_seq')
                  and case when c.relkind = 'S'
                      then has_sequence_privilege(r, c.oid, 'USAGE, SELECT, UPDATE')
                      else has_any_column_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')
                           or has_table_privilege(r, c.oid, 'DELETE, TRUNCATE, TRIGGER') end
                union all
                select r, f.oid::regprocedure::text from unnest($1::text[]) r, pg_proc f
                where f.proname like 'probe%' and has_function_privilege(r, f.oid, 'EXECUTE')
                union all
                select 'PUBLIC', f.oid::regprocedure::text from pg_proc f,
                       aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
                where f.proname like 'probe%' and a.grantee = 0
                """,
                list(RUNTIME_ROLES),
            )
            assert [tuple(row) for row in granted] == []
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def _as_runtime(infra: Infra, url: str, service: str) -> asyncpg.Connection:
    return await connect(url, role_of(service), infra.secrets.service_passwords()[service])


async def test_the_audit_role_cannot_change_the_trail(
    infra: Infra, database_url: str, catalogue: asyncpg.Connection,
) -> None:
    partitions = await catalogue.fetch(
        "select c.oid::regclass::text from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'audit.audit_events'::regclass")
    assert partitions, "audit_events has no partition to attack"
    attacks = [
        "update chain_heads set seq = seq + 1", "delete from chain_heads",
        "insert into chain_heads values (gen_random_uuid(), 0, '\\x00')",
        "update org_plans set retention_days = 1", "delete from org_plans",
        "insert into org_plans values (gen_random_uuid(), 'free', 1)",
        "update schema_migrations set checksum = ''", "delete from schema_migrations",
        "insert into schema_migrations (name, checksum) values ('9999_evil.sql', '')",
        "update audit_events set type = 'x'", "delete from audit_events",
        "insert into audit_events select * from audit_events limit 1",
        "update seen_events set seq = 0", "delete from seen_events",
        "update checkpoints set seq = 0", "delete from checkpoints",
        "insert into checkpoints select * from checkpoints limit 1",
        "update quarantine set reason = ''", "delete from quarantine",
        "truncate audit_events", "truncate chain_heads", "truncate org_plans",
        "truncate schema_migrations",
        "select nextval(pg_get_serial_sequence('quarantine', 'id'))",
        "create table probe (id int)", "create table public.probe (id int)",
    ]
    for partition in partitions:
        attacks += [f"update {partition[0]} set type = 'x'", f"delete from {partition[0]}",
                    f"select * from {partition[0]}", f"truncate {partition[0]}"]
    conn = await _as_runtime(infra, database_url, "audit")
    try:
        for statement in attacks:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema auth"):
            await conn.fetch("select * from auth.introspect_api_key('\\x00')")
    finally:
        await conn.close()


async def test_the_audit_role_tracks_plans_only_through_its_definer_function(
    infra: Infra, database_url: str, admin: asyncpg.Connection,
) -> None:
    """What the revoked UPDATE on org_plans did: a plan is recorded, then changed field by field
    (a missing field keeps its value)."""
    org = uuid.uuid4()
    conn = await _as_runtime(infra, database_url, "audit")
    try:
        await audit_queries.upsert_plan(conn, org, None, None)
        await audit_queries.upsert_plan(conn, org, "pro", None)
        await audit_queries.upsert_plan(conn, org, None, 30)
    finally:
        await conn.close()
    row = await admin.fetchrow(
        "select plan, retention_days from audit.org_plans where org_id = $1", org)
    assert row is not None and dict(row) == {"plan": "pro", "retention_days": 30}


async def test_no_runtime_role_changes_its_migrations(infra: Infra, database_url: str) -> None:
    for service in SERVICES:
        conn = await _as_runtime(infra, database_url, service)
        try:
            for statement in ("update schema_migrations set checksum = ''",
                              "delete from schema_migrations", "select * from schema_migrations",
                              "truncate outbox"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()


async def test_another_services_definer_function_is_refused(
    admin: asyncpg.Connection,
) -> None:
    """Even given USAGE on the schema, a role may not execute another service's definer
    functions (the function's own grant refuses, not only the schema)."""
    functions = await admin.fetch(
        """
        select n.nspname, f.oid::regprocedure::text as name,
               'select ' || quote_ident(n.nspname) || '.' || quote_ident(f.proname) || '('
               || coalesce((select string_agg('null::' || format_type(t, null), ', ' order by k)
                            from unnest(f.proargtypes) with ordinality as a(t, k)), '') || ')'
               as call
        from pg_proc f join pg_namespace n on n.oid = f.pronamespace
        where f.prosecdef and n.nspname = any($1::text[])
        """,
        [schema_of(service) for service in SERVICES],
    )
    assert functions
    for function in functions:
        for service in SERVICES:
            if schema_of(service) == function["nspname"]:
                continue
            tx = admin.transaction()
            await tx.start()
            try:
                await admin.execute(
                    f"grant usage on schema {function['nspname']} to {role_of(service)};"
                    f" set local role {role_of(service)}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError,
                                   match="permission denied for function"):
                    await admin.execute(function["call"])
            finally:
                await tx.rollback()
