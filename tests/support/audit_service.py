"""The audit service in-process beside auth and tenant-api (one PostgreSQL, one NATS)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from argus_audit.app import create_app
from argus_shared.settings import KeyRing, Settings
from argus_shared.web import POOL_KEY, SETTINGS_KEY
from support.suite import Suite


@dataclass
class Audit:
    base: str
    suite: Suite
    app: Any

    async def get(self, path: str, token: str) -> tuple[int, Any]:
        async with self.suite.http.get(f"{self.base}{path}",
                                       headers={"Authorization": f"Bearer {token}"}) as r:
            if r.content_type in ("application/json", "application/problem+json"):
                return r.status, await r.json(content_type=None)
            return r.status, await r.text()

    async def events_until(self, org: str, token: str, wanted: Callable[[list[Any]], bool],
                           query: str = "", timeout: float = 20) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(f"/orgs/{org}/audit/events?limit=500{query}", token)
            assert status == 200, body
            if wanted(body["events"]) or time.monotonic() > deadline:
                return body["events"]
            await asyncio.sleep(0.2)


    @property
    def settings(self) -> Settings:
        return self.app[SETTINGS_KEY]

    @property
    def master(self) -> KeyRing:
        """The master key ring (the audit service requires one)."""
        ring = self.settings.master_keys
        assert ring is not None
        return ring

    @property
    def pool(self) -> Any:
        return self.app[POOL_KEY]


@pytest.fixture
async def audit(suite: Suite, settings_for: Callable[..., Settings]) -> AsyncIterator[Audit]:
    app = create_app(settings_for("audit"), checkpoint_seconds=3600, auth_url=suite.auth.base)
    server = TestServer(app)
    await server.start_server()
    yield Audit(str(server.make_url("")).rstrip("/"), suite, app)
    await server.close()


@pytest.fixture
async def make_audit(suite: Suite, settings_for: Callable[..., Settings]
                     ) -> AsyncIterator[Callable[..., Any]]:
    """`await make_audit(stream_heartbeat_seconds=0.5)`: an audit app in-process with some
    settings changed (another replica on the same PostgreSQL and NATS)."""
    servers: list[TestServer] = []

    async def start(**changes: Any) -> Audit:
        settings = dataclasses.replace(settings_for("audit"), **changes)
        app = create_app(settings, checkpoint_seconds=3600, auth_url=suite.auth.base)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return Audit(str(server.make_url("")).rstrip("/"), suite, app)

    yield start
    for server in servers:
        await server.close()
