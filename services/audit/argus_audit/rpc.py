"""What audit answers to data-subject requests (tenant-api's job, over NATS)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from argus_shared import xut
from argus_shared.nats import RpcError

KEPT = ("the audit trail is evidence: a user's events stay, unchanged and chained, until their "
        "org's retention removes them (rewriting them would break tamper evidence)")


def _user(payload: Any) -> UUID:
    try:
        return UUID(payload["user_id"])
    except (KeyError, TypeError, ValueError):
        raise RpcError(400, "send user_id") from None


async def export_user(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    user_id = _user(payload)
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "only the user's own data")
    async with pool.acquire() as conn:
        rows = await conn.fetch("select * from events_of_user($1)", str(user_id))
    return {"events": [{
        "org_id": str(r["org_id"]), "seq": r["seq"], "type": r["type"],
        "occurred_at": r["occurred_at"].isoformat(),
        "resource": {"type": r["resource_type"], "id": r["resource_id"]},
        "ip": r["ip"], "user_agent": r["user_agent"]} for r in rows]}


async def purge_user(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    _user(payload)
    if claims.sub != "service:tenant-api":
        raise RpcError(403, "only the data-subject request job asks")
    return {"purged": False, "kept": KEPT}
