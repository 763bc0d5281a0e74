"""`argus up --replicas 2`: two processes of every service behind the gateway, taken in turn.
A journey through the gateway is served by both replicas of each service; a session revoked
through one replica is refused by every replica at once; a replica killed with SIGKILL costs no
request (the gateway passes a refused connection to the other) and is restarted; the audit
trail holds each event once in one chain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from argus_shared.cli.state import read_state
from argus_shared.settings import SERVICES
from support.argus_up import Gateway, RunningSuite, argus_up

REPLICAS = 2


def served(metrics: str) -> float:
    """How many requests a process answered, from its own counter."""
    return sum(float(v) for v in re.findall(r"^argus_http_requests_total\{[^}]*\} (\S+)$",
                                            metrics, flags=re.M))


async def ports_of(suite: RunningSuite) -> dict[str, int]:
    state = read_state(suite.data_dir)
    assert state is not None and state.up
    return {name: s.port for name, s in state.services.items()}


@pytest.mark.timeout(420)
async def test_two_replicas_of_every_service_serve_one_suite(tmp_path: Path) -> None:
    async with argus_up(tmp_path / "up.log", prefix="argus-replicas-",
                        replicas=REPLICAS) as suite:
        assert "replicas    2 of each service" in suite.banner
        ports = await ports_of(suite)
        assert set(ports) == {*SERVICES, *(f"{s}-2" for s in SERVICES)}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            gateway = Gateway(http, suite.gateway)
            org_id, token = await gateway.org_owner(suite.mailbox, "owner@example.com", "acme")
            for n in range(4):
                await gateway.call("POST", f"/tenant/orgs/{org_id}/wallet/deposits",
                                   token=token, body={"amount_cents": 10 + n},
                                   headers={"Idempotency-Key": f"d-{n}"}, expect=201)
                await gateway.call("GET", f"/files/objects/{org_id}", token=token)
                await gateway.call("GET", f"/webhooks/orgs/{org_id}/webhooks/endpoints",
                                   token=token)
            await every_replica_served(http, ports)
            await one_chain_each_event_once(gateway, org_id, token)
            await a_killed_replica_costs_no_request(gateway, suite)
            await a_revocation_reaches_every_replica(http, gateway, suite, ports)


async def every_replica_served(http: aiohttp.ClientSession, ports: dict[str, int]) -> None:
    for name, port in ports.items():
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert served(await response.text()) > 0, f"{name} served nothing"


async def one_chain_each_event_once(gateway: Gateway, org_id: str, token: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        found = await gateway.call("GET", f"/audit/orgs/{org_id}/audit/events"
                                   f"?action=wallet.deposit", token=token)
        if len(found["events"]) >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    ids = [e["event_id"] for e in found["events"]]
    assert len(ids) == 4 and len(set(ids)) == 4  # two ingesting replicas, each event once
    verified = await gateway.call("GET", f"/audit/orgs/{org_id}/audit/verify", token=token)
    assert verified["ok"] is True, verified


async def a_killed_replica_costs_no_request(gateway: Gateway, suite: RunningSuite) -> None:
    state = read_state(suite.data_dir)
    assert state is not None
    victim = state.services["auth-2"].pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    for _ in range(10):  # every other one goes to the killed replica's port first
        answer = await gateway.send("GET", "/auth/.well-known/jwks.json")
        assert answer.status == 200, answer.text
    deadline = time.monotonic() + 60
    while True:
        state = read_state(suite.data_dir)
        assert state is not None
        again = state.services["auth-2"]
        if again.state == "up" and again.pid not in (None, victim):
            break
        assert time.monotonic() < deadline, "auth-2 was not restarted"
        await asyncio.sleep(0.2)
    assert again.restarts == 1


async def a_revocation_reaches_every_replica(http: aiohttp.ClientSession, gateway: Gateway,
                                             suite: RunningSuite, ports: dict[str, int]) -> None:
    token = await gateway.logged_in(suite.mailbox, "leaver@example.com")
    await gateway.call("POST", "/auth/logout", token=token, expect=204)
    headers = {"Authorization": f"Bearer {token}"}
    for name in ("tenant-api", "tenant-api-2"):
        async with http.get(f"http://127.0.0.1:{ports[name]}/orgs", headers=headers) as answer:
            assert answer.status == 401, (name, await answer.text())
