"""The SSO tests' side: the OpenID Provider process (`support.oidc_provider`) and a browser
that walks the code flow through it and the auth service (redirects followed by hand, the
cookies it would keep passed on explicitly)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

from argus_auth.sso_providers import Provider, make_provider
from argus_shared.embedded import free_port
from support.auth_service import AuthService
from support.processes import PYTHON, Proc, wait_ready

HERE = Path(__file__).parent
# where the service believes it is published (the gateway's /auth); the browser below maps
# it onto the service's own address
PUBLIC = "https://app.example.test/auth"
SECRET = "client-secret-for-tests"
STATE_COOKIE = "__Host-argus_sso"


@dataclass
class OpenIdProvider:
    """The provider process on 127.0.0.1: one issuer per tenant."""

    port: int
    proc: Proc
    http: aiohttp.ClientSession

    def issuer(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/{tenant}/v2.0"

    async def control(self, tenant: str, what: str, body: dict[str, Any]) -> Any:
        async with self.http.post(f"{self.issuer(tenant)}/control/{what}", json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def client(self, tenant: str, client_id: str, providers: list[str]) -> None:
        await self.control(tenant, "client", {
            "client_id": client_id, "client_secret": SECRET,
            "redirect_uris": [f"{PUBLIC}/sso/{name}/callback" for name in providers]})

    async def user(self, tenant: str, email: str | None, *, sub: str | None = None,
                   verified: bool = True, attack: str | None = None,
                   **claims: Any) -> str:
        sub = sub or f"sub-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"sub": sub, "attack": attack, **claims}
        if email is not None:
            body.update(email=email, email_verified=verified)
        await self.control(tenant, "user", body)
        return sub

    async def rotate(self, tenant: str, drop_old: bool = True) -> str:
        return str((await self.control(tenant, "rotate", {"drop_old": drop_old}))["kid"])

    async def token_log(self, tenant: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.issuer(tenant)}/control/log") as r:
            return list(await r.json())


async def start_provider(log_dir: Path) -> OpenIdProvider:
    port = free_port()
    proc = Proc.start([PYTHON, str(HERE / "oidc_provider.py"), "--port", str(port)], {},
                      log_dir / "oidc-provider.log")
    await wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return OpenIdProvider(port, proc, aiohttp.ClientSession())


def provider(op: OpenIdProvider, name: str, tenant: str, preset: str = "oidc",
             **options: Any) -> Provider:
    if preset == "microsoft":
        return make_provider(name, "microsoft", client_id=f"client-{name}",
                             client_secret=SECRET, authority=f"http://127.0.0.1:{op.port}",
                             tenant=tenant, **options)
    return make_provider(name, preset, client_id=f"client-{name}", client_secret=SECRET,
                         issuer=op.issuer(tenant), **options)


def set_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in response.headers.getall("Set-Cookie", []):
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            jar[name] = morsel.value
    return jar


@dataclass
class Answer:
    status: int
    body: Any
    location: str | None
    cookies: dict[str, str] = field(default_factory=dict)


@dataclass
class Browser:
    """Walks start -> provider -> callback; `cookies` is what it holds for the auth origin."""

    service: AuthService
    cookies: dict[str, str] = field(default_factory=dict)

    def local(self, url: str) -> str:
        assert url.startswith(PUBLIC + "/"), url
        return self.service.base + url[len(PUBLIC):]

    async def get(self, url: str, cookies: dict[str, str] | None = None) -> Answer:
        jar = self.cookies if cookies is None else cookies
        header = "; ".join(f"{k}={v}" for k, v in jar.items())
        async with self.service.http.get(url, allow_redirects=False,
                                         headers={"Cookie": header} if header else {}) as r:
            body = await r.json(content_type=None) if r.content_type.endswith("json") \
                else await r.text()
            answer = Answer(r.status, body, r.headers.get("Location"), set_cookies(r))
        await self.service.settled()
        if url.startswith(self.service.base):
            self.cookies.update({k: v for k, v in answer.cookies.items() if v})
        return answer

    async def start(self, name: str, return_to: str | None = "/app") -> Answer:
        query = "" if return_to is None else "?" + _q(return_to)
        return await self.get(self.service.url(f"/sso/{name}/start{query}"))

    async def to_provider(self, authorization_url: str) -> str:
        """The provider's redirect back: the callback URL on the service."""
        answer = await self.get(authorization_url, cookies={})
        assert answer.status == 302 and answer.location, (answer.status, answer.body)
        return self.local(answer.location)

    async def sign_in(self, name: str, return_to: str | None = "/app") -> Answer:
        started = await self.start(name, return_to)
        assert started.status == 302, started.body
        assert started.location is not None
        return await self.get(await self.to_provider(started.location))


def _q(value: str) -> str:
    return urlencode({"return_to": value})


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
