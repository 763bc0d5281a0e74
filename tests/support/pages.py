"""A mailed link followed as a browser would, without one: the page (HTML, the strict CSP, no
inline script), its script, and the POST that script makes (its ENDPOINT resolved against the
page's URL, the JSON body it sends)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
LINK = re.compile(r"https?://\S+#\S+")


def link_in(body: str) -> str:
    """The one link of a mail (a line of its own, its token in the fragment)."""
    links = [line for line in body.splitlines() if LINK.fullmatch(line)]
    assert len(links) == 1, body
    return links[0]


def on_service(link: str, base: str) -> str:
    """The link's page on the auth service itself, as the gateway routes `/auth/...` there."""
    path = urlsplit(link).path
    assert path.startswith("/auth/"), link
    return base + path.removeprefix("/auth")


@dataclass(frozen=True)
class Page:
    url: str
    html: str
    script: str
    endpoint: str  # where the script POSTs, absolute

    async def post(self, http: aiohttp.ClientSession, body: Any) -> tuple[int, Any]:
        """What the script sends: JSON, no cookies, to its endpoint."""
        async with http.post(self.endpoint, json=body,
                             headers={"Content-Type": "application/json"}) as response:
            return response.status, await response.json(content_type=None)


async def _get(http: aiohttp.ClientSession, url: str, media_type: str) -> str:
    async with http.get(url) as response:
        assert response.status == 200, (url, response.status)
        assert response.content_type == media_type, url
        assert response.charset == "utf-8", url
        assert response.headers["Referrer-Policy"] == "no-referrer", url
        assert response.headers["Cache-Control"] == "no-store", url
        if media_type == "text/html":
            assert response.headers["Content-Security-Policy"] == PAGE_CSP
        return await response.text()


async def open_page(http: aiohttp.ClientSession, url: str) -> Page:
    """GET a page (its URL without the fragment, which a browser never sends) and its script."""
    url = url.split("#", 1)[0]
    html = await _get(http, url, "text/html")
    tags = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL)
    assert tags == [""], "one external script, nothing inline (the CSP allows no other)"
    assert not re.search(r"\s(on[a-z]+|style)=", html), "no inline handlers or styles"
    source = re.search(r'<script src="([^"]+)"', html)
    assert source, html
    script = await _get(http, urljoin(url, source.group(1)), "text/javascript")
    # the page names it (<main data-endpoint>) for a shared script, or the script does
    endpoint = re.search(r'<main data-endpoint="([^"]+)"', html) or \
        re.search(r'^const ENDPOINT = "([^"]+)";$', script, re.MULTILINE)
    assert endpoint, (html, script)
    return Page(url, html, script, urljoin(url, endpoint.group(1)))
