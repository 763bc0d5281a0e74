"""The audit service's route table: query, NDJSON export and verification for org owners and
admins (or API keys with `audit:read`); every view of the log is itself an audit event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from argus_audit import SERVICE, chain, queries, schemas
from argus_audit.export import export_chunks
from argus_audit.stream_http import stream
from argus_audit.verify import verify_chain
from argus_shared import db, scoping
from argus_shared.access import PRINCIPAL
from argus_shared.errors import Problem
from argus_shared.event_types import AUDIT_LOG_VIEWED, require_known
from argus_shared.handlers import ctx_of
from argus_shared.outbox import record
from argus_shared.problem_types import STREAM_CAP, UNKNOWN_EVENT_TYPE
from argus_shared.routing import Answer, Guarded, Header, Route
from argus_shared.scopes import EVENTS_READ
from argus_shared.validation import parse_query
from argus_shared.web import POOL_KEY, SETTINGS_KEY

VIEWERS = ("owner", "admin")
SCOPES = ("audit:read",)


def org_scope(request: web.Request) -> UUID:
    return scoping.org_scope(request).org_id


async def viewed(request: web.Request, org_id: UUID, what: str, **data: Any) -> None:
    principal = request[PRINCIPAL]
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        await record(conn, SERVICE, ctx_of(request), AUDIT_LOG_VIEWED,
                     actor=(principal.kind, principal.id),
                     resource=("audit_log", what), org_id=org_id, data=data)


def view(row: Any) -> dict[str, Any]:
    return {
        "org_id": str(row["org_id"]), "seq": row["seq"], "event_id": str(row["event_id"]),
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "received_at": row["received_at"].isoformat(),
        "actor": {"type": row["actor_type"], "id": row["actor_id"]},
        "resource": {"type": row["resource_type"], "id": row["resource_id"]},
        "ip": row["ip"], "user_agent": row["user_agent"], "request_id": row["request_id"],
        "data": row["data"], "prev_hash": bytes(row["prev_hash"]).hex(),
        "hash": bytes(row["hash"]).hex(),
    }


def filters_of(query: schemas.EventsQuery) -> dict[str, Any]:
    if query.since and query.until and query.until <= query.since:
        raise Problem(400, "the time range runs backwards: until must be after since")
    names = ("actor", "action", "resource_type", "resource_id", "since", "until")
    found = {name: getattr(query, name) for name in names if getattr(query, name) is not None}
    if "actor" in found:
        found["actor_id"] = found.pop("actor")
    return found


async def list_events(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    query = parse_query(request, schemas.EventsQuery)
    if query.action is not None:
        require_known([query.action], "action")
    filters = filters_of(query)
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        rows = await queries.events_page(conn, org_id, filters,
                                         int(query.cursor) if query.cursor else None, query.limit)
    await viewed(request, org_id, "events", filters={k: str(v) for k, v in filters.items()})
    next_cursor = str(rows[-1]["seq"]) if len(rows) == query.limit else None
    return web.Response(body=msgspec.json.encode(
        {"events": [view(r) for r in rows], "next_cursor": next_cursor}),
        content_type="application/json")


async def export_events(request: web.Request) -> web.StreamResponse:
    org_id = org_scope(request)
    await viewed(request, org_id, "export")
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson",
        "Content-Disposition": 'attachment; filename="audit.ndjson"'})
    await response.prepare(request)
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        async for chunk in export_chunks(conn, org_id, view):
            await response.write(chunk)
    await response.write_eof()
    return response


async def verify(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    settings = request.app[SETTINGS_KEY]
    assert settings.master_keys is not None
    result = await verify_chain(request.app[POOL_KEY], settings.master_keys, org_id)
    await viewed(request, org_id, "verification", ok=result["ok"])
    return web.json_response(result)


async def checkpoint_key(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    assert settings.master_keys is not None
    kid, key = chain.signing_key(settings.master_keys)
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return web.json_response({"kid": kid, "alg": "Ed25519", "public_key": raw.hex()})


ORG = "/orgs/{org_id}/audit"
T: Guarded = {"tags": ("audit",), "scopes": SCOPES, "roles": VIEWERS}
ROUTES: list[Route] = [
    Route("GET", ORG + "/events", list_events, "Query the org's audit log (cursor pages)",
          query=schemas.EventsQuery,
          responses={400: "The time range runs backwards (until is not after since)",
                     422: Answer("The action is not an event type",
                                 problems=(UNKNOWN_EVENT_TYPE,))},
          **T),
    Route("GET", ORG + "/export.ndjson", export_events,
          "The whole log as NDJSON, with the chain fields for your own verification",
          media_type="application/x-ndjson", **T),
    Route("GET", ORG + "/verify", verify, "Recompute the org's chain; names the first broken link",
          **T),
    Route("GET", "/checkpoint-key", checkpoint_key, "The public key that signs checkpoints",
          auth="public", tags=("audit",)),
    Route("GET", "/stream", stream,
          "Live events you may see, as server-sent events (resumable by Last-Event-ID)",
          media_type="text/event-stream", query=schemas.StreamQuery, tags=("audit",),
          scopes=(EVENTS_READ,),
          headers=(Header("Last-Event-ID", "Resume after this stream position (an SSE `id:`)"),),
          responses={400: "Last-Event-ID is not a stream position",
                     422: Answer("A `types` prefix matches no event type",
                                 problems=(UNKNOWN_EVENT_TYPE,)),
                     429: Answer("Too many concurrent streams for the user, key or org",
                                 problems=(STREAM_CAP,),
                                 headers={"Retry-After": "seconds until a retry may succeed"})}),
]
