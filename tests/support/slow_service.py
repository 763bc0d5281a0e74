"""A service built on the shared runner with one slow route, to watch SIGTERM drain it."""

from __future__ import annotations

import asyncio

from aiohttp import web

from argus_shared.routing import Route
from argus_shared.runner import run_service, service_app
from argus_shared.settings import Settings


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "1.5")))
    return web.json_response({"finished": True})


def create_app(settings: Settings) -> web.Application:
    return service_app(
        settings, [Route("GET", "/slow", slow, "Answer after a delay", auth="public")],
        title="slow",
    )


if __name__ == "__main__":
    run_service("auth", create_app)
