"""Benchmark: an authenticated GET of a 20-row list through tenant-api's whole stack (access
token check, rate limit, RLS transaction, validation, JSON) as a ratio of a bare aiohttp +
asyncpg handler running the same SELECT, measured in the same run; p99 latency at 32
connections.

    .venv/bin/python bench/tenant_list.py [--seconds 8] [--connections 32] [--rounds 3]

Both servers run as their own processes; auth runs too (tenant-api fetches its JWKS).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_shared.embedded import free_port
from argus_shared.runner import run_loop
from support.infra import start_infra
from support.mailbox import tokens_for
from support.processes import PYTHON, Proc, service_command, wait_ready

PASSWORD = "correct horse battery staple"
# (auth's breached-password check goes to the local range server the stack names: infra.hibp)
FAST = {"ARGUS_RATE_LIMIT_IP_PER_MINUTE": "100000000", "ARGUS_RATE_LIMIT_ORG_PER_MINUTE":
        "100000000", "ARGUS_LOG_LEVEL": "WARNING",
        "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "100000", "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "100000"}


async def load(url: str, headers: dict[str, str], seconds: float,
               connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.get(url) as response:
                    body = await response.read()
                    assert response.status == 200, body[:200]
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return len(latencies) / (time.perf_counter() - started), latencies


async def setup_data(auth: str, tenant: str, mailbox: Path) -> tuple[str, str]:
    email = f"bench{uuid.uuid4().hex[:8]}@example.com"
    async with aiohttp.ClientSession() as http:
        await http.post(f"{auth}/signup", json={"email": email, "password": PASSWORD})
        token = (await tokens_for(mailbox, [email]))[email]  # mail is sent after the answer
        await http.post(f"{auth}/verify-email", json={"token": token})
        async with http.post(f"{auth}/login", json={"email": email, "password": PASSWORD}) as r:
            access = (await r.json())["access_token"]
        bearer = {"Authorization": f"Bearer {access}"}
        slug = f"b{uuid.uuid4().hex[:8]}"
        async with http.post(f"{tenant}/orgs", json={"name": "b", "slug": slug},
                             headers=bearer) as r:
            org = (await r.json())["org_id"]
        for index in range(20):
            async with http.post(f"{tenant}/orgs/{org}/projects", json={"name": f"p{index}"},
                                 headers=bearer) as r:
                assert r.status == 201
    return org, access


async def main(seconds: float, connections: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    procs: list[Proc] = []
    try:
        url = await infra.create_database(("auth", "tenant-api"))
        stack = infra.stack(url)
        bases = {}
        for service in ("auth", "tenant-api"):
            env = {**stack.service_environment(service), **FAST}
            proc = Proc.start(service_command(service), env, workdir / f"{service}.log")
            procs.append(proc)
            bases[service] = stack.service_url(service)
            await wait_ready(f"{bases[service]}/readyz", proc)
        bare_port = free_port()
        bare = Proc.start([PYTHON, str(Path(__file__).parent / "bare_list_server.py"),
                           infra.url_for(url.rsplit("/", 1)[1], with_admin=True), str(bare_port)],
                          {}, workdir / "bare.log")
        procs.append(bare)
        org, access = await setup_data(bases["auth"], bases["tenant-api"], stack.mailbox)
        path = f"/orgs/{org}/projects"
        await wait_ready(f"http://127.0.0.1:{bare_port}{path}", bare)
        headers = {"Authorization": f"Bearer {access}"}
        stack_rates, bare_rates, stack_lat = [], [], []
        for _ in range(rounds):
            rate, _ = await load(f"http://127.0.0.1:{bare_port}{path}", {}, seconds, connections)
            bare_rates.append(rate)
            rate, lat = await load(f"{bases['tenant-api']}{path}", headers, seconds, connections)
            stack_rates.append(rate)
            stack_lat.extend(lat)
        bare_rate, stack_rate = statistics.median(bare_rates), statistics.median(stack_rates)
        p99 = statistics.quantiles(stack_lat, n=100)[98] * 1000
        print(f"bare aiohttp + asyncpg   : {bare_rate:8.0f} req/s (median of {rounds})")
        print(f"tenant-api whole stack   : {stack_rate:8.0f} req/s")
        print(f"ratio                    : {stack_rate / bare_rate:8.2f}  (target >= 0.8)")
        print(f"p99 at {connections} connections  : {p99:8.1f} ms")
    finally:
        for proc in procs:
            proc.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_loop(main(args.seconds, args.connections, args.rounds))  # the services' loop
