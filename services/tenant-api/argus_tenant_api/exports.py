"""CSV exports streamed row by row from a server-side cursor: constant memory for any size.

Cells are written by their column's PostgreSQL type, never by what their text looks like:
- a numeric column (smallint, integer, bigint, numeric) is written bare, as the number it is
  (`-1500`), so a spreadsheet reads a number and a typed reader (`csv.QUOTE_NONNUMERIC`) a
  float; a number cannot hold a formula, so it is never defanged;
- every other cell is text, always quoted, and defanged as OWASP advises against CSV
  injection: one that starts with `=`, `+`, `-`, `@`, TAB or CR, or a full-width form of the
  first four (U+FF1D, U+FF0B, U+FF0D, U+FF20, which some spreadsheets read as formulas too),
  gets a `'` in front. That holds for a user's text that looks like a number too: a
  description `-1500` is exported as `'-1500`, since by its text the rule cannot tell it from
  `-2+3+cmd|' /C calc'!A0`; the exported number columns need no such guess.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from argus_shared import db

# the ASCII starts OWASP lists, then full-width equals, plus, hyphen-minus and commercial at
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "numeric"})
BATCH_ROWS = 500

Cell = str | int | Decimal


def defang(value: Any) -> str:
    """A text cell: `value` as text, with a `'` in front when a spreadsheet would run it."""
    text = value.isoformat() if isinstance(value, datetime) else "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def cell(value: Any, numeric: bool) -> Cell:
    """A cell of a numeric column stays a number (written bare); anything else is text."""
    if numeric and isinstance(value, int | Decimal) and not isinstance(value, bool):
        return value
    return defang(value)


def numeric_columns(statement: asyncpg.prepared_stmt.PreparedStatement) -> tuple[bool, ...]:
    return tuple(column.type.name in NUMERIC_TYPES for column in statement.get_attributes())


def csv_lines(rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()) -> bytes:
    """Rows as CSV; `numeric` says which columns hold numbers (none, by default)."""
    buffer = io.StringIO()
    # QUOTE_NONNUMERIC: text is always quoted, numbers never are
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    for row in rows:
        flags = numeric or (False,) * len(row)
        writer.writerow([cell(value, is_number) for value, is_number in zip(row, flags,
                                                                             strict=True)])
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
        statement = await conn.prepare(query)
        numeric = numeric_columns(statement)
        batch: list[Sequence[Any]] = []
        async for record in statement.cursor(org_id, prefetch=BATCH_ROWS):
            batch.append(tuple(record.values()))
            if len(batch) >= BATCH_ROWS:
                await response.write(csv_lines(batch, numeric))
                batch.clear()
        if batch:
            await response.write(csv_lines(batch, numeric))
    await response.write_eof()
    return response
