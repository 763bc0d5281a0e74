"""The pages mail links open, until the console replaces them: plain HTML and one small
same-origin script each, under `/pages/` (behind the gateway, `/auth/pages/`).

A link is `<ARGUS_PUBLIC_URL>/auth/pages/<page>#<token>`: the token rides in the fragment, which
a browser never sends to a server (so it reaches no access log and no `Referer`); the page's
script reads it, takes it out of the address bar and POSTs it to the API route beside it."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from argus_shared.gateway_rules import GATEWAY
from argus_shared.routing import Handler

VERIFY_PAGE = "verify-email"
RESET_PAGE = "reset-password"
CONFIRM_PAGE = "confirm-email"
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HTML = "text/html"
SCRIPT = "text/javascript"
# where the gateway serves auth (the one table of argus_shared.gateway_rules)
AUTH_PREFIX = next(f"/{p}" for p, service in GATEWAY.prefixes.items() if service == "auth")


def path_of(page: str) -> str:
    """The page's path on the auth service."""
    return f"/pages/{page}"


def link(public_url: str, page: str, token: str) -> str:
    """What a mail links to: the page through the gateway, the token in the fragment."""
    return f"{public_url}{AUTH_PREFIX}{path_of(page)}#{token}"


@dataclass(frozen=True)
class Asset:
    path: str  # on the auth service
    file: str  # in argus_auth/static
    media_type: str

    def headers(self) -> dict[str, str]:
        headers = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
        if self.media_type == HTML:
            headers["Content-Security-Policy"] = PAGE_CSP
        return headers


# the script each page loads (relative to itself): the two token links share one, told by
# the page's <main data-endpoint data-done data-failed> where to send the token and what to say
SCRIPTS = {VERIFY_PAGE: "token-link", CONFIRM_PAGE: "token-link", RESET_PAGE: RESET_PAGE}


def page_asset(page: str) -> Asset:
    return Asset(path_of(page), f"{page}.html", HTML)


def script_asset(script: str) -> Asset:
    return Asset(f"{path_of(script)}.js", f"{script}.js", SCRIPT)


def handler_for(asset: Asset) -> Handler:
    """Serves the asset's bytes, read once at start-up."""
    body = (resources.files("argus_auth") / "static" / asset.file).read_bytes()
    headers = asset.headers()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=asset.media_type, charset="utf-8",
                            headers=headers)

    return serve


def expiry(seconds: int) -> str:
    """`24 hours`, `1 hour`, `30 minutes`: how long a mailed link works, for its mail."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'' if hours == 1 else 's'}"
    minutes = max(seconds // 60, 1)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"
