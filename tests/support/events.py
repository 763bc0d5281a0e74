"""Helpers for the event-plumbing tests, against the session's real PostgreSQL and NATS.

The stream `ARGUS_EVENTS` is shared by the whole session, so every test works on its own event
type (`unique_type()`), hence its own subject, and reads only that subject."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from argus_shared import db, events, outbox
from argus_shared.consumer import BatchHandler, Consumer
from argus_shared.nats import connect, ensure_stream
from argus_shared.settings import KeyRing, Settings

ACTOR = events.Actor("user", "u-1")


def unique_type(prefix: str = "test") -> str:
    """An event type no other test uses: its subject is this test's alone."""
    return f"{prefix}.t{uuid.uuid4().hex[:16]}"


def make_event(
    event_type: str, *, org: str | None = None, actor: events.Actor = ACTOR,
    request_id: str = "req-events-0001",
) -> events.Event:
    return events.new_event(
        event_type, actor=actor, resource=events.Resource("thing", "t-1"),
        org_id=org or str(uuid.uuid4()), request_id=request_id, data={"n": 1},
    )


@asynccontextmanager
async def open_pool(settings: Settings, **kwargs: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_nats(url: str, name: str) -> AsyncIterator[Client]:
    nc = await connect(url, name)
    try:
        await ensure_stream(nc.jetstream())
        yield nc
    finally:
        await nc.close()


async def emit_all(
    pool: asyncpg.Pool, service: str, evts: Sequence[events.Event], *, commit: bool = True,
    role: str | None = None, scopes: tuple[str, ...] = (),
) -> None:
    """Emit `evts` in one transaction that commits or rolls back."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for event in evts:
                await outbox.emit(conn, service, event, role=role, scopes=scopes)
        except BaseException:
            await tx.rollback()
            raise
        await (tx.commit() if commit else tx.rollback())


async def pending(pool: asyncpg.Pool, ids: Sequence[str]) -> int:
    """How many of the outbox rows `ids` are not yet marked sent."""
    async with pool.acquire() as conn:
        return int(await conn.fetchval(
            "select count(*) from outbox where id = any($1::uuid[]) and sent_at is null", ids
        ))


async def relay_all(relay: outbox.Relay) -> int:
    """Run `relay_once` until nothing is pending; how many it published."""
    total = 0
    while sent := await relay.relay_once():
        total += sent
    return total


async def stored_count(js: JetStreamContext, subject: str) -> int:
    """How many messages the stream holds on `subject` (duplicates included, if any got in)."""
    info = await js.stream_info(events.STREAM, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def stream_messages(js: JetStreamContext, subject: str, expect: int,
                          wait: float = 10.0) -> list[Msg]:
    """The messages stored on `subject`, read from the start by an ephemeral consumer; waits up
    to `wait` seconds for `expect` of them, then returns whatever the stream holds."""
    sub = await js.pull_subscribe(subject, durable=None, stream=events.STREAM)
    got: list[Msg] = []
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            try:
                batch = await sub.fetch(100, timeout=0.3)
            except (NatsTimeout, TimeoutError):
                if len(got) >= expect:
                    break
                continue
            for msg in batch:
                await msg.ack()
            got.extend(batch)
    finally:
        await sub.unsubscribe()
    return got


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                     timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `check` (sync or async) until it is true or `timeout` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result or time.monotonic() >= deadline:
            return bool(result)
        await asyncio.sleep(interval)


async def publish_as_relay(
    js: JetStreamContext, keys: KeyRing, service: str, event: events.Event,
    stored: dict[str, object] | None = None,
) -> None:
    """Publish `event` with exactly the headers the outbox relay would give it."""
    payload = events.encode(event)
    headers = outbox.message_headers(
        keys, service, event.id, payload, dict(stored or {"sub": "user:u-1"}), event.org_id,
        event.request_id or "",
    )
    await js.publish(events.subject_for(service, event.type), payload, headers=headers)


@asynccontextmanager
async def running_consumer(
    nc: Client, keys: KeyRing, *, subject: str, handler: BatchHandler,
    durable: str | None = None, ack_wait: float = 30.0,
) -> AsyncIterator[Consumer]:
    consumer = Consumer(nc, keys, durable=durable or f"test-{uuid.uuid4().hex}", handler=handler,
                        subject=subject, ack_wait=ack_wait)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
