from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from support.infra import Infra, start_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    workdir = Path(tempfile.mkdtemp(prefix="argus-test-"))
    started = start_infra(workdir)
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
