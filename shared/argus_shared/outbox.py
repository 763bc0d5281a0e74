"""The transactional outbox: `emit` writes an event in the caller's transaction; the `Relay`
publishes pending rows to JetStream (`Nats-Msg-Id` = event id, so a re-publish after a crash is
dropped by the stream's duplicate window), signs each with an X-User-Token bound to its body,
and marks them sent. While NATS is down rows wait; nothing is lost. The `Pruner` deletes sent rows
once they are older than the retention, in bounded batches, and reports the outbox's backlog
(pending rows, the oldest one's age) and size as metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge

from argus_shared import events, tracing, xut
from argus_shared.db import Conn, one
from argus_shared.event_types import EventType, emitted_by
from argus_shared.logs import request_id_var
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.outbox")
BATCH = 200
POLL_SECONDS = 1.0
MIN_INTERVAL = 0.05
MAX_BACKOFF = 10.0
PUBLISH_TIMEOUT = 5.0
XUT_LIFETIME = 300
PRUNE_BATCH = 1000  # rows per DELETE: each statement holds its locks and WAL briefly
PRUNE_PAUSE = 0.1  # seconds between two full batches, so a backlog is removed gently
PRUNE_MAX_BATCHES = 100  # per run; the gauges refresh between runs however large the backlog
PRUNE_JITTER = 0.5  # each wait is the interval times 1 +/- this, so replicas drift apart
# NATS's default max_payload (1 MiB) less room for the headers: a row the relay cannot publish
# would block every row after it, so emit refuses it while the caller can still roll back
MAX_PAYLOAD_BYTES = 1024 * 1024 - 16 * 1024

INSERT = """
insert into outbox (id, subject, org_id, payload, headers) values ($1, $2, $3, $4, $5)
"""
# marked sent in the claiming statement, but only committed after every publish succeeded: a
# failed publish or a crash rolls the mark back and the rows are sent again
CLAIM = """
update outbox set sent_at = now()
where seq in (select seq from outbox where sent_at is null order by seq limit $1
              for update skip locked)
returning seq, id, subject, payload, headers
"""
# the oldest sent rows past the retention, found through the partial index `outbox_sent`
# (sent_at, where sent_at is not null); SKIP LOCKED, so replicas pruning at once take disjoint
# rows and never wait for each other; a row never sent (sent_at null) never matches
PRUNE = """
delete from outbox
where seq in (select seq from outbox where sent_at < now() - make_interval(secs => $1)
              order by sent_at limit $2 for update skip locked)
  and sent_at < now() - make_interval(secs => $1)
"""
# through the partial index `outbox_pending`: only unsent rows are read (few, unless NATS has
# been down a while); the size is the table's files, never a count of the sent rows
STATS = """
select count(*) as pending,
       coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as oldest,
       pg_total_relation_size('outbox') as bytes
from outbox where sent_at is null
"""


@dataclass(frozen=True)
class Row:
    """An outbox row ready to insert: `INSERT` takes `values()` as $1..$5."""

    id: str
    subject: str
    org_id: str | None
    payload: bytes
    headers: dict[str, Any]

    def values(self) -> tuple[Any, ...]:
        return (self.id, self.subject, self.org_id, self.payload, self.headers)


def prepare(
    service: str, event: events.Event, *, role: str | None = None, scopes: tuple[str, ...] = (),
) -> Row:
    """The row for `event`; the actor becomes the X-User-Token subject. Raises `ValueError` for
    an event the relay could never publish (bad type, too large)."""
    events.check_type(event.type)
    payload = events.encode(event)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"event {event.type} is too large to publish: {len(payload)} bytes "
                         f"(at most {MAX_PAYLOAD_BYTES})")
    headers: dict[str, Any] = {"sub": f"{event.actor.type}:{event.actor.id}"}
    if role:
        headers["role"] = role
    if scopes:
        headers["scopes"] = list(scopes)
    tracing.inject(headers)
    return Row(event.id, events.subject_for(service, event.type), event.org_id, payload, headers)


async def emit(
    conn: Conn,
    service: str,
    event: events.Event,
    *,
    role: str | None = None,
    scopes: tuple[str, ...] = (),
) -> None:
    """Queue `event` in the caller's transaction (see `prepare`)."""
    await conn.execute(INSERT, *prepare(service, event, role=role, scopes=scopes).values())


@dataclass(frozen=True)
class Ctx:
    """Who is asking, from where: carried into every event a request causes. The request id
    defaults to that of the work under way (an RPC handler's caller, a consumer's event)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = field(default_factory=request_id_var.get)


def request_event(
    ctx: Ctx, event_type: str, *, actor: tuple[str, str], resource: tuple[str, str],
    org_id: object = None, data: dict[str, Any] | None = None,
) -> events.Event:
    """An event carrying the request context (IP, user agent, request id)."""
    return events.new_event(
        event_type, actor=events.Actor(*actor), resource=events.Resource(*resource),
        org_id=None if org_id is None else str(org_id), ip=ctx.ip, user_agent=ctx.user_agent,
        request_id=ctx.request_id, data=data,
    )


async def record(
    conn: Conn, service: str, ctx: Ctx, event_type: EventType, *,
    actor: tuple[str, str], resource: tuple[str, str], org_id: object = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Build an event from the request context and queue it in the caller's transaction; the
    type must be one `service` emits in the registry (argus_shared.event_types)."""
    emitted_by(event_type, service)
    event = request_event(ctx, event_type, actor=actor, resource=resource, org_id=org_id,
                          data=data)
    await emit(conn, service, event)


def message_headers(
    keys: KeyRing, service: str, event_id: str, payload: bytes, stored: dict[str, Any],
    org: str | None, request_id: str,
) -> dict[str, str]:
    identity = xut.Identity(
        sub=stored.get("sub", f"service:{service}"), org=org, role=stored.get("role"),
        scopes=tuple(stored.get("scopes", ())), request_id=request_id,
    )
    headers = {
        "Nats-Msg-Id": event_id,
        xut.HEADER: xut.sign(
            keys, identity, issuer=service, audience=events.EVENTS_AUDIENCE,
            lifetime=XUT_LIFETIME, body=payload,
        ),
    }
    for name in ("traceparent", "tracestate"):
        if name in stored:
            headers[name] = stored[name]
    return headers


class Relay:
    def __init__(
        self, pool: asyncpg.Pool, js: JetStreamContext, *, service: str, keys: KeyRing
    ) -> None:
        self.pool, self.js, self.service, self.keys = pool, js, service, keys
        self.channel = f"argus_outbox_{service.replace('-', '_')}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: PoolConnectionProxy | None = None
        self.published = 0
        self._stopping = False
        self._last_batch = float("-inf")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        self._stopping = True  # a cancellation swallowed inside a library still ends the loop
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._unlisten()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        backlog = False
        while not self._stopping:
            try:
                await self._listen()
                if not backlog:
                    await self._pace()
                self._wake.clear()
                backlog = await self.relay_once() == BATCH
                backoff = 0.5
                if backlog:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay stalled; retrying",
                            extra={"error": str(exc)[:200], "retry_in": backoff})
                await self._unlisten()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races its timeout, and this loop would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def _pace(self) -> None:
        """At most one batch per `MIN_INTERVAL`: a lone event goes out at once, a stream of them
        in batches, so a busy service pays the claim, commit and wake-ups once per batch rather
        than once per event (at most `MIN_INTERVAL` later)."""
        loop = asyncio.get_running_loop()
        wait = self._last_batch + MIN_INTERVAL - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_batch = loop.time()

    async def relay_once(self) -> int:
        """Publish one batch of pending events; returns how many were sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = sorted(await conn.fetch(CLAIM, BATCH), key=lambda row: row["seq"])
            # published together: the PUBs leave in seq order on the one connection (so the
            # stream stores them in that order) and the acks are awaited as a group; if any
            # fails, the marks roll back and the batch is sent again (duplicates are dropped
            # by the stream's Nats-Msg-Id window)
            await asyncio.gather(*(self._publish(row) for row in rows))
        self.published += len(rows)
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
        payload: bytes = row["payload"]
        envelope = json.loads(payload)
        headers = message_headers(
            self.keys, self.service, str(row["id"]), payload, row["headers"],
            envelope.get("org_id"), envelope.get("request_id") or "",
        )
        await self.js.publish(row["subject"], payload, headers=headers, timeout=PUBLISH_TIMEOUT)

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(self.channel, self._on_notify)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(Exception):
            await listener.remove_listener(self.channel, self._on_notify)
        with contextlib.suppress(Exception):
            await self.pool.release(listener)


class OutboxMetrics:
    """The outbox's gauges (set by the pruner on its schedule, not per scrape) and counter."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.pending = Gauge("argus_outbox_pending", "Outbox rows not yet published",
                             registry=registry)
        self.oldest = Gauge("argus_outbox_oldest_pending_seconds",
                            "Age of the oldest outbox row not yet published (0 when none)",
                            registry=registry)
        self.bytes = Gauge("argus_outbox_bytes", "Size of the outbox table with its indexes",
                           registry=registry)
        self.pruned = Counter("argus_outbox_pruned", "Sent outbox rows deleted by the pruner",
                              registry=registry)


class Pruner:
    """Deletes sent rows older than `keep_seconds` (never an unsent one, whatever its age), at
    most `batch` per statement and `max_batches` per run, one run every `interval` seconds
    (jittered), and refreshes the outbox metrics at each run. Several replicas may run it at
    once: they skip each other's rows, and each counts only the rows it deleted."""

    def __init__(
        self, pool: asyncpg.Pool, registry: CollectorRegistry, *, keep_seconds: float,
        interval: float, batch: int = PRUNE_BATCH, pause: float = PRUNE_PAUSE,
        max_batches: int = PRUNE_MAX_BATCHES, service: str = "",
    ) -> None:
        self.pool, self.keep_seconds, self.interval = pool, float(keep_seconds), interval
        self.batch, self.pause, self.max_batches = batch, pause, max_batches
        self.metrics = OutboxMetrics(registry)
        self.service = service
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._random = random.Random()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"outbox-pruner-{self.service}")

    async def stop(self) -> None:
        self._stopping = True  # as the relay's: a swallowed cancellation still ends the loop
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def prune_batch(self) -> int:
        """One statement: delete up to `batch` sent rows past the retention; how many."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(PRUNE, self.keep_seconds, self.batch)
        deleted = int(status.rsplit(" ", 1)[1])
        self.metrics.pruned.inc(deleted)
        return deleted

    async def prune(self) -> list[int]:
        """Batches while they come back full (at most `max_batches`), pausing between them;
        the rows each deleted."""
        batches = [await self.prune_batch()]
        while batches[-1] == self.batch and len(batches) < self.max_batches:
            await asyncio.sleep(self.pause)
            batches.append(await self.prune_batch())
        return batches

    async def refresh(self) -> None:
        """Set the gauges from the outbox as it is now."""
        async with self.pool.acquire() as conn:
            row = one(await conn.fetchrow(STATS))
        self.metrics.pending.set(row["pending"])
        self.metrics.oldest.set(row["oldest"])
        self.metrics.bytes.set(row["bytes"])

    async def run_once(self) -> bool:
        """Refresh the gauges, then prune; True when rows past the retention may remain."""
        await self.refresh()
        batches = await self.prune()
        return len(batches) == self.max_batches and batches[-1] == self.batch

    def next_wait(self) -> float:
        return self.interval * self._random.uniform(1 - PRUNE_JITTER, 1 + PRUNE_JITTER)

    async def _run(self) -> None:
        while not self._stopping:
            backlog = False
            try:
                backlog = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox prune failed; retrying",
                            extra={"error": str(exc)[:200], "retry_in": self.interval})
            await asyncio.sleep(self.pause if backlog else self.next_wait())
