"""Where an upload's bytes come from: the raw request body, or the one file part of a
multipart/form-data body. Both stream, counting bytes against the limit (413 the moment it is
crossed, or at once when the declared length is already past it); a multipart body must be
well formed to its closing boundary, else 400."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from argus_shared.errors import Problem
from argus_shared.validation import NOT_SINGLE_LINE, too_large, undecodable

CHUNK = 256 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers a multipart body may add
DEFAULT_NAME = "upload"
# what aiohttp's multipart reader raises for a part it cannot parse (a part header with a NUL
# is an HttpProcessingError)
MALFORMED_PARTS = (ValueError, AssertionError, RuntimeError, KeyError, HttpProcessingError)


@dataclass
class Source:
    name: str
    chunks: AsyncIterator[bytes]


def malformed(detail: str) -> Problem:
    return Problem(400, detail, title="Malformed upload")


def malformed_part(exc: Exception) -> Problem:
    reason = exc.message if isinstance(exc, HttpProcessingError) else exc
    return malformed(f"malformed multipart body: {reason}")


def clean_name(raw: str | None) -> str:
    """A file name as metadata: the last path segment, NFC, UTF-8, nothing `SingleLine`
    refuses (controls, line separators, bidi overrides)."""
    if raw is None:
        return DEFAULT_NAME
    if undecodable(raw):
        raise Problem(400, "the file name is not UTF-8", title="Invalid file name")
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if NOT_SINGLE_LINE.search(name):
        raise Problem(422, "the file name has control characters", title="Invalid file name")
    if not name or name in (".", ".."):
        return DEFAULT_NAME
    if len(name) > 255:
        raise Problem(422, "the file name is longer than 255 characters",
                      title="Invalid file name")
    return name


async def source_of(request: web.Request, limit: int, name: str | None) -> Source:
    if request.content_type.startswith("multipart/"):
        return await _multipart(request, limit)
    _check_declared(request, limit)
    return Source(clean_name(name), _counted(request.content.iter_any(), limit))


def _check_declared(request: web.Request, limit: int, overhead: int = 0) -> None:
    declared = request.content_length
    if declared is not None and declared > limit + overhead:
        raise too_large(limit)


async def _counted(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        yield chunk


async def _multipart(request: web.Request, limit: int) -> Source:
    if request.content_type != "multipart/form-data":
        raise Problem(415, "send multipart/form-data or a raw body")
    _check_declared(request, limit, MULTIPART_OVERHEAD)
    try:
        reader = await request.multipart()
        part = await reader.next()
    except MALFORMED_PARTS as exc:
        raise malformed_part(exc) from None
    if not isinstance(part, BodyPartReader) or part.name != "file" or part.filename is None:
        raise malformed("send exactly one part named 'file' with a filename")
    return Source(clean_name(part.filename), _counted(_part_chunks(reader, part), limit))


async def _part_chunks(reader: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
        rest = await reader.next()
    except MALFORMED_PARTS as exc:
        raise malformed_part(exc) from None
    if rest is not None or not reader.at_eof():
        raise malformed("send exactly one part named 'file' with a filename")
