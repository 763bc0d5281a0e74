"""Every SQL statement of the webhooks service, as named functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from argus_shared.db import Conn, one

Row = asyncpg.Record


async def insert_endpoint(conn: Conn, values: dict[str, Any]) -> Row:
    return one(await conn.fetchrow(
        "insert into endpoints (org_id, id, url, event_types, description)"
        " values ($1, $2, $3, $4, $5) returning *",
        values["org_id"], values["id"], values["url"], values["event_types"],
        values["description"],
    ))


async def insert_secret(conn: Conn, org_id: UUID, endpoint_id: UUID, secret_id: UUID,
                        sealed: bytes) -> None:
    await conn.execute(
        "insert into endpoint_secrets (org_id, endpoint_id, id, sealed) values ($1, $2, $3, $4)",
        org_id, endpoint_id, secret_id, sealed,
    )


async def expire_secrets(conn: Conn, org_id: UUID, endpoint_id: UUID, keep: UUID,
                         at: datetime) -> None:
    await conn.execute(
        "update endpoint_secrets set expires_at = least(coalesce(expires_at, $4), $4)"
        " where org_id = $1 and endpoint_id = $2 and id <> $3", org_id, endpoint_id, keep, at,
    )


async def endpoints(conn: Conn, org_id: UUID) -> list[Row]:
    return await conn.fetch("select * from endpoints where org_id = $1 order by created_at",
                            org_id)


async def endpoint(conn: Conn, org_id: UUID, endpoint_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from endpoints where org_id = $1 and id = $2",
                               org_id, endpoint_id)


async def update_endpoint(conn: Conn, org_id: UUID, endpoint_id: UUID,
                          changes: dict[str, Any]) -> Row | None:
    names = list(changes)
    assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    return await conn.fetchrow(
        f"update endpoints set {assignments} where org_id = $1 and id = $2"
        " returning *", org_id, endpoint_id, *changes.values(),
    )


async def delete_endpoint(conn: Conn, org_id: UUID, endpoint_id: UUID) -> bool:
    status = await conn.execute("delete from endpoints where org_id = $1 and id = $2",
                                org_id, endpoint_id)
    return status.endswith(" 1")


async def delete_org_endpoints(conn: Conn, org_id: UUID) -> int:
    """Every endpoint of the org, with its secrets, deliveries and attempts (cascade)."""
    status = await conn.execute("delete from endpoints where org_id = $1", org_id)
    return int(status.rsplit(" ", 1)[1])


async def subscribed(conn: Conn, org_id: UUID, event_type: str) -> list[UUID]:
    rows = await conn.fetch(
        "select id from endpoints where org_id = $1 and enabled"
        " and ($2 = any(event_types) or '*' = any(event_types))", org_id, event_type,
    )
    return [row["id"] for row in rows]


async def insert_deliveries(conn: Conn, org_id: UUID, endpoint_ids: list[UUID],
                            ids: list[UUID], event_id: UUID, event_type: str,
                            payload: bytes) -> None:
    await conn.execute(
        "insert into deliveries (org_id, id, endpoint_id, event_id, event_type, payload)"
        " select $1, d, e, $4, $5, $6 from unnest($2::uuid[], $3::uuid[]) as x(e, d)"
        " on conflict (org_id, endpoint_id, event_id) do nothing",
        org_id, endpoint_ids, ids, event_id, event_type, payload,
    )


async def claim(conn: Conn, limit: int, lease_seconds: int) -> list[Row]:
    return await conn.fetch("select * from claim_deliveries($1, make_interval(secs => $2))",
                            limit, lease_seconds)


async def record_attempt(conn: Conn, values: dict[str, Any]) -> None:
    await conn.execute(
        "insert into attempts (org_id, delivery_id, n, started_at, status_code, latency_ms,"
        " error, response_body) values ($1, $2, $3, $4, $5, $6, $7, $8)"
        " on conflict do nothing",
        values["org_id"], values["delivery_id"], values["n"], values["started_at"],
        values["status_code"], values["latency_ms"], values["error"], values["response_body"],
    )


async def succeeded(conn: Conn, attempts: list[dict[str, Any]]) -> None:
    """Successful attempts of any orgs in one round trip (`settle_succeeded`): the deliveries
    still in flight are settled, their attempts logged, their endpoints' failure streaks ended."""
    await conn.execute(
        "select settle_succeeded($1, $2, $3, $4, $5, $6, $7)",
        *([a[k] for a in attempts] for k in (
            "org_id", "delivery_id", "n", "started_at", "status_code", "latency_ms",
            "response_body")),
    )


async def finish(conn: Conn, org_id: UUID, delivery_id: UUID, status: str,
                 next_attempt_at: datetime | None) -> None:
    await conn.execute(
        "update deliveries set status = $3, lease_until = null,"
        " next_attempt_at = coalesce($4, next_attempt_at),"
        " delivered_at = case when $3 = 'succeeded' then now() else delivered_at end"
        " where org_id = $1 and id = $2", org_id, delivery_id, status, next_attempt_at,
    )


async def mark_failing(conn: Conn, org_id: UUID, endpoint_id: UUID) -> datetime:
    return await conn.fetchval(
        "update endpoints set failing_since = coalesce(failing_since, now())"
        " where org_id = $1 and id = $2 returning failing_since", org_id, endpoint_id,
    )


async def disable(conn: Conn, org_id: UUID, endpoint_id: UUID, reason: str) -> None:
    await conn.execute(
        "update endpoints set enabled = false, disabled_reason = $3 where org_id = $1"
        " and id = $2", org_id, endpoint_id, reason,
    )


async def deliveries_of(conn: Conn, org_id: UUID, endpoint_id: UUID) -> list[Row]:
    return await conn.fetch(
        "select id, event_id, event_type, status, attempts, next_attempt_at, created_at,"
        " delivered_at from deliveries where org_id = $1 and endpoint_id = $2"
        " order by created_at desc limit 200", org_id, endpoint_id,
    )


async def delivery(conn: Conn, org_id: UUID, delivery_id: UUID) -> Row | None:
    return await conn.fetchrow("select * from deliveries where org_id = $1 and id = $2",
                               org_id, delivery_id)


async def attempts_of(conn: Conn, org_id: UUID, delivery_id: UUID) -> list[Row]:
    return await conn.fetch(
        "select * from attempts where org_id = $1 and delivery_id = $2 order by n",
        org_id, delivery_id,
    )


async def resend(conn: Conn, org_id: UUID, delivery_id: UUID) -> bool:
    status = await conn.execute(
        "update deliveries set status = 'pending', next_attempt_at = now()"
        " where org_id = $1 and id = $2 and status in ('exhausted', 'succeeded', 'cancelled')",
        org_id, delivery_id,
    )
    return status.endswith(" 1")


async def insert_inbound(conn: Conn, provider: str, event_id: str) -> bool:
    status = await conn.execute(
        "insert into inbound_events (provider, event_id) values ($1, $2) on conflict do nothing",
        provider, event_id,
    )
    return status.endswith(" 1")


async def queue_stats(conn: Conn) -> Row:
    return one(await conn.fetchrow("select * from queue_stats()"))
