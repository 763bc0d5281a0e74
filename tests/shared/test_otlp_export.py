"""Traces leave a real service process over OTLP/HTTP only when an endpoint is configured."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.processes import Proc, service_command, wait_ready

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def traces(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), received
    await server.close()


async def run_and_call(stack: Stack, tmp_path: Path, extra: dict[str, str]) -> None:
    env = {**stack.service_environment("webhooks"), "ARGUS_PORT": str(free_port()),
           "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}
    base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
    proc = Proc.start(service_command("webhooks"), env, tmp_path / "svc.log")
    try:
        await wait_ready(f"{base}/readyz", proc)
        parent = f"00-{TRACE_ID}-b7ad6b7169203331-01"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/openapi.json", headers={"traceparent": parent}) as r:
                assert r.status == 200
        await asyncio.sleep(1.0)
        proc.signal(signal.SIGTERM)  # shutdown flushes what is left
        await asyncio.to_thread(proc.wait, 15)
    finally:
        proc.kill()


async def test_spans_are_exported_when_an_endpoint_is_set(
    stack: Stack, tmp_path: Path, collector: tuple[str, list[bytes]]
) -> None:
    url, received = collector
    await run_and_call(stack, tmp_path, {"ARGUS_OTLP_ENDPOINT": url})
    assert any(bytes.fromhex(TRACE_ID) in body for body in received), len(received)


async def test_nothing_is_exported_without_an_endpoint(
    stack: Stack, tmp_path: Path, collector: tuple[str, list[bytes]]
) -> None:
    _, received = collector
    await run_and_call(stack, tmp_path, {})
    assert received == []
