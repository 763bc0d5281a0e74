"""One error type, turned into `application/problem+json` (RFC 9457) in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

from argus_shared.request import REQUEST_ID

log = logging.getLogger("argus.errors")
PROBLEM_TYPE = "application/problem+json"
_json = msgspec.json.Encoder()


class Problem(Exception):
    """A failure the client should see: status, short title, optional detail and extra members."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = type
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def NotFound(detail: str = "not found") -> Problem:
    return Problem(404, detail)


def problem_response(problem: Problem, request: web.Request | None = None) -> web.Response:
    body = problem.body()
    if request is not None and (rid := request.get(REQUEST_ID)):
        body["request_id"] = rid
    return web.Response(
        status=problem.status,
        body=_json.encode(body),
        content_type=PROBLEM_TYPE,
        headers=problem.headers,
    )


def from_http_exception(exc: web.HTTPException) -> Problem:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
    return Problem(exc.status, detail, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as problem+json; unexpected ones are logged and answer a bare 500."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(from_http_exception(exc), request)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return problem_response(Problem(500, "an unexpected error occurred"), request)
