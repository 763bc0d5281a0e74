"""From ARGUS_EVENTS into the chain: verified events are grouped by org, deduplicated on their
id under the chain-head lock (so replicas and redeliveries store each event once), linked and
committed, and only then acknowledged (by the consumer). Anything that fails verification goes to
the quarantine table with its reason."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from prometheus_client import Counter, Histogram

from argus_audit import chain, queries
from argus_shared import db, events
from argus_shared.consumer import Received

PLAN_EVENTS = {"tenant-api": ("org.created", "org.updated")}


class Metrics:
    def __init__(self, registry: Any) -> None:
        self.ingested = Counter("argus_audit_events_ingested", "Events stored in the chain",
                                registry=registry)
        self.quarantined = Counter("argus_audit_events_quarantined",
                                   "Messages refused into quarantine", ["reason"],
                                   registry=registry)
        self.duplicates = Counter("argus_audit_events_duplicate",
                                  "Redelivered events already stored", registry=registry)
        self.batch_seconds = Histogram("argus_audit_batch_seconds", "Time to store one batch",
                                       registry=registry)


class Ingest:
    def __init__(self, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self.pool, self.metrics = pool, metrics

    async def __call__(self, batch: Sequence[Received]) -> None:
        started = time.perf_counter()
        refused = [item for item in batch if item.event is None]
        if refused:
            await self._quarantine(refused)
        by_org: dict[UUID, list[events.Event]] = defaultdict(list)
        for item in batch:
            if item.event is not None:
                org = UUID(item.event.org_id) if item.event.org_id else chain.PLATFORM
                by_org[org].append(item.event)
        # chains are per org: orgs are stored side by side, each on its own connection
        results = await asyncio.gather(*(self._append(org, evs) for org, evs in by_org.items()),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:  # the batch is redelivered; what did commit is recognised by its id
            raise failed[0]
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _append(self, org_id: UUID, org_events: list[events.Event]) -> None:
        async with db.tenant_tx(self.pool, org_id) as conn:
            seq, head = await queries.lock_head(conn, org_id)
            ids = [UUID(e.id) for e in org_events]
            seen = await queries.already_seen(conn, org_id, ids)
            rows, now = [], datetime.now(UTC)
            for event_id, event in zip(ids, org_events, strict=True):
                if event_id in seen:
                    self.metrics.duplicates.inc()
                    continue
                seen.add(event_id)
                seq += 1
                row = row_of(event, event_id, org_id, seq, now)
                row["prev_hash"], row["hash"] = head, chain.link(head, row)
                head = row["hash"]
                rows.append(row)
            if rows:
                await queries.append(conn, org_id, rows)
                await self._track_plans(conn, org_id, rows)
        self.metrics.ingested.inc(len(rows))

    async def _track_plans(self, conn: queries.Conn, org_id: UUID,
                           rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["type"] in ("org.created", "org.updated"):
                await queries.upsert_plan(conn, org_id, row["data"].get("plan"),
                                          row["data"].get("audit_retention_days"))

    async def _quarantine(self, refused: list[Received]) -> None:
        async with self.pool.acquire() as conn:
            await queries.quarantine(conn, [
                (item.msg.subject, item.error or "unknown", dict(item.msg.headers or {}),
                 item.msg.data) for item in refused])
        for item in refused:
            self.metrics.quarantined.labels((item.error or "unknown").split(":")[0]).inc()


def row_of(event: events.Event, event_id: UUID, org_id: UUID, seq: int, received: datetime
           ) -> dict[str, Any]:
    return {
        "org_id": org_id, "seq": seq, "event_id": event_id,
        "occurred_at": datetime.fromisoformat(event.occurred_at), "received_at": received,
        "type": event.type, "actor_type": event.actor.type, "actor_id": event.actor.id,
        "resource_type": event.resource.type, "resource_id": event.resource.id,
        "ip": event.ip, "user_agent": (event.user_agent or None) and event.user_agent[:500],
        "request_id": event.request_id,
        "data": msgspec.json.decode(msgspec.json.encode(event.data)),
    }
