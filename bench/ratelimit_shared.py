"""Benchmark: what counting rate limits in NATS (one count for every replica) costs a request,
as a ratio of requests/s through the same service stack with the per-replica in-memory count,
in the same process against an embedded nats-server; plus the bare cost of one shared hit.

The route is public and does nothing, so the ratio is the limiter's cost at its worst: every
request pays one JetStream publish (and its previous window is read once a minute per key).
Each client connection is its own IP key, as a gateway's many clients would be.

    .venv/bin/python bench/ratelimit_shared.py [--seconds 4] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from argus_shared.embedded import EmbeddedNats, free_port
from argus_shared.nats import connect
from argus_shared.ratelimit import RateLimiter
from argus_shared.routing import Route
from argus_shared.runner import run_loop
from argus_shared.settings import Settings, format_keyring
from argus_shared.shared_limits import SharedRateLimiter, ensure_stream, fallback_counter
from argus_shared.web import LIMITER_KEY, build_app


async def nothing(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def settings() -> Settings:
    return Settings.from_env("audit", {
        "ARGUS_DATABASE_URL": "postgresql://127.0.0.1:1/none", "ARGUS_NATS_URL": "nats://x:1",
        "ARGUS_DB_PASSWORD": "unused", "ARGUS_MIGRATE_ON_START": "false",
        "ARGUS_XUT_KEYS": format_keyring({"k1": os.urandom(32)}),
        "ARGUS_RATE_LIMIT_IP_PER_MINUTE": "100000000",
        "ARGUS_TRUSTED_PROXIES": "127.0.0.1/32",
    })


async def serve(limiter: object) -> tuple[web.AppRunner, str]:
    app = build_app(settings(), [Route("GET", "/nothing", nothing, "Nothing", auth="public")],
                    title="bench")
    app[LIMITER_KEY] = limiter  # type: ignore[misc]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/nothing"


async def rate(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(url, headers=headers) as response:
                    assert response.status == 200, response.status
                    await response.read()
                done += 1

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return done / seconds


async def main(seconds: float, concurrency: int, rounds: int) -> None:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="argus-bench-nats-")), free_port())
    server.start()
    try:
        nc = await connect(server.url, "bench")
        js = nc.jetstream()
        await ensure_stream(js)
        shared = SharedRateLimiter(js, "bench", fallback_counter(CollectorRegistry()))
        local_runner, local_url = await serve(RateLimiter())
        shared_runner, shared_url = await serve(shared)
        locals_, shareds = [], []
        for _ in range(rounds):
            locals_.append(await rate(local_url, seconds, concurrency))
            shareds.append(await rate(shared_url, seconds, concurrency))
        started, hits = time.perf_counter(), 2000
        for n in range(hits):
            await shared.hit(f"ip:192.0.2.{n % 200}:*", 10**9)
        per_hit = (time.perf_counter() - started) / hits * 1e6
        ratios = [s / m for s, m in zip(shareds, locals_, strict=True)]
        print(f"requests/s, in-memory limit : {statistics.median(locals_):9.0f}  "
              f"(median of {rounds}, concurrency {concurrency})")
        print(f"requests/s, shared in NATS  : {statistics.median(shareds):9.0f}")
        print(f"ratio shared/in-memory      : {statistics.median(ratios):9.2f}  "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"one shared hit, sequential  : {per_hit:9.0f} µs")
        print(f"fallbacks                   : {shared.fallbacks._value.get():9.0f}")
        await local_runner.cleanup()
        await shared_runner.cleanup()
        await nc.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_loop(main(args.seconds, args.concurrency, args.rounds))
