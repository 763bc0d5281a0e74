"""Does an answer's timing tell two kinds of request apart? Measured so that a noisy, shared
2-core machine cannot fake a difference nor hide one.

Requests go out in pairs, one of each kind, in a random order within the pair, one after the
other on one keep-alive connection (a prepared request, a minimal parser: the client costs
little of the CPU the service needs). Machine noise (another process, a GC pause, frequency
drift) then lands on both kinds alike, and a pair shares its moment. The statistic is the
difference of the two kinds' medians; its uncertainty is a bootstrap over the pairs (pairs are
resampled whole, so the time-correlation of the noise is kept). A leak is claimed only when the
whole interval lies beyond the bound: the test never fails on noise alone, and a real
difference of a few milliseconds (the leak this guards against) leaves the interval far above
1 ms.

The second statistic is the after-effect: the same control request is sent right after every
probe, and its latency is grouped by the kind of the probe before it. Work moved off the
response path still runs on the service's loop; if it landed on the next answer, that answer
would tell what the previous request was.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Body = dict[str, str]


@dataclass
class Comparison:
    """Latencies in seconds; index i of `known` and `unknown` is one pair."""

    known: list[float] = field(default_factory=list)
    unknown: list[float] = field(default_factory=list)

    def difference(self) -> float:
        return statistics.median(self.known) - statistics.median(self.unknown)

    def interval(self, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 1) -> tuple[float, float]:
        """A percentile-bootstrap interval of `difference`, resampling whole pairs."""
        rng = random.Random(seed)
        n = len(self.known)
        estimates = []
        for _ in range(resamples):
            picks = [rng.randrange(n) for _ in range(n)]
            estimates.append(statistics.median(self.known[i] for i in picks)
                             - statistics.median(self.unknown[i] for i in picks))
        estimates.sort()
        tail = (1 - confidence) / 2
        return estimates[int(tail * resamples)], estimates[int((1 - tail) * resamples) - 1]

    def beyond(self, bound: float) -> bool:
        """True only when the whole interval is beyond ±bound: a difference we are sure of."""
        low, high = self.interval()
        return low > bound or high < -bound

    def report(self, name: str) -> str:
        low, high = self.interval()
        return (f"{name:<34} known {statistics.median(self.known) * 1000:7.2f} ms  "
                f"unknown {statistics.median(self.unknown) * 1000:7.2f} ms  "
                f"difference {self.difference() * 1000:+6.2f} ms "
                f"(95% {low * 1000:+.2f} .. {high * 1000:+.2f}, {len(self.known)} pairs)")


@dataclass
class Measured:
    direct: Comparison
    after: Comparison  # the control request's latency after a known / an unknown probe


class RawClient:
    """One keep-alive HTTP/1.1 connection with prepared requests and a minimal parser."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_base(cls, base: str) -> RawClient:
        host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
        return cls(host, int(port))

    async def __aenter__(self) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()

    def request(self, path: str, body: Body | None) -> bytes:
        if body is None:
            return f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        data = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                ).encode() + data

    async def send(self, request: bytes) -> tuple[int, float]:
        """(status, seconds from the first byte written to the last byte read)."""
        assert self.reader is not None and self.writer is not None
        started = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await self.reader.readexactly(int(match[1]) if match else 0)
        return int(head[9:12]), time.perf_counter() - started


async def compare(client: RawClient, path: str, known: Callable[[int], Body],
                  unknown: Callable[[int], Body], pairs: int, control: bytes,
                  expect: int = 202, seed: int = 7) -> Measured:
    """`pairs` pairs of one known and one unknown request (random order within each pair),
    each probe followed by `control`. The bodies are built before the clock starts."""
    rng = random.Random(seed)
    measured = Measured(Comparison(), Comparison())
    for index in range(pairs):
        probes = [("known", client.request(path, known(index))),
                  ("unknown", client.request(path, unknown(index)))]
        rng.shuffle(probes)
        for kind, request in probes:
            status, seconds = await client.send(request)
            assert status == expect, (path, kind, status)
            _, after = await client.send(control)
            getattr(measured.direct, kind).append(seconds)
            getattr(measured.after, kind).append(after)
    return measured
