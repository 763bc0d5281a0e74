"""Concurrent-stream caps that hold across replicas: each open stream holds a lease in the NATS
KV bucket `argus_stream_leases` (`user.<id>.<conn>` or `api_key.<id>.<conn>`, and
`org.<id>.<conn>`), renewed every third of the bucket's TTL (`ARGUS_STREAM_LEASE_SECONDS`,
30 s); the TTL lets the slots of a crashed replica come back by themselves. A new stream
writes its leases first and then counts: over a cap, it takes them back and is refused, so two
replicas racing for the last slot can both refuse but never both pass. A count reads only the
keys under one principal's prefix (the bucket stream's subjects under `<prefix>.*`, one
request and no consumer), never the whole bucket; a closed stream's keys are purged.
Staleness: a crashed replica's slots stay taken for at most the TTL (plus the server's expiry
sweep)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError

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
        self.held: dict[str, Lease] = {}
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
        lease = Lease(())
        lease.keys = tuple(f"{prefix}.{lease.id}" for prefix, _, _ in wanted)
        for key in lease.keys:
            await self.kv.put(key, b"1")
        self.held[lease.id] = lease
        for prefix, cap, which in wanted:
            if await self._count(prefix) > cap:
                await self.release(lease)
                raise CapReached(which, cap)
        return lease

    async def release(self, lease: Lease) -> None:
        """Purged, not deleted: a delete would leave a marker that still counts as a subject."""
        self.held.pop(lease.id, None)
        for key in lease.keys:
            with contextlib.suppress(Exception):
                await self.js.purge_stream(STREAM, subject=f"{SUBJECT}.{key}")

    async def _count(self, prefix: str) -> int:
        """The live leases under `prefix`: the bucket stream's subjects under `<prefix>.*`
        (one request, no consumer; a released lease is purged, an expired one aged out)."""
        info = await self.js.stream_info(STREAM, subjects_filter=f"{SUBJECT}.{prefix}.*")
        return len(info.state.subjects or {})

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
            for lease in list(self.held.values()):
                for key in lease.keys:
                    with contextlib.suppress(Exception):
                        await self.kv.put(key, b"1")
