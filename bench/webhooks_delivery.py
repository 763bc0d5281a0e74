"""Benchmark: signed deliveries per second through the whole path (SKIP LOCKED claim, signing,
SSRF check, POST, attempt record) to a local receiver process, as a ratio of bare signed POSTs
from one aiohttp client to the same receiver in the same run; p99 from event published to
delivered at a given offered rate.

    .venv/bin/python bench/webhooks_delivery.py [--deliveries 10000] [--rounds 3] [--rate 500]
        [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_shared import crypto, db, events, xut
from argus_shared.consumer import Consumer
from argus_shared.embedded import free_port
from argus_shared.nats import connect, ensure_stream
from argus_shared.runner import run_loop
from argus_webhooks import signing
from argus_webhooks.config import WebhooksConfig
from argus_webhooks.delivery import Deliverer, Metrics, secret_context
from argus_webhooks.fanout import FanOut
from support.infra import Infra, start_own_infra
from support.processes import PYTHON, Proc, wait_ready

SECRET = "whsec_" + "A" * 44
CONCURRENCY = 16


async def bare(url: str, count: int) -> float:
    body = b'{"type":"bench.tick","data":{}}'
    queue = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def worker() -> None:
            for index in queue:
                headers = signing.outbound_headers([SECRET], f"msg_{index}", int(time.time()),
                                                   body)
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


async def seed(admin: asyncpg.Connection, master: xut.KeyRing, org: uuid.UUID,
               url: str) -> uuid.UUID:
    endpoint = uuid.uuid4()
    await admin.execute("insert into webhooks.endpoints (org_id, id, url, event_types)"
                        " values ($1, $2, $3, '{*}')", org, endpoint, url)
    await admin.execute("insert into webhooks.endpoint_secrets (org_id, endpoint_id, id, sealed)"
                        " values ($1, $2, $3, $4)", org, endpoint, uuid.uuid4(),
                        crypto.seal(master, SECRET.encode(), secret_context(org, endpoint)))
    return endpoint


async def whole_path(admin: asyncpg.Connection, pool: asyncpg.Pool, master: xut.KeyRing,
                     org: uuid.UUID, endpoint: uuid.UUID, count: int) -> float:
    await admin.execute(
        "insert into webhooks.deliveries (org_id, id, endpoint_id, event_id, event_type, payload)"
        " select $1, gen_random_uuid(), $2, gen_random_uuid(), 'bench.tick',"
        " convert_to('{\"type\":\"bench.tick\",\"data\":{}}', 'utf8')"
        " from generate_series(1, $3)", org, endpoint, count)
    registry = CollectorRegistry()
    deliverer = Deliverer(pool, master, config(), Metrics(registry))
    started = time.perf_counter()
    task = asyncio.create_task(deliverer.run())
    # watch the workers' own counter (a COUNT(*) poll would load the database under test)
    while (registry.get_sample_value("argus_webhook_deliveries_total",
                                     {"result": "succeeded"}) or 0) < count:
        await asyncio.sleep(0.01)
    deliverer.stop()
    await task  # the last successes are recorded before run() returns
    elapsed = time.perf_counter() - started
    await deliverer.close()
    stored = await admin.fetchval("select count(*) from webhooks.deliveries where org_id = $1"
                                  " and status = 'succeeded'", org)
    assert stored == count, f"{stored} of {count} deliveries recorded as succeeded"
    return count / elapsed


async def latency(infra: Infra, admin: asyncpg.Connection, pool: asyncpg.Pool,
                  master: xut.KeyRing, keys: xut.KeyRing, url: str, rate: float,
                  seconds: float) -> float:
    org = uuid.uuid4()
    await seed(admin, master, org, url)
    nc = await connect(infra.nats_url, "bench")
    js = nc.jetstream()
    await ensure_stream(js)
    consumer = Consumer(nc, keys, durable="bench-fanout", handler=FanOut(pool))
    await consumer.start()
    deliverer = Deliverer(pool, master, config(), Metrics(CollectorRegistry()))
    task = asyncio.create_task(deliverer.run())
    count = int(rate * seconds)
    started = time.perf_counter()
    for index in range(count):
        event = events.new_event("bench.tick", actor=events.Actor("system", "bench"),
                                 resource=events.Resource("tick", str(index)), org_id=org)
        body = events.encode(event)
        token = xut.sign(keys, xut.Identity(sub="system:bench", org=str(org)), issuer="bench",
                         audience=events.EVENTS_AUDIENCE, lifetime=3600, body=body)
        await js.publish("argus.events.bench.bench.tick", body, headers={xut.HEADER: token})
        ahead = (index + 1) / rate - (time.perf_counter() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    while await admin.fetchval("select count(*) from webhooks.deliveries where org_id = $1"
                               " and status = 'succeeded'", org) < count:
        await asyncio.sleep(0.05)
    rows = await admin.fetch(
        "select extract(epoch from d.delivered_at) - extract(epoch from"
        " (convert_from(d.payload, 'utf8')::jsonb ->> 'occurred_at')::timestamptz) as lag"
        " from webhooks.deliveries d where org_id = $1", org)
    deliverer.stop()
    await task
    await deliverer.close()
    await consumer.stop()
    await nc.close()
    return statistics.quantiles([float(r["lag"]) for r in rows], n=100)[98]


def config() -> WebhooksConfig:
    return WebhooksConfig(https_only=False, allow_nets=(ipaddress.ip_network("127.0.0.0/8"),),
                          workers=CONCURRENCY, poll_seconds=0.02)


async def main(count: int, rate: float, seconds: float, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_own_infra(workdir)
    port = free_port()
    receiver = Proc.start([PYTHON, str(Path(__file__).parents[1] / "tests" / "support" /
                                       "receiver.py"), str(port), str(workdir / "r.log"), "0"],
                          {}, workdir / "receiver.out")
    try:
        url = f"http://127.0.0.1:{port}/hook"
        await wait_ready(f"http://127.0.0.1:{port}/healthz", receiver)
        dsn = await infra.create_database(("webhooks",))
        admin = await asyncpg.connect(infra.url_for(dsn.rsplit("/", 1)[1], with_admin=True))
        pool = await db.create_pool(dsn, "argus_webhooks",
                                    infra.secrets.read("db-webhooks-password"),
                                    schema="webhooks", max_size=20)
        master, keys = infra.secrets.keyring("master-keys"), infra.secrets.keyring("xut-keys")
        bare_rates, path_rates = [], []
        for _ in range(rounds):  # alternate, so machine noise hits both sides alike
            bare_rates.append(await bare(url, count))
            org = uuid.uuid4()
            endpoint = await seed(admin, master, org, url)
            path_rates.append(await whole_path(admin, pool, master, org, endpoint, count))
        bare_rate, path_rate = statistics.median(bare_rates), statistics.median(path_rates)
        p99 = await latency(infra, admin, pool, master, keys, url, rate, seconds)
        print(f"bare signed POSTs        : {bare_rate:8.0f} /s  (median of {rounds} rounds of "
              f"{count})")
        print(f"deliveries (whole path)  : {path_rate:8.0f} /s")
        print(f"ratio                    : {path_rate / bare_rate:8.2f}  (target >= 0.4)")
        print(f"p99 published->delivered: {p99 * 1000:8.0f} ms at {rate:.0f} events/s offered")
        await pool.close()
        await admin.close()
    finally:
        receiver.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    run_loop(main(args.deliveries, args.rate, args.seconds, args.rounds))
