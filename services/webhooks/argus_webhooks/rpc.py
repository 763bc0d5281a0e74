"""What webhooks answers to data-subject requests (tenant-api's job, over NATS): endpoints
belong to orgs, not to people, so there is nothing personal to export or purge."""

from __future__ import annotations

from typing import Any

from argus_shared import xut
from argus_shared.nats import RpcError


async def export_user(claims: xut.Claims, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or claims.sub != f"user:{payload.get('user_id')}":
        raise RpcError(403, "only the user's own data")
    return {"note": "webhook endpoints belong to orgs; nothing is kept about individual users"}


async def purge_user(claims: xut.Claims, payload: Any) -> dict[str, Any]:
    if claims.sub != "service:tenant-api":
        raise RpcError(403, "only the data-subject request job asks")
    return {"purged": True}
