"""Rate limits shared by replicas through NATS JetStream counters: two limiters on two
connections (as two replicas hold them) count one window; the previous window weighs in as
the in-memory limiter does; a refusal takes its count back; keys never appear in subjects;
and without NATS each replica still limits on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from argus_shared.embedded import EmbeddedNats, free_port
from argus_shared.errors import Problem
from argus_shared.nats import connect
from argus_shared.shared_limits import (
    STREAM,
    NoCounters,
    SharedRateLimiter,
    ensure_stream,
    fallback_counter,
    stream_config,
)
from support.infra import Infra


@dataclass
class Clock:
    now: float = 1_800_000_000.0  # the start of a 60 s window

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def replicas(infra: Infra) -> AsyncIterator[tuple[SharedRateLimiter, SharedRateLimiter]]:
    one, two = await connect(infra.nats_url, "replica-1"), await connect(infra.nats_url, "r-2")
    await ensure_stream(one.jetstream())
    await ensure_stream(two.jetstream())  # the second finds it
    clock = Clock()
    made = tuple(SharedRateLimiter(nc.jetstream(), "test", fallback_counter(CollectorRegistry()),
                                   clock=clock) for nc in (one, two))
    yield made[0], made[1]
    await one.close()
    await two.close()


async def allowed(limiter: SharedRateLimiter, key: str, times: int) -> int:
    passed = 0
    for _ in range(times):
        try:
            await limiter.hit(key, 10)
            passed += 1
        except Problem:
            pass
    return passed


async def test_two_replicas_count_one_limit(
    replicas: tuple[SharedRateLimiter, SharedRateLimiter], key: str = "ip:192.0.2.7:*"
) -> None:
    a, b = replicas
    assert await allowed(a, key, 6) == 6
    assert await allowed(b, key, 6) == 4  # 10 in all, not 10 each
    with pytest.raises(Problem) as refused:
        await a.hit(key, 10)
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) >= 1
    assert await allowed(b, "ip:192.0.2.8:*", 10) == 10  # another key has its own count


async def test_refusals_do_not_count_and_the_previous_window_weighs_in(
    replicas: tuple[SharedRateLimiter, SharedRateLimiter], key: str = "user:alice"
) -> None:
    a, b = replicas
    assert await allowed(a, key, 30) == 10  # 20 refused, taken back: the window holds 10
    clock = a.clock
    assert isinstance(clock, Clock)
    clock.now += 90  # half-way through the next window: the previous 10 weigh 5
    assert await allowed(b, key, 10) == 5
    clock.now += 120  # two windows on: the window before is empty, nothing weighs in
    assert await allowed(a, key, 12) == 10


async def test_keys_are_hashed_out_of_the_subjects(
    replicas: tuple[SharedRateLimiter, SharedRateLimiter], infra: Infra
) -> None:
    a, _ = replicas
    await a.hit("ip:198.51.100.23:POST /login", 10)
    info = await a.js.stream_info(STREAM, subjects_filter=">")
    subjects = list((info.state.subjects or {}).keys())
    assert subjects and not any("198.51.100.23" in s or "login" in s for s in subjects)
    assert all(s.startswith("argus.limits.test.") for s in subjects)


async def test_without_nats_each_replica_still_limits(infra: Infra) -> None:
    nc = await connect(infra.nats_url, "gone")
    await ensure_stream(nc.jetstream())
    fallbacks = fallback_counter(CollectorRegistry())
    limiter = SharedRateLimiter(nc.jetstream(), "test", fallbacks)
    await nc.close()
    assert await allowed(limiter, "ip:203.0.113.9:*", 12) == 10
    assert fallbacks._value.get() == 12


async def test_a_stream_without_counters_is_refused_not_trusted(tmp_path: Path) -> None:
    """A NATS before 2.12 ignores `allow_msg_counter`: increments would be plain messages
    counting nothing. Such a stream is refused, and a limiter on it counts locally."""
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    try:
        nc = await connect(server.url, "old")
        config = stream_config()
        config.allow_msg_counter = None
        await nc.jetstream().add_stream(config)
        with pytest.raises(NoCounters):
            await ensure_stream(nc.jetstream())
        fallbacks = fallback_counter(CollectorRegistry())
        limiter = SharedRateLimiter(nc.jetstream(), "test", fallbacks)
        assert await allowed(limiter, "ip:203.0.113.10:*", 11) == 10
        assert fallbacks._value.get() == 11
        await nc.close()
    finally:
        server.stop()
