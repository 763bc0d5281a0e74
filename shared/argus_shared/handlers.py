"""What every service's handlers share: path ids (a malformed one is a 404 like any unknown
one), the context carried into events (client IP, user agent, request id) and JSON answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from argus_shared.errors import Problem
from argus_shared.outbox import Ctx
from argus_shared.request import CLIENT_IP, REQUEST_ID


def not_found() -> Problem:
    return Problem(404, "not found")


def uuid_param(request: web.Request, name: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise not_found() from None


def ctx_of(request: web.Request) -> Ctx:
    return Ctx(ip=request.get(CLIENT_IP), user_agent=request.headers.get("User-Agent"),
               request_id=request.get(REQUEST_ID))


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json", headers=headers)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
