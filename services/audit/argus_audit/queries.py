"""Every SQL statement of the audit service, as named functions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Row = asyncpg.Record
COLUMNS = ("org_id, seq, event_id, occurred_at, received_at, type, actor_type, actor_id,"
           " resource_type, resource_id, ip, user_agent, request_id, data, prev_hash, hash")


async def lock_head(conn: Conn, org_id: UUID) -> tuple[int, bytes]:
    """The chain head, locked until commit (created at the genesis link the first time)."""
    row = await conn.fetchrow(
        "insert into chain_heads as h (org_id, seq, hash) values ($1, 0, $2)"
        " on conflict (org_id) do update set seq = h.seq returning seq, hash",
        org_id, bytes(32),
    )
    return row["seq"], bytes(row["hash"])


async def already_seen(conn: Conn, org_id: UUID, event_ids: list[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "select event_id from seen_events where org_id = $1 and event_id = any($2::uuid[])",
        org_id, event_ids,
    )
    return {row["event_id"] for row in rows}


TYPES = {"org_id": "uuid", "seq": "bigint", "event_id": "uuid", "occurred_at": "timestamptz",
         "received_at": "timestamptz", "type": "text", "actor_type": "text", "actor_id": "text",
         "resource_type": "text", "resource_id": "text", "ip": "text", "user_agent": "text",
         "request_id": "text", "data": "jsonb", "prev_hash": "bytea", "hash": "bytea"}
INSERT_EVENTS = (
    f"insert into audit_events ({', '.join(TYPES)}) select * from unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(TYPES.values(), start=1)) + ")"
)


async def append(conn: Conn, org_id: UUID, rows: list[dict[str, Any]]) -> None:
    """A whole batch in one statement: the rows (arrays unnested), their ids for
    deduplication, and the new chain head."""
    n = len(TYPES)
    await conn.execute(
        f"with stored as ({INSERT_EVENTS} returning event_id, org_id, seq),"
        " seen as (insert into seen_events (event_id, org_id, seq)"
        "   select event_id, org_id, seq from stored)"
        f" update chain_heads set seq = ${n + 2}, hash = ${n + 3} where org_id = ${n + 1}",
        *([row[name] for row in rows] for name in TYPES), org_id, rows[-1]["seq"],
        rows[-1]["hash"],
    )


async def quarantine(conn: Conn, rows: list[tuple[str, str, Any, bytes]]) -> None:
    await conn.executemany(
        "insert into quarantine (subject, reason, headers, payload) values ($1, $2, $3, $4)",
        rows,
    )


async def upsert_plan(conn: Conn, org_id: UUID, plan: str | None,
                      retention_days: int | None) -> None:
    await conn.execute(
        """
        insert into org_plans (org_id, plan, retention_days) values ($1, coalesce($2, 'free'), $3)
        on conflict (org_id) do update set plan = coalesce($2, org_plans.plan),
            retention_days = coalesce($3, org_plans.retention_days)
        """,
        org_id, plan, retention_days,
    )


async def ensure_partitions(conn: Conn) -> None:
    await conn.execute("select ensure_partitions(now(), 2)")


async def events_page(conn: Conn, org_id: UUID, filters: dict[str, Any], after: int | None,
                      limit: int) -> list[Row]:
    clauses, args = ["org_id = $1"], [org_id]
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


