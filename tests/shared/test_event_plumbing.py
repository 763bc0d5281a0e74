"""Events from the outbox to JetStream and into consumers, and request-reply, against a real
PostgreSQL and NATS. The stream is shared by the session: every test uses its own event types."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import asyncpg
import msgspec
import pytest
from nats.aio.client import Client

from argus_shared import db, events, outbox, xut
from argus_shared.consumer import Consumer, Received, verify_message
from argus_shared.embedded import EmbeddedNats, free_port
from argus_shared.nats import NatsUnavailable, RpcError, connect, ensure_stream, request, serve
from argus_shared.outbox import Relay
from argus_shared.settings import Settings
from support.infra import Infra

SERVICE = "tenant-api"


@pytest.fixture(scope="module")
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(SERVICE)


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                   schema=settings.schema)
    yield created
    await created.close()


@pytest.fixture(scope="module")
async def nc(infra: Infra) -> AsyncIterator[Client]:
    client = await connect(infra.nats_url, "test-events")
    await ensure_stream(client.jetstream())
    yield client
    await client.drain()


def unique_type() -> str:
    return f"test.t{uuid.uuid4().hex[:12]}"


def make_event(event_type: str, org: str | None = None) -> events.Event:
    return events.new_event(
        event_type, actor=events.Actor("user", "u-1"), resource=events.Resource("thing", "t-1"),
        org_id=org or str(uuid.uuid4()), request_id="req-evt-0001",
    )


async def emit_many(pool: asyncpg.Pool, evts: Sequence[events.Event], commit: bool = True) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        for event in evts:
            await outbox.emit(conn, SERVICE, event, role="admin")
        await (tx.commit() if commit else tx.rollback())


async def stream_messages(nc: Client, event_type: str, expect: int, wait: float = 10) -> list:
    """Every message stored for one event type (an ephemeral consumer, read to the end)."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(events.subject_for(SERVICE, event_type), durable=None,
                                  stream=events.STREAM)
    got: list = []
    deadline = asyncio.get_running_loop().time() + wait
    while asyncio.get_running_loop().time() < deadline:
        try:
            batch = await sub.fetch(100, timeout=0.5)
        except TimeoutError:
            if len(got) >= expect:
                break
            continue
        for msg in batch:
            await msg.ack()
        got.extend(batch)
    await sub.unsubscribe()
    return got


async def pending(pool: asyncpg.Pool, ids: Sequence[str]) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "select count(*) from outbox where id = any($1::uuid[]) and sent_at is null", ids
        )


def test_envelope_round_trip_and_user_agent_cut() -> None:
    event = events.new_event("x.y", actor=events.Actor("user", "1"),
                             resource=events.Resource("org", "2"), user_agent="u" * 900)
    assert len(event.user_agent or "") == events.USER_AGENT_MAX
    assert events.decode(events.encode(event)) == event


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: {**e, "extra": 1},
        lambda e: {**e, "id": "not-a-uuid"},
        lambda e: {**e, "occurred_at": "yesterday"},
        lambda e: {**e, "org_id": "nope"},
        lambda e: {k: v for k, v in e.items() if k != "actor"},
    ],
)
def test_malformed_envelopes_are_refused(mutate: Callable[[dict], dict]) -> None:
    good = msgspec.to_builtins(make_event("x.y"))
    with pytest.raises((msgspec.ValidationError, ValueError)):
        events.decode(msgspec.json.encode(mutate(good)))


async def test_connect_to_a_closed_port_fails_fast_with_one_line() -> None:
    port = free_port()
    with pytest.raises(NatsUnavailable) as raised:
        await connect(f"nats://127.0.0.1:{port}", "nobody")
    assert f"127.0.0.1:{port}" in str(raised.value) and "\n" not in str(raised.value)


async def test_ensure_stream_is_idempotent_under_a_race(nc: Client) -> None:
    await asyncio.gather(*(ensure_stream(nc.jetstream()) for _ in range(5)))
    info = await nc.jetstream().stream_info(events.STREAM)
    assert info.config.subjects == ["argus.events.>"]


async def test_committed_events_are_published_signed_and_marked_sent(
    pool: asyncpg.Pool, nc: Client, settings: Settings
) -> None:
    kind = unique_type()
    kept, dropped = make_event(kind), make_event(kind)
    await emit_many(pool, [kept])
    await emit_many(pool, [dropped], commit=False)
    relay = Relay(pool, nc.jetstream(), service=SERVICE, keys=settings.xut_keys)
    await relay.start()
    try:
        messages = await stream_messages(nc, kind, expect=1)
    finally:
        await relay.stop()
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [kept.id]
    received = verify_message(settings.xut_keys, messages[0])
    assert received.error is None
    assert received.event == kept
    assert received.claims is not None and received.claims.sub == "user:u-1"
    assert received.claims.role == "admin" and received.claims.iss == SERVICE
    assert await pending(pool, [kept.id]) == 0


async def test_events_wait_while_nats_is_down_and_go_out_once_it_returns(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    server = EmbeddedNats(tmp_path / "nats", port)
    server.start()
    client = await connect(server.url, "relay-outage")
    await ensure_stream(client.jetstream())
    relay = Relay(pool, client.jetstream(), service=SERVICE, keys=settings.xut_keys)
    kind = unique_type()
    await relay.start()
    try:
        server.stop()
        batch = [make_event(kind) for _ in range(20)]
        await emit_many(pool, batch)
        await asyncio.sleep(1.5)
        assert await pending(pool, [e.id for e in batch]) == 20  # waiting, not lost
        server.start()
        for _ in range(100):
            if await pending(pool, [e.id for e in batch]) == 0:
                break
            await asyncio.sleep(0.2)
        assert await pending(pool, [e.id for e in batch]) == 0
        messages = await stream_messages(client, kind, expect=20)
        assert sorted(m.headers["Nats-Msg-Id"] for m in messages) == sorted(e.id for e in batch)
    finally:
        await relay.stop()
        await client.close()
        server.stop()


async def test_republishing_an_event_is_dropped_by_the_stream(
    pool: asyncpg.Pool, nc: Client, settings: Settings
) -> None:
    kind = unique_type()
    event = make_event(kind)
    await emit_many(pool, [event])
    relay = Relay(pool, nc.jetstream(), service=SERVICE, keys=settings.xut_keys)
    while await relay.relay_once():
        pass
    async with pool.acquire() as conn:  # as if the relay crashed before marking it sent
        await conn.execute("update outbox set sent_at = null where id = $1", event.id)
    while await relay.relay_once():
        pass
    assert len(await stream_messages(nc, kind, expect=1, wait=2)) == 1


async def test_two_relays_publish_each_event_once(
    pool: asyncpg.Pool, nc: Client, settings: Settings
) -> None:
    kind = unique_type()
    batch = [make_event(kind) for _ in range(300)]
    relays = [Relay(pool, nc.jetstream(), service=SERVICE, keys=settings.xut_keys)
              for _ in range(2)]
    for relay in relays:
        await relay.start()
    try:
        await emit_many(pool, batch)
        messages = await stream_messages(nc, kind, expect=300, wait=20)
    finally:
        for relay in relays:
            await relay.stop()
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(ids) == 300 and set(ids) == {e.id for e in batch}


async def publish_signed(nc: Client, settings: Settings, event: events.Event,
                         **overrides: object) -> None:
    body = events.encode(event)
    identity = xut.Identity(sub="user:u-1", org=overrides.pop("org", event.org_id))
    token = xut.sign(settings.xut_keys, identity, issuer=SERVICE,
                     audience=str(overrides.pop("audience", events.EVENTS_AUDIENCE)),
                     body=overrides.pop("signed_body", body))  # type: ignore[arg-type]
    headers = {"Nats-Msg-Id": event.id, **({xut.HEADER: token} if overrides.pop(
        "with_token", True) else {})}
    await nc.jetstream().publish(events.subject_for(SERVICE, event.type), body, headers=headers)


async def run_consumer(nc: Client, settings: Settings, kind: str, handler, durable: str,
                       until: Callable[[], bool]) -> None:
    consumer = Consumer(nc.jetstream(), settings.xut_keys, durable=durable, handler=handler,
                        subject=events.subject_for(SERVICE, kind), ack_wait=2)
    await consumer.start()
    try:
        for _ in range(150):
            if until():
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def test_forged_messages_reach_the_handler_with_a_reason(
    nc: Client, settings: Settings
) -> None:
    kind = unique_type()
    good = make_event(kind)
    await publish_signed(nc, settings, good)
    await publish_signed(nc, settings, make_event(kind), with_token=False)
    await publish_signed(nc, settings, make_event(kind), signed_body=b"another body")
    await publish_signed(nc, settings, make_event(kind), audience="files")
    await publish_signed(nc, settings, make_event(kind), org=str(uuid.uuid4()))
    await nc.jetstream().publish(events.subject_for(SERVICE, kind), b"{not json",
                                 headers={xut.HEADER: "v1.k.x.y"})
    seen: list[Received] = []

    async def handler(batch: Sequence[Received]) -> None:
        seen.extend(batch)

    await run_consumer(nc, settings, kind, handler, f"d{uuid.uuid4().hex}", lambda: len(seen) >= 6)
    assert [r.event for r in seen if r.error is None] == [good]
    reasons = sorted(r.error or "" for r in seen if r.error)
    assert reasons == sorted(["missing_token", "token_body_mismatch", "token_wrong_audience",
                              "org_mismatch", "token_unknown_kid"])


async def test_messages_are_acked_only_after_the_handler_succeeds(
    nc: Client, settings: Settings
) -> None:
    kind = unique_type()
    sent = [make_event(kind) for _ in range(3)]
    for event in sent:
        await publish_signed(nc, settings, event)
    attempts: list[int] = []
    handled: list[str] = []

    async def flaky(batch: Sequence[Received]) -> None:
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise RuntimeError("database hiccup")
        handled.extend(r.event.id for r in batch if r.event)

    durable = f"d{uuid.uuid4().hex}"
    await run_consumer(nc, settings, kind, flaky, durable, lambda: len(set(handled)) >= 3)
    assert sorted(set(handled)) == sorted(e.id for e in sent)
    assert len(attempts) >= 2

    # the same durable, restarted, does not see acknowledged messages again
    again: list[str] = []

    async def record(batch: Sequence[Received]) -> None:
        again.extend(r.event.id for r in batch if r.event)

    late = make_event(kind)
    await publish_signed(nc, settings, late)
    await run_consumer(nc, settings, kind, record, durable, lambda: bool(again))
    assert again == [late.id]


@pytest.fixture(scope="module")
async def whois_service(nc: Client, settings: Settings) -> AsyncIterator[None]:
    async def whois(claims: xut.Claims, payload: dict) -> dict:
        if payload.get("user") == "missing":
            raise RpcError(404, "no such member")
        if payload.get("user") == "crash":
            raise RuntimeError("stack detail 81c2")
        return {"sub": claims.sub, "org": claims.org, "asked": payload["user"]}

    sub = await serve(nc, settings.xut_keys, service=SERVICE, method="whois", handler=whois)
    yield
    await sub.unsubscribe()


IDENTITY = xut.Identity(sub="service:auth", org="org-9", request_id="req-rpc-0001")


async def call(nc: Client, settings: Settings, user: str) -> object:
    return await request(nc, settings.xut_keys, issuer="auth", service=SERVICE, method="whois",
                         payload={"user": user}, identity=IDENTITY)


async def test_request_reply_carries_the_identity(
    nc: Client, settings: Settings, whois_service: None
) -> None:
    assert await call(nc, settings, "u-5") == {"sub": "service:auth", "org": "org-9",
                                               "asked": "u-5"}


async def test_request_reply_errors_keep_their_status(
    nc: Client, settings: Settings, whois_service: None
) -> None:
    with pytest.raises(RpcError) as missing:
        await call(nc, settings, "missing")
    assert missing.value.status == 404
    with pytest.raises(RpcError) as crashed:
        await call(nc, settings, "crash")
    assert crashed.value.status == 500 and "81c2" not in crashed.value.detail
    with pytest.raises(RpcError) as nobody:
        await request(nc, settings.xut_keys, issuer="auth", service="nobody", method="x",
                      payload={}, identity=IDENTITY)
    assert nobody.value.status == 503


@pytest.mark.parametrize("attack", ["no_token", "wrong_audience", "other_body"])
async def test_request_reply_refuses_unverified_callers(
    nc: Client, settings: Settings, whois_service: None, attack: str
) -> None:
    body = msgspec.json.encode({"user": "u-5"})
    audience = "files" if attack == "wrong_audience" else SERVICE
    signed = b'{"user":"admin"}' if attack == "other_body" else body
    token = xut.sign(settings.xut_keys, IDENTITY, issuer="auth", audience=audience, body=signed)
    headers = {} if attack == "no_token" else {xut.HEADER: token}
    reply = await nc.request(f"argus.rpc.{SERVICE}.whois", body, timeout=2, headers=headers)
    error = msgspec.json.decode(reply.data)["error"]
    assert error["status"] == 401


async def test_the_connection_comes_back_after_nats_restarts(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    client = await connect(server.url, "reconnects")
    try:
        server.stop()
        await asyncio.sleep(0.5)
        assert not client.is_connected
        server.start()
        for _ in range(50):
            if client.is_connected:
                break
            await asyncio.sleep(0.2)
        assert client.is_connected
        sub = await client.subscribe("ping.back")
        await client.publish("ping.back", b"hello")
        assert (await sub.next_msg(timeout=2)).data == b"hello"
    finally:
        await client.close()
        server.stop()
