"""Who may touch an org's resources: the shared rule of argus_shared.scoping (the token's active
org or an API key of it, then the roles the route declares), with the role read from this
service's own membership table rather than the token."""

from __future__ import annotations

import time
from uuid import UUID

from aiohttp import web

from argus_shared import db, scoping
from argus_shared.access import Principal
from argus_shared.errors import Problem
from argus_shared.handlers import not_found
from argus_shared.web import POOL_KEY
from argus_tenant_api import queries
from argus_tenant_api.roles import RoleCache

ROLES_KEY = web.AppKey("role_cache", RoleCache)
READ = ("owner", "admin", "member", "viewer")
WRITE = ("owner", "admin", "member")
ADMIN = ("owner", "admin")
OWNER = ("owner",)


Scope = scoping.OrgScope


async def authorise(request: web.Request, conn: queries.Conn) -> Scope:
    """Inside the org's tenant transaction: the shared rule (the token's active org or an API
    key of the org, else 404), then the route's declared roles, judged on the role in this
    service's own membership table (a removal takes effect here at once), else 404/403."""
    org_id, principal = scoping.path_org(request)
    if principal.kind == "api_key":
        if await queries.org(conn, org_id) is None:
            raise not_found()
        return Scope(org_id, principal, None)
    cache = request.app[ROLES_KEY]
    user_id = UUID(principal.id)
    role = cache.get(org_id, user_id)
    if role is None:
        read_at = time.time()
        role = await queries.role_of(conn, org_id, user_id)
        if role is None:
            raise not_found()
        cache.put(org_id, user_id, role, read_at)
    return scoping.org_scope(request, role)


async def authorise_read(request: web.Request) -> Scope:
    """`authorise` for a read that scopes its own transaction (a `scoped_*` function, one round
    trip): a cached role needs no database; a miss or an API key is checked in a tenant
    transaction of its own."""
    org_id, principal = scoping.path_org(request)
    if principal.kind != "api_key":
        role = request.app[ROLES_KEY].get(org_id, UUID(principal.id))
        if role is not None:
            return scoping.org_scope(request, role)
    async with db.tenant_tx(request.app[POOL_KEY], org_id, principal.id) as conn:
        return await authorise(request, conn)


STEP_UP_SECONDS = 300


def require_step_up(principal: Principal, now: float, what: str) -> None:
    """`what` needs a sign-in (password or TOTP) within the last 5 minutes."""
    if principal.auth_time is None or now - principal.auth_time > STEP_UP_SECONDS:
        raise Problem(401, f"{what} needs a recent sign-in: re-authenticate (auth POST /reauth)"
                      " and retry with the new token", title="Step-up required",
                      type="urn:argus:problem:step-up-required")
