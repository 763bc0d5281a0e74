"""Deleted orgs, once their grace period is over: tenant-api's own share of the purge that the
`org.deleted` event asks of every service (auth drops the org's API keys, webhooks its
endpoints, files shreds its objects; audit keeps its chain until retention)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from argus_shared import db
from argus_shared.event_types import ORG_PURGED
from argus_shared.outbox import Ctx, record
from argus_tenant_api import SERVICE, queries

log = logging.getLogger("argus.tenant_api.org_purge")
GRACE = timedelta(days=7)  # the purge_by the org.deleted event announces
BATCH = 100


async def purge_deleted_orgs(pool: asyncpg.Pool, now: datetime | None = None) -> list[UUID]:
    """Purge every org deleted more than `GRACE` before `now`; the orgs purged."""
    before = (now or datetime.now(UTC)) - GRACE
    async with pool.acquire() as conn:
        due = await queries.deleted_orgs_due(conn, before, BATCH)
    for org_id in due:
        async with db.tenant_tx(pool, org_id) as conn:
            removed = await queries.purge_org(conn, org_id)
            await record(conn, SERVICE, Ctx(), ORG_PURGED, actor=("service", SERVICE),
                         resource=("org", str(org_id)), org_id=org_id, data=removed)
        log.info("deleted org purged", extra={"org_id": str(org_id), **removed})
    return due
