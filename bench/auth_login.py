"""Benchmark: logins per second through the auth HTTP API as a ratio of raw Argon2id
verifications per second (same parameters, same machine, same run); /healthz latency during the
login storm; access-token verifications per second with and without the verifier's cache.

    .venv/bin/python bench/auth_login.py [--seconds 10] [--concurrency 8] [--rounds 5]

The service runs as its own process (as users run it) on embedded PostgreSQL and NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from argon2 import PasswordHasher, Type

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_auth.config import AuthConfig
from argus_shared.access import AccessVerifier, Revocations
from argus_shared.embedded import free_port
from argus_shared.runner import run_loop
from support.infra import start_infra
from support.mailbox import tokens_for
from support.processes import Proc, service_command, wait_ready

PASSWORD = "correct horse battery staple"
# a liveness probe every 50 ms (Kubernetes probes every 10 s): often enough for a p99 over ~600
# probes, rare enough that the probes are not a second load competing with the logins
PROBE_INTERVAL = 0.05
DEFAULTS = AuthConfig()


def raw_rate(seconds: float) -> float:
    """Argon2id verifications/s on as many threads as the service has hashing processes."""
    hasher = PasswordHasher(time_cost=DEFAULTS.argon2_time_cost,
                            memory_cost=DEFAULTS.argon2_memory_kib,
                            parallelism=DEFAULTS.argon2_parallelism, hash_len=32, salt_len=16,
                            type=Type.ID)
    stored = hasher.hash(PASSWORD)
    workers = DEFAULTS.argon2_workers
    done = 0
    deadline = time.perf_counter() + seconds

    def work() -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        done = sum(pool.map(lambda _: work(), range(workers)))
    return done / (time.perf_counter() - started)


async def make_users(http: aiohttp.ClientSession, base: str, mailbox: Path, n: int) -> list[str]:
    emails = [f"bench{uuid.uuid4().hex[:10]}@example.com" for _ in range(n)]
    for email in emails:
        async with http.post(f"{base}/signup", json={"email": email, "password": PASSWORD}) as r:
            assert r.status == 202, await r.text()
    tokens = await tokens_for(mailbox, emails)  # mail is sent after the answer
    for email in emails:
        async with http.post(f"{base}/verify-email", json={"token": tokens[email]}) as r:
            assert r.status == 200
    return emails


def login_request(host: str, port: int, email: str) -> bytes:
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    return (f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])  # type: ignore[index]
    return int(head[9:12]), await reader.readexactly(length)


async def login_storm(http: aiohttp.ClientSession, base: str, emails: list[str],
                      seconds: float, concurrency: int) -> tuple[float, list[float], str]:
    """Logins from `concurrency` keep-alive connections, each a prepared request and a minimal
    response parser: the load generator shares the 2 cores with the service, so it should cost
    as little as a wrk would (an aiohttp client costs ~1 ms of CPU per request)."""
    deadline = time.perf_counter() + seconds
    count = 0
    token = ""
    host, port = base.removeprefix("http://").split(":")

    async def worker(index: int) -> None:
        nonlocal count, token
        request = login_request(host, int(port), emails[index % len(emails)])
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline:
            writer.write(request)
            status, body = await read_response(reader)
            assert status == 200, body
            count += 1
        token = json.loads(body)["access_token"]
        writer.close()

    latencies: list[float] = []

    async def probe() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with http.get(f"{base}/healthz") as r:
                await r.read()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_INTERVAL)

    started = time.perf_counter()
    await asyncio.gather(probe(), *(worker(i) for i in range(concurrency)))
    return count / (time.perf_counter() - started), latencies, token


async def verify_rate(base: str, token: str, use_cache: bool, seconds: float) -> float:
    from argus_shared.access import JwksCache

    async def fetch(url: str) -> dict:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return await response.json()

    verifier = AccessVerifier(JwksCache(f"{base}/.well-known/jwks.json", fetch),
                              issuer=DEFAULTS.issuer, audience=DEFAULTS.audience,
                              revocations=Revocations())
    verifier.use_cache = use_cache
    await verifier.verify(token)
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(100):
            await verifier.verify(token)
        count += 100
    return count / (time.perf_counter() - started)


async def main(seconds: float, concurrency: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    proc: Proc | None = None
    try:
        url = await infra.create_database(("auth",))
        stack = infra.stack(url)
        # the breached-password check goes to the local range server (infra.hibp)
        env = {**stack.service_environment("auth"), "ARGUS_PORT": str(free_port()),
               "ARGUS_RATE_LIMIT_IP_PER_MINUTE": "10000000",
               "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_LOG_LEVEL": "WARNING"}
        base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
        proc = Proc.start(service_command("auth"), env, workdir / "auth.log")
        await wait_ready(f"{base}/readyz", proc)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            emails = await make_users(http, base, stack.mailbox, concurrency * 4)
            raws, rates, latencies = [], [], []
            for _ in range(rounds):  # alternate, so machine noise hits both sides alike
                raws.append(await asyncio.to_thread(raw_rate, seconds))
                rate, probes, token = await login_storm(http, base, emails, seconds,
                                                        concurrency)
                rates.append(rate)
                latencies.extend(probes)
            raw, logins = statistics.median(raws), statistics.median(rates)
            # each round's logins against the raw rate measured just before them: the machine's
            # speed drifts between rounds, and a pair shares it
            ratios = [rate / raw_ for rate, raw_ in zip(rates, raws, strict=True)]
            cached = await verify_rate(base, token, True, seconds / 2)
            uncached = await verify_rate(base, token, False, seconds / 2)
        p99 = statistics.quantiles(latencies, n=100)[98] * 1000
        print(f"argon2id m={DEFAULTS.argon2_memory_kib}KiB t={DEFAULTS.argon2_time_cost} "
              f"p={DEFAULTS.argon2_parallelism}, {os.cpu_count()} cores")
        print(f"raw Argon2id verifications/s : {raw:8.1f}  (median of {rounds} rounds)")
        print(f"HTTP logins/s                : {logins:8.1f}  (concurrency {concurrency})")
        print(f"ratio logins/raw             : {statistics.median(ratios):8.2f}  (target >= 0.85;"
              f" median of the rounds' ratios {', '.join(f'{r:.2f}' for r in ratios)};"
              f" of the medians {logins / raw:.2f})")
        print(f"/healthz p99 during storm    : {p99:8.1f} ms  (target < 20 ms, "
              f"{len(latencies)} probes)")
        print(f"token verifications/s cached : {cached:8.0f}")
        print(f"token verifications/s fresh  : {uncached:8.0f}  "
              f"(cache speed-up {cached / uncached:.1f}x)")
    finally:
        if proc is not None:
            proc.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # the load generator shares the 2 cores with the service: run it on the services' own loop
    run_loop(main(args.seconds, args.concurrency, args.rounds))
