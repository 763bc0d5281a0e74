"""`/docs` on every service, directly and through the gateway: an HTML page whose every reference
is relative and same-origin (so `/tenant/docs` loads `/tenant/...`), assets that answer with
their types and cache headers, a Content-Security-Policy that lets nothing load from anywhere
else and runs no inline code, and an OpenAPI document whose `servers` name the gateway prefix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from argus_audit.routes import ROUTES as AUDIT
from argus_auth.routes import ROUTES as AUTH
from argus_files.routes import ROUTES as FILES
from argus_shared.docs import START
from argus_shared.gateway import create_gateway
from argus_shared.gateway_rules import GATEWAY
from argus_shared.routing import Route
from argus_shared.runner import standard_routes
from argus_shared.web import build_app
from argus_tenant_api.routes import ROUTES as TENANT
from argus_webhooks.routes import ROUTES as WEBHOOKS
from support.web import offline_settings

SERVICES: dict[str, list[Route]] = {"auth": AUTH, "tenant-api": TENANT, "audit": AUDIT,
                                    "webhooks": WEBHOOKS, "files": FILES}
PREFIX = {s.name: s.prefix for s in GATEWAY.services}
TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
# CSP sources that name no other origin
LOCAL_SOURCES = {"'self'", "'none'", "data:"}


class Page(HTMLParser):
    """What a browser would fetch for the page, and any code it would run from the page itself."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.document_urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "formaction", "poster", "data"):
                self.references.append(value or "")
            elif name == "data-openapi-url":
                self.document_urls.append(value or "")
            elif name == "style" or name.startswith("on"):
                self.inline.append(f"{tag} {name}")
        if tag == "style":
            self.inline.append("style element")
        self._in_script = tag == "script" and "src" not in dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (d.split() for d in header.split(";") if d.strip())
    return {words[0]: words[1:] for words in parts}


def path_relative(reference: str) -> bool:
    """No scheme, no host, no leading `/`: resolved below wherever the page is served."""
    split = urlsplit(reference)
    return bool(reference) and not split.scheme and not split.netloc \
        and not reference.startswith("/")


@asynccontextmanager
async def serving(service: str, **overrides: str) -> AsyncIterator[str]:
    """The service's app as `service_app` builds it (its own routes, the shared ones and every
    standard endpoint), without a database: the docs need none."""
    app = build_app(offline_settings(service, **overrides),
                    [*SERVICES[service], *standard_routes()], title=f"Argus {service}")
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def fetch_page(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientResponse, str]:
    async with http.get(url) as response:
        return response, await response.text()


async def check_assets(http: aiohttp.ClientSession, page_url: str, page: Page) -> list[str]:
    """Every reference resolved as a browser would; each answers 200 with its type."""
    fetched = []
    for reference in page.references:
        url = urljoin(page_url, reference)
        async with http.get(url) as response:
            assert response.status == 200, url
            suffix = re.search(r"\.[a-z]+$", urlsplit(url).path)
            assert suffix and response.content_type == TYPES[suffix.group()], url
            assert await response.read(), url
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        fetched.append(urlsplit(url).path)
    return fetched


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_is_a_page_of_relative_same_origin_references(service: str) -> None:
    async with serving(service) as base, aiohttp.ClientSession() as http:
        response, html = await fetch_page(http, f"{base}/docs")
        assert response.status == 200
        assert response.content_type == "text/html"
        page = parsed(html)
        assert page.references and page.document_urls == ["openapi.json"]
        assert [r for r in page.references if not path_relative(r)] == []
        assert page.inline == []
        fetched = await check_assets(http, f"{base}/docs", page)
    assert all(path.startswith("/docs/assets/") for path in fetched)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/argus-docs.js"} <= set(fetched)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_page_policy_allows_no_other_origin_and_no_inline_code(service: str) -> None:
    async with serving(service) as base, aiohttp.ClientSession() as http:
        response, _ = await fetch_page(http, f"{base}/docs")
    policy = csp_directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert {source for sources in policy.values() for source in sources} <= LOCAL_SOURCES
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_start_script_names_no_address_and_asks_no_validator() -> None:
    assert not re.search(r"https?:|//|\bwss?:", START)
    assert "validatorUrl: null" in START
    assert "queryConfigEnabled: false" in START
    assert "document.baseURI" in START  # the document is found relative to the page


@pytest.mark.parametrize("service", SERVICES)
async def test_the_document_names_the_gateway_prefix_and_the_service(service: str) -> None:
    async with serving(service) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/openapi.json") as response:
            spec = await response.json()
    assert spec["servers"] == [
        {"url": f"/{PREFIX[service]}", "description": "through the Argus gateway"},
        {"url": "/", "description": "the service directly"},
    ]
    assert {"/docs", "/docs/assets/{name}"} <= set(spec["paths"])
    assert spec["paths"]["/docs"]["get"]["tags"] == ["operations"]


async def test_assets_are_cached_and_revalidated() -> None:
    async with serving("tenant-api") as base, aiohttp.ClientSession() as http:
        url = f"{base}/docs/assets/swagger-ui-bundle.js"
        async with http.get(url) as response:
            etag = response.headers["ETag"]
            assert response.headers["Cache-Control"] == "public, max-age=86400"
        async with http.get(url, headers={"If-None-Match": f'"other", {etag}'}) as response:
            assert response.status == 304
            assert await response.read() == b""
            assert response.headers["ETag"] == etag
        async with http.get(f"{base}/docs") as response:
            assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("name", ["nothing.js", "swagger-editor-bundle.js", "oauth2-redirect.html",
                                  "..%2F..%2Fdocs.py", "%2E%2E", "LICENSE", "index.css.map"])
async def test_only_the_listed_assets_are_served(name: str) -> None:
    async with serving("tenant-api") as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/docs/assets/{name}") as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"


async def test_the_docs_are_not_rate_limited() -> None:
    async with serving("tenant-api", ARGUS_RATE_LIMIT_IP_PER_MINUTE="2") as base, \
            aiohttp.ClientSession() as http:
        statuses = []
        for path in ["/docs", "/docs/assets/swagger-ui.css"] * 3:
            async with http.get(f"{base}{path}") as response:
                statuses.append(response.status)
    assert statuses == [200] * 6


async def test_through_the_gateway_the_page_loads_everything_under_its_prefix() -> None:
    async with serving("tenant-api") as base, aiohttp.ClientSession() as http:
        gateway = TestServer(create_gateway({"tenant-api": base}))
        await gateway.start_server()
        try:
            page_url = str(gateway.make_url("/tenant/docs"))
            response, html = await fetch_page(http, page_url)
            assert response.status == 200 and response.content_type == "text/html"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            page = parsed(html)
            fetched = await check_assets(http, page_url, page)
            document_url = urljoin(page_url, page.document_urls[0])
            async with http.get(document_url) as answer:
                assert answer.status == 200
                spec = await answer.json()
        finally:
            await gateway.close()
    assert fetched and all(path.startswith("/tenant/docs/assets/") for path in fetched)
    assert urlsplit(document_url).path == "/tenant/openapi.json"
    assert spec["servers"][0]["url"] == "/tenant"
