"""From ARGUS_EVENTS into the chains: a batch of verified events, whatever orgs it spans, is
linked and stored in one transaction (the heads of its orgs locked, ids already stored
recognised, so replicas and redeliveries store each event once), and only then acknowledged (by
the consumer). Anything that fails verification or cannot be stored goes to the quarantine
table, in the same transaction, with its reason.

Once committed, each quarantined message is logged (a warning) and, at DEBUG, each stored event,
every line carrying the request id of the message it is about."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client import Counter, Histogram

from argus_audit import chain, queries
from argus_shared import events
from argus_shared.consumer import REFUSALS, Received
from argus_shared.event_types import ORG_CREATED, ORG_UPDATED
from argus_shared.logs import request_context

log = logging.getLogger("argus.audit.ingest")
PLATFORM = str(chain.PLATFORM)
UTC_TEXT_LENGTH = len("2026-01-01T00:00:00.000000+00:00")


class Metrics:
    def __init__(self, registry: Any) -> None:
        self.ingested = Counter("argus_audit_events_ingested", "Events stored in the chain",
                                registry=registry)
        self.quarantined = Counter("argus_audit_events_quarantined",
                                   "Messages refused into quarantine", ["reason"],
                                   registry=registry)
        for reason in (*REFUSALS, "duplicate_id", "unstorable"):  # 0 first: increase() sees 1
            self.quarantined.labels(reason)
        self.duplicates = Counter("argus_audit_events_duplicate",
                                  "Redelivered events already stored", registry=registry)
        self.batch_seconds = Histogram("argus_audit_batch_seconds", "Time to store one batch",
                                       registry=registry)


@dataclass(slots=True)
class Head:
    seq: int
    hash: bytes


@dataclass(slots=True)
class Linked:
    rows: list[dict[str, Any]]
    events: list[events.Event]
    refused: list[Received]
    duplicates: int


class Ingest:
    def __init__(self, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self.pool, self.metrics = pool, metrics

    async def __call__(self, batch: Sequence[Received]) -> None:
        started = time.perf_counter()
        batch = [refuse_unstorable(item) for item in batch]
        accepted = [item for item in batch if item.event is not None]
        refused = [item for item in batch if item.event is None]
        linked = Linked([], [], [], 0)
        async with self.pool.acquire() as conn, conn.transaction():
            if accepted:
                linked = await self._append(conn, accepted)
            if refused or linked.refused:
                await self._quarantine(conn, refused + linked.refused)
        # a failure above leaves everything to redelivery; what did commit is known by its id
        self.metrics.ingested.inc(len(linked.rows))
        self.metrics.duplicates.inc(linked.duplicates)
        for item in refused + linked.refused:
            self.metrics.quarantined.labels((item.error or "unknown").split(":")[0]).inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        log_outcome(linked, refused + linked.refused)

    async def _append(self, conn: queries.Conn, accepted: list[Received]) -> Linked:
        orgs = sorted({item.event.org_id or PLATFORM for item in accepted if item.event})
        heads, stored_in = {}, {}
        for row in await queries.lock_chains(conn, orgs, [i.event.id for i in accepted
                                                            if i.event]):
            org = str(row["org_id"])
            stored_in.update(dict.fromkeys(row["seen"], org))
            if row["seq"] is not None:
                heads[org] = Head(row["seq"], bytes(row["hash"]))
        linked = link(accepted, heads, stored_in, datetime.now(UTC).isoformat())
        if linked.rows:
            await queries.append(conn, orgs, linked.rows)
            await self._track_plans(conn, linked.events)
        return linked

    async def _track_plans(self, conn: queries.Conn, stored: list[events.Event]) -> None:
        for event in stored:
            if event.type in (ORG_CREATED, ORG_UPDATED) and event.org_id:
                await queries.upsert_plan(conn, UUID(event.org_id), event.data.get("plan"),
                                          event.data.get("audit_retention_days"))

    async def _quarantine(self, conn: queries.Conn, refused: list[Received]) -> None:
        await queries.quarantine(conn, [
            (item.msg.subject, item.error or "unknown", dict(item.msg.headers or {}),
             item.msg.data) for item in refused])


def log_outcome(linked: Linked, quarantined: list[Received]) -> None:
    """A line per quarantined message, and at DEBUG per stored event (checked once per batch:
    nothing is spent per event at INFO), each in the context of its own request."""
    for item in quarantined:
        with request_context(item.request_id):
            log.warning("event quarantined", extra={"reason": item.error or "unknown",
                                                    "subject": item.msg.subject})
    if not log.isEnabledFor(logging.DEBUG):
        return
    for event in linked.events:
        with request_context(event.request_id):
            log.debug("event stored", extra={"event_id": event.id, "event_type": event.type,
                                             "org_id": event.org_id})


def link(accepted: list[Received], heads: dict[str, Head], stored_in: dict[str, str],
         received: str) -> Linked:
    """Each new event as the next link of its org's chain. An id stored already in the same
    org is a redelivery; one stored in another org cannot be stored again and is refused."""
    linked = Linked([], [], [], 0)
    for item in accepted:
        event = item.event
        assert event is not None
        org = event.org_id or PLATFORM
        holder = stored_in.get(event.id)
        if holder == org:
            linked.duplicates += 1
            continue
        if holder is not None:
            linked.refused.append(replace(item, event=None,
                                          error="duplicate_id: stored in another org's chain"))
            continue
        stored_in[event.id] = org
        head = heads[org]
        head.seq += 1
        row = row_of(event, org, head.seq, received)
        row["prev_hash"], head.hash = queries.bytea_text(head.hash), chain.link(head.hash, row)
        row["hash"], row["data"] = queries.bytea_text(head.hash), queries.json_text(event.data)
        linked.rows.append(row)
        linked.events.append(event)
    return linked


def refuse_unstorable(item: Received) -> Received:
    """A NUL character cannot be stored in a text column: refused with its reason rather than
    failing its batch on every redelivery. (`data` keeps it: it is stored as JSON text.)"""
    if item.event is None or b"\\u0000" not in item.msg.data:  # JSON writes NUL only so
        return item
    event = item.event
    fields = (event.type, event.actor.type, event.actor.id, event.resource.type,
              event.resource.id, event.ip, event.user_agent, event.request_id)
    if any(field and "\x00" in field for field in fields):
        return replace(item, event=None, error="unstorable: NUL character in a text field")
    return item


def row_of(event: events.Event, org_id: str, seq: int, received: str) -> dict[str, Any]:
    """The stored columns of one event, as the chain hashes them."""
    return {
        "org_id": org_id, "seq": seq, "event_id": event.id,
        "occurred_at": occurred_text(event.occurred_at), "received_at": received,
        "type": event.type, "actor_type": event.actor.type, "actor_id": event.actor.id,
        "resource_type": event.resource.type, "resource_id": event.resource.id,
        "ip": event.ip, "user_agent": (event.user_agent or None) and event.user_agent[:500],
        "request_id": event.request_id, "data": event.data,
    }


def occurred_text(moment: str) -> str:
    """An envelope's time as the column will give it back (UTC, microseconds); what our own
    services write is already in that form."""
    if len(moment) == UTC_TEXT_LENGTH and moment[10] == "T" and moment[19] == "." \
            and moment.endswith("+00:00"):
        return moment
    return chain.utc_text(datetime.fromisoformat(moment))
