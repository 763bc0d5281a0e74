"""The webhooks service's route table: endpoints for org owners and admins (secret shown once at
creation and rotation), their deliveries and attempts, manual resend, and verified inbound
webhooks from configured providers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from argus_shared import crypto, db, scoping
from argus_shared.access import PRINCIPAL
from argus_shared.errors import Problem
from argus_shared.event_types import (
    ENDPOINT_CREATED,
    ENDPOINT_DELETED,
    ENDPOINT_SECRET_ROTATED,
    ENDPOINT_UPDATED,
    INBOUND_RECEIVED,
    require_known,
)
from argus_shared.handlers import ctx_of, iso, json, not_found, uuid_param
from argus_shared.outbox import record
from argus_shared.problem_types import UNKNOWN_EVENT_TYPE
from argus_shared.routing import Answer, Guarded, Route
from argus_shared.validation import NOT_SINGLE_LINE, decode, parse_json, read_body
from argus_shared.web import POOL_KEY, SETTINGS_KEY
from argus_webhooks import SERVICE, excerpt, queries, schemas, signing, ssrf
from argus_webhooks.config import CONFIG_KEY, Provider
from argus_webhooks.delivery import secret_context

ADMINS = ("owner", "admin")
INBOUND_LIMIT = 600


def org_scope(request: web.Request) -> UUID:
    return scoping.org_scope(request).org_id


def endpoint_view(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "url": row["url"], "event_types": list(row["event_types"]),
            "enabled": row["enabled"], "description": row["description"],
            "disabled_reason": row["disabled_reason"], "created_at": iso(row["created_at"])}


async def checked_url(request: web.Request, url: str) -> str:
    config = request.app[CONFIG_KEY]
    try:
        host, port = ssrf.check_url(url, config.https_only)
        await ssrf.resolve_checked(host, port, config.allow_nets, config.resolve)
    except ssrf.Refused as exc:
        raise Problem(422, f"the endpoint URL is refused: {exc}", title="URL refused") from None
    return url


async def _new_secret(conn: db.Conn, request: web.Request, org_id: UUID, endpoint_id: UUID
                      ) -> tuple[str, UUID]:
    secret = signing.new_secret()
    master = request.app[SETTINGS_KEY].master_keys
    assert master is not None
    sealed = crypto.seal(master, secret.encode(), secret_context(org_id, endpoint_id))
    secret_id = uuid.uuid4()
    await queries.insert_secret(conn, org_id, endpoint_id, secret_id, sealed)
    return secret, secret_id


async def create_endpoint(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    body = await parse_json(request, schemas.NewEndpoint)
    require_known(body.event_types, "event_types", wildcard=True)
    url = await checked_url(request, body.url)
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        row = await queries.insert_endpoint(conn, {
            "org_id": org_id, "id": uuid.uuid4(), "url": url,
            "event_types": sorted(set(body.event_types)), "description": body.description})
        secret, _ = await _new_secret(conn, request, org_id, row["id"])
        await record(conn, SERVICE, ctx_of(request), ENDPOINT_CREATED,
                     actor=_actor(request), resource=("endpoint", str(row["id"])), org_id=org_id)
    return json({"secret": secret, "endpoint": endpoint_view(row)}, 201)


def _actor(request: web.Request) -> tuple[str, str]:
    principal = request[PRINCIPAL]
    return (principal.kind, principal.id)


async def list_endpoints(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        rows = await queries.endpoints(conn, org_id)
    return json([endpoint_view(r) for r in rows])


async def get_endpoint(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        row = await queries.endpoint(conn, org_id, uuid_param(request, "endpoint_id"))
    if row is None:
        raise not_found()
    return json(endpoint_view(row))


async def update_endpoint(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    body = await parse_json(request, schemas.EndpointChanges)
    changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    require_known(changes.get("event_types", ()), "event_types", wildcard=True)
    if "url" in changes:
        await checked_url(request, changes["url"])
    if changes.get("enabled") is True:
        changes["disabled_reason"] = None
        changes["failing_since"] = None
    if not changes:
        raise Problem(422, "nothing to change")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        row = await queries.update_endpoint(conn, org_id, uuid_param(request, "endpoint_id"),
                                            changes)
        if row is None:
            raise not_found()
        await record(conn, SERVICE, ctx_of(request), ENDPOINT_UPDATED,
                     actor=_actor(request), resource=("endpoint", str(row["id"])), org_id=org_id)
    return json(endpoint_view(row))


async def delete_endpoint(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    endpoint_id = uuid_param(request, "endpoint_id")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        if not await queries.delete_endpoint(conn, org_id, endpoint_id):
            raise not_found()
        await record(conn, SERVICE, ctx_of(request), ENDPOINT_DELETED,
                     actor=_actor(request), resource=("endpoint", str(endpoint_id)),
                     org_id=org_id)
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    body = await parse_json(request, schemas.Rotation)
    hours = body.overlap_hours
    if hours is None:
        hours = request.app[CONFIG_KEY].rotation_overlap_hours
    endpoint_id = uuid_param(request, "endpoint_id")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        if await queries.endpoint(conn, org_id, endpoint_id) is None:
            raise not_found()
        secret, secret_id = await _new_secret(conn, request, org_id, endpoint_id)
        until = datetime.now(UTC) + timedelta(hours=hours)
        await queries.expire_secrets(conn, org_id, endpoint_id, secret_id, until)
        await record(conn, SERVICE, ctx_of(request), ENDPOINT_SECRET_ROTATED,
                     actor=_actor(request), resource=("endpoint", str(endpoint_id)),
                     org_id=org_id, data={"overlap_hours": hours})
    return json({"secret": secret, "previous_valid_until": until.isoformat()}, 201)


async def list_deliveries(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    endpoint_id = uuid_param(request, "endpoint_id")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        if await queries.endpoint(conn, org_id, endpoint_id) is None:
            raise not_found()  # not an empty list: the endpoint is not this org's
        rows = await queries.deliveries_of(conn, org_id, endpoint_id)
    return json([{"id": str(r["id"]), "event_id": str(r["event_id"]),
                  "event_type": r["event_type"], "status": r["status"],
                  "attempts": r["attempts"], "next_attempt_at": iso(r["next_attempt_at"]),
                  "delivered_at": iso(r["delivered_at"])} for r in rows])


async def list_attempts(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    delivery_id = uuid_param(request, "delivery_id")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        if await queries.delivery(conn, org_id, delivery_id) is None:
            raise not_found()
        rows = await queries.attempts_of(conn, org_id, delivery_id)
    return json([{"n": r["n"], "started_at": iso(r["started_at"]),
                  "status_code": r["status_code"], "latency_ms": r["latency_ms"],
                  "error": r["error"], "response_body": excerpt.clean(r["response_body"])}
                 for r in rows])


async def resend(request: web.Request) -> web.Response:
    org_id = org_scope(request)
    delivery_id = uuid_param(request, "delivery_id")
    async with db.tenant_tx(request.app[POOL_KEY], org_id) as conn:
        if await queries.delivery(conn, org_id, delivery_id) is None:
            raise not_found()
        if not await queries.resend(conn, org_id, delivery_id):
            raise Problem(409, "the delivery is still being tried")
    return json({"status": "pending"}, 202)


async def inbound(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    provider = config.providers.get(request.match_info["provider"])
    if provider is None:
        raise not_found()
    body = await read_body(request, request.app[SETTINGS_KEY].max_body_bytes)
    event_id, payload = _verified_event(request, provider, body)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        if not await queries.insert_inbound(conn, provider.name, event_id):
            raise Problem(409, "this event was already received", title="Replay")
        await record(conn, SERVICE, ctx_of(request), INBOUND_RECEIVED,
                     actor=("provider", provider.name), resource=("inbound_event", event_id),
                     data={"provider": provider.name, "payload": payload})
    return json({"status": "received"})


def _verified_event(request: web.Request, provider: Provider, body: bytes
                    ) -> tuple[str, dict[str, Any]]:
    """The id and payload of a correctly signed event: 401 for a bad signature, then the
    shared JSON checks (400 for a body that is not UTF-8 JSON, 422 for one that is not an
    object), then 400 for an id that is missing, too long or not one line of text."""
    config = request.app[CONFIG_KEY]
    event_id: str | None = None
    try:
        if provider.scheme == "stripe":
            signing.verify_stripe(request.headers.get("Stripe-Signature"), body, provider.secret,
                                  time.time(), config.tolerance_seconds)
        else:
            event_id = signing.verify_standard(request.headers, body, provider.secret,
                                               time.time(), config.tolerance_seconds)
    except signing.BadSignature as exc:
        raise Problem(401, f"the webhook is refused: {exc}", title="Bad signature") from None
    payload = decode(body, dict[str, Any])
    if event_id is None:
        event_id = str(payload.get("id", ""))
    if not event_id or len(event_id) > 200 or NOT_SINGLE_LINE.search(event_id):
        raise Problem(400, "the event has no id of 1-200 characters on one line")
    return event_id, payload


ORG = "/orgs/{org_id}/webhooks"
T: Guarded = {"tags": ("webhooks",), "roles": ADMINS, "scopes": ("webhooks:write",)}
# what handlers answer besides what their declarations imply (argus_shared.openapi)
REFUSED = Answer("The URL is refused (not https, or it resolves to a private address), or an "
                 "event type is unknown", problems=(UNKNOWN_EVENT_TYPE,))
ROUTES: list[Route] = [
    Route("POST", ORG + "/endpoints", create_endpoint, "Add an endpoint (secret shown once)",
          body=schemas.NewEndpoint, status=201, responses={422: REFUSED}, **T),
    Route("GET", ORG + "/endpoints", list_endpoints, "Endpoints", **T),
    Route("GET", ORG + "/endpoints/{endpoint_id}", get_endpoint, "An endpoint", **T),
    Route("PATCH", ORG + "/endpoints/{endpoint_id}", update_endpoint, "Change an endpoint",
          body=schemas.EndpointChanges,
          responses={422: Answer(f"{REFUSED.description}, or nothing to change",
                                 problems=REFUSED.problems)}, **T),
    Route("DELETE", ORG + "/endpoints/{endpoint_id}", delete_endpoint, "Remove an endpoint",
          status=204, **T),
    Route("POST", ORG + "/endpoints/{endpoint_id}/rotate-secret", rotate_secret,
          "New secret (shown once); the old one stays valid for the overlap",
          body=schemas.Rotation, status=201, **T),
    Route("GET", ORG + "/endpoints/{endpoint_id}/deliveries", list_deliveries,
          "An endpoint's deliveries", **T),
    Route("GET", ORG + "/deliveries/{delivery_id}/attempts", list_attempts,
          "The attempt log of a delivery", **T),
    Route("POST", ORG + "/deliveries/{delivery_id}/resend", resend,
          "Deliver again (an exhausted or past delivery)", status=202,
          responses={409: "The delivery is still being tried"}, **T),
    Route("POST", "/webhooks/inbound/{provider}", inbound,
          "Inbound webhook from a configured provider (signature, 5 min tolerance, no replays)",
          auth="public", rate_limit_per_minute=INBOUND_LIMIT,
          responses={400: "The body is not UTF-8 JSON, or the event has no id of 1-200 "
                          "characters on one line",
                     401: "The signature is missing, wrong or outside the tolerance",
                     404: "No such provider", 409: "This event was already received",
                     413: "The body is larger than the service's limit",
                     422: "The body is not a JSON object"},
          tags=("inbound",)),
]
