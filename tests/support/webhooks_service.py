"""The webhooks service in-process beside auth and tenant-api, and a receiver that records what
reaches it (and answers as the test tells it to)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared.settings import Settings
from argus_shared.web import POOL_KEY
from argus_webhooks.app import DELIVERER_KEY, create_app
from argus_webhooks.config import Provider, WebhooksConfig
from support.suite import Suite

INBOUND = {
    "stripe": Provider("stripe", "stripe", "whsec_c3RyaXBlLXRlc3Qtc2VjcmV0LTEyMzQ1Ng=="),
    "std": Provider("std", "standard", "whsec_c3RhbmRhcmQtdGVzdC1zZWNyZXQtMTIzNA=="),
}


@dataclass
class Receiver:
    """Records deliveries; `answers` is a queue of (status, headers) to reply with (then 200)."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        self.arrived.set()
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok")

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@dataclass
class Webhooks:
    base: str
    suite: Suite
    app: Any
    receiver: Receiver

    async def call(self, method: str, path: str, token: str, body: Any = None
                   ) -> tuple[int, Any]:
        async with self.suite.http.request(method, f"{self.base}{path}", json=body,
                                           headers={"Authorization": f"Bearer {token}"}) as r:
            if r.content_type in ("application/json", "application/problem+json"):
                return r.status, await r.json()
            return r.status, await r.text()

    @property
    def pool(self) -> Any:
        return self.app[POOL_KEY]

    @property
    def deliverer(self) -> Any:
        return self.app[DELIVERER_KEY]


def webhooks_config(**overrides: Any) -> WebhooksConfig:
    values: dict[str, Any] = {
        "https_only": False, "allow_nets": (ipaddress.ip_network("127.0.0.0/8"),),
        "schedule": (1, 1, 1), "poll_seconds": 0.1, "providers": INBOUND,
        "attempt_timeout": 5.0}
    values.update(overrides)
    return WebhooksConfig(**values)


@pytest.fixture
async def webhooks(suite: Suite, settings_for: Callable[..., Settings]
                   ) -> AsyncIterator[Webhooks]:
    receiver = Receiver()
    target = web.Application()
    target.router.add_post("/hook", receiver.handle)
    receiving = TestServer(target, host="127.0.0.1")
    await receiving.start_server()
    receiver.url = str(receiving.make_url("/hook"))
    app = create_app(settings_for("webhooks"), webhooks_config(), auth_url=suite.auth.base)
    server = TestServer(app)
    await server.start_server()
    yield Webhooks(str(server.make_url("")).rstrip("/"), suite, app, receiver)
    await server.close()
    await receiving.close()
