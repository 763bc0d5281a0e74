"""`argus up` attacked with malformed raw HTTP requests that carry every kind of secret, at the
gateway and at each service's own port: every one is logged as an error, no secret reaches the
terminal's output or any service log."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from argus_shared.embedded import free_port, port_free
from argus_shared.settings import SERVICES
from support.malformed import (
    Secrets,
    error_lines,
    leaks,
    malformed_requests,
    send,
    well_formed_requests,
)
from support.processes import Proc

ARGUS = str(Path(sys.executable).parent / "argus")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's temporary root, which a pytest run starting meanwhile makes private
    again (PostgreSQL, running as its own user under root, would lose its cluster)."""
    directory = Path(tempfile.mkdtemp(prefix="argus-up-secrets-"))
    yield directory / "argus"
    shutil.rmtree(directory, ignore_errors=True)


def _ports() -> dict[str, int]:
    base = free_port()
    while not all(port_free(base + i) for i in range(len(SERVICES))):
        base = free_port()
    return {"gateway": free_port(), "base": base, "pg": free_port(), "nats": free_port()}


async def _wait_up(proc: Proc, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while "Press Ctrl-C to stop." not in proc.output:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"argus up did not come up: {proc.output}")
        await asyncio.sleep(0.2)


async def _attack(port: int, found: Secrets, prefix: str = "") -> int:
    """Send every malformed request and the well-formed ones; how many were refused."""
    refused = 0
    for name, parts in malformed_requests(found, prefix).items():
        answers = await send(port, parts)
        assert answers and answers[-1].split(b" ", 2)[1] == b"400", (port, name)
        refused += 1
    for request in well_formed_requests(found, prefix):
        assert (await send(port, [request]))[0].startswith(b"HTTP/1.1 4")
    return refused


@pytest.mark.timeout(300)
async def test_no_secret_of_a_malformed_request_reaches_any_log_of_argus_up(
    tmp_path: Path, data_dir: Path
) -> None:
    ports = _ports()
    proc = Proc.start([
        ARGUS, "--data-dir", str(data_dir), "up", "--port", str(ports["gateway"]),
        "--service-port-base", str(ports["base"]), "--pg-port", str(ports["pg"]),
        "--nats-port", str(ports["nats"]),
    ], {}, tmp_path / "up.log")
    try:
        await _wait_up(proc)
        found = Secrets.make()
        at_gateway = await _attack(ports["gateway"], found, "/auth")
        at_services = {service: await _attack(ports["base"] + i, found)
                       for i, service in enumerate(SERVICES)}
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0, proc.output
    finally:
        proc.kill()
    outputs = {"argus up": proc.output} | {
        service: (data_dir / "logs" / f"{service}.log").read_text(errors="replace")
        for service in SERVICES
    }
    for where, text in outputs.items():
        leaked = leaks(text, found)
        assert leaked == [], f"{leaked} leaked into the output of {where}:\n{text}"
    gateway_errors = error_lines(outputs["argus up"])
    assert len(gateway_errors) == at_gateway, outputs["argus up"]
    assert {e["service"] for e in gateway_errors} == {"gateway"}
    for service, refused in at_services.items():
        errors = error_lines(outputs[service])
        assert len(errors) == refused, outputs[service]
        assert all("aiohttp.http_exceptions." in str(e["error"]) for e in errors), errors
