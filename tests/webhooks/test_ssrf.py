"""SSRF defence: every special-purpose range and IPv4 embedding refused (the pure function, never
connected), refusals at endpoint creation and change and again at delivery time (a changed DNS
answer, a narrowed allow-list) with no connection made, and a target's answer shown only as a
short text excerpt. Every test runs under the loopback-only connect guard (conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared.settings import Settings
from argus_webhooks import ranges, ssrf
from argus_webhooks.app import create_app
from support.netguard import ConnectGuard
from support.suite import Suite, User
from support.webhooks_service import Receiver, Webhooks, webhooks_config

SETTING = "ARGUS_WEBHOOKS_ALLOW_NETS"
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]

# one sample per entry of the IANA IPv4 and IPv6 special-purpose registries (and of the blocks
# ranges.py adds), then the IPv4 embeddings with a refused and a public IPv4 inside, the
# metadata addresses, and public addresses that must be allowed: (address, part of the reason,
# or None when allowed)
SAMPLES: list[tuple[str, str | None]] = [
    ("0.1.2.3", '"this network"'),
    ("0.0.0.0", "unspecified"),
    ("10.1.2.3", "private-use address (10.0.0.0/8"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    ("127.0.0.1", "loopback address (127.0.0.0/8"),
    ("127.255.0.9", "loopback"),
    ("169.254.1.1", "link-local"),
    ("172.16.5.4", "private-use address (172.16.0.0/12"),
    ("192.0.0.100", "IETF protocol assignment"),
    ("192.0.0.1", "service continuity"),
    ("192.0.0.8", "dummy address"),
    ("192.0.0.9", "PCP anycast"),
    ("192.0.0.10", "TURN anycast"),
    ("192.0.0.170", "NAT64/DNS64 discovery"),
    ("192.0.0.171", "NAT64/DNS64 discovery"),
    ("192.0.2.1", "documentation (TEST-NET-1)"),
    ("192.31.196.1", "AS112 anycast"),
    ("192.52.193.1", "AMT anycast"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.88.99.2", "6a44 relay anycast"),
    ("192.168.1.1", "private-use address (192.168.0.0/16"),
    ("192.175.48.1", "AS112 direct delegation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"),
    ("198.51.100.1", "documentation (TEST-NET-2)"),
    ("203.0.113.1", "documentation (TEST-NET-3)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("::1", "loopback address (::1/128"),
    ("::", "unspecified address (::/128"),
    ("::ffff:127.0.0.1", "IPv4-mapped address embedding a loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped address embedding a private-use"),
    ("::ffff:100.64.0.1", "IPv4-mapped address embedding a shared address space"),
    ("::ffff:8.8.8.8", "IPv4-mapped address (::ffff:0:0/96"),
    ("::127.0.0.1", "IPv4-compatible address embedding a loopback"),
    ("::8.8.8.8", "IPv4-compatible address (::/96"),
    ("::ffff:0:7f00:1", "IPv4-translated address embedding a loopback"),
    ("::ffff:0:808:808", "IPv4-translated address (::ffff:0:0:0/96"),
    ("64:ff9b::7f00:1", "NAT64 address embedding a loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 address embedding a cloud metadata"),
    ("64:ff9b::c0a8:101", "NAT64 address embedding a private-use"),
    ("64:ff9b::808:808", None),  # the well-known NAT64 prefix with a public IPv4: reachable
    ("64:ff9b:1::7f00:1", "local-use NAT64"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy IPv6 prefix"),
    ("2001:5::1", "IETF protocol assignment"),
    ("2001:0:808:808::fefe:fefe", "Teredo address (2001::/32"),  # server and client public
    ("2001:0:a00:1::fefe:fefe", "Teredo address (server) embedding a private-use"),
    ("2001:0:808:808::80ff:fffe", "Teredo address (client) embedding a loopback"),
    ("2001:1::1", "PCP anycast"),
    ("2001:1::2", "TURN anycast"),
    ("2001:1::3", "DNS-SD SRP anycast"),
    ("2001:2::1", "benchmarking"),
    ("2001:3::1", "AMT anycast"),
    ("2001:4:112::1", "AS112 anycast"),
    ("2001:10::1", "deprecated ORCHID"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:30::1", "drone remote ID"),
    ("2001:db8::1", "documentation address (2001:db8::/32"),
    ("2002:7f00:1::", "6to4 address embedding a loopback"),
    ("2002:a00:1::1", "6to4 address embedding a private-use"),
    ("2002:a9fe:a9fe::", "6to4 address embedding a cloud metadata"),
    ("2002:808:808::1", "6to4 address (2002::/16"),  # a public IPv4 inside: still via a relay
    ("2620:4f:8000::1", "AS112 direct delegation"),
    ("3fff::1", "documentation address (3fff::/20"),
    ("5f00::1", "segment routing"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("1000::1", "reserved IPv6 address (::/3"),
    ("4000::1", "reserved IPv6 address (4000::/2"),
    ("8000::1", "reserved IPv6 address (8000::/1"),
    ("2a00:1450:4001::5efe:7f00:1", "ISATAP address embedding a loopback"),
    ("2a00:1450:4001:0:200:5efe:a00:1", "ISATAP address embedding a private-use"),
    ("2a00:1450:4001::5efe:808:808", None),  # an ISATAP interface id with a public IPv4
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),  # Azure's WireServer: a public address
    ("fd00:ec2::254", "cloud metadata"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.215.14", None),
    ("100.63.255.255", None),  # just below the shared address space
    ("100.128.0.1", None),  # just above it
    ("2606:4700::1111", None),
    ("2001:4860:4860::8888", None),
    ("2a00:1450:4001:830::200e", None),
]


@pytest.mark.parametrize(("address", "reason"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_special_purpose_range_and_embedding(address: str, reason: str | None) -> None:
    found = ssrf.refused_reason(ipaddress.ip_address(address), ())
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found, found


def test_every_range_of_the_tables_has_a_sample() -> None:
    sampled = {ranges.special(ipaddress.ip_address(a)) for a, _ in SAMPLES}
    missing = [str(r.network) for r in (*ranges.IPV4, *ranges.IPV6) if r not in sampled]
    assert not missing


def test_the_tables_follow_iana_where_python_disagrees() -> None:
    """Python's is_global calls these global (3.11) or not (later releases); the tables decide."""
    for address in ("100.64.0.1", "192.0.0.8", "3fff::1", "2002:7f00:1::", "224.0.0.1"):
        assert ssrf.refused_reason(ipaddress.ip_address(address), ()) is not None, address


def test_only_a_refused_loopback_names_the_allow_list_setting() -> None:
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert SETTING in (ssrf.refused_reason(ipaddress.ip_address(address), ()) or "")
    for address in ("10.1.2.3", "2002:7f00:1::", "169.254.169.254"):
        assert SETTING not in (ssrf.refused_reason(ipaddress.ip_address(address), ()) or "")


@pytest.mark.parametrize(("address", "allow", "allowed"), [
    ("127.0.0.1", "127.0.0.0/8", True),
    ("::ffff:127.0.0.1", "127.0.0.0/8", True),  # the same destination
    ("::1", "::1/128", True),
    ("100.64.0.1", "100.64.0.0/10", True),
    ("fe80::1%eth0", "fe80::/10", True),
    ("127.0.0.1", "::/0", False),  # another address family covers nothing
    ("10.0.0.1", "127.0.0.0/8", False),
    ("2002:7f00:1::", "127.0.0.0/8", False),  # the 6to4 address is not 127.0.0.1
    ("169.254.169.254", "169.254.0.0/16", False),  # metadata only as exactly itself
    ("169.254.169.254", "169.254.169.254/32", True),
    ("fd00:ec2::254", "fc00::/7", False),
])
def test_the_allow_list_is_the_only_way_in(address: str, allow: str, allowed: bool) -> None:
    reason = ssrf.refused_reason(ipaddress.ip_address(address), [ipaddress.ip_network(allow)])
    assert (reason is None) is allowed, reason


@dataclass
class FakeDNS:
    """An injected resolver: names answer what the test says, and every question is kept."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


async def test_a_name_is_refused_if_any_of_its_addresses_is() -> None:
    dns = FakeDNS({"mixed.argus.test": ["93.184.215.14", "10.9.8.7"],
                   "public.argus.test": ["2606:4700::1111", "93.184.215.14"],
                   "empty.argus.test": [], "odd.argus.test": ["not an address"]})
    with pytest.raises(ssrf.Refused) as refused:
        await ssrf.resolve_checked("mixed.argus.test", 443, (), dns)
    assert "resolves to a private-use address" in str(refused.value)
    assert "10.9.8.7" not in str(refused.value)  # internal DNS answers are not shown
    assert await ssrf.resolve_checked("public.argus.test", 443, (), dns) == [
        "2606:4700::1111", "93.184.215.14"]
    for name in ("empty.argus.test", "odd.argus.test", "nowhere.argus.test"):
        with pytest.raises(ssrf.Refused, match="does not resolve"):
            await ssrf.resolve_checked(name, 443, (), dns)
    with pytest.raises(ssrf.Refused, match=f"is a loopback address .*{SETTING}"):
        await ssrf.resolve_checked("[::1]", 443, (), dns)
    assert "[::1]" not in dns.asked  # a literal is never resolved


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def webhooks_service(suite: Suite, settings_for: Callable[..., Settings],
                           **config: Any) -> AsyncIterator[Webhooks]:
    """The webhooks service with `config` and its own receiver at `/hook`."""
    receiver = Receiver()
    target = web.Application()
    target.router.add_post("/hook", receiver.handle)
    async with serving(target) as receiving:
        receiver.url = str(receiving.make_url("/hook"))
        app = create_app(settings_for("webhooks"), webhooks_config(**config),
                         auth_url=suite.auth.base)
        async with serving(app) as server:
            yield Webhooks(str(server.make_url("")).rstrip("/"), suite, app, receiver)


async def new_org(suite: Suite) -> tuple[User, str, str]:
    owner = await suite.user()
    org = await suite.org(owner)
    return owner, org, await suite.switch(owner, org)


async def add_endpoint(webhooks: Webhooks, org: str, token: str, url: str) -> tuple[int, Any]:
    return await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", token,
                               {"url": url, "event_types": ["project.created"]})


async def remove_endpoints(webhooks: Webhooks, org: str, token: str) -> None:
    """The org's endpoints and their deliveries gone, so that no later test's service retries
    them (with the system resolver)."""
    _, endpoints = await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints", token)
    for endpoint in endpoints:
        status, _ = await webhooks.call(
            "DELETE", f"/orgs/{org}/webhooks/endpoints/{endpoint['id']}", token)
        assert status == 204


async def first_attempt(webhooks: Webhooks, org: str, token: str, endpoint_id: str,
                        timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, deliveries = await webhooks.call(
            "GET", f"/orgs/{org}/webhooks/endpoints/{endpoint_id}/deliveries", token)
        if deliveries:
            _, log = await webhooks.call(
                "GET", f"/orgs/{org}/webhooks/deliveries/{deliveries[0]['id']}/attempts", token)
            if log:
                return log[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no attempt was logged for endpoint {endpoint_id}")


REFUSED_AT_CREATION = [
    ("http://100.64.0.1/x", "shared address space"),
    ("http://[2002:7f00:1::]/x", "6to4 address embedding a loopback"),
    ("http://[3fff::1]/", "documentation"),
    ("http://192.0.0.8/x", "dummy"),
    ("http://[::ffff:100.64.0.1]/x", "IPv4-mapped address embedding a shared address space"),
    ("http://[64:ff9b::7f00:1]/x", "NAT64 address embedding a loopback"),
    ("http://127.0.0.1:9/x", f"loopback address (127.0.0.0/8, RFC 1122); {SETTING}"),
    ("http://[::1]:9/x", f"loopback address (::1/128, RFC 4291); {SETTING}"),
    ("http://intranet.argus.test/x", "intranet.argus.test resolves to a private-use address"),
    ("http://imds.argus.test/x", "imds.argus.test resolves to a cloud metadata address"),
]


async def test_refused_targets_are_refused_at_creation_and_change(
    suite: Suite, settings_for: Callable[..., Settings], loopback_only: ConnectGuard
) -> None:
    dns = FakeDNS({"intranet.argus.test": ["10.9.8.7"], "imds.argus.test": ["169.254.169.254"],
                   "public.argus.test": ["93.184.215.14"]})
    async with webhooks_service(suite, settings_for, allow_nets=(), resolve=dns) as webhooks:
        _, org, token = await new_org(suite)
        for url, reason in REFUSED_AT_CREATION:
            status, problem = await add_endpoint(webhooks, org, token, url)
            assert status == 422 and problem["title"] == "URL refused", (url, problem)
            assert reason in problem["detail"], (url, problem["detail"])
            assert "10.9.8.7" not in problem["detail"]
        assert (await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints", token))[1] == []
        status, created = await add_endpoint(webhooks, org, token, "http://public.argus.test/x")
        assert status == 201, created  # the control: a public answer is accepted
        endpoint = f"/orgs/{org}/webhooks/endpoints/{created['endpoint']['id']}"
        for url, reason in REFUSED_AT_CREATION:
            status, problem = await webhooks.call("PATCH", endpoint, token, {"url": url})
            assert status == 422 and reason in problem["detail"], (url, problem)
        _, found = await webhooks.call("GET", endpoint, token)
        assert found["url"] == "http://public.argus.test/x"
        await remove_endpoints(webhooks, org, token)
    assert not any(port == 9 for _, port in loopback_only.attempts)  # nothing was connected


async def test_a_changed_dns_answer_is_refused_at_delivery_without_connecting(
    suite: Suite, settings_for: Callable[..., Settings], loopback_only: ConnectGuard
) -> None:
    dns = FakeDNS({"hooks.argus.test": ["127.0.0.1"]})
    async with webhooks_service(suite, settings_for, allow_nets=LOOPBACK, resolve=dns) as hooks:
        control = Receiver()
        control_app = web.Application()
        control_app.router.add_post("/hook", control.handle)
        async with serving(control_app) as control_server:
            owner, org, token = await new_org(suite)
            port = int(hooks.receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
            status, created = await add_endpoint(hooks, org, token,
                                                 f"http://hooks.argus.test:{port}/hook")
            assert status == 201, created  # it resolved to an allowed address then
            control_port = control_server.port
            status, _ = await add_endpoint(hooks, org, token,
                                           str(control_server.make_url("/hook")))
            assert status == 201
            dns.answers["hooks.argus.test"] = ["10.20.30.40"]  # and now to a private one
            await suite.project(org, owner)
            attempt = await first_attempt(hooks, org, token, created["endpoint"]["id"])
            await control.wait_for(1)  # the same event did go to the allowed endpoint
            await remove_endpoints(hooks, org, token)
    assert attempt["status_code"] is None and attempt["response_body"] is None
    assert attempt["error"].startswith("refused: hooks.argus.test resolves to a private-use")
    assert "10.20.30.40" not in attempt["error"]
    assert dns.asked.count("hooks.argus.test") >= 2  # at creation and again at delivery
    assert hooks.receiver.received == []
    assert port not in loopback_only.ports()  # no connection, not even to the old address
    assert control_port in loopback_only.ports()  # the guard does see the connections made


async def test_a_narrowed_allow_list_is_refused_at_delivery_without_connecting(
    suite: Suite, settings_for: Callable[..., Settings], loopback_only: ConnectGuard
) -> None:
    async with webhooks_service(suite, settings_for, allow_nets=LOOPBACK) as hooks:
        owner, org, token = await new_org(suite)
        status, created = await add_endpoint(hooks, org, token, hooks.receiver.url)
        assert status == 201, created
        deliverer = hooks.deliverer
        deliverer.config = dataclasses.replace(deliverer.config, allow_nets=())
        await suite.project(org, owner)
        attempt = await first_attempt(hooks, org, token, created["endpoint"]["id"])
        await remove_endpoints(hooks, org, token)
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused: 127.0.0.1 is a loopback address")
    assert SETTING in attempt["error"]
    assert hooks.receiver.received == []
    port = int(hooks.receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    assert port not in loopback_only.ports()


def answering(body: bytes, content_type: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handle


async def raw_target(answer: bytes) -> asyncio.Server:
    """A loopback target that reads one request and answers `answer` as it is (no framing
    checks: a missing Content-Type, or not valid HTTP at all)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def is_shown_text(text: str) -> bool:
    return not any(unicodedata.category(ch).startswith("C") for ch in text)


def raw_answer(headers: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body)


async def test_a_targets_answer_is_shown_only_as_a_short_text_excerpt(
    webhooks: Webhooks
) -> None:
    big = "\u202e\x1b[31mline one\nline two\t" + "A" * 200_000
    binary = bytes(range(256)) * 400
    target = web.Application()
    for path, body, content_type in (
        ("/big", big.encode(), "text/plain; charset=utf-8"),
        ("/wide", ("é" * 100_000).encode(), "text/plain"),
        ("/latin1", '{"name": "Zoë"}'.encode("latin-1"), "application/json; charset=latin-1"),
        ("/binary", binary, "application/octet-stream"),
        ("/image", b"\x89PNG\r\n\x1a\n" + binary, "image/png"),
    ):
        target.router.add_post(path, answering(body, content_type))
    untyped_binary = await raw_target(raw_answer(b"", b"ok\x00" + binary))
    untyped_text = await raw_target(raw_answer(b"", b"fine, thanks " * 100))
    malformed = await raw_target(b"HTTP/1.1 2x0 SECRET-TOKEN-abc\r\n\r\n")
    raw = {name: f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
           for name, server in (("untyped-binary", untyped_binary),
                                ("untyped-text", untyped_text), ("malformed", malformed))}
    try:
        async with serving(target) as server:
            owner, org, token = await new_org(webhooks.suite)
            urls = {path: str(server.make_url(path))
                    for path in ("/big", "/wide", "/latin1", "/binary", "/image")} | raw
            ids = {}
            for name, url in urls.items():
                status, created = await add_endpoint(webhooks, org, token, url)
                assert status == 201, created
                ids[name] = created["endpoint"]["id"]
            await webhooks.suite.project(org, owner)
            seen = {name: await first_attempt(webhooks, org, token, endpoint_id)
                    for name, endpoint_id in ids.items()}
            await remove_endpoints(webhooks, org, token)
    finally:
        for raw_server in (untyped_binary, untyped_text, malformed):
            raw_server.close()
    shown = {name: attempt["response_body"] for name, attempt in seen.items()}
    assert shown["/big"] == ("\ufffd\ufffd[31mline one line two " + "A" * 256)[:256]
    assert shown["/wide"] == "é" * 256
    assert shown["/latin1"] == '{"name": "Zoë"}'
    assert shown["/binary"] is None and shown["/image"] is None
    assert shown["untyped-binary"] is None
    assert shown["untyped-text"] == ("fine, thanks " * 100)[:256]
    for text in shown.values():
        assert text is None or (len(text) <= 256 and is_shown_text(text))
    assert all(seen[name]["status_code"] == 200 for name in shown if name != "malformed")
    assert seen["malformed"]["status_code"] is None and shown["malformed"] is None
    assert "SECRET" not in seen["malformed"]["error"]  # aiohttp's parser error quotes the bytes
    assert "not valid HTTP" in seen["malformed"]["error"]


async def test_stored_answers_are_capped_when_shown(webhooks: Webhooks, admin: Any) -> None:
    """Attempts logged before the cap (up to 1000 characters, controls kept) are shown capped."""
    _owner, org, token = await new_org(webhooks.suite)
    status, created = await add_endpoint(webhooks, org, token, webhooks.receiver.url)
    assert status == 201
    org_id, delivery = uuid.UUID(org), uuid.uuid4()
    await admin.execute(
        "insert into webhooks.deliveries (org_id, id, endpoint_id, event_id, event_type, payload,"
        " status, next_attempt_at) values ($1, $2, $3, gen_random_uuid(), 'x.y', '\\x7b7d',"
        " 'exhausted', now())", org_id, delivery, uuid.UUID(created["endpoint"]["id"]))
    await admin.execute(
        "insert into webhooks.attempts (org_id, delivery_id, n, started_at, status_code,"
        " latency_ms, response_body) values ($1, $2, 1, now(), 500, 3, $3)",
        org_id, delivery, "\x07\u202e" + "B" * 998)
    _, log = await webhooks.call("GET", f"/orgs/{org}/webhooks/deliveries/{delivery}/attempts",
                                 token)
    assert log[0]["response_body"] == "\ufffd\ufffd" + "B" * 254
