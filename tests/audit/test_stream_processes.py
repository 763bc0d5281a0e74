"""`GET /stream` on real audit processes (`python -m argus_audit`): SIGTERM drains every stream
with a retry hint and a clean end; the per-user cap holds across two replicas sharing the NATS
KV leases, and the slots of a replica killed with SIGKILL come back once its leases expire."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.processes import Proc, service_command, wait_ready
from support.streams import Listener, close_all, listen, until
from support.suite import Suite

LEASE_SECONDS = 6


@pytest.fixture
def started() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.kill()


async def start_audit(stack: Stack, suite: Suite, tmp_path: Path, started: list[Proc],
                      name: str) -> str:
    port = free_port()
    env = {**stack.service_environment("audit"), "ARGUS_PORT": str(port),
           "ARGUS_AUTH_URL": suite.auth.base, "ARGUS_STREAM_LEASE_SECONDS": str(LEASE_SECONDS)}
    proc = Proc.start(service_command("audit"), env, tmp_path / f"{name}.log")
    started.append(proc)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(f"{base}/readyz", proc)
    return base


async def status_of(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status


async def try_listen(http: aiohttp.ClientSession, url: str, token: str) -> Listener | None:
    """The stream if it is let in, None at the cap."""
    response = await http.get(url, headers={"Authorization": f"Bearer {token}"},
                              timeout=aiohttp.ClientTimeout(total=None))
    if response.status == 429:
        await response.read()
        response.release()
        return None
    assert response.status == 200, await response.text()
    listener = Listener(response)
    listener.task = asyncio.create_task(listener.read())
    return listener


async def test_sigterm_drains_every_stream_with_a_retry_hint(
        stack: Stack, suite: Suite, tmp_path: Path, started: list[Proc]) -> None:
    base = await start_audit(stack, suite, tmp_path, started, "audit")
    owner = await suite.user()
    org = await suite.org(owner)
    streams = [await listen(suite.http, f"{base}/stream", owner.token) for _ in range(3)]
    project = await suite.project(org, owner)
    await until(lambda: all(s.has(project) for s in streams))
    started[0].signal(signal.SIGTERM)
    await until(lambda: all(s.ended.is_set() for s in streams), timeout=10)
    for stream in streams:
        assert stream.controls[-1] == "drain"
        assert stream.retries[-1] == 2000  # the drain's own hint, after the opening one
        assert stream.clean  # the body ended as a chunked body ends, not a reset
    assert await asyncio.to_thread(started[0].wait, 15) == 0
    assert "Traceback" not in started[0].output
    await close_all(streams)


async def test_the_user_cap_holds_across_replica_processes_and_a_killed_ones_slots_return(
        stack: Stack, suite: Suite, tmp_path: Path, started: list[Proc]) -> None:
    a = await start_audit(stack, suite, tmp_path, started, "audit-a")
    b = await start_audit(stack, suite, tmp_path, started, "audit-b")
    owner = await suite.user()
    await suite.org(owner)
    held = [await listen(suite.http, f"{a}/stream", owner.token) for _ in range(5)]
    assert await status_of(suite.http, f"{b}/stream", owner.token) == 429
    assert await status_of(suite.http, f"{a}/stream", owner.token) == 429
    other = await suite.user()  # another user's slots are their own, on either replica
    theirs = await listen(suite.http, f"{b}/stream", other.token)
    started[0].kill()  # SIGKILL: replica A releases nothing
    await until(lambda: all(s.ended.is_set() for s in held), timeout=10)
    assert await status_of(suite.http, f"{b}/stream", owner.token) == 429  # still leased
    back: list[Listener] = []
    async with asyncio.timeout(LEASE_SECONDS * 4):  # A's leases age out, one by one
        while len(back) < 5:
            if (admitted := await try_listen(suite.http, f"{b}/stream", owner.token)) is None:
                await asyncio.sleep(0.5)
            else:
                back.append(admitted)
    assert await status_of(suite.http, f"{b}/stream", owner.token) == 429  # five again, not more
    await close_all([*held, theirs, *back])
