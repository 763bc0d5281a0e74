"""Ordered SQL migrations per service, run as the owner role under an advisory lock.

Each service's migrations are the shared base files (`argus_shared/migrations/`, for example the
outbox) followed by its own `migrations/*.sql`, applied in that order inside the service's schema.
All pending files apply in one transaction that first takes a transaction-level advisory lock for
the schema, so replicas that start together apply each file exactly once. A file that was edited
after it was applied stops the run: migrations are append-only history.

Every run ends by writing what the schema has applied into the schema's comment
(`applied_migrations`), which any role that may use the schema can read: a service deployed
without migrations at start (its role cannot read `schema_migrations`) waits on it until the
migrate step has applied every migration of its version.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from argus_shared.db import Conn

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
APPLIED_MARK = "argus migrations applied:"


class MigrationError(Exception):
    """Migrations cannot be applied; the message is one line."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_dir(directory: Path, prefix: str = "") -> list[Migration]:
    return [
        Migration(name=f"{prefix}{path.name}", sql=path.read_text())
        for path in sorted(directory.glob("*.sql"))
    ]


def service_migrations_dir(package: str) -> Path:
    """`<package>/migrations` in a wheel, or `services/<name>/migrations` in a checkout."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MigrationError(f"package {package} is not installed")
    package_dir = Path(spec.origin).parent
    for candidate in (package_dir / "migrations", package_dir.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise MigrationError(f"no migrations directory for {package}")


def migrations_for(package: str) -> list[Migration]:
    return load_dir(SHARED_MIGRATIONS, "shared/") + load_dir(service_migrations_dir(package))


def _lock_key(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"argus.migrate.{schema}".encode()).digest()[:8], "big", signed=True
    )


async def migrate(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply what is pending; return the names applied (empty when up to date)."""
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _lock_key(schema))
        await conn.execute(f"SET LOCAL search_path = {schema}")
        await conn.execute(
            "create table if not exists schema_migrations ("
            " name text primary key, checksum text not null,"
            " applied_at timestamptz not null default now())"
        )
        applied = {
            row["name"]: row["checksum"]
            for row in await conn.fetch("select name, checksum from schema_migrations")
        }
        done: list[str] = []
        for migration in migrations:
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationError(
                        f"{schema}: migration {migration.name} changed after it was applied"
                    )
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{schema}: {migration.name} failed: {exc}") from None
            await conn.execute(
                "insert into schema_migrations (name, checksum) values ($1, $2)",
                migration.name,
                migration.checksum,
            )
            done.append(migration.name)
        names = [row["name"] for row in
                 await conn.fetch("select name from schema_migrations order by name")]
        await conn.execute(await conn.fetchval(
            "select format('COMMENT ON SCHEMA %I IS %L', $1::text, $2::text)",
            schema, "\n".join([APPLIED_MARK, *names])))
        return done


async def applied_migrations(conn: Conn, schema: str) -> set[str]:
    """The migrations `schema` has applied, as its last migration run recorded them (empty:
    never migrated, or by a version before the record)."""
    text = await conn.fetchval(
        "select obj_description(to_regnamespace($1), 'pg_namespace')", schema)
    lines = (text or "").splitlines()
    return set(lines[1:]) if lines[:1] == [APPLIED_MARK] else set()
