"""Periodic work: sign a checkpoint of every chain head, keep next months' partitions ready,
and (owner only) retention by plan."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from argus_audit import chain, queries
from argus_shared.db import Conn
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.audit.maintenance")
RETENTION_DAYS = {"free": 90, "pro": 365, "team": 365, "enterprise": 7 * 365}


async def checkpoint_heads(pool: asyncpg.Pool, master: KeyRing) -> int:
    async with pool.acquire() as conn:
        heads = await queries.all_heads(conn)
        for head in heads:
            if head["seq"] == 0:
                continue
            kid, signature = chain.sign(master, head["org_id"], head["seq"], bytes(head["hash"]))
            await queries.record_checkpoint(conn, head["org_id"], head["seq"],
                                            bytes(head["hash"]), kid, signature)
        await queries.ensure_partitions(conn)
    return len(heads)


async def prune(owner_conn: asyncpg.Connection, master: KeyRing,
                now: datetime | None = None) -> dict[str, int]:
    """As the owner role: for each org, remove events older than its plan's retention, after
    recording a signed retention checkpoint at the last removed link."""
    moment = now or datetime.now(UTC)
    removed: dict[str, int] = {}
    orgs = await owner_conn.fetch(
        "select h.org_id, coalesce(p.retention_days, case p.plan when 'free' then 90"
        " when 'enterprise' then 2555 when null then 90 else 365 end, 90) as days"
        " from audit.chain_heads h left join audit.org_plans p on p.org_id = h.org_id")
    for org in orgs:
        count = await _prune_org(owner_conn, master, org["org_id"],
                                 moment - timedelta(days=org["days"]))
        if count:
            removed[str(org["org_id"])] = count
    return removed


async def _prune_org(conn: Conn, master: KeyRing, org_id: UUID,
                     cutoff: datetime) -> int:
    async with conn.transaction():
        last = await conn.fetchrow(
            "select seq, hash from audit.audit_events where org_id = $1 and received_at < $2"
            " order by seq desc limit 1", org_id, cutoff)
        if last is None:
            return 0
        kid, signature = chain.sign(master, org_id, last["seq"], bytes(last["hash"]))
        await conn.execute(
            "insert into audit.checkpoints (org_id, seq, hash, kid, signature, reason)"
            " values ($1, $2, $3, $4, $5, 'retention') on conflict do nothing",
            org_id, last["seq"], bytes(last["hash"]), kid, signature)
        await conn.execute("set local audit.pruning = 'on'")
        status = await conn.execute(
            "delete from audit.audit_events where org_id = $1 and seq <= $2", org_id, last["seq"])
    count = int(status.split()[-1])
    log.info("retention", extra={"org_id": str(org_id), "removed": count})
    return count


