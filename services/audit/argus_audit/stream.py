"""Live events over SSE: one ordered (ephemeral) consumer of `ARGUS_EVENTS` per replica, never
the durable audit consumer, so a slow client cannot hold back the audit trail. Each message is
verified (X-User-Token, envelope) once, framed once (`id:` its stream sequence, `event:` its
type, `data:` the envelope without the headers), and queued to every connection whose viewer
allows it (`stream_filter`). A connection's queue is bounded: a reader that falls
`buffer` frames behind is dropped. Resume replays `(since, position]` from the stream through
a short-lived ordered consumer of its own, with the same filter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Counter, Gauge

from argus_audit.stream_filter import Viewer
from argus_shared.consumer import verify_message
from argus_shared.events import STREAM, SUBJECT_PREFIX, Event
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.audit.stream")
SUBJECTS = SUBJECT_PREFIX + ".>"
HEARTBEAT = b": heartbeat\n\n"
Frame = tuple[int, bytes]  # (stream sequence, the SSE message); 0: the last frame; -1: a comment
END: Frame = (0, b"")
BEAT: Frame = (-1, HEARTBEAT)


class Metrics:
    def __init__(self, registry: Any) -> None:
        self.open = Gauge("argus_stream_open", "Open SSE streams", registry=registry)
        self.sent = Counter("argus_stream_events_sent", "Events written to SSE streams",
                            registry=registry)
        self.filtered = Counter("argus_stream_events_filtered",
                                "Events a stream's viewer may not see (not written)",
                                registry=registry)
        self.slow = Counter("argus_stream_slow_drops",
                            "Streams dropped because their reader fell behind",
                            registry=registry)
        self.refused = Counter("argus_stream_cap_refusals",
                               "Streams refused at a concurrency cap", ["cap"],
                               registry=registry)


def frame(seq: int, event: Event, raw: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.type.encode(), raw)


def control(name: str, data: bytes = b"{}", retry_ms: int | None = None) -> bytes:
    retry = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return retry + b"event: %s\ndata: %s\n\n" % (name.encode(), data)


@dataclass(eq=False)
class Connection:
    viewer: Viewer
    buffer: int
    queue: asyncio.Queue[Frame] = field(init=False)
    closed: str | None = None  # why it was ended from outside (slow, revoked, draining)
    task: asyncio.Task[Any] | None = None  # the handler serving it
    writing: bool = False  # blocked in a socket write (the reader is not reading)
    claims: Any = None  # a user's access-token claims (expiry and revocation are judged on them)
    last_write: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.buffer + 1)  # one slot kept for the end marker

    def offer(self, item: Frame) -> bool:
        """Queue a frame; False once the reader is `buffer` frames behind."""
        if self.queue.qsize() >= self.buffer:
            return False
        self.queue.put_nowait(item)
        return True

    def end(self, why: str, last: bytes = b"") -> None:
        if self.closed is None:
            self.closed = why
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait((0, last))
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(END)
            if self.writing and self.task is not None:
                self.task.cancel()  # stuck writing to a reader that does not read: drop it


class Hub:
    def __init__(self, js: Any, keys: KeyRing, metrics: Metrics) -> None:
        self.js, self.keys, self.metrics = js, keys, metrics
        self.connections: set[Connection] = set()
        # who may be concerned by an event: the streams of its org, and those of its actor's
        # and resource's principal (a user's own events in any org); no other can be allowed
        self.by_org: dict[str, set[Connection]] = {}
        self.by_principal: dict[tuple[str, str], set[Connection]] = {}
        self.position = 0  # the last stream sequence this replica has fanned out
        self._sub: Any = None

    async def start(self) -> None:
        info = await self.js.stream_info(STREAM)
        self.position = info.state.last_seq
        self._sub = await self.js.subscribe(
            SUBJECTS, cb=self._on_message, ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=self.position + 1))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.position:
            return
        self.position = seq
        received = verify_message(self.keys, msg)
        if received.event is None:
            return
        self.fan_out(seq, received.event, msg.data)

    def candidates(self, event: Event) -> set[Connection]:
        """Every stream `Viewer.allows` could let `event` through to (a superset)."""
        found: set[Connection] = set()
        for group in (self.by_org.get(event.org_id) if event.org_id else None,
                      self.by_principal.get((event.actor.type, event.actor.id)),
                      self.by_principal.get((event.resource.type, event.resource.id))):
            if group:
                found |= group
        return found

    def fan_out(self, seq: int, event: Event, raw: bytes) -> None:
        data: bytes | None = None
        for conn in self.candidates(event):
            if conn.closed is not None:
                continue
            if not conn.viewer.allows(event):
                self.metrics.filtered.inc()
                continue
            data = data or frame(seq, event, raw)
            if not conn.offer((seq, data)):
                self.metrics.slow.inc()
                conn.end("slow")

    def join(self, conn: Connection) -> int:
        """Register `conn` for live frames; returns the position replay must reach."""
        self.connections.add(conn)
        for index, key in self._keys(conn):
            index.setdefault(key, set()).add(conn)
        self.metrics.open.inc()
        return self.position

    def leave(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            for index, key in self._keys(conn):
                group = index.get(key)
                if group is not None:
                    group.discard(conn)
                    if not group:
                        del index[key]
            self.metrics.open.dec()

    def _keys(self, conn: Connection) -> list[tuple[dict[Any, set[Connection]], Any]]:
        keys: list[tuple[dict[Any, set[Connection]], Any]] = [
            (self.by_principal, (conn.viewer.kind, conn.viewer.id))]
        if conn.viewer.org is not None:
            keys.append((self.by_org, conn.viewer.org))
        return keys

    def close_where(self, match: Callable[[Connection], bool], why: str,
                    last: bytes = b"") -> None:
        for conn in list(self.connections):
            if match(conn):
                conn.end(why, last)

    async def first_seq(self) -> int:
        info = await self.js.stream_info(STREAM)
        return int(info.state.first_seq)

    async def replay(self, viewer: Viewer, since: int, until: int) -> list[Frame]:
        """The frames `viewer` may see with sequence in `(since, until]`, in order."""
        if since >= until:
            return []
        found: list[Frame] = []
        done = asyncio.Event()

        async def take(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            if seq > until or done.is_set():
                done.set()
                return
            received = verify_message(self.keys, msg)
            if received.event is not None and viewer.allows(received.event):
                found.append((seq, frame(seq, received.event, msg.data)))
            if seq >= until:
                done.set()

        sub = await self.js.subscribe(
            SUBJECTS, cb=take, ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=since + 1))
        try:
            await asyncio.wait_for(done.wait(), 30)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return found
