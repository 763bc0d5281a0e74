"""Concurrent-stream caps that hold across replicas: each open stream holds a lease in the NATS
KV bucket `argus_stream_leases` (`user.<id>.<conn>` and `org.<id>.<conn>`), renewed every
`RENEW_SECONDS`; the bucket's TTL (`LEASE_SECONDS`) lets the slots of a crashed replica come
back by themselves. A new stream writes its leases first and then counts: over a cap, it takes
them back and is refused, so two replicas racing for the last slot can both refuse but never
both pass. Staleness: a crashed replica's slots stay taken for at most `LEASE_SECONDS`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoKeysError

BUCKET = "argus_stream_leases"
LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0


class CapReached(Exception):
    def __init__(self, which: str, cap: int) -> None:
        super().__init__(f"at most {cap} concurrent streams per {which}")
        self.which, self.cap = which, cap


@dataclass
class Lease:
    keys: tuple[str, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Caps:
    def __init__(self, per_user: int, per_org: int) -> None:
        self.per_user, self.per_org = per_user, per_org
        self.kv: Any = None
        self.held: dict[str, Lease] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, js: JetStreamContext) -> None:
        try:
            self.kv = await js.key_value(BUCKET)
        except BucketNotFoundError:
            self.kv = await js.create_key_value(KeyValueConfig(
                bucket=BUCKET, ttl=LEASE_SECONDS, history=1, storage=StorageType.MEMORY))
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
        self.held.pop(lease.id, None)
        for key in lease.keys:
            with contextlib.suppress(Exception):
                await self.kv.delete(key)

    async def _count(self, prefix: str) -> int:
        """Leases under `prefix` (listed whole and matched here: the bucket holds only the
        open streams, and older servers ignore key filters)."""
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return 0
        return sum(1 for key in keys if key.startswith(prefix + "."))

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for lease in list(self.held.values()):
                for key in lease.keys:
                    with contextlib.suppress(Exception):
                        await self.kv.put(key, b"1")
