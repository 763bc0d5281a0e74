"""A service's route table: one `Route` per endpoint, which also feeds `/openapi.json`, the
metrics route labels, authentication and the cross-service isolation suite."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AuthMode = Literal["public", "service", "user"]
OPERATIONS_TAG = "operations"


@dataclass(frozen=True)
class Answer:
    """One more thing a route can answer, for its OpenAPI document: what it means, the problem
    types it may carry (`urn:argus:problem:...`, registered in `argus_shared.problem_types`),
    the response headers it sets (name -> meaning) and, for a success, its body type."""

    description: str
    problems: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: type[Any] | None = None


# What a route declares it answers besides what its declaration implies: status -> meaning.
Answers: TypeAlias = Mapping[int, "str | Answer"]


@dataclass(frozen=True)
class Header:
    """A request header a route reads (`Idempotency-Key`, `Range`, ...), for its document."""

    name: str
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


# What a route table repeats for many of its routes (`Route(..., **DEFAULTS)`), typed so that
# the checker knows which keywords such a spread fills.
class Tagged(TypedDict):
    tags: Sequence[str]


class Guarded(Tagged):
    roles: Sequence[str]
    scopes: Sequence[str]


class Public(Tagged):
    auth: AuthMode


@dataclass(frozen=True)
class Route:
    """`auth`: `public` (no identity), `service` (a verified X-User-Token is required; its
    claims are in `request[XUT_CLAIMS]`), or `user` (an end-user credential, checked by the
    service's own authenticator). `roles`/`scopes` narrow who may call it; `body`, `query` and
    `response` are msgspec types for validation and the OpenAPI document (`response` may be a
    tuple of types: one of them); `media_type` is what a success carries when it is not JSON
    (`text/html` for a page).

    What the declaration implies is documented from it (`argus_shared.openapi`: 401 for
    `auth`, 403 for roles and scopes, 404 for a path parameter, 400/413/415/422 for a body,
    429 for a rate-limited route ...); `responses` adds what only the handler knows (a 409
    conflict, a 416, a second success status: status -> description or `Answer`), and
    `headers` the request headers it reads."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: AuthMode = "user"
    tags: Sequence[str] = ()
    body: type[Any] | None = None
    query: type[Any] | None = None
    response: type[Any] | tuple[type[Any], ...] | None = None
    status: int = 200
    roles: Sequence[str] = ()
    scopes: Sequence[str] = ()
    rate_limit_per_minute: int | None = None
    media_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)
    responses: Answers = field(default_factory=dict)
    headers: Sequence[Header] = ()

    @property
    def takes_id(self) -> bool:
        return "{" in self.path

    @property
    def rate_limited(self) -> bool:
        """Counted against the per-IP limit (and answers 429 past it): all but operations."""
        return tuple(self.tags) != (OPERATIONS_TAG,)


# our Route for each aiohttp route object (handlers are added as they are, with no wrapper
# coroutine per request); weak, so apps that are gone take their entries with them
_ROUTES: weakref.WeakKeyDictionary[Any, Route] = weakref.WeakKeyDictionary()


def add_routes(app: web.Application, routes: Sequence[Route]) -> None:
    for route in routes:
        resource = app.router.add_resource(route.path)
        _ROUTES[resource.add_route(route.method, route.handler)] = route


def route_of(request: web.Request) -> Route | None:
    route = getattr(request.match_info, "route", None)
    return None if route is None else _ROUTES.get(route)


def template_of(request: web.Request) -> str:
    """The route template (`/orgs/{org_id}`), never the raw path, so labels stay bounded."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or getattr(request.match_info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical
