"""Benchmark: sustained audit ingest (verify + chain + store + ack after commit) from JetStream
into PostgreSQL, as a ratio of a bare fetch-and-ack of the same messages from the same stream in
the same run: with nats-py's fetch (the issue's baseline) and with the pull loop the service
itself uses (argus_shared.pull), both printed; the bare COPY rate into the same table beside it;
end-to-end lag p99 at a given offered rate.

    .venv/bin/python bench/audit_ingest.py [--events 20000] [--rounds 3] [--rate 5000]
        [--seconds 5] [--orgs 10] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from prometheus_client import CollectorRegistry

from argus_audit.app import BATCH_SIZE
from argus_audit.ingest import Ingest, Metrics
from argus_shared import db, events, xut
from argus_shared.consumer import Consumer
from argus_shared.nats import connect, ensure_stream
from argus_shared.pull import PullBatches
from argus_shared.runner import run_loop
from support.infra import start_infra

ORGS: list[uuid.UUID] = []  # the orgs events are spread over (--orgs)
BATCH = BATCH_SIZE  # what the service asks for (--batch for another size, for every side)


def message(keys: xut.KeyRing, index: int, subject_type: str) -> tuple[bytes, dict[str, str]]:
    org = ORGS[index % len(ORGS)]
    event = events.new_event(subject_type, actor=events.Actor("system", "bench"),
                             resource=events.Resource("tick", str(index)), org_id=org,
                             data={"n": index})
    body = events.encode(event)
    token = xut.sign(keys, xut.Identity(sub="system:bench", org=str(org)), issuer="bench",
                     audience=events.EVENTS_AUDIENCE, lifetime=3600, body=body)
    return body, {xut.HEADER: token, "Nats-Msg-Id": event.id}


async def publish(js: JetStreamContext, keys: xut.KeyRing, count: int, kind: str,
                  rate: float | None) -> None:
    subject = events.subject_for("bench", kind)
    window = 200
    started = time.perf_counter()
    for first in range(0, count, window):
        batch = [message(keys, i, kind) for i in range(first, min(first + window, count))]
        await asyncio.gather(*(js.publish(subject, body, headers=headers)
                               for body, headers in batch))
        if rate:
            ahead = (first + window) / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def bare_rate(js: JetStreamContext, kind: str, count: int) -> float:
    sub = await js.pull_subscribe(events.subject_for("bench", kind), durable=f"bare{kind[-4:]}",
                                  stream=events.STREAM)
    done, started = 0, time.perf_counter()
    while done < count:
        for msg in await sub.fetch(BATCH, timeout=5):
            await msg.ack()
            done += 1
    return done / (time.perf_counter() - started)


async def bare_pull_rate(nc: Client, js: JetStreamContext, kind: str, count: int) -> float:
    """The same, through the pull loop the service's consumer uses (argus_shared.pull)."""
    durable = f"pull{kind[-4:]}"
    await js.add_consumer(events.STREAM, ConsumerConfig(
        durable_name=durable, filter_subject=events.subject_for("bench", kind),
        ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000))
    pull = PullBatches(nc, events.STREAM, durable)
    await pull.start()
    done, started = 0, time.perf_counter()
    while done < count:
        for msg in await pull.fetch(BATCH, linger=5):
            await msg.ack()
            done += 1
    rate = done / (time.perf_counter() - started)
    await pull.stop()
    return rate


async def audit_rate(nc: Client, pool: asyncpg.Pool, keys: xut.KeyRing, kind: str, count: int,
                     owner: asyncpg.Connection) -> float:
    registry = CollectorRegistry()
    ingest = Ingest(pool, Metrics(registry))
    consumer = Consumer(nc, keys, durable=f"audit{kind[-4:]}", handler=ingest, batch=BATCH,
                        subject=events.subject_for("bench", kind))
    started = time.perf_counter()
    await consumer.start()
    # watch the service's own counter (counted after commit): a COUNT(*) poll would load the
    # database under test
    while (registry.get_sample_value("argus_audit_events_ingested_total") or 0) < count:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    stored = await owner.fetchval("select count(*) from audit.audit_events where type = $1", kind)
    assert stored == count, f"{stored} of {count} events stored"
    return count / elapsed


async def copy_rate(admin: asyncpg.Connection, count: int) -> float:
    org = uuid.uuid4()
    now = datetime.now(UTC)
    records = [(org, i + 1, uuid.uuid4(), now, now, "copy.tick", "system", "bench", "tick",
                str(i), None, None, None, "{}", bytes(32), bytes(32)) for i in range(count)]
    started = time.perf_counter()
    await admin.copy_records_to_table(
        "audit_events", schema_name="audit", records=records,
        columns=["org_id", "seq", "event_id", "occurred_at", "received_at", "type",
                 "actor_type", "actor_id", "resource_type", "resource_id", "ip", "user_agent",
                 "request_id", "data", "prev_hash", "hash"])
    return count / (time.perf_counter() - started)


async def lag_p99(nc: Client, pool: asyncpg.Pool, keys: xut.KeyRing, owner: asyncpg.Connection,
                  rate: float, seconds: float) -> float:
    kind = f"lag.t{uuid.uuid4().hex[:6]}"
    count = int(rate * seconds)
    ingest = Ingest(pool, Metrics(CollectorRegistry()))
    consumer = Consumer(nc, keys, durable=f"lag{kind[-6:]}", handler=ingest, batch=BATCH,
                        subject=events.subject_for("bench", kind))
    await consumer.start()
    await publish(nc.jetstream(), keys, count, kind, rate)
    while await owner.fetchval("select count(*) from audit.audit_events where type = $1",
                               kind) < count:
        await asyncio.sleep(0.05)
    await consumer.stop()
    lags = await owner.fetch("select extract(epoch from received_at - occurred_at) as lag"
                             " from audit.audit_events where type = $1", kind)
    return statistics.quantiles([float(r["lag"]) for r in lags], n=100)[98]


async def main(count: int, rate: float, seconds: float, rounds: int, orgs: int) -> None:
    ORGS.extend(uuid.uuid4() for _ in range(orgs))
    infra = start_infra(Path(tempfile.mkdtemp(prefix="argus-bench-")))
    try:
        url = await infra.create_database(("audit",))
        keys = infra.secrets.keyring("xut-keys")
        nc = await connect(infra.nats_url, "bench")
        js = nc.jetstream()
        await ensure_stream(js)
        pool = await db.create_pool(url, "argus_audit", infra.secrets.read("db-audit-password"),
                                    schema="audit", max_size=10)
        owner = await asyncpg.connect(infra.url_for(url.rsplit("/", 1)[1], with_admin=True))
        bares, pulls, storeds = [], [], []
        for _ in range(rounds):  # alternate, so machine noise hits every side alike
            kind = f"bench.t{uuid.uuid4().hex[:6]}"
            await publish(js, keys, count, kind, None)
            bares.append(await bare_rate(js, kind, count))
            pulls.append(await bare_pull_rate(nc, js, kind, count))
            storeds.append(await audit_rate(nc, pool, keys, kind, count, owner))
        bare, pull, stored = (statistics.median(rates) for rates in (bares, pulls, storeds))
        copy = await copy_rate(owner, count)
        lag = await lag_p99(nc, pool, keys, owner, rate, seconds)
        print(f"bare fetch+ack, nats-py    : {bare:9.0f} events/s  (median of {rounds} rounds "
              f"of {count})")
        print(f"bare fetch+ack, Argus pull : {pull:9.0f} events/s  (the service's own loop)")
        print(f"audit ingest (verify+chain): {stored:9.0f} events/s")
        print(f"ratio to nats-py fetch     : {stored / bare:9.2f}  (target >= 0.6)")
        print(f"ratio to the same pull loop: {stored / pull:9.2f}")
        print(f"bare COPY into audit_events: {copy:9.0f} rows/s")
        print(f"lag p99 at {rate:.0f}/s offered : {lag * 1000:9.0f} ms  (target < 1000 ms)")
        await owner.close()
        await pool.close()
        await nc.close()
    finally:
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    BATCH = args.batch
    run_loop(main(args.events, args.rate, args.seconds, args.rounds, args.orgs))
