"""CSV exports streamed row by row from a server-side cursor: constant memory for any size.
Cells that a spreadsheet would run as a formula are defanged as OWASP advises (CSV injection):
a leading `=`, `+`, `-`, `@`, TAB or CR gets a `'` in front, and every cell is quoted."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from argus_shared import db

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BATCH_ROWS = 500


def defang(value: Any) -> str:
    text = value.isoformat() if isinstance(value, datetime) else "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    for row in rows:
        writer.writerow([defang(cell) for cell in row])
    return buffer.getvalue().encode()


async def stream_csv(request: web.Request, pool: asyncpg.Pool, org_id: UUID, user_id: Any,
                     query: str, header: Sequence[str], filename: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
    })
    await response.prepare(request)
    await response.write(csv_lines([header]))
    async with db.tenant_tx(pool, org_id, user_id) as conn:
        batch: list[Sequence[Any]] = []
        async for record in conn.cursor(query, org_id, prefetch=BATCH_ROWS):
            batch.append(tuple(record.values()))
            if len(batch) >= BATCH_ROWS:
                await response.write(csv_lines(batch))
                batch.clear()
        if batch:
            await response.write(csv_lines(batch))
    await response.write_eof()
    return response
