"""Rate limits across replicas: two real audit processes behind one client share one per-IP
count through NATS (`ARGUS_RATE_LIMIT_STORE=nats`, the default), so together they allow the
setting, not twice it; with the per-replica store each allows the setting on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.processes import Proc, service_command, wait_ready
from support.suite import Suite

LIMIT = 10


@pytest.fixture
def started() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.kill()


async def replica(stack: Stack, suite: Suite, tmp_path: Path, started: list[Proc], name: str,
                  store: str) -> str:
    port = free_port()
    env = {**stack.service_environment("audit"), "ARGUS_PORT": str(port),
           "ARGUS_AUTH_URL": suite.auth.base, "ARGUS_RATE_LIMIT_STORE": store,
           "ARGUS_RATE_LIMIT_IP_PER_MINUTE": str(LIMIT)}
    proc = Proc.start(service_command("audit"), env, tmp_path / f"{name}.log")
    started.append(proc)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(f"{base}/readyz", proc)
    return base


async def answers(http: aiohttp.ClientSession, bases: list[str], rounds: int) -> list[int]:
    """Statuses of `rounds` requests to each replica in turn."""
    statuses = []
    for _ in range(rounds):
        for base in bases:
            async with http.get(f"{base}/checkpoint-key") as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert response.content_type == "application/problem+json"
    return statuses


@pytest.mark.parametrize(("store", "allowed"), [("nats", LIMIT), ("memory", 2 * 7)])
async def test_two_replicas_share_one_limit_through_nats(
    stack: Stack, suite: Suite, tmp_path: Path, started: list[Proc], store: str, allowed: int
) -> None:
    bases = [await replica(stack, suite, tmp_path, started, f"{store}-{n}", store)
             for n in (1, 2)]
    async with aiohttp.ClientSession() as http:
        statuses = await answers(http, bases, 7)  # 14 requests, 7 to each
        metrics = await (await http.get(f"{bases[0]}/metrics")).text()
    assert statuses.count(200) == allowed, statuses
    assert statuses.count(429) == 14 - allowed
    if store == "nats":
        assert "argus_ratelimit_fallbacks_total 0.0" in metrics  # NATS counted every one
