"""The three gateways the one table makes, sent the same requests: `argus up`'s gateway
(`argus_shared.gateway`), a real nginx with the compose form and a real nginx with the Kubernetes
form (`argus_shared.gateway_nginx`, rendered here with the upstreams on loopback echo services,
the only change from the committed files). For every target in CASES, all three must give the
expected status, send a routed request to the expected service with the expected upstream target,
send a refused one nowhere, and never pass on a client's X-User-Token or X-Forwarded-For."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared import settings
from argus_shared.embedded import free_port
from argus_shared.gateway import create_gateway
from argus_shared.gateway_nginx import render
from argus_shared.gateway_rules import GATEWAY, OPENAPI_FILE, GatewayRules
from support.nginx import run_nginx

SERVICES = tuple(s.name for s in GATEWAY.services)
FORMS = ("dev", "compose", "k8s")
CHUNK = 64 * 1024
# the gateway's own /openapi.json, as committed (tests/test_openapi.py keeps it current)
DOCUMENT = (Path(__file__).resolve().parents[2] / OPENAPI_FILE).read_text()


@dataclass(frozen=True)
class Case:
    target: str  # sent exactly so, as latin-1: "caf\xc3\xa9" is the raw UTF-8 bytes of "café"
    status: int
    service: str | None = None  # routed: the service that must get it ...
    upstream: str | None = None  # ... with this target


def to(target: str, service: str, upstream: str) -> Case:
    return Case(target, 200, service, upstream)


def refused(status: int, *targets: str) -> list[Case]:
    return [Case(target, status) for target in targets]


CASES: list[Case] = [
    # routed, the prefix stripped and nothing else touched
    to("/auth/login", "auth", "/login"),
    to("/auth/", "auth", "/"),
    to("/auth/x/", "auth", "/x/"),
    to("/auth/sessions?limit=5&cursor=a%2Fb", "auth", "/sessions?limit=5&cursor=a%2Fb"),
    to("/auth/x?", "auth", "/x"),
    to("/auth/x?next=/internal/../metrics", "auth", "/x?next=/internal/../metrics"),
    to("/auth/x;a=b", "auth", "/x;a=b"),
    to("/auth/x%3Fy", "auth", "/x%3Fy"),
    to("/auth/metricsx", "auth", "/metricsx"),
    to("/auth/%252e%252e/internal", "auth", "/%252e%252e/internal"),
    to("/tenant/orgs/abc?x=1&y=%20", "tenant-api", "/orgs/abc?x=1&y=%20"),
    to("/tenant/orgs/%41bc", "tenant-api", "/orgs/%41bc"),
    to("/tenant/orgs/internal", "tenant-api", "/orgs/internal"),
    to("/tenant/internal-notes", "tenant-api", "/internal-notes"),
    to("/audit/events?since=2024-01-01T00:00:00Z", "audit", "/events?since=2024-01-01T00:00:00Z"),
    to("/audit/metrics.json", "audit", "/metrics.json"),
    to("/audit/stream", "audit", "/stream"),  # the long-lived route (event streams)
    to("/audit/stream?types=org.&since=5", "audit", "/stream?types=org.&since=5"),
    to("/audit/stream?", "audit", "/stream"),
    to("/audit/streams", "audit", "/streams"),
    to("/webhooks/endpoints", "webhooks", "/endpoints"),
    to("/webhooks/in/%25", "webhooks", "/in/%25"),
    to("/files/objects/o/u/obj", "files", "/objects/o/u/obj"),
    to("/files/objects/a%20b", "files", "/objects/a%20b"),
    to("/files/objects/caf%C3%A9", "files", "/objects/caf%C3%A9"),
    to("/files/objects/%F0%9F%94%92", "files", "/objects/%F0%9F%94%92"),
    to("/files/objects/a~b!$&'()*+,=:@", "files", "/objects/a~b!$&'()*+,=:@"),
    to("/tenant/docs", "tenant-api", "/docs"),  # each service's page, and its assets
    to("/tenant/docs/assets/swagger-ui-bundle.js", "tenant-api",
       "/docs/assets/swagger-ui-bundle.js"),
    to("/auth/docs/assets/argus-docs.js", "auth", "/docs/assets/argus-docs.js"),
    to("/files/openapi.json", "files", "/openapi.json"),
    to("/.well-known/jwks.json", "auth", "/.well-known/jwks.json"),
    to("/.well-known/jwks.json?v=2", "auth", "/.well-known/jwks.json?v=2"),
    to("/auth/.well-known/jwks.json", "auth", "/.well-known/jwks.json"),
    to("http://gateway.test/auth/login", "auth", "/login"),  # absolute form
    to("/files/objects/" + "%C3%A9" * 600, "files", "/objects/" + "%C3%A9" * 600),  # long
    # the gateway's own
    Case("/healthz", 200),
    Case("/healthz?probe=1", 200),
    Case("/openapi.json", 200),
    Case("/openapi.json?v=1", 200),
    # /internal and /metrics of every service, however spelled
    *refused(
        404,
        "/auth/internal/whoami", "/auth/INTERNAL/whoami", "/auth/Internal/whoami",
        "/auth/%69nternal/whoami", "/auth/%49NTERNAL/whoami",
        "/auth/%69%6e%74%65%72%6e%61%6c/whoami", "/auth/%49%4E%54%45%52%4E%41%4C",
        "/auth/internal", "/auth/internal/", "/auth/internal?x=1", "/auth/internal;x=1",
        "/auth/metrics", "/auth/METRICS", "/auth/%6detrics", "/auth/%4D%45%54%52%49%43%53",
        "/auth/metrics/", "/auth/metrics;jsessionid=1", "/tenant/metrics?format=text",
        "/tenant/internal/whoami", "/audit/metrics", "/audit/internal/whoami",
        "/webhooks/metrics", "/webhooks/Internal/whoami", "/files/metrics",
        "/files/internal/whoami", "http://gateway.test/auth/internal/whoami",
    ),
    # nothing routes there
    *refused(
        404,
        "/", "/nowhere/x", "/auth", "/auth?x=1", "/AUTH/login", "/%61uth/login",
        "/tenant-api/orgs", "/internal/whoami", "/metrics", "/.well-known/JWKS.json",
        "/.well-known/jwks.jsonx", "/healthz/x", "/openapi.jsonx", "/openapi.json/x",
    ),
    # empty and dot segments
    *refused(
        400,
        "//auth/login", "/auth//internal/whoami", "/auth/./internal/whoami",
        "/auth/x/../internal/whoami", "/auth/..", "/auth/.", "/auth/x/..?y", "/..",
        "/auth/../..",
    ),
    # encoded dots and separators (%2F is refused, never decoded and routed)
    *refused(
        400,
        "/auth/x/%2e%2e/internal/whoami", "/auth/%2E%2E/internal", "/auth/.%2e/internal",
        "/auth/%2e/internal", "/auth/internal%2fwhoami", "/auth/x%2F..%2Finternal/whoami",
        "/auth/x%2f", "/auth/x%2F", "/auth/x%5c..%5cinternal", "/auth/x%5C",
        "/auth/x\\..\\internal",
    ),
    # NUL, controls, invalid and overlong percent sequences, raw bytes that are not pchars
    *refused(
        400,
        "/auth/x%00", "/auth/x%0a", "/auth/x%0D%0AX-User-Token:%20forged", "/auth/x%7f",
        "/auth/x%1b", "/auth/x%zz", "/auth/x%4", "/auth/x%", "/auth/%g0",
        "/auth/%c0%ae%c0%ae/internal", "/auth/%c0%afinternal", "/auth/%e0%80%ae",
        "/auth/%f0%80%80%ae", "/auth/%ed%a0%80", "/auth/%f8%80%80%80%80", "/auth/%ff",
        "/auth/%c3", "/auth/%a9", "/auth/%c3%28", "/auth/" + "%C3%A9" * 600 + "%c0",
        "/auth/caf\xc3\xa9", "/auth/x|y", "/auth/x{y}", '/auth/x"y', "/auth/x^y",
        "/auth/x#frag", "/auth/x?q#frag",
    ),
    # request targets that are not origin-form paths
    *refused(400, "*", "auth/login", "http://user@gateway.test/auth/login",
             "http://gateway.test?x=1"),
]


@dataclass
class Seen:
    service: str
    target: str
    headers: list[tuple[str, str]]


@dataclass
class Backend:
    """A service stand-in that records what reached it and echoes it back."""

    service: str
    seen: list[Seen]
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    client_read_first: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        @web.middleware
        async def every_target(request: web.Request, handler: object) -> web.StreamResponse:
            del handler
            self.seen.append(Seen(self.service, request.raw_path, list(request.headers.items())))
            if request.raw_path == "/upload":
                return await self.upload(request)
            if request.raw_path == "/download":
                return await self.download(request)
            await request.read()
            return web.json_response({"service": self.service, "target": request.raw_path})

        return web.Application(middlewares=[every_target])

    async def upload(self, request: web.Request) -> web.Response:
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
            self.first_chunk.set()
        return web.json_response({"received": received})

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"a" * CHUNK)
        # the rest only once the client has read the first part through the gateway
        await asyncio.wait_for(self.client_read_first.wait(), 10)
        await response.write(b"b" * CHUNK)
        await response.write_eof()
        return response


@dataclass
class Backends:
    by_service: dict[str, Backend]
    servers: dict[str, TestServer]
    seen: list[Seen]

    def urls(self) -> dict[str, str]:
        return {s: str(server.make_url("")).rstrip("/") for s, server in self.servers.items()}

    def addresses(self) -> dict[str, str]:
        return {s: f"127.0.0.1:{server.port}" for s, server in self.servers.items()}

    def reset(self) -> None:
        self.seen.clear()
        for backend in self.by_service.values():
            backend.first_chunk = asyncio.Event()
            backend.client_read_first = asyncio.Event()


@pytest.fixture(scope="module")
async def backends() -> AsyncIterator[Backends]:
    seen: list[Seen] = []
    by_service = {s: Backend(s, seen) for s in SERVICES}
    servers = {s: TestServer(b.app(), host="127.0.0.1") for s, b in by_service.items()}
    for server in servers.values():
        await server.start_server()
    yield Backends(by_service, servers, seen)
    for server in servers.values():
        await server.close()


@contextmanager
def readable_copy(text: str) -> Iterator[Path]:
    """`text` in a file nginx can read when it runs as nobody (CI runs as root)."""
    directory = Path(tempfile.mkdtemp(prefix="argus-openapi-"))
    try:
        os.chmod(directory, 0o755)  # noqa: S103 - nginx (as nobody) must read what is in it
        path = directory / "openapi.json"
        path.write_text(text)
        os.chmod(path, 0o644)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def gateways(
    config: pytest.Config, backends: Backends, rules: GatewayRules = GATEWAY, *,
    urls: Mapping[str, str] | None = None, addresses: Mapping[str, str] | None = None,
    trusted_proxies: Sequence[str] | None = None,
) -> AsyncIterator[dict[str, int]]:
    """The three gateways of `rules` in front of `backends`: form -> port."""
    urls = backends.urls() if urls is None else urls
    addresses = backends.addresses() if addresses is None else addresses
    dev = TestServer(create_gateway(urls, rules, json.loads(DOCUMENT)), host="127.0.0.1")
    await dev.start_server()
    try:
        with ExitStack() as stack:
            document = str(stack.enter_context(readable_copy(DOCUMENT)))
            compose = stack.enter_context(run_nginx(
                config, lambda listen: render("compose", rules, upstreams=addresses,
                                              listen=listen, openapi_file=document),
                compose_form=True,
            ))
            k8s = stack.enter_context(run_nginx(
                config, lambda listen: render("k8s", rules, upstreams=addresses, listen=listen,
                                              trusted_proxies=trusted_proxies,
                                              openapi_file=document),
            ))
            assert dev.port is not None  # started
            yield {"dev": dev.port, "compose": compose.port, "k8s": k8s.port}
    finally:
        await dev.close()


@pytest.fixture(scope="module")
async def three(pytestconfig: pytest.Config, backends: Backends) -> AsyncIterator[dict[str, int]]:
    async with gateways(pytestconfig, backends) as ports:
        yield ports


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def send(
    port: int, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
    method: str = "GET",
) -> Answer:
    """One request written byte for byte as given (no client-side normalisation); the answer
    is read by its framing, not to the end of the connection (a server may linger on it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", "Connection: close",
             *(f"{name}: {value}" for name, value in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    try:
        return await asyncio.wait_for(_read_answer(reader), 10)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *header_lines = head.removesuffix("\r\n\r\n").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
    else:
        body = await reader.read()
    return Answer(int(status_line.split(" ")[1]), headers, body)


FORGED = (("X-User-Token", "v1.k1.eyJzdWIiOiJ1c2VyOjEifQ.c2ln"),
          ("X-Forwarded-For", "10.9.9.9"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c.target[:60]))
async def test_the_three_gateways_route_and_refuse_alike(
    three: dict[str, int], backends: Backends, case: Case
) -> None:
    statuses, reached, bodies = {}, {}, {}
    for form, port in three.items():
        backends.reset()
        answer = await send(port, case.target, FORGED)
        statuses[form] = answer.status
        reached[form] = list(backends.seen)
        bodies[form] = (answer.headers.get("content-type"), answer.body)
    assert statuses == dict.fromkeys(FORMS, case.status)
    for form, seen in reached.items():
        if case.service is None:
            assert seen == [], f"{form} sent {case.target!r} to {seen}"
            continue
        assert [(s.service, s.target) for s in seen] == [(case.service, case.upstream)], form
        names = {name.lower(): value for name, value in seen[0].headers}
        assert "x-user-token" not in names, form
        assert names["x-forwarded-for"] == "127.0.0.1", form
    if case.status == 404 or case.target.startswith(("/healthz", "/openapi.json")):
        # answered by the table's rules: the same document from all three
        assert len(set(bodies.values())) == 1, {f: b[:200] for f, (_, b) in bodies.items()}
        content_type, body = bodies["dev"]
        assert content_type is not None
        if case.status == 404:
            assert content_type.startswith("application/problem+json")
            assert json.loads(body) == {"type": "about:blank", "title": "Not Found",
                                        "status": 404}
        elif case.target.startswith("/openapi.json"):
            assert content_type.startswith("application/json")
            assert body == DOCUMENT.encode()
        else:
            assert content_type.startswith("application/json")
            assert json.loads(body) == {"status": "ok"}


def test_the_case_table_covers_every_service_and_refusal() -> None:
    assert SERVICES == settings.SERVICES
    assert len(CASES) >= 60
    assert len({c.target for c in CASES}) == len(CASES)
    assert {c.service for c in CASES if c.service} == set(SERVICES)
    decided = {GATEWAY.decide(c.target).rule.name for c in CASES}
    assert decided == {r.name for r in GATEWAY.rules} | {"default"}


async def test_the_gateway_document_is_only_read(
    three: dict[str, int], backends: Backends
) -> None:
    for form, port in three.items():
        backends.reset()
        async with aiohttp.ClientSession() as session:
            async with session.head(f"http://127.0.0.1:{port}/openapi.json") as head:
                assert head.status == 200, form
        answer = await send(port, "/openapi.json", [("Content-Length", "0")], method="POST")
        assert answer.status == 405, form
        assert answer.headers["allow"] == "GET, HEAD", form
        assert answer.json() == {"type": "about:blank", "title": "Method Not Allowed",
                                 "status": 405}, form
        assert backends.seen == [], form


async def test_no_client_identity_or_forwarding_header_reaches_a_service(
    three: dict[str, int], backends: Backends
) -> None:
    forged = [(name, "10.9.9.9") for name in GATEWAY.stripped_headers]
    forged += [("x-user-token", "second-copy"), ("X-USER-TOKEN", "third-copy"),
               ("X_User_Token", "underscored"), ("X-User-Token ", "trailing-space"),
               ("Authorization", "Bearer keep-me"), ("X-Request-Id", "client-chosen-id-1")]
    for form, port in three.items():
        backends.reset()
        answer = await send(port, "/tenant/orgs", [h for h in forged if h[0] != "X-User-Token "])
        assert answer.status == 200, form
        [seen] = backends.seen
        names = {name.lower() for name, _ in seen.headers}
        values = {name.lower(): value for name, value in seen.headers}
        for name in GATEWAY.stripped_headers:
            carried = name in dict(GATEWAY.set_headers)
            assert (name.lower() in names) == carried, (form, name)
        assert "x_user_token" not in names and "x-user-token" not in names, form
        assert not any("token" in name and name != "authorization" for name in names), form
        assert [v for n, v in seen.headers if n.lower() == "x-forwarded-for"] == ["127.0.0.1"]
        assert values["x-forwarded-proto"] == "http", form
        assert values["x-forwarded-host"] == "gateway.test", form
        assert values["authorization"] == "Bearer keep-me", form
        assert values["x-request-id"] == "client-chosen-id-1", form
        backends.reset()
        await send(port, "/tenant/orgs", [("X-Request-Id", "bad id\tnot kept")])
        [seen] = backends.seen
        given = dict((n.lower(), v) for n, v in seen.headers)["x-request-id"]
        assert given != "bad id\tnot kept" and len(given) >= 8, form


async def test_a_header_with_a_space_before_the_colon_is_refused_by_all(
    three: dict[str, int], backends: Backends
) -> None:
    """`X-User-Token : x` is not a way past the strip: every parser refuses it (RFC 9112)."""
    for form, port in three.items():
        backends.reset()
        answer = await send(port, "/tenant/orgs", [("X-User-Token ", "forged")])
        assert answer.status == 400, form
        assert backends.seen == [], form


async def test_request_bodies_stream_before_the_client_finishes(
    three: dict[str, int], backends: Backends
) -> None:
    for form, port in three.items():
        backends.reset()
        files = backends.by_service["files"]

        async def body(files: Backend = files) -> AsyncIterator[bytes]:
            yield b"x" * CHUNK
            # a buffering gateway never passes the first chunk on: this wait would time out
            await asyncio.wait_for(files.first_chunk.wait(), 10)
            for _ in range(31):
                yield b"x" * CHUNK

        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/files/upload"
            async with session.post(url, data=body()) as response:
                assert response.status == 200, form
                assert (await response.json())["received"] == 32 * CHUNK, form


async def test_response_bodies_stream_before_the_service_finishes(
    three: dict[str, int], backends: Backends
) -> None:
    for form, port in three.items():
        backends.reset()
        files = backends.by_service["files"]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/files/download") as response:
                first = await asyncio.wait_for(response.content.readexactly(CHUNK), 10)
                files.client_read_first.set()
                rest = await response.content.read()
        assert (first, rest) == (b"a" * CHUNK, b"b" * CHUNK), form


async def test_a_declared_body_over_the_limit_is_413_before_anything_is_sent(
    three: dict[str, int], backends: Backends
) -> None:
    for form, port in three.items():
        backends.reset()
        answer = await send(port, "/files/upload", [
            ("Content-Length", str(GATEWAY.max_body_bytes + 1))], method="POST")
        assert answer.status == 413, form
        assert answer.json()["title"] == "Content Too Large", form
        assert backends.seen == [], form


async def test_a_streamed_body_over_the_limit_is_413(
    pytestconfig: pytest.Config, backends: Backends
) -> None:
    """The same limit on a chunked body, with the table's limit made small for the test (all
    three rendered from that one table)."""
    small = replace(GATEWAY, max_body_bytes=4 * CHUNK)
    async with gateways(pytestconfig, backends, small) as ports:
        for form, port in ports.items():
            for size, status in ((4 * CHUNK, 200), (4 * CHUNK + 1, 413)):
                backends.reset()
                async with aiohttp.ClientSession() as session:
                    async def body(size: int = size) -> AsyncIterator[bytes]:
                        yield b"x" * (size - CHUNK)
                        yield b"x" * CHUNK

                    url = f"http://127.0.0.1:{port}/files/upload"
                    async with session.post(url, data=body()) as response:
                        assert response.status == status, (form, size)


async def test_a_service_that_is_down_is_a_502_problem_from_all(
    pytestconfig: pytest.Config, backends: Backends
) -> None:
    closed = free_port()
    urls = backends.urls() | {"audit": f"http://127.0.0.1:{closed}"}
    addresses = backends.addresses() | {"audit": f"127.0.0.1:{closed}"}
    async with gateways(pytestconfig, backends, urls=urls, addresses=addresses) as ports:
        for form, port in ports.items():
            answer = await send(port, "/audit/events")
            assert answer.status == 502, form
            assert answer.headers["content-type"] == "application/problem+json", form
            assert answer.json() == {"type": "about:blank", "title": "Bad Gateway",
                                     "status": 502, "detail": "audit is not answering"}, form
            assert (await send(port, "/auth/login")).status == 200, form


async def test_behind_the_ingress_the_k8s_gateway_names_the_client_the_ingress_saw(
    pytestconfig: pytest.Config, backends: Backends
) -> None:
    """In Kubernetes the gateway's peer is the ingress controller: from a trusted proxy (here
    loopback stands in for the pod network) the right-most untrusted X-Forwarded-For hop is the
    client, as the services themselves judge it; from anyone else the header is ignored."""
    async with gateways(pytestconfig, backends, trusted_proxies=("127.0.0.1/32",)) as ports:
        backends.reset()
        answer = await send(ports["k8s"], "/auth/login", [
            ("X-Forwarded-For", "198.51.100.9, 203.0.113.7, 127.0.0.1")])
        assert answer.status == 200
        [seen] = backends.seen
        assert [v for n, v in seen.headers if n.lower() == "x-forwarded-for"] == ["203.0.113.7"]
