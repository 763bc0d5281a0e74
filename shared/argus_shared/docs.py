"""`/docs`: a service's OpenAPI document as a readable page, rendered by Swagger UI from the
files of the installed `swagger-ui-py` package (Swagger UI's dist, Apache-2.0): no CDN, nothing
fetched from anywhere else, at run time or ever.

Every reference on the page is relative (`docs/assets/...`, `openapi.json`), so one page works
on the service's own port (`/docs` loads `/openapi.json`) and behind the gateway under the
service's prefix (`/tenant/docs` loads `/tenant/openapi.json`). The page has no inline script or
style (its start-up script is a file too), and its Content-Security-Policy allows scripts,
styles and connections from 'self' only, images also from `data:` (the icons Swagger UI's
stylesheet carries); frames, forms and `<base>` not at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web

from argus_shared.errors import Problem

RENDERER_PACKAGE = "swagger_ui"  # what the swagger-ui-py distribution installs
DOCS_CSP = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'",
))
# assets keep their names across a release, so a day's caching, then a cheap revalidation
ASSET_CACHE_CONTROL = "public, max-age=86400"
START_SCRIPT = "argus-docs.js"
# the renderer's files the page uses, by name, with the type each is served as
RENDERER_ASSETS: dict[str, str] = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API documentation</title>
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="stylesheet" href="docs/assets/index.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="openapi.json"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/argus-docs.js"></script>
</body>
</html>
"""

# The document's URL is resolved against the page's own, so a prefix in front of the service
# is kept. No validator badge (it would be an image from elsewhere), no top bar (its box loads
# any URL typed into it), no configuration from the query string.
START = """"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  var ui = SwaggerUIBundle({
    url: new URL(root.dataset.openapiUrl, document.baseURI).href,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    queryConfigEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    onComplete: function () {
      document.title = ui.specSelectors.info().get("title") + " \\u2014 API documentation";
    },
  });
  window.ui = ui;
});
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        return cls(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def renderer_dir() -> Path:
    """The renderer's static files, found without importing its Python code."""
    spec = importlib.util.find_spec(RENDERER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{RENDERER_PACKAGE} (swagger-ui-py) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@cache
def asset(name: str) -> Asset | None:
    """An asset of the page by name (only the listed ones), read once."""
    if name == START_SCRIPT:
        return Asset.of(START.encode(), "text/javascript")
    if name not in RENDERER_ASSETS:
        return None
    return Asset.of((renderer_dir() / name).read_bytes(), RENDERER_ASSETS[name])


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": DOCS_CSP})


async def docs_asset(request: web.Request) -> web.Response:
    found = asset(request.match_info["name"])
    if found is None:
        raise Problem(404, "no such documentation asset")
    headers = {"ETag": found.etag, "Cache-Control": ASSET_CACHE_CONTROL}
    if found.etag in _etags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if found.content_type.startswith("text/") else None
    return web.Response(body=found.body, content_type=found.content_type, charset=charset,
                        headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
