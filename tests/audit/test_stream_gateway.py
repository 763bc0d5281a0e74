"""`GET /audit/stream` through the two gateways a client meets: `argus up`'s (the dev gateway,
`argus_shared.gateway`) and a real nginx with the shipped compose configuration (rendered from
the same table, only the upstream and listen address on loopback). Through both, the stream is
not buffered: the `retry:` hint and then each event arrive while the response is still open;
the stream route gets the long read timeout in nginx's configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from argus_shared.gateway import create_gateway
from argus_shared.gateway_nginx import render
from argus_shared.gateway_rules import GATEWAY, LONG_IDLE_TIMEOUT_SECONDS
from support.audit_service import Audit
from support.nginx import run_nginx
from support.streams import close_all, listen, until
from support.suite import Suite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def audit(make_audit: Callable[..., Any]) -> Audit:
    """The audit service with a heartbeat every half second."""
    service: Audit = await make_audit(stream_heartbeat_seconds=0.5)
    return service


@pytest.fixture
async def fronts(pytestconfig: pytest.Config, audit: Audit) -> AsyncIterator[dict[str, str]]:
    """form -> the base URL of the audit service through it."""
    address = audit.base.removeprefix("http://")
    dev = TestServer(create_gateway({"audit": audit.base}), host="127.0.0.1")
    await dev.start_server()
    upstreams = {s.name: address for s in GATEWAY.services}
    try:
        with run_nginx(pytestconfig, lambda listen: render(
                "compose", upstreams=upstreams, listen=listen), compose_form=True) as nginx:
            yield {"dev": f"http://127.0.0.1:{dev.port}/audit",
                   "nginx": f"http://127.0.0.1:{nginx.port}/audit"}
    finally:
        await dev.close()


async def test_events_pass_both_gateways_unbuffered(
        suite: Suite, audit: Audit, fronts: dict[str, str]) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    streams = {form: await listen(suite.http, f"{base}/stream?types=project.", owner.token)
               for form, base in fronts.items()}
    # the stream's first bytes (the retry hint) come through before any event exists
    await until(lambda: all(s.retries for s in streams.values()))
    for number in range(3):
        project = await suite.project(org, owner)
        await until(lambda: all(s.has(project) for s in streams.values()))  # noqa: B023
        assert not any(s.ended.is_set() for s in streams.values())  # still open: not buffered
        assert all(len(s.events) == number + 1 for s in streams.values())
    # the dev gateway relays the service's header; nginx acts on it (X-Accel-* is its own)
    assert streams["dev"].response.headers["X-Accel-Buffering"] == "no"
    for stream in streams.values():
        assert stream.response.headers["Cache-Control"] == "no-cache"
        assert "Content-Length" not in stream.response.headers
    await close_all(list(streams.values()))


async def test_a_heartbeat_alone_passes_both_gateways(
        suite: Suite, audit: Audit, fronts: dict[str, str]) -> None:
    """A comment of a few bytes, nothing else on the stream, is not held back in a buffer."""
    owner = await suite.user()
    streams = [await listen(suite.http, f"{base}/stream", owner.token)
               for base in fronts.values()]
    await until(lambda: all("heartbeat" in s.comments for s in streams))
    assert not any(s.ended.is_set() for s in streams)
    await close_all(streams)


def test_the_stream_route_has_the_long_read_timeout_in_nginx() -> None:
    for form, path in (("compose", "deploy/nginx/argus.conf"),
                       ("k8s", "deploy/k8s/base/gateway.nginx.conf")):
        text = (ROOT / path).read_text()
        assert text == render(form)
        location = text[text.index("location = /.argus-gateway/stream {"):]
        location = location[:location.index("}")]
        assert f"proxy_read_timeout {LONG_IDLE_TIMEOUT_SECONDS}s;" in location
        assert "proxy_buffering off;" in location
        assert "internal;" in location
        assert "if ($argus_long_lived) { rewrite ^ /.argus-gateway/stream last; }" in text
    decision = GATEWAY.decide("/audit/stream?types=wallet.")
    assert decision.rule.long_lived and decision.target == "/stream?types=wallet."
    assert not GATEWAY.decide("/audit/events").rule.long_lived
    assert not GATEWAY.decide("/audit/streams").rule.long_lived
