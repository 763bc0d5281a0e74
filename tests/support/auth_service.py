"""The auth service in-process on a real socket, with real PostgreSQL and NATS, a clock the
tests move, cheap Argon2id parameters and a development mailbox to read tokens from."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from argus_auth.app import create_app
from argus_auth.config import AuthConfig
from argus_auth.core import Auth
from argus_auth.routes import AUTH_KEY
from argus_shared.mail import MailSettings
from argus_shared.settings import Settings
from support.hibp_server import HibpServer
from support.mailbox import body_of

PASSWORD = "correct horse battery staple"


@dataclass
class Clock:
    """The wall clock, moved by the tests: it keeps running, so auth's times stay comparable
    with the other services' (revocations are judged to the microsecond)."""

    offset: float = 0.0

    @property
    def now(self) -> float:
        return time.time() + self.offset

    @now.setter
    def now(self, value: float) -> None:
        self.offset = value - time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class AuthService:
    base: str
    http: aiohttp.ClientSession
    mailbox: Path
    clock: Clock
    auth: Auth

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    async def post(self, path: str, body: Any = None, token: str | None = None,
                   **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        async with self.http.post(self.url(path), json=body, headers=headers, **kwargs) as r:
            answer = r.status, await _body(r), r
        await self.settled()
        return answer

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url(path), json=body, headers=headers) as r:
            answer = r.status, await _body(r)
        await self.settled()
        return answer

    async def settled(self) -> None:
        """Wait until the work the requests queued after their answer (rows, mail) is done."""
        await self.auth.background.join()

    def mail_to(self, email: str) -> list[str]:
        messages = []
        for path in sorted(self.mailbox.glob("*.eml")):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            if str(mail["To"]) == email:
                messages.append(body_of(mail))
        return messages

    def token_from_mail(self, email: str) -> str:
        match = re.search(r"Token: (\S+)", self.mail_to(email)[-1])
        assert match, self.mail_to(email)
        return match.group(1)

    async def signed_up(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
        status, _, _ = await self.post("/signup", {"email": email, "password": password})
        assert status == 202
        status, _, _ = await self.post("/verify-email", {"token": self.token_from_mail(email)})
        assert status == 200
        return email

    async def logged_in(self, email: str | None = None,
                        password: str = PASSWORD) -> tuple[str, dict[str, Any]]:
        email = await self.signed_up(email, password)
        status, tokens, _ = await self.post("/login", {"email": email, "password": password})
        assert status == 200, tokens
        return email, tokens


async def _body(response: aiohttp.ClientResponse) -> Any:
    if response.content_type.endswith("json"):
        return await response.json(content_type=None)
    return await response.text()


def test_config(mailbox: Path, clock: Clock, **overrides: Any) -> AuthConfig:
    """`public_url=` sets where mail links point (the mail settings' own field)."""
    mail = MailSettings(mailbox_dir=mailbox)
    if "public_url" in overrides:
        mail = replace(mail, public_url=overrides.pop("public_url"))
    base = AuthConfig(argon2_memory_kib=1024, argon2_time_cost=1, hibp_url=None, mail=mail,
                      secure_cookies=False, clock=clock, background_jitter=0.0)
    return replace(base, **overrides)


@pytest.fixture
async def make_auth_service(
    settings_for: Callable[..., Settings], tmp_path: Path, hibp: HibpServer
) -> AsyncIterator[Callable[..., Any]]:
    """In-process auth services; their breached-password check asks the local range server."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**overrides: Any) -> AuthService:
        clock = Clock()
        mailbox = tmp_path / f"mailbox-{len(servers)}"
        settings = settings_for("auth", **overrides.pop("env", {}))
        config = test_config(mailbox, clock, **{"hibp_url": hibp.url, **overrides})
        app = create_app(settings, config)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        sessions.append(http)
        return AuthService(str(server.make_url("")).rstrip("/"), http, mailbox, clock,
                           app[AUTH_KEY])

    yield start
    for http in sessions:
        await http.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def service(make_auth_service: Callable[..., Any]) -> AsyncIterator[AuthService]:
    yield await make_auth_service()
