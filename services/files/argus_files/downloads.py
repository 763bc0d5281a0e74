"""Serving an object: streamed, whole or one byte range, as an attachment that no browser will
render or sniff. Only segments whose tag has been checked are ever sent. Before the status line
goes out the stored size, the header and the first segments are checked, so a damaged object is
a clear 500; damage found later cuts the response short (the client sees an incomplete body)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from argus_files import keys
from argus_files.segments import HEADER_SIZE, Header, IntegrityError, Opener, stored_size
from argus_files.storage import StorageError, object_key
from argus_files.store import Store
from argus_shared import crypto
from argus_shared.errors import Problem

log = logging.getLogger("argus.files.downloads")
PREFETCH_SEGMENTS = 16  # checked before the status line: objects up to 1 MiB fully
BATCH_SEGMENTS = 16  # opened together on a worker thread
SANDBOX_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'; base-uri 'none'; " \
              "form-action 'none'"
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def unsatisfiable(size: int, detail: str) -> Problem:
    return Problem(416, detail, title="Range not satisfiable",
                   headers={"Content-Range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> Span | None:
    """One `bytes` range (None: serve the whole object). Other units are ignored and several
    ranges are answered with the whole object, as RFC 9110 allows; a malformed or unsatisfiable
    bytes range is a 416."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _RANGE.match(spec)
    if match is None or not (match[1] or match[2]):
        raise unsatisfiable(size, f"malformed range {header[:100]!r}")
    first, last = match[1], match[2]
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable(size, "an empty range")
        return Span(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable(size, f"the range {start}-{last} is outside the {size} bytes")
    return Span(start, min(end, size - 1))


def disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the exact name as RFC 8187 `filename*`."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7f and c not in '"\\%;' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def integrity_failure(store: Store, row: Any, reason: str) -> Problem:
    store.metrics.integrity_failures.inc()
    log.error("stored object failed its integrity check",
              extra={"org_id": str(row["org_id"]), "object_id": str(row["id"]),
                     "reason": reason})
    return Problem(500, "the stored object failed its integrity check and is not served",
                   title="Stored object damaged", type="urn:argus:problem:integrity")


async def serve(store: Store, row: Any, request: web.Request) -> web.StreamResponse:
    size = row["size"]
    etag = f'"{bytes(row["sha256"]).hex()}"'
    if_range = request.headers.get("If-Range")
    span = parse_range(request.headers.get("Range"), size) \
        if if_range is None or if_range == etag else None
    whole = span is None
    span = span or Span(0, size - 1)
    opener = await _opener(store, row)
    segments = _segments(store, row, opener, span) if span.length > 0 or size == 0 else None
    ready: list[bytes] = []
    try:
        if segments is not None:
            async for plain in segments:
                ready.append(plain)
                if len(ready) >= PREFETCH_SEGMENTS:
                    break
    except (IntegrityError, StorageError) as exc:
        raise integrity_failure(store, row, str(exc)) from None
    response = web.StreamResponse(status=200 if whole else 206, headers=_headers(row, etag))
    response.content_length = max(span.length, 0)
    if not whole:
        response.headers["Content-Range"] = f"bytes {span.start}-{span.end}/{size}"
    else:
        digest = base64.b64encode(bytes(row["sha256"])).decode()
        response.headers["Repr-Digest"] = f"sha-256=:{digest}:"
    await response.prepare(request)
    sent = 0
    try:
        for plain in ready:
            await response.write(plain)
            sent += len(plain)
        if segments is not None:
            async for plain in segments:
                await response.write(plain)
                sent += len(plain)
    except (IntegrityError, StorageError) as exc:
        integrity_failure(store, row, str(exc))
        store.metrics.bytes_out.inc(sent)
        if request.transport is not None:
            request.transport.close()  # the client sees a body shorter than Content-Length
        return response
    store.metrics.bytes_out.inc(sent)
    await response.write_eof()
    return response


def _headers(row: Any, etag: str) -> dict[str, str]:
    kind = row["content_type"]
    return {
        "Content-Type": f"{kind}; charset=utf-8" if kind == "text/plain" else kind,
        "Content-Disposition": disposition(row["name"]),
        "Content-Security-Policy": SANDBOX_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "private, no-store",
        "Accept-Ranges": "bytes",
        "ETag": etag,
    }


async def _opener(store: Store, row: Any) -> Opener:
    org_id, object_id = row["org_id"], row["id"]
    try:
        data_key = keys.unwrap(store.master, org_id, object_id, bytes(row["wrapped_key"]))
    except crypto.SealError as exc:
        raise integrity_failure(store, row, f"data key: {exc}") from None
    key = object_key(org_id, row["owner_id"], object_id)
    try:
        actual = await store.storage.size(key)
        expected = stored_size(row["size"], row["segment_size"], store.codec.tag)
        if actual != expected:
            raise IntegrityError(f"stored size {actual} is not the expected {expected}")
        raw = b"".join([c async for c in store.storage.read(key, 0, HEADER_SIZE)])
        header = Header.decode(raw, org_id, object_id)
        if header.segment_size != row["segment_size"]:
            raise IntegrityError("the header's segment size is not the recorded one")
    except (IntegrityError, StorageError) as exc:
        raise integrity_failure(store, row, str(exc)) from None
    return store.codec.opener(data_key, header, row["size"])


async def _segments(store: Store, row: Any, opener: Opener, span: Span) -> AsyncIterator[bytes]:
    """The plaintext of `span`, one checked segment at a time (trimmed at both ends).

    Segments are opened in batches on a worker thread (AES-GCM releases the GIL), one batch
    ahead: while the event loop sends batch k, batch k+1 is read and decrypted."""
    plain_segment = opener.header.segment_size
    ahead: asyncio.Future[list[bytes]] | None = None
    first_of_ahead = 0
    try:
        async for first, sealed in _sealed_batches(store, row, opener, span):
            opening = asyncio.ensure_future(asyncio.to_thread(_open_batch, opener, first, sealed))
            if ahead is not None:
                for plain in _trimmed(await ahead, first_of_ahead, plain_segment, span):
                    yield plain
            ahead, first_of_ahead = opening, first
        if ahead is not None:
            for plain in _trimmed(await ahead, first_of_ahead, plain_segment, span):
                yield plain
            ahead = None
    finally:
        if ahead is not None:
            ahead.cancel()


def _open_batch(opener: Opener, first: int, sealed: list[bytes]) -> list[bytes]:
    return [opener.open(first + n, segment) for n, segment in enumerate(sealed)]


def _trimmed(plains: list[bytes], first: int, plain_segment: int, span: Span
             ) -> Iterator[bytes]:
    for n, plain in enumerate(plains):
        offset = (first + n) * plain_segment
        yield plain[max(0, span.start - offset):span.end - offset + 1]


async def _sealed_batches(store: Store, row: Any, opener: Opener, span: Span
                          ) -> AsyncIterator[tuple[int, list[bytes]]]:
    """(index of the first, sealed segments) covering `span`, up to `BATCH_SEGMENTS` at a
    time, as the storage backend hands them over."""
    plain_segment = opener.header.segment_size
    sealed_segment = opener.sealed_segment
    first = span.start // plain_segment if row["size"] else 0
    last = span.end // plain_segment if row["size"] else 0
    total = stored_size(row["size"], plain_segment, opener.tag)
    begin = HEADER_SIZE + first * sealed_segment
    end = min(HEADER_SIZE + (last + 1) * sealed_segment, total)
    key = object_key(row["org_id"], row["owner_id"], row["id"])
    buffer = bytearray()
    index = first
    batch: list[bytes] = []
    async for chunk in store.storage.read(key, begin, end - begin):
        buffer += chunk
        taken = 0
        while index <= last:
            need = min(sealed_segment, end - (HEADER_SIZE + index * sealed_segment))
            if len(buffer) - taken < need:
                break
            batch.append(bytes(buffer[taken:taken + need]))
            taken += need
            index += 1
        del buffer[:taken]
        if len(batch) >= BATCH_SEGMENTS:
            yield index - len(batch), batch
            batch = []
    if batch:
        yield index - len(batch), batch
    if index <= last:
        raise IntegrityError("the stored object ended early")
