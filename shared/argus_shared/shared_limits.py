"""Rate limits every replica shares: the sliding window of `argus_shared.ratelimit`, counted in
NATS JetStream counters (ADR-49, nats-server 2.12+) instead of each process's memory, so N
replicas behind the gateway allow the setting, not N times it.

One counter subject per (service, key, window): `argus.limits.<service>.<sha256(key)>.<n>` in
the stream `ARGUS_LIMITS` (memory, one message per subject, gone two windows after its window).
A request is one publish with `Nats-Incr: +1` whose acknowledgement carries the new count; the
previous window's final count is read once per key and window. A refused request takes its
increment back (`-1`), so refusals do not extend a lockout, as in the in-memory limiter. The key
is hashed: no client IP or account id is ever a subject.

When NATS does not answer in time, the request is counted by this replica's own in-memory
limiter instead (per-replica limits for as long as NATS is away, never no limits), and
`argus_ratelimit_fallbacks_total` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from argus_shared.errors import Problem
from argus_shared.ratelimit import WINDOW, RateLimiter, Window

log = logging.getLogger("argus.ratelimit")

STREAM = "ARGUS_LIMITS"
SUBJECT_PREFIX = "argus.limits"
INCREMENT = {"Nats-Incr": "+1"}
DECREMENT = {"Nats-Incr": "-1"}
TIMEOUT = 0.5  # seconds a request waits for NATS before it is counted locally


def stream_config(window: float = WINDOW) -> StreamConfig:
    return StreamConfig(
        name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.MEMORY,
        allow_msg_counter=True, max_msgs_per_subject=1, max_age=3 * window,
        discard=DiscardPolicy.OLD,
    )


class NoCounters(Exception):
    """The NATS server does not keep counters (before 2.12 it ignores the setting)."""


async def ensure_stream(js: JetStreamContext) -> None:
    """Create `ARGUS_LIMITS` if missing (replicas may race to do it); NoCounters when the
    server made or holds it without counters, whose increments would count nothing."""
    try:
        info = await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        try:
            info = await js.add_stream(stream_config())
        except nats.js.errors.BadRequestError:
            info = await js.stream_info(STREAM)
    if not info.config.allow_msg_counter:
        raise NoCounters(f"the stream {STREAM} keeps no counters")


def fallback_counter(registry: CollectorRegistry = REGISTRY) -> Counter:
    return Counter("argus_ratelimit_fallbacks", "Requests counted by this replica alone "
                   "because NATS did not answer", registry=registry)


@dataclass
class SharedRateLimiter:
    """`await hit(key, limit)`: one request counted across every replica; 429 past `limit`."""

    js: JetStreamContext
    service: str
    fallbacks: Counter
    local: RateLimiter = field(default_factory=RateLimiter)
    clock: Callable[[], float] = time.time  # wall time: every replica must agree on windows
    previous: dict[str, tuple[int, int]] = field(default_factory=dict)  # digest -> (n, count)

    async def hit(self, key: str, limit: int, window: float = WINDOW) -> None:
        now = self.clock()
        number = math.floor(now / window)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        subject = f"{SUBJECT_PREFIX}.{self.service}.{digest}.{number}"
        try:
            current = await self._increment(subject, INCREMENT)
            previous = await self._previous(digest, number)
        except (TimeoutError, nats.errors.Error, NoCounters) as exc:
            self.fallbacks.inc()
            log.warning("shared rate limit unavailable; counting locally",
                        extra={"error": type(exc).__name__})
            self.local.count(key, limit, window)
            return
        start = number * window
        overlap = 1.0 - (now - start) / window
        if previous * overlap + current > limit:
            await self._take_back(subject)
            slot = Window(start=start, current=current - 1, previous=previous)
            retry = RateLimiter._retry_after(slot, now, limit, window)
            raise Problem(429, "too many requests; retry later",
                          headers={"Retry-After": str(retry)})

    async def _increment(self, subject: str, headers: dict[str, str]) -> int:
        ack = await self.js.publish(subject, b"", headers=headers, timeout=TIMEOUT)
        if ack.val is None:  # stored as a plain message: nothing was counted
            raise NoCounters(f"{subject} answered no count")
        return int(ack.val)

    async def _take_back(self, subject: str) -> None:
        # if this fails the refused request stays counted: stricter, never looser
        with contextlib.suppress(TimeoutError, nats.errors.Error, NoCounters):
            await self._increment(subject, DECREMENT)

    async def _previous(self, digest: str, number: int) -> int:
        """The previous window's final count for this key, read once per window."""
        known = self.previous.get(digest)
        if known is not None and known[0] == number - 1:
            return known[1]
        if len(self.previous) > 100_000:
            self.previous.clear()
        subject = f"{SUBJECT_PREFIX}.{self.service}.{digest}.{number - 1}"
        try:
            message = await self.js.get_last_msg(STREAM, subject)
            count = int(json.loads(message.data or b"{}").get("val", "0"))
        except nats.js.errors.NotFoundError:
            count = 0
        self.previous[digest] = (number - 1, count)
        return count

