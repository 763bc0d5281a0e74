"""Benchmark: the outbox pruner's cost under the login storm, as a ratio of login throughput
with the pruner running every second over a pre-filled outbox (200k sent rows past the
retention) to login throughput without it, measured in the same run (rounds alternate, each pair
in turn order); and the prune rate (rows/s while a backlog drains, pauses included) with the
time of one full batch.

    .venv/bin/python bench/outbox_prune.py [--seconds 5] [--concurrency 8] [--rounds 16]
                                           [--rows 200000]

auth runs as its own process (as users run it) on embedded PostgreSQL and NATS, with its own
pruner idle (a day's interval); the pruner measured is `argus_shared.outbox.Pruner` as the
runner builds it, on the service role's pool, run from this process in the rounds "with" and
stopped in the others. Before every round the outbox is filled back to `--rows` sent rows
past the retention, so both kinds of round see the same table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from auth_login import login_storm, make_users
from prometheus_client import CollectorRegistry

from argus_shared import db
from argus_shared.embedded import free_port
from argus_shared.outbox import Pruner
from argus_shared.runner import run_loop
from argus_shared.settings import Settings
from support.infra import start_infra
from support.processes import Proc, service_command, wait_ready

KEEP_SECONDS = 3600
FILL = """
insert into auth.outbox (id, subject, payload, created_at, sent_at)
select gen_random_uuid(), 'argus.events.auth.bench.filler',
       convert_to(repeat('x', 600), 'UTF8'), now() - interval '3 hours',
       now() - interval '2 hours' - i * interval '1 ms'
from generate_series(1, $1) as i
"""
DUE = """
select count(*) from auth.outbox where sent_at < now() - make_interval(secs => $1)
"""


class TimedPruner(Pruner):
    """The pruner, counting what it deletes and timing its runs (a run cut short by the end of
    a round counts too) and its full batches."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.prune_seconds = 0.0
        self.rows = 0
        self.full_batches: list[float] = []

    async def prune_batch(self) -> int:
        started = time.perf_counter()
        deleted = await super().prune_batch()
        self.rows += deleted
        if deleted == self.batch:
            self.full_batches.append(time.perf_counter() - started)
        return deleted

    async def prune(self) -> list[int]:
        started = time.perf_counter()
        try:
            return await super().prune()
        finally:
            self.prune_seconds += time.perf_counter() - started


@dataclass
class Results:
    without: list[float] = field(default_factory=list)
    with_pruner: list[float] = field(default_factory=list)
    probes: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})


async def fill(admin: asyncpg.Connection, rows: int) -> None:
    """Top the outbox up to `rows` sent rows past the retention, then vacuum (as autovacuum
    would on a table this busy) and checkpoint, so that no round pays for the filling."""
    due = await admin.fetchval(DUE, float(KEEP_SECONDS))
    if due < rows:
        await admin.execute(FILL, rows - due)
    await admin.execute("vacuum analyze auth.outbox")
    await admin.execute("checkpoint")


async def storm_round(http: aiohttp.ClientSession, base: str, emails: list[str],
                      pruner: TimedPruner | None, args: argparse.Namespace,
                      results: Results) -> None:
    if pruner is not None:
        await pruner.start()
    try:
        rate, probes, _ = await login_storm(http, base, emails, args.seconds, args.concurrency)
    finally:
        if pruner is not None:
            await pruner.stop()
    (results.with_pruner if pruner else results.without).append(rate)
    results.probes[pruner is not None].extend(probes)


def p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000


def report(results: Results, pruner: TimedPruner, args: argparse.Namespace) -> None:
    ratios = [w / wo for w, wo in zip(results.with_pruner, results.without, strict=True)]
    batch_ms = statistics.median(pruner.full_batches) * 1000 if pruner.full_batches else 0.0
    rate = pruner.rows / pruner.prune_seconds if pruner.prune_seconds else 0.0
    print(f"outbox pre-filled with {args.rows} sent rows past the retention before each round; "
          f"pruner every 1 s, {pruner.batch} rows/statement, {pruner.pause} s pause")
    print(f"HTTP logins/s without pruner : {statistics.median(results.without):8.1f}  "
          f"(median of {args.rounds} rounds, concurrency {args.concurrency})")
    print(f"HTTP logins/s with pruner    : {statistics.median(results.with_pruner):8.1f}")
    print(f"ratio with/without           : {statistics.median(ratios):8.2f}  (median of the "
          f"rounds' pairs {', '.join(f'{r:.2f}' for r in ratios)}; of the medians "
          f"{statistics.median(results.with_pruner) / statistics.median(results.without):.2f})")
    print(f"/healthz p99 without / with  : {p99_ms(results.probes[False]):8.1f} / "
          f"{p99_ms(results.probes[True]):.1f} ms")
    print(f"prune rate                   : {rate:8.0f} rows/s  ({pruner.rows} rows in "
          f"{pruner.prune_seconds:.1f} s of runs, pauses included)")
    print(f"one full batch               : {batch_ms:8.1f} ms  (median of "
          f"{len(pruner.full_batches)} statements of {pruner.batch} rows)")


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    proc: Proc | None = None
    try:
        url = await infra.create_database(("auth",))
        stack = infra.stack(url)
        env = {**stack.service_environment("auth"), "ARGUS_PORT": str(free_port()),
               "ARGUS_RATE_LIMIT_IP_PER_MINUTE": "10000000",
               "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_OUTBOX_PRUNE_SECONDS": "86400",  # the service's own pruner stays idle
               "ARGUS_LOG_LEVEL": "WARNING"}
        base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
        proc = Proc.start(service_command("auth"), env, workdir / "auth.log")
        await wait_ready(f"{base}/readyz", proc)
        settings = Settings.from_env("auth", env)
        pool = await db.create_pool(settings.database_url, settings.db_role,
                                    settings.db_password, schema=settings.schema)
        admin = await asyncpg.connect(infra.url_for(url.rsplit("/", 1)[1], with_admin=True))
        pruner = TimedPruner(pool, CollectorRegistry(), keep_seconds=KEEP_SECONDS, interval=1.0,
                             service="auth")
        results = Results()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
                emails = await make_users(http, base, stack.mailbox, args.concurrency * 4)
                for round_ in range(args.rounds):  # alternate, so drift hits both sides alike
                    for pruning in ((False, True) if round_ % 2 == 0 else (True, False)):
                        await fill(admin, args.rows)
                        await storm_round(http, base, emails, pruner if pruning else None,
                                          args, results)
        finally:
            await admin.close()
            await pool.close()
        report(results, pruner, args)
    finally:
        if proc is not None:
            proc.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    # many short rounds: on a shared 2-core machine the load of other work drifts within
    # seconds, and adjacent rounds share it best
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=16)  # even: each order as often
    parser.add_argument("--rows", type=int, default=200_000)
    # the load generator shares the 2 cores with the service: run it on the services' own loop
    run_loop(main(parser.parse_args()))
