"""Who may touch an org's resources: the path's org must be the caller's (a member, by
tenant-api's own membership table, or an API key of that org), else 404; then the role."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from argus_shared import db
from argus_shared.access import PRINCIPAL, Principal
from argus_shared.errors import Problem
from argus_shared.outbox import Ctx
from argus_shared.request import CLIENT_IP, REQUEST_ID
from argus_shared.web import POOL_KEY
from argus_tenant_api import queries
from argus_tenant_api.roles import RoleCache

ROLES_KEY = web.AppKey("role_cache", RoleCache)
READ = ("owner", "admin", "member", "viewer")
WRITE = ("owner", "admin", "member")
ADMIN = ("owner", "admin")
OWNER = ("owner",)


@dataclass(frozen=True)
class Scope:
    org_id: UUID
    principal: Principal
    role: str | None  # None for an API key

    @property
    def actor(self) -> tuple[str, str]:
        return (self.principal.kind, self.principal.id)

    @property
    def user_id(self) -> UUID | None:
        return UUID(self.principal.id) if self.principal.kind == "user" else None


def not_found() -> Problem:
    return Problem(404, "not found")


def uuid_param(request: web.Request, name: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise not_found() from None


def ctx_of(request: web.Request) -> Ctx:
    return Ctx(ip=request.get(CLIENT_IP), user_agent=request.headers.get("User-Agent"),
               request_id=request.get(REQUEST_ID))


async def authorise(request: web.Request, conn: queries.Conn, roles: tuple[str, ...]) -> Scope:
    """Inside the org's tenant transaction: 404 unless the caller belongs to the org, then 403
    unless its role is one of `roles` (API keys were already checked for their scopes)."""
    org_id = uuid_param(request, "org_id")
    principal = request[PRINCIPAL]
    if principal.kind == "api_key":
        if principal.org is None or UUID(principal.org) != org_id:
            raise not_found()
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
    if role not in roles:
        raise Problem(403, f"this needs one of the roles {', '.join(roles)}")
    return Scope(org_id, principal, role)


async def authorise_read(request: web.Request, roles: tuple[str, ...]) -> Scope:
    """`authorise` for a read that scopes its own transaction (a `scoped_*` function, one round
    trip): a cached role needs no database; a miss or an API key is checked in a tenant
    transaction of its own."""
    principal = request[PRINCIPAL]
    if principal.kind != "api_key":
        org_id = uuid_param(request, "org_id")
        role = request.app[ROLES_KEY].get(org_id, UUID(principal.id))
        if role is not None:
            if role not in roles:
                raise Problem(403, f"this needs one of the roles {', '.join(roles)}")
            return Scope(org_id, principal, role)
    async with db.tenant_tx(request.app[POOL_KEY], uuid_param(request, "org_id"),
                            principal.id) as conn:
        return await authorise(request, conn, roles)


def org_of_path(request: web.Request) -> UUID:
    return uuid_param(request, "org_id")


STEP_UP_SECONDS = 300


def require_step_up(principal: Principal, now: float, what: str) -> None:
    """`what` needs a sign-in (password or TOTP) within the last 5 minutes."""
    if principal.auth_time is None or now - principal.auth_time > STEP_UP_SECONDS:
        raise Problem(401, f"{what} needs a recent sign-in: re-authenticate (auth POST /reauth)"
                      " and retry with the new token", title="Step-up required",
                      type="urn:argus:problem:step-up-required")
