"""The pages mail links open, until the console replaces them: plain HTML and one small
same-origin script each, served by the service that mailed the link under `/pages/` (behind
the gateway, `/<prefix>/pages/`), from that service package's `static/` directory.

A link is `<ARGUS_PUBLIC_URL>/<prefix>/pages/<page>#<token>`: the token rides in the fragment,
which a browser never sends to a server (so it reaches no access log and no `Referer`); the
page's script reads it, takes it out of the address bar and POSTs it to the API beside it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from argus_shared.gateway_rules import GATEWAY
from argus_shared.routing import Handler, Route

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HTML = "text/html"
SCRIPT = "text/javascript"


def prefix_of(service: str) -> str:
    """Where the gateway serves `service` (the one table of argus_shared.gateway_rules)."""
    return next(f"/{p}" for p, name in GATEWAY.prefixes.items() if name == service)


def path_of(page: str) -> str:
    """The page's path on its service."""
    return f"/pages/{page}"


def link(public_url: str, service: str, page: str, token: str) -> str:
    """What a mail links to: the page through the gateway, the token in the fragment."""
    return f"{public_url}{prefix_of(service)}{path_of(page)}#{token}"


@dataclass(frozen=True)
class Asset:
    path: str  # on the service
    file: str  # in <package>/static
    media_type: str

    def headers(self) -> dict[str, str]:
        headers = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
        if self.media_type == HTML:
            headers["Content-Security-Policy"] = PAGE_CSP
        return headers


def page_asset(page: str) -> Asset:
    return Asset(path_of(page), f"{page}.html", HTML)


def script_asset(script: str) -> Asset:
    return Asset(f"{path_of(script)}.js", f"{script}.js", SCRIPT)


def handler_for(package: str, asset: Asset) -> Handler:
    """Serves the asset's bytes (from `<package>/static/`), read once at start-up."""
    body = (resources.files(package) / "static" / asset.file).read_bytes()
    headers = asset.headers()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=asset.media_type, charset="utf-8",
                            headers=headers)

    return serve


def page_routes(package: str, summaries: Mapping[str, str],
                scripts: Mapping[str, str]) -> list[Route]:
    """A public GET for each page (`summaries`: page -> summary) and for each script the pages
    load (`scripts`: page -> script), counted in the service's per-IP limit like any public GET
    (they are static; the routes they POST to keep their own limits)."""
    routes = []
    for page, summary in summaries.items():
        html = page_asset(page)
        routes.append(Route("GET", html.path, handler_for(package, html), summary,
                            auth="public", media_type=html.media_type, tags=("pages",)))
    for script in sorted(set(scripts.values())):
        asset = script_asset(script)
        users = ", ".join(path_of(p) for p, s in scripts.items() if s == script)
        routes.append(Route("GET", asset.path, handler_for(package, asset), f"Script of {users}",
                            auth="public", media_type=asset.media_type, tags=("pages",)))
    return routes


def expiry(seconds: int) -> str:
    """`24 hours`, `1 hour`, `30 minutes`: how long a mailed link works, for its mail."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'' if hours == 1 else 's'}"
    minutes = max(seconds // 60, 1)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"
