"""Strict request parsing: bodies read in chunks up to a limit, decoded into msgspec types.

Types are declared with `forbid_unknown_fields=True` (use `Strict` as the base), so an unknown
field, a wrong type or a value outside its `Meta` constraints is a 422 naming the field, and a
body past the limit is a 413 as soon as the limit is crossed: it is never buffered whole.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from argus_shared.errors import Problem

UuidText = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    description="a UUID in its canonical form")]

T = TypeVar("T")
JSON_TYPES = ("application/json", "application/problem+json")
CHUNK = 64 * 1024
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for request bodies: unknown fields are an error."""


def too_large(limit: int) -> Problem:
    return Problem(413, f"the request body is larger than {limit} bytes", limit=limit)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 the moment it passes `limit` (declared or streamed)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def decode(raw: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise Problem(422, str(exc), title="Invalid request body") from None
    except msgspec.DecodeError as exc:
        raise Problem(400, f"malformed JSON: {exc}", title="Malformed request body") from None


async def parse_json(request: web.Request, type_: type[T], limit: int | None = None) -> T:
    if request.content_type not in JSON_TYPES:
        raise Problem(415, "send the body as application/json")
    raw = await read_body(request, limit or request.app[MAX_BODY_KEY])
    if not raw:
        raise Problem(400, "a JSON body is required", title="Malformed request body")
    return decode(raw, type_)


def parse_query(request: web.Request, type_: type[T]) -> T:
    """Query parameters into a Struct (strings converted to the declared types)."""
    params: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise Problem(422, f"query parameter '{key}' is repeated", title="Invalid query")
        params[key] = values[0]
    try:
        return msgspec.convert(params, type=type_, strict=False)
    except msgspec.ValidationError as exc:
        raise Problem(422, str(exc), title="Invalid query") from None
