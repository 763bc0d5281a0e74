"""Who may touch which namespace. Objects live under `<org>/<owner>/<object>`. The org and the
roles a route allows are checked by the shared rule (argus_shared.scoping, from the route
table); then the namespace: a user's own is theirs, another user's is visible only to the org's
owners and admins (404 for everyone else, so its existence does not leak). API keys are org
credentials: `files:read` reads the whole org, `files:write` writes only in the key's own
namespace (`<org>/<key id>`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from argus_shared import scoping
from argus_shared.access import Principal
from argus_shared.errors import Problem
from argus_shared.handlers import not_found, uuid_param

READ = ("owner", "admin", "member", "viewer")
WRITE = ("owner", "admin", "member")
ADMIN = ("owner", "admin")
OWNER = ("owner",)


@dataclass(frozen=True)
class Scope:
    org_id: UUID
    principal: Principal
    owner_id: UUID | None = None  # the namespace, for routes that name one

    @property
    def actor(self) -> tuple[str, str]:
        return (self.principal.kind, self.principal.id)

    @property
    def own(self) -> bool:
        return self.owner_id is not None and str(self.owner_id) == self.principal.id

    @property
    def namespace(self) -> UUID:
        assert self.owner_id is not None
        return self.owner_id


def org_scope(request: web.Request) -> Scope:
    """The whole org, for the roles the route declares."""
    found = scoping.org_scope(request)
    return Scope(found.org_id, found.principal)


def namespace_scope(request: web.Request, *, write: bool) -> Scope:
    """One owner's namespace in the org (`{user_id}` of the path)."""
    found = scoping.org_scope(request)
    scope = Scope(found.org_id, found.principal, uuid_param(request, "user_id"))
    if found.principal.kind == "api_key":
        if write and not scope.own:
            raise Problem(403, "an API key writes only in its own namespace (<org>/<key id>)")
        return scope
    if not scope.own and found.role not in ADMIN:
        raise not_found()
    return scope


def upload_scope(request: web.Request) -> Scope:
    scope = namespace_scope(request, write=True)
    if not scope.own:
        raise Problem(403, "uploads go to your own namespace (<org>/<your user id>)")
    return scope
