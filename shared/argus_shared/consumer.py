"""A durable JetStream pull consumer that verifies each message and acknowledges only after the
handler (which does its own transaction) has returned. A message the handler fails on is
redelivered; one that cannot be verified is handed over with its reason, never dropped.

Each message names the request that caused it (`Received.request_id`: the envelope's
`request_id`, which the relay also signs as the token's `rid`). Handlers work through a batch
item by item inside `request_context(item.request_id)`, so their log lines and the events they
record carry it; a batch-level line names the batch's request ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MsgAlreadyAckdError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from argus_shared import events, xut
from argus_shared.logs import request_context
from argus_shared.pull import PullBatches
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.consumer")
# $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending> (v1); v2 adds three
V1_ACK_TOKENS, V2_ACK_TOKENS = 9, 12
MAX_LOGGED_REQUEST_IDS = 20


@dataclass(slots=True)  # not frozen: that costs a microsecond per message (object.__setattr__)
class Received:
    """One message: a verified `event` with its `claims`, or the `error` that refused it."""

    msg: Msg
    event: events.Event | None
    claims: xut.Claims | None
    error: str | None

    @property
    def raw(self) -> bytes:
        return self.msg.data

    @property
    def request_id(self) -> str | None:
        """The request this message was caused by: the envelope's, else the verified token's
        `rid` (an unverified message names none that could be believed)."""
        if self.event is not None and self.event.request_id:
            return self.event.request_id
        if self.claims is not None and self.claims.rid:
            return self.claims.rid
        return None


def request_ids(batch: Sequence[Received]) -> list[str]:
    """The distinct request ids of a batch, in order (at most `MAX_LOGGED_REQUEST_IDS`)."""
    found = dict.fromkeys(rid for item in batch if (rid := item.request_id))
    return list(found)[:MAX_LOGGED_REQUEST_IDS]


BatchHandler = Callable[[Sequence[Received]], Awaitable[None]]


def published_at(msg: Msg) -> float:
    """When the stream stored `msg` (seconds), read from its ack subject like nats-py's
    `metadata` does, without building the rest of that object for every message."""
    tokens = (msg.reply or "").split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == V1_ACK_TOKENS:
            return int(tokens[7]) / 1e9
        if len(tokens) >= V2_ACK_TOKENS - 1:
            return int(tokens[Msg.Ack.Timestamp]) / 1e9
    return msg.metadata.timestamp.timestamp()


# Every reason verify_message refuses a message for (the part before any ": detail").
REFUSALS = ("missing_token", *(f"token_{reason}" for reason in xut.REASONS), "bad_envelope",
            "org_mismatch")


def verify_message(keys: KeyRing, msg: Msg) -> Received:
    """Check the X-User-Token (signature, audience, body hash; expiry judged at the time the
    stream stored the message, so a backlog is not refused for its age) and the envelope."""
    token = (msg.headers or {}).get(xut.HEADER)
    if not token:
        return Received(msg, None, None, "missing_token")
    published = published_at(msg)
    try:
        claims = xut.verify(keys, token, audience=events.EVENTS_AUDIENCE, body=msg.data,
                            now=published)
    except xut.TokenError as exc:
        return Received(msg, None, None, f"token_{exc.reason}")
    try:
        event = events.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        return Received(msg, None, claims, f"bad_envelope: {str(exc)[:200]}")
    if event.org_id != _org_of(claims):
        return Received(msg, None, claims, "org_mismatch")
    return Received(msg, event, claims, None)


def _org_of(claims: xut.Claims) -> str | None:
    """The token's org spelled as the decoded envelope spells its own (canonical)."""
    if claims.org is None:
        return None
    try:
        return events.canonical_org(claims.org)
    except ValueError:
        return claims.org  # no UUID: never equal to an envelope's org


class Consumer:
    def __init__(
        self,
        nc: Client,
        keys: KeyRing,
        *,
        durable: str,
        handler: BatchHandler,
        subject: str = f"{events.SUBJECT_PREFIX}.>",
        batch: int = 100,
        ack_wait: float = 30.0,
    ) -> None:
        self.nc, self.js = nc, nc.jetstream()
        self.keys, self.durable, self.handler = keys, durable, handler
        self.subject, self.batch, self.ack_wait = subject, batch, ack_wait
        self._task: asyncio.Task[None] | None = None
        self._pull: PullBatches | None = None
        self.handled = 0
        self._stopping = False

    async def start(self) -> None:
        await self._ensure_durable()
        self._pull = PullBatches(self.nc, events.STREAM, self.durable)
        await self._pull.start()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.durable}")

    async def _ensure_durable(self) -> None:
        try:
            await self.js.consumer_info(events.STREAM, self.durable)
        except NotFoundError:
            await self.js.add_consumer(events.STREAM, ConsumerConfig(
                name=self.durable,
                durable_name=self.durable,
                filter_subject=self.subject,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait,
                max_ack_pending=10_000,
            ))

    async def stop(self) -> None:
        self._stopping = True  # a cancellation swallowed inside nats-py still ends the loop
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pull is not None:
            await self._pull.stop()

    async def _run(self) -> None:
        # the next batch is fetched and verified while this one is handled, so the broker, the
        # database and this process work side by side (the handler's waits on the database are
        # not idle time); batches are still handled one after another, in order
        upcoming = asyncio.ensure_future(self._next_batch())
        try:
            while not self._stopping:
                batch = await upcoming
                upcoming = asyncio.ensure_future(self._next_batch())
                if not batch:
                    continue
                try:
                    await self.process(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never let one batch end the loop; unacked come back
                    log.warning("consumer batch failed", extra={"error": str(exc)[:200]})
                    await asyncio.sleep(0.5)
        finally:
            upcoming.cancel()

    async def _fetch(self) -> list[Msg]:
        try:
            assert self._pull is not None
            return await self._pull.fetch(self.batch, linger=1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("consumer fetch failed", extra={"error": str(exc)[:200]})
            await asyncio.sleep(0.5)
            return []

    async def _next_batch(self) -> list[Received]:
        return [verify_message(self.keys, msg) for msg in await self._fetch()]

    async def process(self, batch: Sequence[Received]) -> None:
        try:
            await self.handler(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log_failure(batch)
            for item in batch:
                with contextlib.suppress(Exception):
                    await item.msg.nak(delay=1.0)
            return
        for item in batch:
            with contextlib.suppress(MsgAlreadyAckdError):  # the handler settled it itself
                await item.msg.ack()
        self.handled += len(batch)

    def _log_failure(self, batch: Sequence[Received]) -> None:
        """One line for the batch, naming the request ids it holds (and carrying the one when
        there is only one)."""
        rids = request_ids(batch)
        with request_context(rids[0] if len(rids) == 1 else None):
            log.exception("consumer handler failed; messages will be redelivered",
                          extra={"durable": self.durable, "count": len(batch),
                                 "request_ids": rids})
