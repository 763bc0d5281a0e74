"""The PostgreSQL and NATS a local suite runs on: the ones configured (ARGUS_DATABASE_URL,
ARGUS_NATS_URL) or embedded ones under the data directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from argus_shared.db import connect
from argus_shared.devsecrets import DevSecrets, ensure_dev_secrets
from argus_shared.embedded import EmbeddedNats, EmbeddedPostgres
from argus_shared.migrate import migrate, migrations_for
from argus_shared.provision import provision
from argus_shared.runner import StartupError, package_of
from argus_shared.settings import OWNER_ROLE, SERVICES, ConfigError, Env, schema_of
from argus_shared.wal_archive import archive_settings, prepare_archive

EMBEDDED_DATABASE = "argus"


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class Infrastructure:
    secrets: DevSecrets
    database_url: str  # host, port, database: each role brings its password
    nats_url: str
    admin_url: str | None  # privileged, to provision roles; None when provisioned elsewhere
    owner_password: str
    pg: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_env(
        cls, data_dir: Path, pg_port: int, nats_port: int, *, need_nats: bool = True,
        archive: Path | None = None,
    ) -> Infrastructure:
        env = Env()
        store = ensure_dev_secrets(data_dir / "secrets")
        infra = cls(
            secrets=store, database_url="", nats_url=env.str("ARGUS_NATS_URL") or "",
            admin_url=env.secret("ARGUS_DATABASE_ADMIN_URL", required=False),
            owner_password=env.secret("ARGUS_DB_OWNER_PASSWORD", required=False)
            or store.read("db-owner-password"),
        )
        try:
            infra._database(env, data_dir, pg_port, archive)
            if need_nats and not infra.nats_url:
                infra.nats = EmbeddedNats(data_dir / "nats", nats_port)
                infra.nats.start()
                infra.nats_url = infra.nats.url
                infra.notes.append(f"NATS        {infra.nats_url}  (embedded, {data_dir / 'nats'})")
        except BaseException:
            infra.stop()
            raise
        return infra

    def _database(self, env: Env, data_dir: Path, pg_port: int, archive: Path | None) -> None:
        configured = env.str("ARGUS_DATABASE_URL")
        if configured:
            if archive is not None:
                raise ConfigError("--archive is for the embedded PostgreSQL; configure "
                                  "archive_command on the server (deploy/backup-runbook.md)")
            self.database_url = without_credentials(configured)
            return
        self.pg = EmbeddedPostgres(
            data_dir / "pg", pg_port, self.secrets.read("pg-superuser-password")
        )
        if archive is not None:
            user = self.pg.user
            prepare_archive(archive, (user.pw_uid, user.pw_gid) if user else None)
            self.pg.settings.update(archive_settings(archive))
            self.notes.append(f"WAL archive {archive / 'wal'}  (sealed under master-keys)")
        self.pg.start()
        base = f"postgresql://127.0.0.1:{pg_port}"
        self.database_url = f"{base}/{EMBEDDED_DATABASE}"
        self.admin_url = self.pg.admin_url.rsplit("/", 1)[0] + f"/{EMBEDDED_DATABASE}"
        self.notes.append(f"PostgreSQL  {self.database_url}  (embedded, {data_dir / 'pg'})")

    def stop(self) -> None:
        if self.nats:
            self.nats.stop()
        if self.pg:
            self.pg.stop()


async def _ensure_database(admin_url: str) -> None:
    parts = urlsplit(admin_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    conn = await asyncpg.connect(maintenance, timeout=10)
    try:
        if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()


REPLICATION_PASSWORD = "db-replication-password"  # noqa: S105 (a file name)


def replication_password(infra: Infrastructure) -> str:
    """The backup role's password: ARGUS_DB_REPLICATION_PASSWORD(_FILE), else the secrets
    directory's `db-replication-password`."""
    given = Env().secret("ARGUS_DB_REPLICATION_PASSWORD", required=False)
    return given or infra.secrets.read(REPLICATION_PASSWORD)


async def provision_all(infra: Infrastructure) -> None:
    assert infra.admin_url is not None
    try:
        await _ensure_database(infra.admin_url)
        conn = await asyncpg.connect(infra.admin_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = urlsplit(infra.admin_url).hostname
        raise StartupError(f"cannot reach PostgreSQL at {where} to provision: {exc}") from None
    try:
        await provision(conn, infra.owner_password, infra.secrets.service_passwords(),
                        replication_password=replication_password(infra))
    finally:
        await conn.close()


async def migrate_all(infra: Infrastructure) -> dict[str, list[str]]:
    """Provision (when a privileged URL is known), then migrate every service as the owner."""
    if infra.admin_url:
        await provision_all(infra)
    try:
        conn = await connect(infra.database_url, OWNER_ROLE, infra.owner_password)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StartupError(f"cannot connect as {OWNER_ROLE}: {exc}") from None
    try:
        return {
            service: await migrate(conn, schema_of(service), migrations_for(package_of(service)))
            for service in SERVICES
        }
    finally:
        await conn.close()
