"""Who may touch which namespace. Objects live under `<org>/<owner>/<object>`: the path's org
must be the caller's (the org of its access token or API key), else 404. A user's own namespace
is theirs; another user's is visible only to the org's owners and admins (404 for everyone
else, so its existence does not leak). API keys are org credentials: `files:read` reads the
whole org, `files:write` writes only in the key's own namespace (`<org>/<key id>`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from argus_shared.access import PRINCIPAL, Principal
from argus_shared.errors import Problem
from argus_shared.outbox import Ctx
from argus_shared.request import CLIENT_IP, REQUEST_ID

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


def org_scope(request: web.Request, roles: tuple[str, ...]) -> Scope:
    """The whole org: 404 unless it is the caller's, 403 unless the role is one of `roles`."""
    principal = request[PRINCIPAL]
    org_id = uuid_param(request, "org_id")
    if principal.org is None or UUID(principal.org) != org_id:
        raise not_found()
    if principal.kind == "user" and principal.role not in roles:
        raise Problem(403, f"this needs one of the roles {', '.join(roles)}")
    return Scope(org_id, principal)


def namespace_scope(request: web.Request, *, write: bool) -> Scope:
    """One owner's namespace in the org (`{user_id}` of the path)."""
    principal = request[PRINCIPAL]
    org_id = uuid_param(request, "org_id")
    owner_id = uuid_param(request, "user_id")
    if principal.org is None or UUID(principal.org) != org_id:
        raise not_found()
    scope = Scope(org_id, principal, owner_id)
    if principal.kind == "api_key":
        if write and not scope.own:
            raise Problem(403, "an API key writes only in its own namespace (<org>/<key id>)")
        return scope
    if not scope.own and principal.role not in ADMIN:
        raise not_found()
    if write and principal.role not in WRITE:
        raise Problem(403, f"this needs one of the roles {', '.join(WRITE)}")
    return scope


def upload_scope(request: web.Request) -> Scope:
    scope = namespace_scope(request, write=True)
    if not scope.own:
        raise Problem(403, "uploads go to your own namespace (<org>/<your user id>)")
    return scope
