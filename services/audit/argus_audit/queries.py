"""Every SQL statement of the audit service, as named functions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from argus_shared.db import Conn

Row = asyncpg.Record
_encode = msgspec.json.Encoder().encode
COLUMNS = ("org_id, seq, event_id, occurred_at, received_at, type, actor_type, actor_id,"
           " resource_type, resource_id, ip, user_agent, request_id, data, prev_hash, hash")


async def lock_chains(conn: Conn, orgs: list[str], event_ids: list[str]) -> list[Row]:
    """Lock the heads of `orgs` (sorted by the caller), with the ids of `event_ids` each org's
    chain holds already (a row with a null head for an org outside `orgs`)."""
    return await conn.fetch("select * from lock_chains($1::text::uuid[], $2::text::uuid[])",
                            uuid_array(orgs), uuid_array(event_ids))


async def append(conn: Conn, orgs: list[str], rows: list[dict[str, Any]]) -> None:
    """Linked rows of the chains of `orgs`, in one statement (one JSON document costs far less
    to encode than sixteen typed arrays); the database checks that they continue the chains."""
    await conn.execute("select append_events($1::text::uuid[], $2)", uuid_array(orgs),
                       _encode(rows).decode())


def uuid_array(values: list[str]) -> str:
    """An array literal of canonical UUIDs (checked by events.decode: hex and dashes only)."""
    return "{" + ",".join(values) + "}"


def json_text(value: Any) -> str:
    return _encode(value).decode()


def bytea_text(value: bytes) -> str:
    return "\\x" + value.hex()


async def quarantine(conn: Conn, rows: list[tuple[str, str, Any, bytes]]) -> None:
    await conn.executemany(
        "insert into quarantine (subject, reason, headers, payload) values ($1, $2, $3, $4)",
        rows,
    )


async def upsert_plan(conn: Conn, org_id: UUID, plan: str | None,
                      retention_days: int | None) -> None:
    """Through a definer function (0005_least_privilege): the role may not UPDATE org_plans."""
    await conn.execute("select upsert_org_plan($1, $2, $3)", org_id, plan, retention_days)


async def ensure_partitions(conn: Conn) -> None:
    await conn.execute("select ensure_partitions(now(), 2)")


async def events_page(conn: Conn, org_id: UUID, filters: dict[str, Any], after: int | None,
                      limit: int) -> list[Row]:
    clauses, args = ["org_id = $1"], list[Any]([org_id])
    for column, value in filters.items():
        args.append(value)
        operator = {"since": ">=", "until": "<"}.get(column, "=")
        name = {"since": "received_at", "until": "received_at", "action": "type"}.get(column,
                                                                                     column)
        clauses.append(f"{name} {operator} ${len(args)}")
    if after is not None:
        args.append(after)
        clauses.append(f"seq > ${len(args)}")
    args.append(limit)
    return await conn.fetch(
        f"select {COLUMNS} from audit_events where {' and '.join(clauses)}"
        f" order by seq limit ${len(args)}", *args,
    )


CHAIN = f"select {COLUMNS} from audit_events where org_id = $1 and seq > $2 order by seq"


async def retention_checkpoint(conn: Conn, org_id: UUID) -> Row | None:
    return await conn.fetchrow(
        "select seq, hash, kid, signature from checkpoints where org_id = $1"
        " and reason = 'retention' order by seq desc limit 1", org_id,
    )


async def checkpoints(conn: Conn, org_id: UUID) -> list[Row]:
    return await conn.fetch(
        "select seq, hash, kid, signature from checkpoints where org_id = $1 order by seq", org_id
    )


async def all_heads(conn: Conn) -> list[Row]:
    return await conn.fetch("select * from all_chain_heads()")


async def record_checkpoint(conn: Conn, org_id: UUID, seq: int, head: bytes, kid: str,
                            signature: bytes) -> None:
    await conn.execute("select record_checkpoint($1, $2, $3, $4, $5)",
                       org_id, seq, head, kid, signature)


async def quarantined(conn: Conn) -> int:
    return await conn.fetchval("select count(*) from quarantine")


