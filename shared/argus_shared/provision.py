"""Create the database roles and schemas: one owner (migration) role that owns every schema, and
one runtime role per service with USAGE on its own schema only (no DDL, no BYPASSRLS, not owner).
Nothing is granted on tables, sequences or functions by default: each service's migrations grant
its runtime role exactly what its code runs (tests/test_privileges.py checks the whole set).

Run with a privileged connection by `argus up`, `argus migrate --provision` and the tests. It is
idempotent and keeps role passwords in step with the secrets it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from argus_shared.settings import OWNER_ROLE, SERVICES, role_of, schema_of

_LOCK_KEY = 0x617267_7573  # "argus": serialises concurrent provisioners

_ROLE_FLAGS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
# `argus backup`'s role: REPLICATION (what pg_basebackup needs, over the replication protocol)
# and nothing else: no CONNECT on the database, no schema, no table
REPLICATION_ROLE = "argus_replication"
_REPLICATION_FLAGS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION NOBYPASSRLS NOINHERIT"


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str, extra: str = "",
                       flags: str = _ROLE_FLAGS) -> None:
    exists = await conn.fetchval("select 1 from pg_roles where rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    statement = await conn.fetchval(
        f"select format('{verb} ROLE %I WITH {flags} {extra} PASSWORD %L',"
        " $1::text, $2::text)",
        role,
        password,
    )
    await conn.execute(statement)


async def provision(
    conn: asyncpg.Connection,
    owner_password: str,
    service_passwords: Mapping[str, str],
    services: tuple[str, ...] = SERVICES,
    replication_password: str | None = None,
) -> None:
    """`replication_password`: also the backup role (REPLICATION_ROLE), when backups are taken
    with it."""
    database = await conn.fetchval("select current_database()")
    await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await _ensure_role(conn, OWNER_ROLE, owner_password)
        if replication_password is not None:
            await _ensure_role(conn, REPLICATION_ROLE, replication_password,
                               flags=_REPLICATION_FLAGS)
        await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {OWNER_ROLE}')
        # functions the owner creates are not PUBLIC-executable (a per-schema default cannot
        # take away this global one, so it is altered here, for every schema at once)
        await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE}"
                           " REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
        for service in services:
            await _provision_service(conn, database, service, service_passwords[service])
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)


async def _provision_service(
    conn: asyncpg.Connection, database: str, service: str, password: str
) -> None:
    role, schema = role_of(service), schema_of(service)
    # NOINHERIT: even if someone grants it another role, it does not silently gain its rights.
    await _ensure_role(conn, role, password, "NOINHERIT")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {OWNER_ROLE}")
    await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {OWNER_ROLE}")
    await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
    await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    await conn.execute(f'ALTER ROLE {role} IN DATABASE "{database}" SET search_path = {schema}')
    # no default grants (and none left from earlier versions, which granted DML on every table,
    # sequences and EXECUTE on every function): a migration grants what the code runs
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA {schema}"
    for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
        await conn.execute(f"{defaults} REVOKE ALL ON {kind} FROM {role}")
