"""Storing an upload: sniff its type from the first bytes, record it as pending with its
wrapped data key, stream it through the segment sealer into the backend while hashing the
plaintext, then mark it stored (with its event) in one transaction. Any failure on the way
removes what was written and the pending row: nothing is left behind."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from argus_files import SERVICE, events, keys, queries
from argus_files.scope import Scope
from argus_files.segments import Header
from argus_files.sniff import WINDOW, sniff
from argus_files.sources import Source
from argus_files.storage import StorageError, Writer, object_key
from argus_files.store import Store
from argus_shared import db
from argus_shared.errors import Problem
from argus_shared.outbox import Ctx, record

log = logging.getLogger("argus.files.uploads")


async def store_upload(store: Store, scope: Scope, source: Source, ctx: Ctx) -> Any:
    try:
        return await _store(store, scope, source, ctx)
    except BaseException as exc:
        store.metrics.upload_failures.labels(failure_reason(exc)).inc()
        raise


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, Problem):
        return {413: "too_large", 415: "type_not_allowed"}.get(exc.status, "malformed")
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, asyncio.CancelledError | ConnectionError | aiohttp.ClientError):
        return "aborted"
    return "internal"


async def _store(store: Store, scope: Scope, source: Source, ctx: Ctx) -> Any:
    chunks = aiter(source.chunks)
    head = await _head(chunks)
    content_type = sniff(head[:WINDOW])
    if content_type not in store.config.allowed_types:
        raise Problem(415, f"content of type {content_type} is not accepted here",
                      title="Type not allowed", detected=content_type,
                      allowed=list(store.config.allowed_types))
    org_id, owner_id, object_id = scope.org_id, scope.namespace, uuid.uuid4()
    data_key = keys.new_data_key()
    kid, wrapped = keys.wrap(store.master, org_id, object_id, data_key)
    header = Header.new(org_id, object_id)
    async with db.tenant_tx(store.pool, org_id) as conn:
        await queries.insert_pending(conn, org_id, owner_id, object_id, source.name,
                                     scope.principal.sub, header.segment_size, kid, wrapped)
    key = object_key(org_id, owner_id, object_id)
    writer = store.storage.writer(key)
    try:
        size, digest = await _write(store, writer, data_key, header, head, chunks)
        await writer.commit()
    except BaseException:
        await _shielded(_abandon(store, writer, org_id, owner_id, object_id))
        raise
    async with db.tenant_tx(store.pool, org_id) as conn:
        row = await queries.mark_stored(conn, org_id, owner_id, object_id, content_type, size,
                                        digest)
        if row is not None:
            await record(conn, SERVICE, ctx, events.UPLOADED, actor=scope.actor,
                         resource=("file", str(object_id)), org_id=org_id,
                         data={"owner_id": str(owner_id), "size": size,
                               "content_type": content_type})
    if row is None:  # the namespace was purged while the bytes streamed in
        await _shielded(_remove_committed(store, key, org_id, owner_id, object_id))
        raise Problem(409, "the namespace was purged while this upload was in progress")
    store.metrics.bytes_in.inc(size)
    store.metrics.stored.inc()
    return row


async def _head(chunks: AsyncIterator[bytes]) -> bytes:
    """At least `WINDOW` bytes (fewer only if the body is shorter) to judge the type by."""
    head = bytearray()
    while len(head) < WINDOW:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            break
    return bytes(head)


async def _write(store: Store, writer: Writer, data_key: bytes, header: Header, head: bytes,
                 chunks: AsyncIterator[bytes]) -> tuple[int, bytes]:
    sealer = store.codec.sealer(data_key, header)
    digest = hashlib.sha256()
    size = 0
    await writer.write(sealer.start())

    async def take(data: bytes) -> None:
        nonlocal size
        size += len(data)
        digest.update(data)
        for sealed in sealer.feed(data):
            await writer.write(sealed)

    await take(head)
    async for chunk in chunks:
        await take(chunk)
    await writer.write(sealer.finish())
    return size, digest.digest()


async def _shielded(work: Any) -> None:
    """Clean-up that must finish even when the request is being cancelled."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _abandon(store: Store, writer: Writer, org_id: uuid.UUID, owner_id: uuid.UUID,
                   object_id: uuid.UUID) -> None:
    try:
        await writer.abort()
    except Exception:  # the sweeper finds the pending row and removes the bytes later
        log.exception("an abandoned upload's bytes were not removed")
        return
    async with db.tenant_tx(store.pool, org_id) as conn:
        await queries.delete_row(conn, org_id, owner_id, object_id)


async def _remove_committed(store: Store, key: str, org_id: uuid.UUID, owner_id: uuid.UUID,
                            object_id: uuid.UUID) -> None:
    await store.storage.delete(key)
    async with db.tenant_tx(store.pool, org_id) as conn:
        await queries.forget_shredded(conn, org_id, [(owner_id, object_id)])
