"""Every SQL statement of the files service, as named functions. Each runs inside the caller's
tenant transaction (RLS scopes it to one org) unless it calls a definer function."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from argus_shared.db import Conn

Row = asyncpg.Record
VIEW = ("org_id, owner_id, id, name, content_type, size, sha256, uploaded_by, created_at,"
        " stored_at")


async def insert_pending(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID, name: str,
                         uploaded_by: str, segment_size: int, kid: str, wrapped: bytes) -> None:
    await conn.execute(
        "insert into objects (org_id, owner_id, id, name, uploaded_by, segment_size, key_kid,"
        " wrapped_key) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        org_id, owner_id, object_id, name, uploaded_by, segment_size, kid, wrapped)


async def mark_stored(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID,
                      content_type: str, size: int, sha256: bytes) -> Row | None:
    return await conn.fetchrow(
        "update objects set status = 'stored', content_type = $4, size = $5, sha256 = $6,"
        " stored_at = now() where org_id = $1 and owner_id = $2 and id = $3"
        f" and status = 'pending' returning {VIEW}",
        org_id, owner_id, object_id, content_type, size, sha256)


async def delete_row(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID) -> None:
    await conn.execute("delete from objects where org_id = $1 and owner_id = $2 and id = $3",
                       org_id, owner_id, object_id)


async def stored(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID) -> Row | None:
    """A stored object with what opening it needs (its wrapped key)."""
    return await conn.fetchrow(
        f"select {VIEW}, segment_size, wrapped_key from objects"
        " where org_id = $1 and owner_id = $2 and id = $3 and status = 'stored'",
        org_id, owner_id, object_id)


async def page(conn: Conn, org_id: UUID, owner_id: UUID | None, after: tuple[datetime, UUID] | None,
               limit: int) -> list[Row]:
    """Stored objects of the org (or of one owner in it), oldest first, after a cursor."""
    return await conn.fetch(
        f"select {VIEW} from objects where org_id = $1 and status = 'stored'"
        " and ($2::uuid is null or owner_id = $2)"
        " and ($3::timestamptz is null or (created_at, id) > ($3, $4::uuid))"
        " order by created_at, id limit $5",
        org_id, owner_id, after[0] if after else None, after[1] if after else None, limit)


async def of_owner(conn: Conn, org_id: UUID, owner_id: UUID) -> list[Row]:
    return await conn.fetch(
        f"select {VIEW} from objects where org_id = $1 and owner_id = $2 and status = 'stored'"
        " order by created_at, id", org_id, owner_id)


async def shred(conn: Conn, org_id: UUID, owner_id: UUID | None,
                object_id: UUID | None) -> list[Row]:
    """Destroy the data keys of the org's objects (of one owner, or one object): from the
    commit on, their bytes cannot be decrypted. Returns the objects shredded."""
    return await conn.fetch(
        "update objects set status = 'shredded', wrapped_key = null, key_kid = null,"
        " shredded_at = now() where org_id = $1 and ($2::uuid is null or owner_id = $2)"
        " and ($3::uuid is null or id = $3) and status <> 'shredded'"
        " returning owner_id, id, status, size",
        org_id, owner_id, object_id)


async def forget_shredded(conn: Conn, org_id: UUID, keys: list[tuple[UUID, UUID]]) -> None:
    """The rows of shredded objects whose bytes are gone."""
    await conn.execute(
        "delete from objects o using unnest($2::uuid[], $3::uuid[]) as k(owner_id, id)"
        " where o.org_id = $1 and o.owner_id = k.owner_id and o.id = k.id"
        " and o.status = 'shredded'",
        org_id, [k[0] for k in keys], [k[1] for k in keys])


async def unfinished(conn: Conn, stale_before: datetime, limit: int) -> list[Row]:
    return await conn.fetch("select * from unfinished_objects($1, $2)", stale_before, limit)


async def keys_to_rewrap(conn: Conn, current_kid: str, limit: int) -> list[Row]:
    return await conn.fetch("select * from keys_to_rewrap($1, $2)", current_kid, limit)


async def wrapped_key(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "select key_kid, wrapped_key from objects where org_id = $1 and owner_id = $2"
        " and id = $3 and wrapped_key is not null for update",
        org_id, owner_id, object_id)


async def replace_key(conn: Conn, org_id: UUID, owner_id: UUID, object_id: UUID, kid: str,
                      wrapped: bytes) -> None:
    await conn.execute(
        "update objects set key_kid = $4, wrapped_key = $5 where org_id = $1 and owner_id = $2"
        " and id = $3 and wrapped_key is not null",
        org_id, owner_id, object_id, kid, wrapped)


async def orgs_of_owner(conn: Conn, owner_id: UUID) -> list[UUID]:
    return [r["org_id"] for r in await conn.fetch("select * from orgs_of_owner($1)", owner_id)]
