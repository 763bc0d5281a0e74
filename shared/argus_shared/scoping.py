"""Who may use an org's routes: one rule for every service, enforced from the route table.

1. A route whose path names `{org_id}` needs a credential of that org: an access token whose
   active org (its `org` claim, chosen with auth's `POST /orgs/switch`) is the path's org, or an
   API key of that org. A token with no active org, or another one, is answered 404 with the
   problem type `urn:argus:problem:org-not-active`, which says so and is the same whether or not
   the org exists or the caller belongs to it; an API key of another org gets a plain 404.
2. Then the roles the route declares (`Route.roles`; API keys were held to `Route.scopes` when
   they were authenticated): a user's role outside them is a 403. The role is the token's (kept
   current by the revocation set) unless the service passes a fresher one (tenant-api reads its
   own membership table, auth asks tenant-api).
3. Then the resource itself, by RLS and an explicit org filter: another org's is a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from argus_shared import scopes
from argus_shared.access import PRINCIPAL, Principal
from argus_shared.errors import Problem
from argus_shared.handlers import not_found, uuid_param
from argus_shared.routing import Route, route_of

ORG_PARAM = "org_id"
ROLES = ("owner", "admin", "member", "viewer")  # most to least


@dataclass(frozen=True)
class OrgScope:
    org_id: UUID
    principal: Principal
    role: str | None  # None for an API key

    @property
    def actor(self) -> tuple[str, str]:
        return (self.principal.kind, self.principal.id)

    @property
    def user_id(self) -> UUID | None:
        return UUID(self.principal.id) if self.principal.kind == "user" else None


def is_org_route(route: Route) -> bool:
    return "{" + ORG_PARAM + "}" in route.path


def check_declarations(routes: Sequence[Route]) -> None:
    """At start-up: every org route for users names the roles it allows, so the check and
    the OpenAPI document come from one declaration; roles and API-key scopes are known ones."""
    missing = [f"{r.method} {r.path}" for r in routes
               if r.auth == "user" and is_org_route(r) and not r.roles]
    if missing:
        raise ValueError(f"org routes without declared roles: {', '.join(missing)}")
    unknown = {role for r in routes for role in r.roles} - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles declared: {', '.join(sorted(unknown))}")
    scopes.check_declared(routes)


def org_not_active(principal: Principal) -> Problem:
    which = "has no active org" if principal.org is None else "is scoped to another org"
    return Problem(404, f"not found: this access token {which}; switch to the org (auth "
                   "POST /orgs/switch) and use the token it returns",
                   title="Not found in your active org", type="urn:argus:problem:org-not-active")


def path_org(request: web.Request) -> tuple[UUID, Principal]:
    """The path's org, if the caller's credential is of that org (rule 1)."""
    org_id = uuid_param(request, ORG_PARAM)
    principal = request[PRINCIPAL]
    if principal.org is not None and _same(principal.org, org_id):
        return org_id, principal
    raise org_not_active(principal) if principal.kind == "user" else not_found()


def _same(org: str, org_id: UUID) -> bool:
    try:
        return UUID(org) == org_id
    except ValueError:
        return False


def declared_roles(request: web.Request) -> tuple[str, ...]:
    route = route_of(request)
    return tuple(route.roles) if route is not None else ()


def check_role(request: web.Request, role: str | None) -> None:
    """Rule 2, for a user: 403 unless `role` is one the route declares."""
    roles = declared_roles(request)
    if role not in roles:
        raise Problem(403, f"this needs one of the roles {', '.join(roles) or '(none)'} in the "
                      "org", title="Forbidden", type="urn:argus:problem:role-not-allowed")


def org_scope(request: web.Request, role: str | None = None) -> OrgScope:
    """Rules 1 and 2: the org, the caller and its role (the token's unless `role` is given)."""
    org_id, principal = path_org(request)
    if principal.kind == "api_key":
        return OrgScope(org_id, principal, None)
    role = role if role is not None else principal.role
    check_role(request, role)
    return OrgScope(org_id, principal, role)
