"""A real service process attacked with malformed raw HTTP requests that carry every kind of
secret: aiohttp's error log reports each of them, and no secret reaches the process's output."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.malformed import (
    Secrets,
    error_lines,
    leaks,
    malformed_requests,
    send,
    well_formed_requests,
)
from support.processes import Proc, service_command, wait_ready


@pytest.fixture
def started() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.kill()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_malformed_requests_log_errors_without_their_secrets(
    stack: Stack, tmp_path: Path, started: list[Proc], level: str
) -> None:
    port = free_port()
    env = {**stack.service_environment("tenant-api"), "ARGUS_PORT": str(port),
           "ARGUS_LOG_LEVEL": level}
    proc = Proc.start(service_command("tenant-api"), env, tmp_path / "tenant-api.log")
    started.append(proc)
    await wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    found = Secrets.make()
    requests = malformed_requests(found)
    for name, parts in requests.items():
        answers = await send(port, parts)
        assert answers and answers[-1].split(b" ", 2)[1] == b"400", name
    for request in well_formed_requests(found):
        assert (await send(port, [request]))[0].startswith(b"HTTP/1.1 4")
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 10) == 0
    output = proc.output
    leaked = leaks(output, found)
    assert leaked == [], f"{leaked} leaked into:\n{output}"
    errors = error_lines(output)
    assert len(errors) >= len(requests), output
    for entry in errors:
        assert entry["logger"] == "aiohttp.server" and entry["level"] == "error", entry
        assert "aiohttp.http_exceptions." in str(entry["error"]), entry
    assert '"path":"/argus_sk_[REDACTED]"' in output
