"""Per-object data keys: 256 random bits, wrapped with AES-256-GCM under the current master
key (named by its `kid`), with the org and object id bound as associated data so a wrapped key
cannot be moved to another object. Rotation re-wraps them under the new master key; the
content, sealed under the data key, is never touched."""

from __future__ import annotations

import logging
import os
from uuid import UUID

import asyncpg

from argus_files import queries
from argus_shared import crypto, db
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.files.keys")
DATA_KEY_BYTES = 32
REWRAP_BATCH = 500


def context(org_id: UUID, object_id: UUID) -> bytes:
    return b"argus-files:data-key:" + org_id.bytes + object_id.bytes


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_BYTES)


def wrap(master: KeyRing, org_id: UUID, object_id: UUID, data_key: bytes) -> tuple[str, bytes]:
    """(kid, wrapped key)."""
    return master.current, crypto.seal(master, data_key, context(org_id, object_id))


def unwrap(master: KeyRing, org_id: UUID, object_id: UUID, wrapped: bytes) -> bytes:
    """Raises `crypto.SealError` for an unknown master key or a key bound elsewhere."""
    key = crypto.open_sealed(master, wrapped, context(org_id, object_id))
    if len(key) != DATA_KEY_BYTES:
        raise crypto.SealError("a data key has the wrong length")
    return key


async def rewrap_all(pool: asyncpg.Pool, master: KeyRing) -> tuple[int, int]:
    """Re-wrap every data key not under the current master key: (re-wrapped, failed)."""
    done = 0
    failed: set[tuple[UUID, UUID, UUID]] = set()
    while True:
        async with pool.acquire() as conn:
            rows = await queries.keys_to_rewrap(conn, master.current, REWRAP_BATCH + len(failed))
        todo = [r for r in rows if (r["org_id"], r["owner_id"], r["id"]) not in failed]
        if not todo:
            break
        for row in todo:
            ids = (row["org_id"], row["owner_id"], row["id"])
            if await _rewrap_one(pool, master, *ids):
                done += 1
            else:
                failed.add(ids)
    if failed:
        log.error("data keys left under an old master key", extra={"count": len(failed)})
    return done, len(failed)


async def _rewrap_one(pool: asyncpg.Pool, master: KeyRing, org_id: UUID, owner_id: UUID,
                      object_id: UUID) -> bool:
    async with db.tenant_tx(pool, org_id) as conn:
        row = await queries.wrapped_key(conn, org_id, owner_id, object_id)
        if row is None or row["key_kid"] == master.current:
            return True  # shredded or re-wrapped meanwhile
        try:
            data_key = unwrap(master, org_id, object_id, bytes(row["wrapped_key"]))
        except crypto.SealError as exc:
            log.error("a data key cannot be unwrapped",
                      extra={"org_id": str(org_id), "object_id": str(object_id),
                             "reason": str(exc)})
            return False
        kid, wrapped = wrap(master, org_id, object_id, data_key)
        await queries.replace_key(conn, org_id, owner_id, object_id, kid, wrapped)
    return True
