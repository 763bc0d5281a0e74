"""The development gateway: one port in front of the five services, doing what the production
gateway (nginx, `deploy/nginx/argus.conf` and `deploy/k8s/base/gateway.nginx.conf`) does, from the
same table (`argus_shared.gateway_rules`, read here at runtime, rendered into those files):

- routes `/<prefix>/...` to a service, stripping the prefix, and `/.well-known/jwks.json` to
  auth; the service gets the rest of the target exactly as the client sent it (never a decoded
  or normalised copy);
- answers `/openapi.json` itself: the services' own documents merged into one
  (`argus_shared.openapi.combine`), fetched from them at each request (nginx serves the same
  merge, rendered from the route tables into `deploy/openapi.json`);
- refuses malformed targets, encoded separators and dots (`%2F`, `%5C`, `%2E`: 400) and empty
  or dot segments (400), and never routes `/internal/*` or `/metrics` of any service however
  the segment is spelled (404);
- streams request and response bodies (nothing is buffered whole); a body over the table's
  limit is a 413;
- drops every `X-User-Token` and forwarding header a client sends (and any header with an
  invalid name), sets `X-Forwarded-For`/`-Proto`/`-Host` and `X-Request-Id` itself, and drops
  hop-by-hop headers;
- logs as the services do (JSON, secrets redacted, HTTP parser errors without the client's
  bytes) unless the process that serves it already routes its logs somewhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from argus_shared.gateway_rules import (
    CONNECT_TIMEOUT_SECONDS,
    GATEWAY,
    HEALTH_BODY,
    IDLE_TIMEOUT_SECONDS,
    LONG_IDLE_TIMEOUT_SECONDS,
    NOT_ALLOWED,
    OPENAPI_PATH,
    TOO_LARGE,
    UNAVAILABLE,
    GatewayRules,
    problem_body,
)
from argus_shared.logs import ensure_logging
from argus_shared.openapi import combine, dumps

log = logging.getLogger("argus.gateway")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    )
)
RULES_KEY = web.AppKey("rules", GatewayRules)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
DOCUMENT_KEY = web.AppKey("openapi_document", dict)
CHUNK = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Upstream:
    """The replicas of one service, taken in turn; a replica that refuses the connection is
    passed over for the next (nothing of the request was sent to it)."""

    bases: tuple[str, ...]
    turn: int = 0

    def order(self) -> list[str]:
        """Every replica, starting with the one whose turn it is."""
        start, self.turn = self.turn, (self.turn + 1) % len(self.bases)
        return [*self.bases[start:], *self.bases[:start]]


UPSTREAMS_KEY = web.AppKey("upstreams", dict[str, Upstream])


def problem(status: int, title: str, detail: str = "",
            headers: Mapping[str, str] | None = None) -> web.Response:
    # bytes, so no charset parameter is added: the same header nginx sends
    return web.Response(
        status=status, body=problem_body(status, title, detail).encode(),
        content_type="application/problem+json", headers=headers,
    )


@dataclass
class _BodyLimit:
    limit: int
    exceeded: bool = False


async def _limited(content: aiohttp.StreamReader, limit: _BodyLimit) -> AsyncIterator[bytes]:
    """The client's body as it arrives, stopped once it passes the limit."""
    seen = 0
    async for chunk in content.iter_any():
        seen += len(chunk)
        if seen > limit.limit:
            limit.exceeded = True
            raise ValueError("request body over the gateway's limit")
        yield chunk


def forward_headers(request: web.Request, rules: GatewayRules, request_id: str) -> dict[str, str]:
    stripped = {h.lower() for h in rules.stripped_headers} | HOP_BY_HOP
    valid_name = re.compile(r"[A-Za-z0-9-]+")
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in stripped and valid_name.fullmatch(name)
    }
    carried = {
        "client-address": request.remote or "",
        "scheme": request.scheme,
        "host": request.headers.get("Host", ""),
        "request-id": request_id,
    }
    for name, what in rules.set_headers:
        headers[name] = carried[what]
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    rules = request.app[RULES_KEY]
    decision = rules.decide(request.raw_path)
    rule = decision.rule
    if rule.action == "refuse":
        return problem(rule.status, rule.title)
    if rule.action == "local" and rule.name == "openapi":
        return await openapi_document(request)
    if rule.action == "local":
        return web.Response(body=HEALTH_BODY.encode(), content_type="application/json")
    if request.content_length is not None and request.content_length > rules.max_body_bytes:
        return problem(*TOO_LARGE)
    upstream = request.app[UPSTREAMS_KEY].get(rule.service)
    if upstream is None:
        return problem(*UNAVAILABLE, f"{rule.service} is not answering")
    given = request.headers.get("X-Request-Id", "")
    request_id = given if re.fullmatch(rules.request_id, given) else uuid.uuid4().hex
    limit = _BodyLimit(rules.max_body_bytes)
    body = _limited(request.content, limit) if request.body_exists else None
    session = request.app[SESSION_KEY]
    for base in upstream.order():
        try:
            async with session.request(
                request.method, URL(base + decision.target, encoded=True),
                headers=forward_headers(request, rules, request_id), data=body,
                allow_redirects=False, auto_decompress=False,
                timeout=LONG_LIVED if rule.long_lived else session.timeout,
            ) as upstream_response:
                return await _relay_response(request, upstream_response)
        except aiohttp.ClientConnectorError:
            log.warning("replica refused the connection", extra={"service": rule.service})
            continue  # not connected: nothing was sent, the next replica may answer
        except aiohttp.ClientConnectionError:
            if limit.exceeded:
                return problem(*TOO_LARGE)
            break
    log.warning("upstream unavailable", extra={"service": rule.service})
    return problem(*UNAVAILABLE, f"{rule.service} is not answering")


async def openapi_document(request: web.Request) -> web.Response:
    """`/openapi.json`: the services' documents merged (or the fixed one the app was given); a
    service that does not answer with its document is a 502 naming it."""
    if request.method not in ("GET", "HEAD"):
        return problem(*NOT_ALLOWED, headers={"Allow": "GET, HEAD"})
    document = request.app.get(DOCUMENT_KEY)
    if document is None:
        rules = request.app[RULES_KEY]
        upstreams = request.app[UPSTREAMS_KEY]
        names = [s.name for s in rules.services if s.name in upstreams]
        found = await asyncio.gather(*(
            _document_of(request.app[SESSION_KEY], upstreams[name].order()[0])
            for name in names))
        missing = [name for name, doc in zip(names, found, strict=True) if doc is None]
        if missing:
            return problem(*UNAVAILABLE, f"{missing[0]} is not answering")
        documents = {name: doc for name, doc in zip(names, found, strict=True) if doc is not None}
        document = combine(documents, rules.services)
    return web.Response(body=dumps(document).encode(), content_type="application/json")


async def _document_of(session: aiohttp.ClientSession, upstream: str) -> dict[str, Any] | None:
    try:
        async with session.get(upstream + OPENAPI_PATH) as response:
            if response.status != 200:
                return None
            document = await response.json()
    except (aiohttp.ClientError, ValueError):
        return None
    return document if isinstance(document, dict) and "paths" in document else None


async def _relay_response(
    request: web.Request, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in upstream.headers.items():
        if name.lower() not in HOP_BY_HOP:
            response.headers.add(name, value)
    if upstream.content_length is not None:
        response.content_length = upstream.content_length
    await response.prepare(request)
    async for chunk in upstream.content.iter_chunked(CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


LONG_LIVED = aiohttp.ClientTimeout(
    total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=LONG_IDLE_TIMEOUT_SECONDS
)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=IDLE_TIMEOUT_SECONDS
    )
    async with aiohttp.ClientSession(
        timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        app[SESSION_KEY] = session
        yield


def create_gateway(services: Mapping[str, str | Sequence[str]], rules: GatewayRules = GATEWAY,
                   document: Mapping[str, Any] | None = None) -> web.Application:
    """`services`: service name -> base URL (`http://127.0.0.1:8101`), or the base URLs of its
    replicas, taken round-robin; what goes where, and what
    is refused, comes from `rules` (the table nginx is rendered from). `document`: a fixed
    `/openapi.json` (what nginx serves) instead of the services' own documents merged."""
    ensure_logging("gateway")
    # Every request reaches `proxy`, the gateway's own /healthz too (a rule of the table): the
    # middleware never calls the router's handler, whose match on the decoded path (a `%0a`, a
    # target that is not a path) must not decide anything. Bodies stream through
    # request.content, never read whole.
    app = web.Application(middlewares=[_everything_to_proxy])
    app[UPSTREAMS_KEY] = {
        name: Upstream(tuple(u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)))
        for name, urls in services.items()}
    app[RULES_KEY] = rules
    if document is not None:
        app[DOCUMENT_KEY] = dict(document)
    app.cleanup_ctx.append(_client_session)
    return app


@web.middleware
async def _everything_to_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
    del handler  # the router's choice is not used
    return await proxy(request)
