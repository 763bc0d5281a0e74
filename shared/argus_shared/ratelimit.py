"""Rate limits per client IP, per org and per API key: a sliding-window counter in memory.

Limits hold per replica; with N replicas behind the gateway the effective limit is N times the
setting (the gateway or a shared store can tighten that later). Refusals are 429 with
`Retry-After` in whole seconds.

Why not a library: the maintained one, `limits`, keeps its counters in memory, Redis,
Memcached, MongoDB or etcd. Argus's shared stores are PostgreSQL and NATS KV, so a shared limit
through `limits` would add a store to operate; this small counter is what moves onto NATS KV
when limits become shared across replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from argus_shared.errors import Problem

WINDOW = 60.0
MAX_KEYS = 100_000


@dataclass
class Window:
    start: float
    current: int = 0
    previous: int = 0


@dataclass
class RateLimiter:
    """`hit(key, limit)` counts one request and raises a 429 Problem past `limit` per minute.

    The sliding-window estimate weights the previous window's count by how much of it still
    overlaps, which smooths bursts at window edges without storing every timestamp."""

    clock: Callable[[], float] = time.monotonic
    windows: dict[str, Window] = field(default_factory=dict)

    def hit(self, key: str, limit: int, window: float = WINDOW) -> None:
        now = self.clock()
        slot = self._slot(key, now, window)
        overlap = 1.0 - (now - slot.start) / window
        estimate = slot.previous * overlap + slot.current
        if estimate + 1 > limit:
            raise Problem(
                429,
                "too many requests; retry later",
                headers={"Retry-After": str(self._retry_after(slot, now, limit, window))},
            )
        slot.current += 1

    def _slot(self, key: str, now: float, window: float) -> Window:
        slot = self.windows.get(key)
        if slot is None:
            if len(self.windows) >= MAX_KEYS:
                self._evict(now, window)
            slot = self.windows[key] = Window(start=now)
        elapsed = now - slot.start
        if elapsed >= 2 * window:
            slot.start, slot.current, slot.previous = now, 0, 0
        elif elapsed >= window:
            slot.start, slot.previous, slot.current = slot.start + window, slot.current, 0
        return slot

    @staticmethod
    def _retry_after(slot: Window, now: float, limit: int, window: float) -> int:
        if slot.current + 1 > limit or slot.previous == 0:
            return max(1, math.ceil(slot.start + window - now))
        # wait until the previous window's weight has decayed enough to admit one more
        needed = 1.0 - (limit - 1 - slot.current) / slot.previous
        wait = slot.start + needed * window - now
        return max(1, math.ceil(wait))

    def _evict(self, now: float, window: float) -> None:
        stale = [k for k, w in self.windows.items() if now - w.start >= 2 * window]
        for key in stale or list(self.windows)[: MAX_KEYS // 10]:
            del self.windows[key]
