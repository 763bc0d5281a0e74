"""The event envelope, the NATS connection and stream, and the durable pull consumer, against
the session's real NATS JetStream. Every test reads only its own event type's subject."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from argus_shared import events, xut
from argus_shared.consumer import Received, published_at
from argus_shared.embedded import EmbeddedNats, free_port
from argus_shared.logs import JsonFormatter, request_id_var
from argus_shared.nats import CONNECT_TIMEOUT, NatsUnavailable, connect, ensure_stream
from argus_shared.pull import PullBatches
from argus_shared.settings import KeyRing, Settings, format_keyring
from support.events import (
    eventually,
    make_event,
    open_nats,
    publish_as_relay,
    running_consumer,
    stored_count,
    unique_type,
)
from support.infra import Infra
from support.web import capture

SERVICE = "audit"


@pytest.fixture(scope="module")
def keys(settings_for: Callable[..., Settings]) -> KeyRing:
    return settings_for(SERVICE).xut_keys


@pytest.fixture(scope="module")
async def nc(infra: Infra) -> AsyncIterator[Client]:
    async with open_nats(infra.nats_url, "test-events") as client:
        yield client


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


# --- the envelope -------------------------------------------------------------------------------


def full_event() -> events.Event:
    return events.new_event(
        "test.thing.created", actor=events.Actor("api_key", "k-7"),
        resource=events.Resource("thing", "t-9"), org_id=uuid.uuid4(), ip="203.0.113.9",
        user_agent="curl/8", request_id="req-0001", data={"name": "x", "tags": ["a", "b"]},
    )


def test_new_event_encodes_and_decodes_to_the_same_event() -> None:
    event = full_event()
    assert uuid.UUID(event.id).version == 4
    assert isinstance(event.org_id, str) and uuid.UUID(event.org_id).version == 4
    assert events.decode(events.encode(event)) == event


def test_new_event_stamps_a_utc_time_and_fresh_ids() -> None:
    first, second = full_event(), full_event()
    assert first.id != second.id
    occurred = datetime.fromisoformat(first.occurred_at)
    assert occurred.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - occurred) < timedelta(seconds=5)


def test_user_agent_is_cut_at_500_characters() -> None:
    def with_agent(agent: str | None) -> events.Event:
        return events.new_event("test.ua", actor=events.Actor("user", "1"),
                                resource=events.Resource("org", "2"), user_agent=agent)

    assert with_agent("u" * 900).user_agent == "u" * events.USER_AGENT_MAX == "u" * 500
    assert with_agent("short").user_agent == "short"
    assert with_agent(None).user_agent is None
    long = with_agent("é" * 501)
    assert events.decode(events.encode(long)).user_agent == "é" * 500


def envelope(**changes: Any) -> bytes:
    body = msgspec.to_builtins(full_event())
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return msgspec.json.encode(body)


def test_decode_accepts_a_well_formed_envelope() -> None:
    assert events.decode(envelope()).type == "test.thing.created"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"surprise": 1}, "unknown top-level field"),
        ({"actor": {"type": "user", "id": "1", "admin": True}}, "unknown actor field"),
        ({"id": "not-a-uuid"}, "bad id"),
        ({"id": ""}, "empty id"),
        ({"org_id": "org-1"}, "bad org id"),
        ({"occurred_at": "yesterday"}, "bad timestamp"),
        ({"occurred_at": "2024-13-40T00:00:00+00:00"}, "impossible date"),
        ({"occurred_at": "2024-05-01T10:00:00"}, "timestamp without a time zone"),
        ({"actor": ...}, "missing actor"),
        ({"type": 5}, "wrong type"),
    ],
)
def test_decode_refuses_a_malformed_envelope(changes: dict[str, Any], why: str) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError, ValueError)):
        events.decode(envelope(**changes))


@pytest.mark.parametrize("spelling", [str.upper, lambda u: "{" + u + "}",
                                      lambda u: u.replace("-", ""), lambda u: f"urn:uuid:{u}"])
def test_decode_writes_ids_in_one_canonical_form(spelling: Callable[[str], str]) -> None:
    event_id, org_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = events.decode(envelope(id=spelling(event_id), org_id=spelling(org_id)))
    assert (event.id, event.org_id) == (event_id, org_id)


def test_decode_refuses_what_is_not_json() -> None:
    with pytest.raises(msgspec.DecodeError):
        events.decode(b"{not json")


@pytest.mark.parametrize("bad", ["", "has space", "wild.*", "tail.>", "a..b", ".lead", "end."])
def test_new_event_refuses_a_type_that_is_not_a_subject_token(bad: str) -> None:
    with pytest.raises(ValueError, match="event type"):
        events.new_event(bad, actor=events.Actor("user", "1"), resource=events.Resource("o", "2"))


def test_subject_is_prefix_service_and_type() -> None:
    assert events.subject_for("tenant-api", "org.created") == "argus.events.tenant-api.org.created"


# --- connecting and the stream ------------------------------------------------------------------


async def test_connect_to_a_closed_port_fails_fast_with_one_line_naming_the_address() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(NatsUnavailable) as raised:
        await connect(f"nats://someone:hunter2@127.0.0.1:{port}", "nobody")
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "\n" not in message and "hunter2" not in message
    assert elapsed < CONNECT_TIMEOUT / 2


async def test_ensure_stream_creates_the_stream_once_when_raced(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    try:
        nc = await connect(server.url, "race")
        try:
            js = nc.jetstream()
            await asyncio.gather(*(ensure_stream(js) for _ in range(6)))
            info = await js.stream_info(events.STREAM)
            assert info.config.subjects == [f"{events.SUBJECT_PREFIX}.>"]
            assert info.config.duplicate_window == 120
            await js.publish("argus.events.audit.test.kept", b"{}")
            await asyncio.gather(*(ensure_stream(js) for _ in range(6)))  # again: a no-op
            assert (await js.stream_info(events.STREAM)).state.messages == 1
            assert [info.config.name for info in await js.streams_info()] == [events.STREAM]
        finally:
            await nc.close()
    finally:
        server.stop()


async def test_ensure_stream_on_an_existing_stream_keeps_its_messages(js: JetStreamContext) -> None:
    subject = events.subject_for(SERVICE, unique_type())
    await js.publish(subject, b"{}")
    await asyncio.gather(*(ensure_stream(js) for _ in range(4)))
    assert await stored_count(js, subject) == 1


# --- the consumer -------------------------------------------------------------------------------


class Collected:
    """A batch handler that records what it was given."""

    def __init__(self) -> None:
        self.items: list[Received] = []
        self.batches = 0

    async def __call__(self, batch: Sequence[Received]) -> None:
        self.batches += 1
        self.items.extend(batch)

    def event_ids(self) -> list[str]:
        return [r.event.id for r in self.items if r.event is not None]


async def test_consumer_delivers_verified_events_with_their_claims(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    sent = [make_event(kind) for _ in range(3)]
    for event in sent:
        await publish_as_relay(js, keys, SERVICE, event, {"sub": "user:u-1", "role": "admin"})
    seen = Collected()
    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=seen):
        assert await eventually(lambda: len(seen.items) >= 3)
    assert [r.error for r in seen.items] == [None, None, None]
    assert [r.event for r in seen.items] == sent
    for item, event in zip(seen.items, sent, strict=True):
        assert item.claims is not None
        assert (item.claims.sub, item.claims.org, item.claims.role) == (
            "user:u-1", event.org_id, "admin")
        assert item.claims.aud == events.EVENTS_AUDIENCE and item.claims.iss == SERVICE


async def test_the_time_a_message_was_stored_is_read_as_nats_py_reads_it(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    """Token expiry is judged at the time the stream stored a message; the consumer reads it
    from the ack subject itself, and must agree with nats-py's own metadata, also for the v2
    subject form (with domain and account)."""
    kind = unique_type()
    await publish_as_relay(js, keys, SERVICE, make_event(kind), {"sub": "user:u-1"})
    seen = Collected()
    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=seen):
        assert await eventually(lambda: len(seen.items) >= 1)
    msg = seen.items[0].msg
    # (nats-py's datetime keeps microseconds; the ack subject has nanoseconds)
    assert published_at(msg) == pytest.approx(msg.metadata.timestamp.timestamp(), abs=1e-6)
    assert abs(published_at(msg) - time.time()) < 60
    v1 = msg.reply.split(".")
    v2 = Msg(msg._client, subject=msg.subject, data=msg.data,
             reply=".".join([*v1[:2], "hub", "ACCHASH", *v1[2:], "token"]))
    assert published_at(v2) == published_at(msg)
    assert published_at(v2) == pytest.approx(v2.metadata.timestamp.timestamp(), abs=1e-6)


async def test_messages_are_acked_only_after_the_handler_returns(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    for _ in range(3):
        await publish_as_relay(js, keys, SERVICE, make_event(kind))
    release = asyncio.Event()
    seen = Collected()

    async def slow(batch: Sequence[Received]) -> None:
        await seen(batch)
        await release.wait()

    durable = f"test-{uuid.uuid4().hex}"
    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=slow, durable=durable):
        assert await eventually(lambda: len(seen.items) == 3)
        info = await js.consumer_info(events.STREAM, durable)
        assert info.num_ack_pending == 3  # handed over, not yet acknowledged
        release.set()

        async def all_acked() -> bool:
            return (await js.consumer_info(events.STREAM, durable)).num_ack_pending == 0

        assert await eventually(all_acked)


async def test_a_failing_handler_gets_the_same_messages_again_until_it_succeeds(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    sent = [make_event(kind) for _ in range(3)]
    for event in sent:
        await publish_as_relay(js, keys, SERVICE, event)
    attempts: list[list[str]] = []
    handled: list[str] = []

    async def flaky(batch: Sequence[Received]) -> None:
        attempts.append([r.event.id for r in batch if r.event])
        if len(attempts) <= 2:
            raise RuntimeError("database hiccup")
        handled.extend(r.event.id for r in batch if r.event)

    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=flaky, ack_wait=2):
        assert await eventually(lambda: len(handled) >= 3, timeout=15)
    assert sorted(handled) == sorted(e.id for e in sent)
    assert len(handled) == 3  # once each, after success
    assert len(attempts) >= 3
    failed = {i for batch in attempts[:2] for i in batch}
    assert failed <= {e.id for e in sent} and failed  # what failed came back


async def test_a_restarted_consumer_does_not_handle_acked_messages_again(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    subject = events.subject_for(SERVICE, kind)
    first = [make_event(kind) for _ in range(2)]
    for event in first:
        await publish_as_relay(js, keys, SERVICE, event)
    durable = f"test-{uuid.uuid4().hex}"
    before = Collected()
    async with running_consumer(nc, keys, subject=subject, handler=before, durable=durable,
                                ack_wait=1):
        assert await eventually(lambda: len(before.items) == 2)
    await nc.flush()
    info = await js.consumer_info(events.STREAM, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0

    late = make_event(kind)
    await publish_as_relay(js, keys, SERVICE, late)
    after = Collected()
    async with running_consumer(nc, keys, subject=subject, handler=after, durable=durable,
                                ack_wait=1):
        assert await eventually(lambda: len(after.items) >= 1)
        await asyncio.sleep(1.5)  # longer than ack_wait: anything unacked would be back
    assert before.event_ids() == [e.id for e in first]
    assert after.event_ids() == [late.id]


async def publish_forged(js: JetStreamContext, keys: KeyRing, kind: str, attack: str) -> str:
    """Publish one message made wrong in one way; returns its Nats-Msg-Id."""
    event = make_event(kind)
    body = events.encode(event)
    identity = xut.Identity(sub="user:u-1", org=event.org_id)
    audience, signed_body, signer = events.EVENTS_AUDIENCE, body, keys
    if attack == "wrong_audience":
        audience = "files"
    elif attack == "other_body":
        signed_body = events.encode(make_event(kind))
    elif attack == "other_org":
        identity = xut.Identity(sub="user:u-1", org=str(uuid.uuid4()))
    elif attack == "foreign_key":
        signer = KeyRing.parse(format_keyring({keys.current: os.urandom(32)}), "foreign")
    elif attack == "not_an_event":
        body = signed_body = b'{"hello": "world"}'
    token = xut.sign(signer, identity, issuer=SERVICE, audience=audience, body=signed_body)
    headers = {"Nats-Msg-Id": event.id}
    if attack == "garbage_token":
        headers[xut.HEADER] = "v1.k1.not.a-token"
    elif attack != "no_token":
        headers[xut.HEADER] = token
    await js.publish(events.subject_for(SERVICE, kind), body, headers=headers)
    return event.id


FORGERIES = {
    "no_token": "missing_token",
    "garbage_token": "token_",
    "foreign_key": "token_",
    "wrong_audience": "token_wrong_audience",
    "other_body": "token_body_mismatch",
    "other_org": "org_mismatch",
    "not_an_event": "bad_envelope",
}


async def test_forged_messages_reach_the_handler_with_a_reason_and_no_event(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    good = make_event(kind)
    await publish_as_relay(js, keys, SERVICE, good)
    ids = {await publish_forged(js, keys, kind, attack): attack for attack in FORGERIES}
    seen = Collected()
    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=seen):
        assert await eventually(lambda: len(seen.items) >= 1 + len(FORGERIES))
    assert len(seen.items) == 1 + len(FORGERIES)  # nothing dropped, nothing twice
    assert [r.event for r in seen.items if r.error is None] == [good]
    for item in seen.items:
        if item.error is None:
            continue
        attack = ids[item.msg.headers["Nats-Msg-Id"]]  # type: ignore[index]
        assert item.event is None, attack
        assert item.error.startswith(FORGERIES[attack]), (attack, item.error)
        assert item.raw == item.msg.data


def test_the_request_id_of_an_encoded_envelope_is_read_without_the_rest() -> None:
    event = make_event("test.kind", request_id="req-envelope-0001")
    assert events.request_id_of(events.encode(event)) == "req-envelope-0001"
    assert events.request_id_of(events.encode(make_event("test.kind", request_id=""))) is None
    assert events.request_id_of(b"not json") is None
    assert events.request_id_of(b'{"request_id": 7}') is None


async def test_a_message_names_the_request_that_caused_it_only_when_verified(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    """The envelope's request id; a verified token's `rid` when the envelope is unreadable;
    never the `rid` of a token that did not verify."""
    kind = unique_type()
    caused = make_event(kind, request_id="req-cause-0001")
    uncaused = make_event(kind, request_id="")
    for event in (caused, uncaused):
        await publish_as_relay(js, keys, SERVICE, event)
    body = b'{"hello": "world"}'
    foreign = KeyRing.parse(format_keyring({keys.current: os.urandom(32)}), "foreign")
    for signer, rid in ((keys, "req-token-0002"), (foreign, "req-forged-0003")):
        token = xut.sign(signer, xut.Identity(sub="user:u-1", request_id=rid), issuer=SERVICE,
                         audience=events.EVENTS_AUDIENCE, body=body)
        await js.publish(events.subject_for(SERVICE, kind), body,
                         headers={xut.HEADER: token, "Nats-Msg-Id": rid})
    seen = Collected()
    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=seen):
        assert await eventually(lambda: len(seen.items) >= 4)
    assert [item.request_id for item in seen.items] == [
        "req-cause-0001", None, "req-token-0002", None]


async def test_a_failed_batch_is_logged_with_the_request_ids_it_holds(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    for rid in ("req-batch-0001", "req-batch-0001", "req-batch-0002"):
        await publish_as_relay(js, keys, SERVICE, make_event(kind, request_id=rid))
    batches: list[int] = []

    async def failing(batch: Sequence[Received]) -> None:
        batches.append(len(batch))
        raise RuntimeError("database hiccup")

    async with capture("argus.consumer", JsonFormatter(SERVICE)) as logged:
        async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                    handler=failing, ack_wait=2):
            assert await eventually(lambda: sum(batches) >= 3, timeout=15)
    lines = [msgspec.json.decode(line) for line in logged.lines if "handler failed" in line]
    assert {rid for line in lines for rid in line["request_ids"]} == {
        "req-batch-0001", "req-batch-0002"}
    for line in lines:  # one request's batch carries its id; a mixed one names both
        assert line.get("request_id") == (
            line["request_ids"][0] if len(line["request_ids"]) == 1 else None)
    assert request_id_var.get() is None


async def test_the_consumer_keeps_going_after_a_handler_settles_a_message_itself(
    nc: Client, js: JetStreamContext, keys: KeyRing
) -> None:
    kind = unique_type()
    await publish_forged(js, keys, kind, "no_token")
    seen = Collected()

    async def quarantine(batch: Sequence[Received]) -> None:
        for item in batch:
            if item.error:
                await item.msg.term()  # the handler may settle a poison message itself
        await seen(batch)

    async with running_consumer(nc, keys, subject=events.subject_for(SERVICE, kind),
                                handler=quarantine):
        assert await eventually(lambda: len(seen.items) == 1)
        good = make_event(kind)
        await publish_as_relay(js, keys, SERVICE, good)
        assert await eventually(lambda: good.id in seen.event_ids(), timeout=5)


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


# --- the pull loop ------------------------------------------------------------------------------


async def pull_of(js: JetStreamContext, nc: Client, subject: str) -> PullBatches:
    durable = f"pull-{uuid.uuid4().hex[:8]}"
    await js.add_consumer(events.STREAM, ConsumerConfig(
        durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT))
    pull = PullBatches(nc, events.STREAM, durable)
    await pull.start()
    return pull


async def test_a_pull_returns_what_waits_at_once_and_lingers_only_for_an_empty_stream(
    js: JetStreamContext, nc: Client
) -> None:
    subject = f"{events.SUBJECT_PREFIX}.pull.t{uuid.uuid4().hex[:8]}"
    for n in range(3):
        await js.publish(subject, str(n).encode())
    pull = await pull_of(js, nc, subject)
    # a linger of 30 s would outlast the 10 s allowed here: waiting messages come at once
    first = await asyncio.wait_for(pull.fetch(2, linger=30), 10)
    rest = await asyncio.wait_for(pull.fetch(500, linger=30), 10)
    assert [m.data for m in first + rest] == [b"0", b"1", b"2"]
    for msg in first + rest:
        await msg.ack()
    assert await pull.fetch(500, linger=0.3) == []
    lingering = asyncio.ensure_future(pull.fetch(500, linger=30))
    await asyncio.sleep(0.2)
    await js.publish(subject, b"late")
    assert [m.data for m in await asyncio.wait_for(lingering, 10)] == [b"late"]
    await pull.stop()


async def test_a_pull_from_a_deleted_consumer_is_reported_and_comes_back_empty(
    js: JetStreamContext, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    pull = await pull_of(js, nc, f"{events.SUBJECT_PREFIX}.pull.t{uuid.uuid4().hex[:8]}")
    await js.delete_consumer(events.STREAM, pull.api.rsplit(".", 1)[1])
    assert await pull.fetch(500, linger=0.5) == []
    refused = [r for r in caplog.records if r.message == "pull request refused"]
    # no responders: nobody serves that consumer; refused once, it pauses rather than asks again
    assert [getattr(r, "status", None) for r in refused] == ["503"]  # the log record's extra
    await pull.stop()
