"""Fan-out: each event of ARGUS_EVENTS becomes one delivery per enabled endpoint of its org that
subscribes to its type (or to `*`); idempotent on (endpoint, event), so a redelivered message
adds nothing. Messages that fail verification are never delivered to anyone.

tenant-api's `org.deleted` removes the org's endpoints at once, with their sealed secrets,
pending deliveries and attempt logs (nothing more is sent for an org that no longer exists)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from argus_shared import db
from argus_shared.consumer import Received
from argus_shared.event_types import ORG_DELETED
from argus_shared.logs import request_context
from argus_webhooks import queries

log = logging.getLogger("argus.webhooks.fanout")
ORG_DELETED = ORG_DELETED


class FanOut:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, batch: Sequence[Received]) -> None:
        for item in batch:
            with request_context(item.request_id):
                await self.fan_out(item)

    async def fan_out(self, item: Received) -> None:
        """One message: its deliveries, or a deleted org's endpoints removed."""
        if item.event is None:
            log.warning("unverified event not delivered", extra={"reason": item.error,
                                                                 "subject": item.msg.subject})
            return
        if item.event.org_id is None:
            return  # platform events belong to no org's endpoints
        org_id = UUID(item.event.org_id)
        if item.event.type == ORG_DELETED and item.claims and item.claims.iss == "tenant-api":
            async with db.tenant_tx(self.pool, org_id) as conn:
                removed = await queries.delete_org_endpoints(conn, org_id)
            log.info("a deleted org's endpoints removed",
                     extra={"org_id": str(org_id), "endpoints": removed})
            return
        async with db.tenant_tx(self.pool, org_id) as conn:
            targets = await queries.subscribed(conn, org_id, item.event.type)
            if targets:
                await queries.insert_deliveries(
                    conn, org_id, targets, [uuid.uuid4() for _ in targets],
                    UUID(item.event.id), item.event.type, item.msg.data)
        log.debug("event fanned out", extra={"event_id": item.event.id,
                                             "event_type": item.event.type,
                                             "deliveries": len(targets)})
