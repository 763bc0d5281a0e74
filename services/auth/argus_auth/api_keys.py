"""API keys: issued per project by org owners and admins, `argus_sk_` plus 256 random bits,
stored as SHA-256 and shown exactly once; scoped, optionally expiring, rotated (the new key
records `rotated_from_id`, the old one may overlap for a while) and revoked. Other services
introspect a key over NATS; answers are cached briefly and a revocation clears the caches."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from argus_auth import queries
from argus_auth.core import Auth
from argus_auth.events import Ctx, emit, user
from argus_shared import crypto, db, xut
from argus_shared.access import API_KEY_PREFIX as PREFIX
from argus_shared.access import API_KEY_REVOKED_SUBJECT as REVOKED_SUBJECT
from argus_shared.consumer import Received
from argus_shared.errors import Problem
from argus_shared.event_types import API_KEY_CREATED, API_KEY_REVOKED, API_KEYS_PURGED
from argus_shared.logs import request_context
from argus_shared.nats import RpcError

DISPLAY_PREFIX = 14
log = logging.getLogger("argus.auth.api_keys")


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def view(row: queries.Row) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(row["id"]), "project_id": str(row["project_id"]), "name": row["name"],
        "prefix": row["prefix"], "scopes": list(row["scopes"]),
        "created_at": row["created_at"].isoformat(), "expires_at": iso(row["expires_at"]),
        "last_used_at": iso(row["last_used_at"]), "revoked_at": iso(row["revoked_at"]),
        "rotated_from_id": str(row["rotated_from_id"]) if row["rotated_from_id"] else None,
    }


async def create(auth: Auth, org_id: UUID, project_id: UUID, actor: UUID, name: str,
                 scopes: list[str], expires_in_days: int | None, ctx: Ctx,
                 rotated_from: UUID | None = None) -> tuple[str, dict[str, Any]]:
    secret = new_secret()
    values = {
        "org_id": org_id, "id": uuid.uuid4(), "project_id": project_id, "name": name,
        "prefix": secret[:DISPLAY_PREFIX], "key_hash": crypto.sha256(secret),
        "scopes": sorted(set(scopes)), "created_by": actor, "rotated_from_id": rotated_from,
        "expires_at": auth.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    }
    async with db.tenant_tx(auth.pool, org_id, actor) as conn:
        row = await queries.insert_api_key(conn, values)
        await emit(conn, ctx, API_KEY_CREATED, actor=user(actor),
                   resource=("api_key", str(values["id"])), org_id=str(org_id),
                   data={"project_id": str(project_id), "scopes": values["scopes"],
                         "rotated_from_id": str(rotated_from) if rotated_from else None})
    return secret, view(row)


async def list_for_project(auth: Auth, org_id: UUID, project_id: UUID,
                           actor: UUID) -> list[dict[str, Any]]:
    async with db.tenant_tx(auth.pool, org_id, actor) as conn:
        return [view(row) for row in await queries.api_keys_of_project(conn, org_id, project_id)]


async def rotate(auth: Auth, org_id: UUID, project_id: UUID, key_id: UUID, actor: UUID,
                 overlap_seconds: int, ctx: Ctx) -> tuple[str, dict[str, Any]]:
    async with db.tenant_tx(auth.pool, org_id, actor) as conn:
        old = await queries.api_key(conn, org_id, project_id, key_id)
        if old is None or old["revoked_at"] is not None:
            raise Problem(404, "no such API key")
        await queries.revoke_api_key(conn, org_id, key_id,
                                     auth.now() + timedelta(seconds=overlap_seconds))
    remaining = None
    if old["expires_at"]:
        remaining = max(1, (old["expires_at"] - auth.now()).days)
    created = await create(auth, org_id, project_id, actor, old["name"], list(old["scopes"]),
                           remaining, ctx, rotated_from=key_id)
    if overlap_seconds == 0:
        await announce_revocation(auth, key_id)
    return created


async def revoke(auth: Auth, org_id: UUID, project_id: UUID, key_id: UUID, actor: UUID,
                 ctx: Ctx) -> None:
    async with db.tenant_tx(auth.pool, org_id, actor) as conn:
        row = await queries.api_key(conn, org_id, project_id, key_id)
        if row is None:
            raise Problem(404, "no such API key")
        await queries.revoke_api_key(conn, org_id, key_id, auth.now())
        await emit(conn, ctx, API_KEY_REVOKED, actor=user(actor),
                   resource=("api_key", str(key_id)), org_id=str(org_id))
    await announce_revocation(auth, key_id)


async def announce_revocation(auth: Auth, key_id: UUID) -> None:
    await auth.nc.publish(REVOKED_SUBJECT, str(key_id).encode())


async def purge_org(auth: Auth, org_id: UUID, ctx: Ctx) -> int:
    """A deleted org's keys (tenant-api's `org.deleted`): removed, and every service's cache of
    them dropped. They stopped working already: tenant-api revoked the org through NATS KV."""
    async with db.tenant_tx(auth.pool, org_id) as conn:
        removed = await queries.delete_org_api_keys(conn, org_id)
        if removed:
            await emit(conn, ctx, API_KEYS_PURGED, actor=("service", "tenant-api"),
                       resource=("org", str(org_id)), org_id=str(org_id),
                       data={"api_keys": len(removed)})
    for key_id in removed:
        await announce_revocation(auth, key_id)
    log.info("a deleted org's API keys removed",
             extra={"org_id": str(org_id), "api_keys": len(removed)})
    return len(removed)


async def org_deleted_handler(auth: Auth, batch: Sequence[Received]) -> None:
    for item in batch:
        with request_context(item.request_id):
            await org_deleted(auth, item)


async def org_deleted(auth: Auth, item: Received) -> None:
    event, claims = item.event, item.claims
    if event is None or claims is None or claims.iss != "tenant-api" or not event.org_id:
        log.warning("org.deleted refused", extra={"reason": item.error or "issuer"})
        return
    await purge_org(auth, UUID(event.org_id), Ctx(request_id=event.request_id))


async def introspect(auth: Auth, secret: str) -> dict[str, Any]:
    """The key's org, project and scopes, or RpcError 404 for anything not currently valid."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        raise RpcError(404, "unknown API key")
    async with auth.pool.acquire() as conn:
        row = await queries.introspect(conn, crypto.sha256(secret))
    now = auth.now()
    if row is None or (row["revoked_at"] and row["revoked_at"] <= now) or (
            row["expires_at"] and row["expires_at"] <= now):
        raise RpcError(404, "unknown API key")
    async with db.tenant_tx(auth.pool, row["org_id"]) as conn:
        await queries.touch_api_key(conn, row["org_id"], row["id"], now)
    limits = [t for t in (row["revoked_at"], row["expires_at"]) if t]
    valid_until = min(limits) if limits else None
    return {"id": str(row["id"]), "org_id": str(row["org_id"]),
            "project_id": str(row["project_id"]), "scopes": list(row["scopes"]),
            "valid_until": valid_until.isoformat() if valid_until else None}


async def introspect_handler(auth: Auth, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
        raise RpcError(400, "send {\"key\": ...}")
    return await introspect(auth, payload["key"])
