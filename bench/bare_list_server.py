"""The baseline for bench/tenant_list.py: a bare aiohttp + asyncpg handler running the same
SELECT as tenant-api's project list, with nothing around it, on the event loop the services run on.

    python bench/bare_list_server.py <dsn> <port>
"""

from __future__ import annotations

import sys
from uuid import UUID

import asyncpg
from aiohttp import web

from argus_shared.runner import event_loop

SELECT = "select * from tenant_api.projects where org_id = $1 order by created_at, id"


async def make_app(dsn: str) -> web.Application:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)

    async def handler(request: web.Request) -> web.Response:
        async with pool.acquire() as conn:
            rows = await conn.fetch(SELECT, UUID(request.match_info["org_id"]))
        return web.json_response([{"id": str(r["id"]), "name": r["name"],
                                   "created_at": r["created_at"].isoformat()} for r in rows])

    app = web.Application()
    app.router.add_get("/orgs/{org_id}/projects", handler)
    return app


if __name__ == "__main__":
    dsn, port = sys.argv[1], int(sys.argv[2])
    web.run_app(make_app(dsn), host="127.0.0.1", port=port, print=None, access_log=None,
                loop=event_loop())
