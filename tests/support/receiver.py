"""A webhook receiver as its own process: answers slowly (so deliveries are in flight when a
worker is killed), and appends each request's `webhook-id` to a file, one per line.

    python tests/support/receiver.py <port> <log file> [delay seconds]
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def make_app(log_path: str, delay: float) -> web.Application:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        log.write(request.headers.get("webhook-id", "?") + "\n")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/healthz", lambda _: web.Response(text="ok"))  # type: ignore[arg-type, return-value]
    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3
    web.run_app(make_app(path, delay), host="127.0.0.1", port=port, print=None,
                access_log=None)
