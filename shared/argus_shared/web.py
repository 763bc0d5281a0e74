"""`build_app`: the middleware stack and standard endpoints every service shares.

Middlewares, outermost first: request context (request id, access log, request metrics,
security headers, CORS, a 400 for headers or a path that are not UTF-8 text), any extra ones
(tracing), problem+json errors, rate limits, the X-User-Token check. Standard endpoints:
`/healthz` (the process is alive), `/readyz` (its dependencies answer), `/metrics`,
`/openapi.json` and `/docs` (that document as a page, `argus_shared.docs`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from nats.aio.client import Client as NatsClient

from argus_shared import xut
from argus_shared.access import (
    ACCESS_CLAIMS,
    PRINCIPAL,
    AccessClaims,
    AccessVerifier,
    ApiKeys,
    Principal,
    api_key_of,
    bearer_token,
    unauthenticated,
)
from argus_shared.docs import docs_asset, docs_page
from argus_shared.errors import Problem, problem_middleware, problem_response
from argus_shared.logs import request_id_var
from argus_shared.metrics import METRICS_KEY, Metrics, metrics_handler
from argus_shared.openapi import build_openapi
from argus_shared.ratelimit import Limiter, RateLimiter
from argus_shared.request import CLIENT_IP, REQUEST_ID, XUT_CLAIMS
from argus_shared.routing import Answer, Header, Route, add_routes, route_of, template_of
from argus_shared.scoping import check_declarations
from argus_shared.settings import Settings
from argus_shared.validation import MAX_BODY_KEY, unreadable_request

access_log = logging.getLogger("argus.access")
log = logging.getLogger("argus.web")

SETTINGS_KEY = web.AppKey("settings", Settings)
POOL_KEY = web.AppKey("pool", asyncpg.Pool)
NATS_KEY = web.AppKey("nats", NatsClient)
LIMITER_KEY = web.AppKey("rate_limiter", Limiter)
ReadyCheck = Callable[[], Awaitable[Any]]
READY_KEY = web.AppKey("ready_checks", dict[str, ReadyCheck])
ROUTES_KEY = web.AppKey("routes", list)
OPENAPI_KEY = web.AppKey("openapi", dict)
ACCESS_KEY = web.AppKey("access_verifier", AccessVerifier)
API_KEYS_KEY = web.AppKey("api_keys", ApiKeys)

PROBES = frozenset({"/healthz", "/readyz"})
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
READY_TIMEOUT = 2.0
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": API_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"

ResponseObserver = Callable[[web.Request, web.StreamResponse], Awaitable[None]]
# Called with every response an application built by `build_app` prepares (aiohttp's
# on_response_prepare). Empty, so free, in production; the test suite adds one that records
# the statuses each route answers (tests/support/statuses.py).
RESPONSE_OBSERVERS: list[ResponseObserver] = []


def request_id_of(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def client_ip(request: web.Request, trusted: Sequence[Any]) -> str:
    """The peer address, or the right-most untrusted X-Forwarded-For hop behind trusted proxies."""
    peer = request.remote or ""
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop if _is_ip(hop) else peer
    return peer


def _in(address: str, networks: Sequence[Any]) -> bool:
    return _in_networks(address, tuple(networks))


@functools.lru_cache(maxsize=4096)  # peers and proxy hops repeat; parsing each is not free
def _in_networks(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@web.middleware
async def context_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    rid = request_id_of(request)
    request[REQUEST_ID] = rid
    request[CLIENT_IP] = client_ip(request, settings.trusted_proxies)
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        if request.method == "OPTIONS" and settings.cors_origin:
            response: web.StreamResponse = _preflight(request, settings.cors_origin)
        elif (unreadable := unreadable_request(request)) is not None:
            response = problem_response(unreadable, request)
        else:
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        _decorate(request, exc, rid, settings.cors_origin)
        raise
    finally:
        elapsed = time.perf_counter() - started
        request.app[METRICS_KEY].observe(request.method, template_of(request), status, elapsed)
        if request.path not in PROBES and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "method": request.method, "path": request.path, "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client_ip": request[CLIENT_IP],
                    "user_agent": request.headers.get("User-Agent", "")[:200],
                },
            )
        request_id_var.reset(token)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    _decorate(request, response, request.get(REQUEST_ID), request.app[SETTINGS_KEY].cors_origin)


def _decorate(
    request: web.Request, response: web.StreamResponse, rid: str | None, origin: str | None
) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if rid:
        response.headers["X-Request-Id"] = rid
    if origin and request.headers.get("Origin") == origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"


def _preflight(request: web.Request, origin: str) -> web.StreamResponse:
    if request.headers.get("Origin") != origin:
        return problem_response(Problem(403, "origin not allowed"), request)
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    route = route_of(request)
    if route is not None and request.path not in PROBES and route.rate_limited:
        settings = request.app[SETTINGS_KEY]
        limit = route.rate_limit_per_minute or settings.rate_limit_ip_per_minute
        scope = f"{route.method} {route.path}" if route.rate_limit_per_minute else "*"
        await request.app[LIMITER_KEY].hit(f"ip:{request[CLIENT_IP]}:{scope}", limit)
    return await handler(request)


async def limit_principal(request: web.Request, org: str | None,
                          api_key: str | None) -> None:
    """Count a request against its org and API key; called once the caller is known."""
    settings = request.app[SETTINGS_KEY]
    limiter = request.app[LIMITER_KEY]
    if org:
        await limiter.hit(f"org:{org}", settings.rate_limit_org_per_minute)
    if api_key:
        await limiter.hit(f"key:{api_key}", settings.rate_limit_key_per_minute)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """`auth="service"` routes need a valid X-User-Token addressed to this service; `auth="user"`
    routes need a valid, unrevoked access token, or an API key with one of `route.scopes`.
    Roles are checked by the handler once the org of the path is known to be the caller's, so
    another org's resource is a 404 before it could be a 403."""
    route = route_of(request)
    if route is not None and route.auth == "service":
        claims = request[XUT_CLAIMS] = verify_request_token(request)
        await limit_principal(
            request, claims.org, claims.principal_id if claims.principal_type == "api_key" else None
        )
    elif route is not None and route.auth == "user":
        principal = request[PRINCIPAL] = await authenticate_user(request, route)
        await limit_principal(request, principal.org,
                              principal.id if principal.kind == "api_key" else None)
        if principal.kind == "user":
            settings = request.app[SETTINGS_KEY]
            await request.app[LIMITER_KEY].hit(f"user:{principal.id}",
                                               settings.rate_limit_ip_per_minute)
    return await handler(request)


async def authenticate_user(request: web.Request, route: Route) -> Principal:
    """An access token, or an API key on routes that name the scopes a key needs."""
    secret = api_key_of(request)
    if secret is not None:
        resolver = request.app.get(API_KEYS_KEY)
        if not route.scopes or resolver is None:
            raise unauthenticated("this route does not accept API keys")
        principal = await resolver.principal(secret)
        if not set(route.scopes) & set(principal.scopes):
            raise Problem(403, f"the API key needs one of the scopes {', '.join(route.scopes)}")
        return principal
    access = request[ACCESS_CLAIMS] = await verify_access_token(request)
    return Principal.of_user(access)


async def verify_access_token(request: web.Request) -> AccessClaims:
    verifier = request.app.get(ACCESS_KEY)
    if verifier is None:
        raise RuntimeError("a user route needs app[ACCESS_KEY]")
    token = bearer_token(request)
    if not token:
        raise unauthenticated("an access token is required")
    return await verifier.verify(token)


def verify_request_token(request: web.Request) -> xut.Claims:
    settings = request.app[SETTINGS_KEY]
    token = request.headers.get(xut.HEADER)
    if not token:
        raise Problem(401, "an X-User-Token is required", title="Unauthenticated")
    try:
        return xut.verify(settings.xut_keys, token, audience=settings.service)
    except xut.TokenError as exc:
        log.warning(
            "x-user-token refused",
            extra={"reason": exc.reason, "path": request.path, "client_ip": request[CLIENT_IP]},
        )
        raise Problem(401, f"X-User-Token refused: {exc.reason}", title="Unauthenticated") from None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[READY_KEY]
    results = await asyncio.gather(*(_run_check(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    ready = all(result == "ok" for result in results)
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": report},
        status=200 if ready else 503,
    )


async def _run_check(check: ReadyCheck) -> str:
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT)
    except Exception as exc:  # any failure means not ready; the reason is reported
        return f"failed: {type(exc).__name__}"
    return "ok"


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


class Readiness(msgspec.Struct):
    status: str  # ready, or unavailable
    checks: dict[str, str]  # dependency -> ok, or why not


def standard_endpoints() -> list[Route]:
    return [
        Route("GET", "/healthz", healthz, "Liveness: the process serves requests", auth="public",
              tags=("operations",)),
        Route("GET", "/readyz", readyz, "Readiness: database and NATS answer", auth="public",
              response=Readiness,
              responses={503: Answer("A dependency does not answer", body=Readiness)},
              tags=("operations",)),
        Route("GET", "/metrics", metrics_handler, "Prometheus metrics", auth="public",
              media_type="text/plain", tags=("operations",)),
        Route("GET", "/openapi.json", openapi_handler, "This document", auth="public",
              tags=("operations",)),
        Route("GET", "/docs", docs_page, "This document as a page (Swagger UI, no CDN)",
              auth="public", media_type="text/html", tags=("operations",)),
        Route("GET", "/docs/assets/{name}", docs_asset,
              "A file of that page: Swagger UI's, or its start-up script", auth="public",
              media_type="*/*", responses={304: "Not modified (If-None-Match names its ETag)"},
              headers=(Header("If-None-Match", "The ETag of a copy the client holds"),),
              tags=("operations",)),
    ]


def build_app(
    settings: Settings,
    routes: Sequence[Route],
    *,
    title: str,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    middlewares: Sequence[Any] = (),
) -> web.Application:
    app = web.Application(
        middlewares=[
            context_middleware, *middlewares, problem_middleware,
            ratelimit_middleware, auth_middleware,
        ],
        client_max_size=settings.max_body_bytes,
        handler_args={"max_field_size": 16384},
    )
    all_routes = [*standard_endpoints(), *routes]
    check_declarations(all_routes)
    app[SETTINGS_KEY] = settings
    app[MAX_BODY_KEY] = settings.max_body_bytes
    app[METRICS_KEY] = Metrics.create(settings.service)
    app[LIMITER_KEY] = RateLimiter()
    app[READY_KEY] = dict(ready_checks or {})
    app[ROUTES_KEY] = all_routes
    app[OPENAPI_KEY] = build_openapi(title, settings.service, all_routes)
    add_routes(app, all_routes)
    app.on_response_prepare.append(_on_prepare)
    app.on_response_prepare.extend(RESPONSE_OBSERVERS)
    return app
