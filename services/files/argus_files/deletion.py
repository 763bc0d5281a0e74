"""Deleting objects, a user's namespace in an org, or a whole org's objects: the data keys are
destroyed first, in one transaction with the event (crypto-shredding: from the commit on the
bytes cannot be decrypted, wherever copies of them are), then the bytes are removed from the
backend and the rows forgotten. If removing the bytes fails, the sweeper finishes it later."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from argus_files import SERVICE, events, queries
from argus_files.storage import StorageError, object_key
from argus_files.store import Store
from argus_shared import db
from argus_shared.event_types import EventType
from argus_shared.outbox import Ctx, record

log = logging.getLogger("argus.files.deletion")
SWEEP_BATCH = 500


async def shred(store: Store, org_id: UUID, owner_id: UUID | None, object_id: UUID | None,
                *, actor: tuple[str, str], ctx: Ctx, record_empty: bool = True) -> list[Any]:
    """Destroy the data keys (of one object, one owner's namespace, or the org) and emit the
    event, in one transaction; then remove the bytes. Returns the objects shredded. A purge
    that found nothing is still an event when a person asked for it (`record_empty`)."""
    async with db.tenant_tx(store.pool, org_id) as conn:
        rows = await queries.shred(conn, org_id, owner_id, object_id)
        if rows or (object_id is None and record_empty):
            event, resource = _event(org_id, owner_id, object_id)
            await record(conn, SERVICE, ctx, event, actor=actor, resource=resource,
                         org_id=org_id, data=_data(rows, owner_id))
    store.metrics.shredded.inc(len(rows))
    await remove_bytes(store, org_id, owner_id, object_id, rows)
    return rows


def _event(org_id: UUID, owner_id: UUID | None, object_id: UUID | None
           ) -> tuple[EventType, tuple[str, str]]:
    if object_id is not None:
        return events.DELETED, ("file", str(object_id))
    if owner_id is not None:
        return events.USER_PURGED, ("files_namespace", f"{org_id}/{owner_id}")
    return events.ORG_PURGED, ("files_namespace", str(org_id))


def _data(rows: list[Any], owner_id: UUID | None) -> dict[str, Any]:
    data: dict[str, Any] = {"shredded": len(rows),
                            "bytes": sum(r["size"] or 0 for r in rows)}
    if owner_id is not None:
        data["owner_id"] = str(owner_id)
    return data


async def remove_bytes(store: Store, org_id: UUID, owner_id: UUID | None,
                       object_id: UUID | None, rows: list[Any]) -> None:
    try:
        if object_id is not None and owner_id is not None:
            await store.storage.delete(object_key(org_id, owner_id, object_id))
        elif owner_id is not None:
            await store.storage.delete_prefix(object_key(org_id, owner_id))
        else:
            await store.storage.delete_prefix(str(org_id))
    except StorageError as exc:
        log.warning("bytes of shredded objects remain; the sweeper will retry",
                    extra={"org_id": str(org_id), "error": str(exc)})
        return
    if rows:
        async with db.tenant_tx(store.pool, org_id) as conn:
            await queries.forget_shredded(conn, org_id, [(r["owner_id"], r["id"]) for r in rows])


async def sweep(store: Store, now: datetime | None = None) -> int:
    """Finish what was left: bytes of shredded objects, and uploads abandoned by a crashed
    process (older than `stale_upload_seconds`: shredded, then removed). Returns how many."""
    moment = now or datetime.now(UTC)
    stale_before = moment - timedelta(seconds=store.config.stale_upload_seconds)
    async with store.pool.acquire() as conn:
        rows = await queries.unfinished(conn, stale_before, SWEEP_BATCH)
    done = 0
    for row in rows:
        org_id, owner_id, object_id = row["org_id"], row["owner_id"], row["id"]
        if row["status"] == "pending":
            async with db.tenant_tx(store.pool, org_id) as conn:
                shredded = await queries.shred(conn, org_id, owner_id, object_id)
            if not shredded:
                continue
        try:
            await store.storage.delete(object_key(org_id, owner_id, object_id))
        except StorageError as exc:
            log.warning("sweep: bytes not removed", extra={"error": str(exc)})
            continue
        async with db.tenant_tx(store.pool, org_id) as conn:
            await queries.forget_shredded(conn, org_id, [(owner_id, object_id)])
        done += 1
    try:
        await store.storage.sweep_partials(stale_before)
    except StorageError as exc:
        log.warning("sweep: unfinished uploads not removed", extra={"error": str(exc)})
    async with store.pool.acquire() as conn:
        store.metrics.objects.set(await conn.fetchval("select stored_object_count()"))
    return done
