"""What tenant-api answers over NATS request-reply."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from argus_shared import db, xut
from argus_shared.nats import RpcError
from argus_tenant_api import queries


async def membership(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    """auth's org switch: the caller's role in an org, and the org's MFA policy."""
    try:
        user_id, org_id = UUID(payload["user_id"]), UUID(payload["org_id"])
    except (KeyError, TypeError, ValueError):
        raise RpcError(400, "send user_id and org_id") from None
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "a membership is looked up for the user who asks")
    async with db.tenant_tx(pool, org_id, user_id) as conn:
        role = await queries.role_of(conn, org_id, user_id)
        org = await queries.org(conn, org_id)
    if role is None or org is None:
        raise RpcError(404, "not a member")
    return {"role": role, "require_mfa": org["require_mfa"], "mfa_roles": ["owner", "admin"]}
