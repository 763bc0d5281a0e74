"""The development gateway: one port in front of the five services, doing what the production
gateway (nginx / ingress-nginx) does.

- routes `/<prefix>/...` to a service by its first path segment, stripping the prefix, and
  `/.well-known/jwks.json` to auth;
- streams request and response bodies (nothing is buffered whole);
- strips every `X-User-Token` a client sends, and hop-by-hop headers;
- never routes `/internal/*` or `/metrics` of any service, however the path is spelled
  (percent-encoding, case, dot segments, doubled slashes, encoded slashes);
- logs as the services do (JSON, secrets redacted, HTTP parser errors without the client's
  bytes) unless the process that serves it already routes its logs somewhere.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from argus_shared.logs import ensure_logging

log = logging.getLogger("argus.gateway")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    )
)
STRIPPED_FROM_CLIENT = frozenset({"x-user-token", "x-forwarded-for", "x-forwarded-proto",
                                  "x-forwarded-host", "x-real-ip", "forwarded"})
BLOCKED_FIRST_SEGMENTS = frozenset({"internal", "metrics"})
WELL_KNOWN = {"/.well-known/jwks.json": ("auth", "/.well-known/jwks.json")}
UPSTREAMS_KEY = web.AppKey("upstreams", dict)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
CHUNK = 64 * 1024


def problem(status: int, title: str, detail: str = "") -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )


class Refused(Exception):
    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status, self.title = status, title


def route(raw_path: str, prefixes: Mapping[str, str]) -> tuple[str, str]:
    """Map a raw request path to (service, upstream raw path) or raise Refused."""
    if raw_path in WELL_KNOWN:
        return WELL_KNOWN[raw_path]
    lowered = raw_path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in raw_path or "%00" in lowered:
        raise Refused(400, "Encoded separators are not accepted")
    segments = [unquote(s) for s in raw_path.split("/")[1:]]
    if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
        raise Refused(400, "Empty or dot path segments are not accepted")
    prefix, rest = segments[0], segments[1:]
    service = prefixes.get(prefix)
    if service is None:
        raise Refused(404, "Not Found")
    if rest and rest[0].lower() in BLOCKED_FIRST_SEGMENTS:
        raise Refused(404, "Not Found")
    return service, "/" + raw_path.split("/", 2)[2] if rest else "/"


def forward_headers(request: web.Request, request_id: str) -> dict[str, str]:
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in STRIPPED_FROM_CLIENT
    }
    headers["X-Forwarded-For"] = request.remote or ""
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-Id"] = request_id
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    try:
        service, path = route(request.rel_url.raw_path, request.app[UPSTREAMS_KEY]["prefixes"])
    except Refused as refused:
        return problem(refused.status, refused.title)
    upstream = request.app[UPSTREAMS_KEY]["services"][service]
    query = request.rel_url.raw_query_string
    url = f"{upstream}{path}" + (f"?{query}" if query else "")
    body = request.content if request.body_exists else None
    try:
        async with request.app[SESSION_KEY].request(
            request.method, url, headers=forward_headers(request, request_id), data=body,
            allow_redirects=False, auto_decompress=False,
        ) as upstream_response:
            return await _relay_response(request, upstream_response)
    except aiohttp.ClientConnectionError:
        log.warning("upstream unavailable", extra={"service": service})
        return problem(502, "Bad Gateway", f"{service} is not answering")


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


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _client_session(app: web.Application) -> object:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(
        timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        app[SESSION_KEY] = session
        yield


def create_gateway(services: Mapping[str, str], prefixes: Mapping[str, str]) -> web.Application:
    """`services`: service name -> base URL; `prefixes`: first path segment -> service name."""
    ensure_logging("gateway")
    app = web.Application()  # bodies stream through request.content, never read whole
    app[UPSTREAMS_KEY] = {"services": dict(services), "prefixes": dict(prefixes)}
    app.cleanup_ctx.append(_client_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
