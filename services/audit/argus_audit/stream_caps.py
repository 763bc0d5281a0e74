"""Concurrent-stream caps that hold across replicas, counted in the NATS KV bucket
`argus_stream_leases`: each replica keeps one key per principal and per org it serves,
`user.<id>.<replica>` (or `api_key.<id>.<replica>`) and `org.<id>.<replica>`, whose value is
how many streams it has open for them. The keys are leases: renewed every third of the
bucket's TTL (`ARGUS_STREAM_LEASE_SECONDS`, 30 s), so the slots of a crashed replica come back
by themselves once its keys age out; a replica's renewal costs one write per principal and org
it serves, not per stream. A new stream raises its replica's counts first and then sums every
replica's (the subjects under `<prefix>.*`, one request, and one read per other replica): over
a cap, it lowers them again and is refused, so two replicas racing for the last slot can both
refuse but never both pass. A count never lists the whole bucket; a count that drops to 0 is
purged (no delete marker). Staleness: a crashed replica's slots stay taken for at most the TTL
(plus the server's expiry sweep)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

BUCKET = "argus_stream_leases"
STREAM = f"KV_{BUCKET}"
SUBJECT = f"$KV.{BUCKET}"


class CapReached(Exception):
    def __init__(self, which: str, cap: int) -> None:
        super().__init__(f"at most {cap} concurrent streams per {which}")
        self.which, self.cap = which, cap


@dataclass
class Lease:
    keys: tuple[str, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Caps:
    def __init__(self, per_user: int, per_org: int, lease_seconds: float = 30.0) -> None:
        self.per_user, self.per_org, self.lease_seconds = per_user, per_org, lease_seconds
        self.kv: Any = None
        self.js: Any = None
        self.replica = uuid.uuid4().hex
        self.held: dict[str, Lease] = {}
        self.counts: dict[str, int] = {}  # prefix -> this replica's open streams under it
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, js: JetStreamContext) -> None:
        self.js = js
        try:
            self.kv = await js.key_value(BUCKET)
        except BucketNotFoundError:
            self.kv = await js.create_key_value(KeyValueConfig(
                bucket=BUCKET, ttl=self.lease_seconds, history=1, storage=StorageType.MEMORY))
        info = await js.stream_info(STREAM)
        if info.config.max_age != self.lease_seconds:  # the TTL is the last started replica's
            window = min(info.config.duplicate_window or self.lease_seconds, self.lease_seconds)
            await js.update_stream(replace(info.config, max_age=self.lease_seconds,
                                           duplicate_window=window))
        self._task = asyncio.create_task(self._renew(), name="stream-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for lease in list(self.held.values()):
            await self.release(lease)

    async def acquire(self, kind: str, principal: str, org: str | None) -> Lease:
        """A lease for one more stream of `principal` (and of `org`), or `CapReached`."""
        wanted = [(f"{kind}.{principal}", self.per_user, "user")]
        if org is not None:
            wanted.append((f"org.{org}", self.per_org, "org"))
        lease = Lease(tuple(prefix for prefix, _, _ in wanted))
        self.held[lease.id] = lease
        for prefix in lease.keys:
            await self._add(prefix, 1)
        for prefix, cap, which in wanted:
            if await self._count(prefix) > cap:
                await self.release(lease)
                raise CapReached(which, cap)
        return lease

    async def release(self, lease: Lease) -> None:
        if self.held.pop(lease.id, None) is None:
            return
        for prefix in lease.keys:
            with contextlib.suppress(Exception):
                await self._add(prefix, -1)

    def _key(self, prefix: str) -> str:
        return f"{prefix}.{self.replica}"

    async def _add(self, prefix: str, delta: int) -> None:
        """This replica's count under `prefix`, changed and written (one writer per key)."""
        async with self._locks.setdefault(prefix, asyncio.Lock()):
            count = self.counts.get(prefix, 0) + delta
            if count > 0:
                self.counts[prefix] = count
                await self.kv.put(self._key(prefix), b"%d" % count)
                return
            self.counts.pop(prefix, None)
            self._locks.pop(prefix, None)
            # purged, not deleted: a delete would leave a marker that still lists the subject
            await self.js.purge_stream(STREAM, subject=f"{SUBJECT}.{self._key(prefix)}")

    async def _count(self, prefix: str) -> int:
        """Every replica's streams under `prefix`: the subjects under `<prefix>.*` (one
        request, no consumer), this replica's from memory, each other's read."""
        info = await self.js.stream_info(STREAM, subjects_filter=f"{SUBJECT}.{prefix}.*")
        total = self.counts.get(prefix, 0)
        for subject in info.state.subjects or {}:
            key = subject.removeprefix(SUBJECT + ".")
            if key != self._key(prefix):
                total += await self._value(key)
        return total

    async def _value(self, key: str) -> int:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:  # released or aged out since it was listed
            return 0
        return int(entry.value or b"0")

    async def ttl(self) -> float:
        """The bucket's TTL now (another replica may have changed it)."""
        status = await self.kv.status()
        return float(status.ttl or self.lease_seconds)

    async def _renew(self) -> None:
        while True:
            try:
                every = await self.ttl() / 3
            except Exception:
                every = self.lease_seconds / 3
            await asyncio.sleep(every)
            for prefix in list(self.counts):
                with contextlib.suppress(Exception):
                    await self._add(prefix, 0)
