"""The transactional outbox, its relay and its pruner, against real PostgreSQL and NATS JetStream.

These tests use the `webhooks` schema's outbox, which no other test module writes to, so a relay
here only ever sees this module's rows; each test still reads only its own event type. The
pruner's tests count whole tables, so they have a database of their own (`quiet`), emptied
before each of them."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from argus_shared import events, outbox, xut
from argus_shared.consumer import verify_message
from argus_shared.db import connect
from argus_shared.embedded import EmbeddedNats, free_port
from argus_shared.outbox import PRUNE_BATCH, Pruner, Relay
from argus_shared.settings import OWNER_ROLE, SERVICES, Settings, schema_of
from support.events import (
    emit_all,
    eventually,
    make_event,
    open_nats,
    open_pool,
    pending,
    relay_all,
    stored_count,
    stream_messages,
    unique_type,
)
from support.infra import Infra

SERVICE = "webhooks"


@pytest.fixture(scope="module")
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(SERVICE)


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(settings) as created:
        yield created


@pytest.fixture(scope="module")
async def nc(infra: Infra) -> AsyncIterator[Client]:
    async with open_nats(infra.nats_url, "test-outbox") as client:
        yield client


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
def relay(pool: asyncpg.Pool, js: JetStreamContext, settings: Settings) -> Relay:
    return Relay(pool, js, service=SERVICE, keys=settings.xut_keys)


async def row(pool: asyncpg.Pool, event_id: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow("select * from outbox where id = $1", event_id)


async def test_an_event_emitted_in_a_rolled_back_transaction_is_never_published(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay
) -> None:
    kind = unique_type()
    dropped, kept = make_event(kind), make_event(kind)
    await emit_all(pool, SERVICE, [dropped], commit=False)
    await emit_all(pool, SERVICE, [kept])
    assert await row(pool, dropped.id) is None
    assert await relay_all(relay) >= 1
    messages = await stream_messages(js, events.subject_for(SERVICE, kind), expect=1, wait=2)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [kept.id]  # type: ignore[index]


async def test_a_committed_event_is_published_signed_and_marked_sent(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay, settings: Settings
) -> None:
    kind = unique_type()
    event = make_event(kind)
    await emit_all(pool, SERVICE, [event], role="admin", scopes=("things:read",))
    stored = await row(pool, event.id)
    assert stored is not None and stored["sent_at"] is None
    assert stored["subject"] == f"argus.events.{SERVICE}.{kind}"

    assert await relay_all(relay) >= 1
    [message] = await stream_messages(js, events.subject_for(SERVICE, kind), expect=1)
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == event.id
    received = verify_message(settings.xut_keys, message)
    assert received.error is None and received.event == event
    claims = received.claims
    assert claims is not None
    assert claims.sub == "user:u-1" and claims.org == event.org_id
    assert claims.aud == events.EVENTS_AUDIENCE and claims.iss == SERVICE
    assert claims.role == "admin" and claims.scopes == ["things:read"]
    assert claims.rid == event.request_id
    assert claims.bh == hashlib.sha256(message.data).hexdigest()
    with pytest.raises(xut.TokenError, match="body_mismatch"):  # bound to this body alone
        xut.verify(settings.xut_keys, message.headers[xut.HEADER],
                   audience=events.EVENTS_AUDIENCE, body=message.data + b" ")
    sent = await row(pool, event.id)
    assert sent is not None and sent["sent_at"] is not None


async def test_a_batch_reaches_the_stream_in_the_order_it_was_emitted(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay
) -> None:
    """Events emitted one after another (separate commits) are published as one batch, and the
    stream stores them in the order they were emitted."""
    kind = unique_type()
    sent = [make_event(kind) for _ in range(60)]
    for event in sent:
        await emit_all(pool, SERVICE, [event])
    assert await relay.relay_once() >= len(sent)
    messages = await stream_messages(js, events.subject_for(SERVICE, kind), expect=len(sent))
    assert [m.headers["Nats-Msg-Id"] for m in messages if m.headers] == [e.id for e in sent]


async def test_the_relay_is_woken_by_notify_rather_than_its_poll(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "POLL_SECONDS", 60.0)  # only a NOTIFY can wake it in time
    kind = unique_type()
    subject = events.subject_for(SERVICE, kind)
    await relay.start()
    try:
        for n in range(1, 4):  # each emit after the relay has gone back to waiting
            await emit_all(pool, SERVICE, [make_event(kind)])
            assert await eventually(lambda n=n: _at_least(js, subject, n), timeout=10), n
    finally:
        await relay.stop()


async def _at_least(js: JetStreamContext, subject: str, n: int) -> bool:
    return await stored_count(js, subject) >= n


async def test_events_wait_while_nats_is_down_and_all_go_out_once_it_returns(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    try:
        async with open_nats(server.url, "relay-outage") as client:
            js = client.jetstream()
            relay = Relay(pool, js, service=SERVICE, keys=settings.xut_keys)
            kind = unique_type()
            subject = events.subject_for(SERVICE, kind)
            batch = [make_event(kind) for _ in range(20)]
            ids = [e.id for e in batch]
            await relay.start()
            try:
                server.stop()
                await emit_all(pool, SERVICE, batch)
                await asyncio.sleep(1.5)  # the relay tries, and fails, meanwhile
                assert await pending(pool, ids) == 20  # waiting, not lost
                server.start()
                assert await eventually(lambda: _none_pending(pool, ids), timeout=20)
            finally:
                await relay.stop()
            assert await stored_count(js, subject) == 20
            messages = await stream_messages(js, subject, expect=20)
            assert sorted(m.headers["Nats-Msg-Id"] for m in messages) == sorted(ids)  # type: ignore[index]
    finally:
        server.stop()


async def _none_pending(pool: asyncpg.Pool, ids: list[str]) -> bool:
    return await pending(pool, ids) == 0


async def test_republishing_an_event_is_dropped_by_the_streams_dedup(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay
) -> None:
    kind = unique_type()
    event = make_event(kind)
    await emit_all(pool, SERVICE, [event])
    assert await relay_all(relay) == 1
    async with pool.acquire() as conn:  # as if the relay died after publishing, before marking
        await conn.execute("update outbox set sent_at = null where id = $1", event.id)
    assert await relay.relay_once() == 1  # published again...
    assert await relay.relay_once() == 0
    assert await pending(pool, [event.id]) == 0
    assert await stored_count(js, events.subject_for(SERVICE, kind)) == 1  # ...and dropped


async def test_two_relays_on_one_table_publish_each_event_once(
    pool: asyncpg.Pool, js: JetStreamContext, settings: Settings
) -> None:
    kind = unique_type()
    subject = events.subject_for(SERVICE, kind)
    batch = [make_event(kind) for _ in range(450)]
    ids = [e.id for e in batch]
    relays = [Relay(pool, js, service=SERVICE, keys=settings.xut_keys) for _ in range(2)]
    for one in relays:
        await one.start()
    try:
        await emit_all(pool, SERVICE, batch)
        assert await eventually(lambda: _none_pending(pool, ids), timeout=20)
    finally:
        for one in relays:
            await one.stop()
    assert sum(one.published for one in relays) == 450  # no row claimed by both
    assert await stored_count(js, subject) == 450
    messages = await stream_messages(js, subject, expect=450)
    counts = Counter(m.headers["Nats-Msg-Id"] for m in messages)  # type: ignore[index]
    assert set(counts) == set(ids) and set(counts.values()) == {1}


async def test_the_relay_keeps_delivering_after_losing_its_listener_connection(
    settings: Settings, js: JetStreamContext, admin: asyncpg.Connection
) -> None:
    async with open_pool(settings, max_size=2) as small:  # a leaked connection would starve it
        relay = Relay(small, js, service=SERVICE, keys=settings.xut_keys)
        await relay.start()
        try:
            kind = unique_type()
            subject = events.subject_for(SERVICE, kind)
            first = await _listener_pid(admin, relay.channel)
            assert first is not None
            assert await admin.fetchval("select pg_terminate_backend($1)", first)
            await emit_all(small, SERVICE, [make_event(kind)])
            assert await eventually(lambda: _at_least(js, subject, 1), timeout=10)
            second = await _listener_pid(admin, relay.channel)
            assert second is not None and second != first  # it listens again
        finally:
            await relay.stop()


async def _listener_pid(admin: asyncpg.Connection, channel: str) -> int | None:
    """The backend of the one live connection that has LISTENed on `channel`."""

    async def find() -> int | None:
        return await admin.fetchval(
            "select pid from pg_stat_activity where query = $1 and state = 'idle'"
            " and pid <> pg_backend_pid()", f'LISTEN "{channel}"',
        )

    async def found() -> bool:
        return await find() is not None

    await eventually(found, timeout=5)
    return await find()


async def test_an_event_too_large_for_nats_is_refused_at_emit_not_left_to_block_the_outbox(
    pool: asyncpg.Pool, js: JetStreamContext, relay: Relay
) -> None:
    kind = unique_type()
    huge = events.new_event(kind, actor=events.Actor("user", "u"),
                            resource=events.Resource("blob", "b"), data={"blob": "x" * 2_000_000})
    with pytest.raises(ValueError, match="too large"):
        await emit_all(pool, SERVICE, [huge])
    assert await row(pool, huge.id) is None
    after = make_event(kind)
    await emit_all(pool, SERVICE, [after])
    await relay_all(relay)
    assert await stored_count(js, events.subject_for(SERVICE, kind)) == 1


async def test_an_event_whose_type_is_no_subject_is_refused_at_emit(pool: asyncpg.Pool) -> None:
    event = make_event(unique_type())
    bad = events.Event(id=event.id, type="has space", actor=event.actor,
                       resource=event.resource, occurred_at=event.occurred_at)
    with pytest.raises(ValueError, match="event type"):
        await emit_all(pool, SERVICE, [bad])
    assert await row(pool, bad.id) is None


def test_the_relay_listens_on_the_channel_the_trigger_notifies(settings: Settings) -> None:
    # the trigger notifies 'argus_outbox_' || its schema; a service name may have a dash
    for service in SERVICES:
        one = Relay(None, None, service=service, keys=settings.xut_keys)  # type: ignore[arg-type]
        assert one.channel == f"argus_outbox_{schema_of(service)}"



# --- the pruner ----------------------------------------------------------------------------------

KEEP = 3600.0  # the default retention, in seconds
HOUR, DAY = 3600.0, 86400.0


@pytest.fixture(scope="module")
async def quiet_settings(infra: Infra, settings_for: Callable[..., Settings]) -> Settings:
    """A database of its own, with only this service's schema: nobody else writes its outbox."""
    url = await infra.create_database((SERVICE,))
    return settings_for(SERVICE, ARGUS_DATABASE_URL=url)


@pytest.fixture(scope="module")
async def quiet_pool(quiet_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(quiet_settings) as created:
        yield created


@pytest.fixture
async def quiet(
    quiet_pool: asyncpg.Pool, quiet_settings: Settings, owner_password: str
) -> asyncpg.Pool:
    """The quiet database's pool, its outbox emptied (as the owner: the service may not
    TRUNCATE)."""
    owner = await connect(quiet_settings.database_url, OWNER_ROLE, owner_password)
    try:
        await owner.execute(f"truncate {quiet_settings.schema}.outbox")
    finally:
        await owner.close()
    return quiet_pool


def pruner(pool: asyncpg.Pool, **kwargs: object) -> Pruner:
    options: dict[str, object] = {"keep_seconds": KEEP, "interval": 1.0, "pause": 0.0, **kwargs}
    return Pruner(pool, CollectorRegistry(), **options)  # type: ignore[arg-type]


async def add_rows(pool: asyncpg.Pool, n: int, label: str, *, created_ago: float,
                   sent_ago: float | None) -> None:
    """`n` rows labelled `label` (their subject), created and sent (or not: None) that many
    seconds ago."""
    async with pool.acquire() as conn:
        await conn.execute(
            """
            insert into outbox (id, subject, payload, created_at, sent_at)
            select gen_random_uuid(), $2, '\\x7b7d'::bytea,
                   now() - $3::float8 * interval '1 second',
                   now() - $4::float8 * interval '1 second'
            from generate_series(1, $1)
            """,
            n, f"argus.events.{SERVICE}.prune.{label}", created_ago, sent_ago,
        )


async def labels(pool: asyncpg.Pool) -> Counter[str]:
    """How many rows of each label the outbox holds."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("select subject from outbox")
    return Counter(row["subject"].rsplit(".", 1)[1] for row in rows)


def sample(one: Pruner, name: str) -> float | None:
    return one.metrics.registry.get_sample_value(name)


async def test_the_pruner_deletes_sent_rows_past_the_retention_and_nothing_else(
    quiet: asyncpg.Pool,
) -> None:
    await add_rows(quiet, 3, "sentlongago", created_ago=2 * HOUR, sent_ago=2 * HOUR)
    await add_rows(quiet, 2, "sentrecently", created_ago=HOUR / 2, sent_ago=HOUR / 2)
    await add_rows(quiet, 2, "sentlateafteranoutage", created_ago=3 * HOUR, sent_ago=600)
    await add_rows(quiet, 2, "unsentlongago", created_ago=30 * DAY, sent_ago=None)
    await add_rows(quiet, 1, "unsent", created_ago=0, sent_ago=None)
    one = pruner(quiet)
    assert await one.prune() == [3]
    assert await labels(quiet) == {"sentrecently": 2, "sentlateafteranoutage": 2,
                                   "unsentlongago": 2, "unsent": 1}
    assert sample(one, "argus_outbox_pruned_total") == 3
    assert await one.prune() == [0]  # idempotent: nothing more is due


async def test_an_unsent_row_past_the_retention_is_kept_while_nats_is_down(
    quiet: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    try:
        async with open_nats(server.url, "prune-outage") as client:
            relay = Relay(quiet, client.jetstream(), service=SERVICE, keys=settings.xut_keys)
            await relay.start()
            try:
                server.stop()
                await add_rows(quiet, 1, "waiting", created_ago=2 * DAY, sent_ago=None)
                await asyncio.sleep(1.5)  # the relay claims it, fails to publish, rolls back
                one = pruner(quiet)
                for _ in range(2):
                    await one.run_once()
                assert await labels(quiet) == {"waiting": 1}
                assert not await _none_unsent(quiet)
                assert sample(one, "argus_outbox_pending") == 1
                oldest = sample(one, "argus_outbox_oldest_pending_seconds")
                assert oldest is not None and 2 * DAY <= oldest < 2 * DAY + HOUR
                assert sample(one, "argus_outbox_pruned_total") == 0
                server.start()  # published once NATS is back, then kept for the retention
                assert await eventually(lambda: _none_unsent(quiet), timeout=20)
                assert await one.run_once() is False
                assert await labels(quiet) == {"waiting": 1}
            finally:
                await relay.stop()
    finally:
        server.stop()


async def test_a_large_prune_takes_bounded_batches_and_leaves_no_row_due(
    quiet: asyncpg.Pool,
) -> None:
    await add_rows(quiet, 2 * PRUNE_BATCH + PRUNE_BATCH // 2, "due", created_ago=DAY,
                   sent_ago=2 * HOUR)
    await add_rows(quiet, 10, "unsentlongago", created_ago=DAY, sent_ago=None)
    one = pruner(quiet)
    assert await one.prune() == [PRUNE_BATCH, PRUNE_BATCH, PRUNE_BATCH // 2]
    assert await labels(quiet) == {"unsentlongago": 10}
    assert sample(one, "argus_outbox_pruned_total") == 2 * PRUNE_BATCH + PRUNE_BATCH // 2


async def test_a_run_stops_after_its_batches_and_the_next_run_goes_on(
    quiet: asyncpg.Pool,
) -> None:
    """A run is bounded too (so the gauges refresh however large the backlog); it says when
    rows may remain, and the loop then runs again after a pause rather than an interval."""
    await add_rows(quiet, 250, "due", created_ago=DAY, sent_ago=2 * HOUR)
    one = pruner(quiet, batch=100, max_batches=2)
    assert await one.run_once() is True
    assert await labels(quiet) == {"due": 50}
    assert await one.run_once() is False
    assert await labels(quiet) == {}


async def test_two_pruners_at_once_neither_fails_nor_counts_a_row_twice(
    quiet: asyncpg.Pool, quiet_settings: Settings,
) -> None:
    await add_rows(quiet, 5000, "due", created_ago=DAY, sent_ago=2 * HOUR)
    await add_rows(quiet, 5, "unsentlongago", created_ago=DAY, sent_ago=None)
    async with open_pool(quiet_settings) as other:  # another replica: its own connections
        first, second = pruner(quiet, batch=100), pruner(other, batch=100)
        done = await asyncio.gather(first.prune(), second.prune())
    assert all(batches for batches in done)
    assert sum(map(sum, done)) == 5000
    assert (sample(first, "argus_outbox_pruned_total") or 0) + (
        sample(second, "argus_outbox_pruned_total") or 0) == 5000
    assert await labels(quiet) == {"unsentlongago": 5}


async def test_the_metrics_report_the_backlog_and_its_oldest_row_truthfully(
    quiet: asyncpg.Pool,
) -> None:
    one = pruner(quiet)
    await one.refresh()
    assert sample(one, "argus_outbox_pending") == 0
    assert sample(one, "argus_outbox_oldest_pending_seconds") == 0
    empty = sample(one, "argus_outbox_bytes")
    assert empty is not None and empty > 0

    await add_rows(quiet, 1, "oldest", created_ago=600, sent_ago=None)
    await add_rows(quiet, 2, "younger", created_ago=120, sent_ago=None)
    await add_rows(quiet, 1, "new", created_ago=0, sent_ago=None)
    await add_rows(quiet, 500, "sent", created_ago=7200, sent_ago=7000)  # not pending
    await one.refresh()
    assert sample(one, "argus_outbox_pending") == 4
    oldest = sample(one, "argus_outbox_oldest_pending_seconds")
    assert oldest is not None and 600 <= oldest < 660
    filled = sample(one, "argus_outbox_bytes")
    assert filled is not None and filled > empty

    async with quiet.acquire() as conn:  # the oldest is published: the next one is the oldest
        await conn.execute("update outbox set sent_at = now() where subject like '%.oldest'")
    await one.refresh()
    assert sample(one, "argus_outbox_pending") == 3
    oldest = sample(one, "argus_outbox_oldest_pending_seconds")
    assert oldest is not None and 120 <= oldest < 180


async def test_the_pruner_keeps_running_past_a_failed_run(
    quiet: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its loop survives an error (the database gone a moment) and prunes on the next run."""
    one = pruner(quiet, interval=0.05)
    calls = 0
    real = one.run_once

    async def flaky() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncpg.PostgresConnectionError("gone")
        return await real()

    monkeypatch.setattr(one, "run_once", flaky)
    await add_rows(quiet, 3, "due", created_ago=DAY, sent_ago=2 * HOUR)
    await one.start()
    try:
        assert await eventually(lambda: _no_rows(quiet), timeout=10)
    finally:
        await one.stop()
    assert calls >= 2


async def _none_unsent(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return await conn.fetchval("select count(*) from outbox where sent_at is null") == 0


async def _no_rows(pool: asyncpg.Pool) -> bool:
    return not await labels(pool)
