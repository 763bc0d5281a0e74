"""Per-org SCIM bearer tokens: 256 random bits behind a fixed prefix, shown once; only the
SHA-256 is stored (like API keys). Created, rotated (a new token, the old one revoked at once)
and revoked by the org's owners and admins; the identity provider presents one as
`Authorization: Bearer argus_scim_...`."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from argus_shared import crypto
from argus_shared.event_types import SCIM_TOKEN_CREATED, SCIM_TOKEN_REVOKED
from argus_shared.handlers import iso
from argus_shared.outbox import Ctx, record
from argus_tenant_api import SERVICE, queries
from argus_tenant_api.scim import Caller
from argus_tenant_api.scim_protocol import ScimError
from argus_tenant_api.scope import Scope

PREFIX = "argus_scim_"


def view(row: queries.Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "prefix": row["prefix"], "created_at": iso(row["created_at"]),
            "revoked_at": iso(row["revoked_at"])}


async def issue(conn: queries.Conn, scope: Scope, ctx: Ctx,
                rotated_from: UUID | None = None) -> dict[str, Any]:
    assert scope.user_id is not None  # the routes take no API keys
    token = PREFIX + secrets.token_urlsafe(32)
    row = await queries.insert_scim_token(conn, scope.org_id, uuid.uuid4(), token[:16],
                                          crypto.sha256(token), scope.user_id)
    data = {"rotated_from": str(rotated_from)} if rotated_from else {}
    await record(conn, SERVICE, ctx, SCIM_TOKEN_CREATED, actor=scope.actor,
                 resource=("scim_token", str(row["id"])), org_id=scope.org_id, data=data)
    return {"token": token, "scim_token": view(row)}


async def revoke(conn: queries.Conn, scope: Scope, token_id: UUID, ctx: Ctx) -> bool:
    if not await queries.revoke_scim_token(conn, scope.org_id, token_id):
        return False
    await record(conn, SERVICE, ctx, SCIM_TOKEN_REVOKED, actor=scope.actor,
                 resource=("scim_token", str(token_id)), org_id=scope.org_id)
    return True


def _unauthorised() -> ScimError:
    return ScimError(401, "send a live SCIM token of the org: Authorization: Bearer "
                     f"{PREFIX}...")


async def caller_of(request: web.Request, pool: asyncpg.Pool) -> Caller:
    """The org of the presented SCIM token; 401 for none, an unknown or a revoked one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX) or len(token) > 200:
        raise _unauthorised()
    async with pool.acquire() as conn:
        found = await queries.scim_token_by_hash(conn, crypto.sha256(token))
    if found is None:
        raise _unauthorised()
    return Caller(found["org_id"], found["id"], found["created_by"])
