"""The development gateway, attacked over real sockets: internal routes stay unreachable however
the path is spelled, client identity headers never reach a service, bodies stream both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared.cli.documents import gateway_document, route_table
from argus_shared.embedded import free_port
from argus_shared.gateway import create_gateway
from argus_shared.openapi import dumps
from argus_shared.runner import standard_routes
from argus_shared.settings import SERVICES
from argus_shared.web import build_app
from support.web import offline_settings

STREAM_CHUNK = 64 * 1024


class Upstream:
    """A service stand-in that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        self.first_chunk = asyncio.Event()
        self.client_read_first = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/download", self.download)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"path": request.rel_url.raw_path, "headers": dict(request.headers)})
        return web.json_response(
            {"path": request.rel_url.raw_path, "query": request.rel_url.raw_query_string,
             "method": request.method, "body": body.decode(), "headers": dict(request.headers)},
            headers={"X-Upstream": "yes"},
        )

    async def upload(self, request: web.Request) -> web.Response:
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
            self.first_chunk.set()
        return web.json_response({"received": received})

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"a" * STREAM_CHUNK)
        # the rest is only sent once the client has read the first part through the gateway
        await asyncio.wait_for(self.client_read_first.wait(), 10)
        await response.write(b"b" * STREAM_CHUNK)
        await response.write_eof()
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, TestServer]]:
    stand_in = Upstream()
    server = TestServer(stand_in.app())
    await server.start_server()
    yield stand_in, server
    await server.close()


@pytest.fixture
async def gateway(upstream: tuple[Upstream, TestServer]) -> AsyncIterator[TestServer]:
    _, server = upstream
    base = str(server.make_url("")).rstrip("/")
    app = create_gateway({"auth": base, "tenant-api": base})
    gw = TestServer(app)
    await gw.start_server()
    yield gw
    await gw.close()


async def raw_get(server: TestServer, raw_path: str, extra: str = "") -> tuple[int, bytes]:
    """Send the request line exactly as written: no client-side path normalisation."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_routes_by_prefix_and_strips_it(
    gateway: TestServer, upstream: tuple[Upstream, TestServer]
) -> None:
    status, body = await raw_get(gateway, "/tenant/orgs/abc?x=1&y=%20")
    assert status == 200
    echoed = json.loads(body)
    assert echoed["path"] == "/orgs/abc"
    assert echoed["query"] == "x=1&y=%20"


async def test_jwks_is_routed_to_auth(gateway: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.make_url("/.well-known/jwks.json")) as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/.well-known/jwks.json"


@pytest.mark.parametrize(
    "path",
    [
        "/auth/internal/whoami",
        "/auth/INTERNAL/whoami",
        "/auth/Internal/whoami",
        "/auth/%69nternal/whoami",
        "/auth/%49NTERNAL/whoami",
        "/auth/internal",
        "/auth/metrics",
        "/auth/METRICS",
        "/auth/%6detrics",
        "/tenant/metrics?format=text",
    ],
)
async def test_internal_and_metrics_are_never_routed(
    gateway: TestServer, upstream: tuple[Upstream, TestServer], path: str
) -> None:
    status, body = await raw_get(gateway, path)
    assert status == 404
    assert upstream[0].seen == []
    assert json.loads(body)["status"] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/auth//internal/whoami",
        "/auth/./internal/whoami",
        "/auth/x/../internal/whoami",
        "/auth/x/%2e%2e/internal/whoami",
        "/auth/internal%2fwhoami",
        "/auth/x%2F..%2Finternal/whoami",
        "/auth/x%5c..%5cinternal",
        "/auth/x\\..\\internal",
        "/auth/x%00",
        "/auth/..",
    ],
)
async def test_ambiguous_paths_are_refused(
    gateway: TestServer, upstream: tuple[Upstream, TestServer], path: str
) -> None:
    status, _ = await raw_get(gateway, path)
    assert status in (400, 404)
    assert upstream[0].seen == []


async def test_unknown_prefix_is_404(
    gateway: TestServer, upstream: tuple[Upstream, TestServer]
) -> None:
    status, _ = await raw_get(gateway, "/nowhere/x")
    assert status == 404
    assert upstream[0].seen == []


async def test_client_identity_headers_never_reach_a_service(gateway: TestServer) -> None:
    forged = {
        "X-User-Token": "v1.k1.eyJzdWIiOiJ1c2VyOjEifQ.c2ln",
        "x-user-token": "second-copy",
        "X-Forwarded-For": "10.9.9.9",
        "Forwarded": "for=10.9.9.9",
        "X-Real-IP": "10.9.9.9",
        "Authorization": "Bearer keep-me",
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.make_url("/auth/sessions"), headers=forged) as response:
            seen = {k.lower(): v for k, v in (await response.json())["headers"].items()}
            assert response.headers["X-Upstream"] == "yes"
    assert "x-user-token" not in seen
    assert "forwarded" not in seen and "x-real-ip" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["authorization"] == "Bearer keep-me"
    assert seen["x-request-id"]


async def test_request_body_streams_before_the_client_finishes(
    gateway: TestServer, upstream: tuple[Upstream, TestServer]
) -> None:
    stand_in = upstream[0]

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * STREAM_CHUNK
        # a buffering gateway would never pass the first chunk on: this wait would time out
        await asyncio.wait_for(stand_in.first_chunk.wait(), 10)
        for _ in range(31):
            yield b"x" * STREAM_CHUNK

    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.make_url("/auth/upload"), data=body()) as response:
            assert response.status == 200
            assert (await response.json())["received"] == 32 * STREAM_CHUNK


async def test_response_body_streams_before_the_service_finishes(
    gateway: TestServer, upstream: tuple[Upstream, TestServer]
) -> None:
    stand_in = upstream[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.make_url("/auth/download")) as response:
            first = await asyncio.wait_for(response.content.readexactly(STREAM_CHUNK), 10)
            stand_in.client_read_first.set()
            rest = await response.content.read()
    assert first == b"a" * STREAM_CHUNK
    assert rest == b"b" * STREAM_CHUNK


async def test_a_service_that_is_down_gives_502_problem() -> None:
    app = create_gateway({"auth": f"http://127.0.0.1:{free_port()}"})
    gw = TestServer(app)
    await gw.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.make_url("/auth/healthz")) as response:
                assert response.status == 502
                assert response.content_type == "application/problem+json"
                assert "auth" in (await response.json())["detail"]
    finally:
        await gw.close()


@asynccontextmanager
async def service_apps() -> AsyncIterator[dict[str, str]]:
    """The five services' applications from their real route tables (no database: only their
    /openapi.json is asked for), on loopback: service -> base URL."""
    servers = {}
    for service in SERVICES:
        app = build_app(offline_settings(service), [*route_table(service), *standard_routes()],
                        title=f"Argus {service}")
        servers[service] = TestServer(app, host="127.0.0.1")
        await servers[service].start_server()
    try:
        yield {name: str(server.make_url("")).rstrip("/") for name, server in servers.items()}
    finally:
        for server in servers.values():
            await server.close()


async def test_the_gateway_document_merges_what_the_services_serve() -> None:
    """The dev gateway's live merge is, byte for byte, what nginx serves (the committed render,
    kept current by tests/test_openapi.py)."""
    async with service_apps() as urls:
        gw = TestServer(create_gateway(urls), host="127.0.0.1")
        await gw.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(gw.make_url("/openapi.json")) as response:
                    assert response.status == 200
                    assert response.content_type == "application/json"
                    assert await response.text() == dumps(gateway_document())
        finally:
            await gw.close()


async def test_the_gateway_document_needs_every_service() -> None:
    async with service_apps() as urls:
        down = urls | {"audit": f"http://127.0.0.1:{free_port()}"}
        gw = TestServer(create_gateway(down), host="127.0.0.1")
        await gw.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(gw.make_url("/openapi.json")) as response:
                    assert response.status == 502
                    assert (await response.json())["detail"] == "audit is not answering"
                async with session.post(gw.make_url("/openapi.json")) as response:
                    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
        finally:
            await gw.close()
