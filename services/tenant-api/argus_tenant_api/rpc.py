"""What tenant-api answers over NATS request-reply."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from argus_shared import db, xut
from argus_shared.nats import RpcError
from argus_tenant_api import queries


def _uuid(payload: Any, name: str) -> UUID:
    value = payload.get(name) if isinstance(payload, dict) else None
    try:
        return UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise RpcError(400, f"send {name} as a UUID") from None


def _optional_uuid(payload: Any, name: str) -> UUID | None:
    present = isinstance(payload, dict) and payload.get(name) is not None
    return _uuid(payload, name) if present else None


async def membership(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    """auth's question before it mints an org-scoped token (org switch, refresh, step-up) or
    issues an API key: the caller's role in an org as it is now, the org's MFA policy and,
    when `project_id` is sent, whether the org has that project."""
    user_id, org_id = _uuid(payload, "user_id"), _uuid(payload, "org_id")
    project_id = _optional_uuid(payload, "project_id")
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "a membership is looked up for the user who asks")
    async with db.tenant_tx(pool, org_id, user_id) as conn:
        role = await queries.role_of(conn, org_id, user_id)
        org = await queries.org(conn, org_id)
        has_project = project_id is not None and \
            await queries.project(conn, org_id, project_id) is not None
    if role is None or org is None:
        raise RpcError(404, "not a member")
    answer = {"role": role, "require_mfa": org["require_mfa"], "mfa_roles": ["owner", "admin"]}
    if project_id is not None:
        answer["project"] = has_project
    return answer
