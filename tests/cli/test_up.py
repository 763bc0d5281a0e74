"""`argus up` as a user runs it: a real supervisor process with embedded PostgreSQL and NATS,
five services and the gateway; then stopped by SIGTERM or Ctrl-C (SIGINT)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from argus_shared.cli.stack import GATEWAY_PREFIXES
from argus_shared.embedded import free_port, port_free
from support.processes import Proc

ARGUS = str(Path(sys.executable).parent / "argus")
STOP_DEADLINE = 10.0


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line or environment mentions `marker` (our data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if marker.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


async def wait_for_banner(proc: Proc, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = proc.output
        if "Press Ctrl-C to stop." in output:
            return output
        if proc.popen.poll() is not None:
            raise AssertionError(f"argus up exited {proc.popen.returncode}: {output}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"argus up not ready in {timeout}s: {proc.output}")


def up_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    return [
        ARGUS, "--data-dir", str(data_dir), "up", "--port", str(ports["gateway"]),
        "--service-port-base", str(ports["base"]), "--pg-port", str(ports["pg"]),
        "--nats-port", str(ports["nats"]),
    ]


def free_ports() -> dict[str, int]:
    base = free_port()
    while not all(port_free(base + i) for i in range(5)):
        base = free_port()
    return {"gateway": free_port(), "base": base, "pg": free_port(), "nats": free_port()}


async def check_suite(gateway: str) -> None:
    async with aiohttp.ClientSession() as session:
        for prefix in GATEWAY_PREFIXES:
            async with session.get(f"{gateway}/{prefix}/readyz") as response:
                assert response.status == 200, prefix
                body = await response.json()
                checks = body["checks"]  # every service checks these; some check more
                assert {"database", "nats"} <= set(checks), prefix
                assert set(checks.values()) == {"ok"}, checks
                assert response.headers["X-Request-Id"]
            async with session.get(f"{gateway}/{prefix}/openapi.json") as response:
                assert response.status == 200
            for blocked in ("metrics", "internal/whoami"):
                async with session.get(f"{gateway}/{prefix}/{blocked}") as response:
                    assert response.status == 404, f"/{prefix}/{blocked}"


async def stop_and_check(proc: Proc, sig: int, data_dir: Path, ports: dict[str, int]) -> None:
    started = time.monotonic()
    proc.signal(sig)
    code = await asyncio.to_thread(proc.wait, STOP_DEADLINE + 5)
    took = time.monotonic() - started
    assert code == 0, proc.output
    assert took < STOP_DEADLINE, f"stopping took {took:.1f}s"
    assert "Traceback" not in proc.output
    await asyncio.sleep(0.2)
    assert processes_mentioning(str(data_dir)) == []
    ports_in_use = [p for p in (ports["gateway"], ports["pg"], ports["nats"]) if not port_free(p)]
    assert ports_in_use == []


@pytest.mark.timeout(300)
async def test_argus_up_serves_the_suite_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "argus"
    ports = free_ports()
    gateway = f"http://127.0.0.1:{ports['gateway']}"

    first = Proc.start(up_command(data_dir, ports), {}, tmp_path / "first.log")
    try:
        banner = await wait_for_banner(first)
        assert gateway in banner
        assert "PostgreSQL" in banner and "NATS" in banner
        await check_suite(gateway)
        secrets = {p.name: p.read_bytes() for p in (data_dir / "secrets").iterdir()}
        for path in (data_dir / "secrets").iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path
        await stop_and_check(first, signal.SIGTERM, data_dir, ports)
    finally:
        first.kill()

    # a second run reuses the data and the secrets, and stops on Ctrl-C
    second = Proc.start(up_command(data_dir, ports), {}, tmp_path / "second.log")
    try:
        await wait_for_banner(second)
        await check_suite(gateway)
        assert {p.name: p.read_bytes() for p in (data_dir / "secrets").iterdir()} == secrets
        await stop_and_check(second, signal.SIGINT, data_dir, ports)
    finally:
        second.kill()


async def test_argus_up_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    ports = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["gateway"]))
        taken.listen()
        proc = Proc.start(up_command(tmp_path / "argus", ports), {}, tmp_path / "up.log")
        code = await asyncio.to_thread(proc.wait, 60)
    output = proc.output.strip()
    assert code != 0
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1
    assert f"port {ports['gateway']} is already in use" in output
