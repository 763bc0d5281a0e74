"""Development defaults of `argus up`: webhooks may deliver to loopback receivers (a local
receiver works out of the box) and the banner says so; an operator's ARGUS_WEBHOOKS_ALLOW_NETS
wins; a production service, or one started on its own, keeps refusing loopback targets."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from argus_shared.cli.stack import Stack
from argus_shared.cli.up import ALLOW_NETS, DEV_WEBHOOK_NETS, service_environ
from argus_shared.devsecrets import ensure_dev_secrets
from argus_shared.embedded import free_port
from argus_shared.settings import SERVICES
from argus_webhooks import signing, ssrf
from argus_webhooks.config import WebhooksConfig
from support.argus_up import Gateway, argus_up

BANNER_LINE = ("  webhooks    loopback targets allowed in this dev suite (127.0.0.0/8, ::1/128); "
               "ARGUS_WEBHOOKS_ALLOW_NETS= refuses them")
LOOPBACK = ("127.0.0.1", "127.9.9.9", "::1")
DEADLINE = 60.0


def stack(tmp_path: Path, env: str) -> Stack:
    secrets = ensure_dev_secrets(tmp_path / "secrets")
    return Stack(secrets, "postgresql://127.0.0.1:5432/argus", "nats://127.0.0.1:4222", env=env)


async def refused(config: WebhooksConfig, address: str) -> bool:
    try:
        await ssrf.resolve_checked(address, 80, config.allow_nets)
    except ssrf.Refused:
        return True
    return False


async def test_the_dev_suite_gives_webhooks_loopback_and_nothing_else(tmp_path: Path) -> None:
    dev = stack(tmp_path, "dev")
    environ = service_environ(dev, "webhooks", {})
    assert environ[ALLOW_NETS] == DEV_WEBHOOK_NETS == "127.0.0.0/8,::1/128"
    config = WebhooksConfig.from_env(production=False, environ=environ)
    assert config.allow_nets == (ipaddress.ip_network("127.0.0.0/8"),
                                 ipaddress.ip_network("::1/128"))
    for address in LOOPBACK:
        assert not await refused(config, address), address
    for address in ("10.0.0.1", "192.168.1.1", "169.254.169.254", "::ffff:10.0.0.1", "fc00::1"):
        assert await refused(config, address), address
    assert all(ALLOW_NETS not in service_environ(dev, s, {}) for s in SERVICES if s != "webhooks")


async def test_the_operators_setting_wins_even_empty(tmp_path: Path) -> None:
    dev = stack(tmp_path, "dev")
    assert service_environ(dev, "webhooks", {ALLOW_NETS: "10.1.0.0/16"})[ALLOW_NETS] == \
        "10.1.0.0/16"
    environ = service_environ(dev, "webhooks", {ALLOW_NETS: ""})
    assert environ[ALLOW_NETS] == ""
    config = WebhooksConfig.from_env(production=False, environ=environ)
    assert config.allow_nets == ()
    assert await refused(config, "127.0.0.1")


async def test_production_and_a_service_on_its_own_keep_refusing_loopback(
    tmp_path: Path
) -> None:
    prod = service_environ(stack(tmp_path, "prod"), "webhooks", {})
    assert ALLOW_NETS not in prod
    production = WebhooksConfig.from_env(production=True, environ=prod)
    assert production.allow_nets == () and production.https_only
    with pytest.raises(ssrf.Refused, match="only https"):
        ssrf.check_url("http://127.0.0.1:8080/hook", production.https_only)
    # `python -m argus_webhooks` with nothing set, in production or not
    for alone in (WebhooksConfig.from_env(production=True, environ={}),
                  WebhooksConfig.from_env(production=False, environ={})):
        for address in LOOPBACK:
            assert await refused(alone, address), address


class Receiver:
    """A webhook receiver on loopback, in this process: what it was sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def first(self) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + DEADLINE
        while not self.received:
            assert time.monotonic() < deadline, f"no delivery within {DEADLINE}s"
            await asyncio.sleep(0.05)
        return self.received[0]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", found.port).start()
    yield found
    await runner.cleanup()


@pytest.mark.timeout(300)
async def test_argus_up_delivers_to_a_loopback_receiver_and_says_so(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with argus_up(tmp_path / "up.log") as suite:
        assert BANNER_LINE in suite.banner.splitlines(), suite.banner
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            gateway = Gateway(http, suite.gateway)
            org, token = await gateway.org_owner(suite.mailbox, "hooks@example.com", "hooks")
            created = await gateway.call(
                "POST", f"/webhooks/orgs/{org}/webhooks/endpoints", token=token,
                body={"url": receiver.url, "event_types": ["project.created"]}, expect=201)
            await gateway.call("POST", f"/tenant/orgs/{org}/projects", token=token,
                               body={"name": "hooked"}, expect=201)
            headers, body = await receiver.first()
        signing.verify_standard(headers, body, created["secret"], time.time())
        assert b'"project.created"' in body and org.encode() in body
        assert await suite.stop() == 0, suite.proc.output
