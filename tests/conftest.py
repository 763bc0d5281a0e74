from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from argus_shared.cli.stack import Stack
from argus_shared.settings import Settings
from support.infra import Infra, start_infra

if TYPE_CHECKING:  # a plugin below: imported by pytest, so that it is assertion-rewritten
    from support.hibp_server import HibpServer

pytest_plugins = [
    "support.offline", "support.hibp_server", "support.auth_service", "support.suite",
    "support.audit_service", "support.webhooks_service", "support.files_service", "support.nginx",
    "support.statuses", "pytester",
]


@pytest.fixture(scope="session")
def infra(hibp: HibpServer) -> Iterator[Infra]:
    workdir = Path(tempfile.mkdtemp(prefix="argus-test-"))
    started = start_infra(workdir, hibp)
    yield started
    started.close()


@pytest.fixture(scope="session")
async def database_url(infra: Infra) -> str:
    """One migrated database shared by the session (tests keep to their own orgs)."""
    return await infra.create_database()


@pytest.fixture
async def admin(infra: Infra, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the session database, for assertions around RLS and grants."""
    db = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(infra.url_for(db, with_admin=True))
    yield conn
    await conn.close()


@pytest.fixture
def owner_password(infra: Infra) -> str:
    return infra.secrets.read("db-owner-password")


@pytest.fixture(scope="session")
def stack(infra: Infra, database_url: str) -> Stack:
    """The environment a real deployment would give each service, on free ports."""
    return infra.stack(database_url, env="test")


@pytest.fixture(scope="session")
def settings_for(stack: Stack) -> Callable[..., Settings]:
    """`settings_for("auth", ARGUS_X="...")`: a service's Settings as it would read them."""

    def make(service: str, **overrides: str) -> Settings:
        return Settings.from_env(service, {**stack.service_environment(service), **overrides})

    return make
