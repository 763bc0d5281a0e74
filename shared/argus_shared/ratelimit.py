"""Rate limits per client IP, per org and per API key: a sliding-window counter in memory.

These limits hold per replica. Services count through `argus_shared.shared_limits` (the same
window, in JetStream counters every replica shares) once NATS is up, and fall back to this one
when it is not, or when `ARGUS_RATE_LIMIT_STORE=memory`. Refusals are 429 with `Retry-After`
in whole seconds.

Why not a library: the maintained one, `limits`, keeps its counters in memory, Redis,
Memcached, MongoDB or etcd. Argus's shared stores are PostgreSQL and NATS, so a shared limit
through `limits` would add a store to operate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from argus_shared.errors import Problem

WINDOW = 60.0
MAX_KEYS = 100_000


@dataclass
class Window:
    start: float
    current: int = 0
    previous: int = 0


class Limiter(Protocol):
    """What the services count requests with: this module's in-memory limiter, or
    `argus_shared.shared_limits`' one that every replica shares."""

    async def hit(self, key: str, limit: int, window: float = WINDOW) -> None: ...


@dataclass
class RateLimiter:
    """`await hit(key, limit)` (or `count`, without waiting) counts one request and raises a
    429 Problem past `limit` per minute.

    The sliding-window estimate weights the previous window's count by how much of it still
    overlaps, which smooths bursts at window edges without storing every timestamp."""

    clock: Callable[[], float] = time.monotonic
    windows: dict[str, Window] = field(default_factory=dict)

    async def hit(self, key: str, limit: int, window: float = WINDOW) -> None:
        self.count(key, limit, window)

    def count(self, key: str, limit: int, window: float = WINDOW) -> None:
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
