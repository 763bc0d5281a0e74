"""CSV exports: numbers stay numbers, text cells are defanged, streamed in constant memory.

No spreadsheet engine runs here: LibreOffice (the one Debian has headless) installs some 260 MB,
past what CI should fetch for one test, and openpyxl cannot read CSV. The exports are read with
Python's typed CSV reader instead (`csv.QUOTE_NONNUMERIC`: a quoted cell is text, an unquoted
one must be a number or the read fails), which is how the export marks its types, and the
defang rule is checked cell by cell. Checked once by hand with LibreOffice 7.4 headless (CSV to
xlsx, formulas evaluated): a bare `-1500` is a number cell, the old `'-1500` a text cell, a
defanged `'=1+1` text, and a bare `=1+1` a formula, which is what the rule is for."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from argus_tenant_api.exports import cell, csv_lines, defang
from support.suite import Suite

LARGE = 1_000_000 if os.environ.get("ARGUS_FULL") else 200_000  # ARGUS_FULL=1: the full size


FULL_WIDTH = ("\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)")  # = + - @, full-width


def test_formula_cells_are_defanged() -> None:
    for dangerous in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "-1500", *FULL_WIDTH):
        assert defang(dangerous) == "'" + dangerous
    assert defang("plain") == "plain" and defang(None) == "" and defang(12) == "12"
    assert defang(" =1") == " =1" and defang("1-1") == "1-1"


def test_numeric_columns_stay_numbers_and_text_columns_are_defanged() -> None:
    assert cell(-1500, numeric=True) == -1500
    assert cell(Decimal("-15.25"), numeric=True) == Decimal("-15.25")
    assert cell(-1500, numeric=False) == "'-1500"  # a number in a text column is text
    assert cell("-1500", numeric=True) == "'-1500"  # only a number is written as one
    assert cell(True, numeric=True) == "True" and cell(None, numeric=True) == ""
    assert csv_lines([(-1500, "-1500", "=1")], (True, False, False)) == (
        b'-1500,"\'-1500","\'=1"\r\n')
    assert csv_lines([("amount_cents", "-x")]) == b'"amount_cents","\'-x"\r\n'


def typed_rows(text: str) -> list[list[Any]]:
    """The CSV as a typed reader sees it: unquoted cells are numbers (floats), quoted ones text."""
    return list(csv.reader(io.StringIO(text, newline=""), quoting=csv.QUOTE_NONNUMERIC))


async def test_ledger_and_members_exports_defang_what_users_wrote(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    written = ('=HYPERLINK("http://evil")', "+cmd", "@SUM(1)", 'ok, "quoted"', "-1500",
               FULL_WIDTH[0])
    for index, text in enumerate(written):
        status, _ = await suite.call("POST", f"/orgs/{org}/wallet/deposits", owner.token,
                                     {"amount_cents": 1, "description": text},
                                     {"Idempotency-Key": f"e{index}"})
        assert status == 201
    status, text = await suite.call("GET", f"/orgs/{org}/exports/ledger.csv", owner.token)
    assert status == 200
    rows = typed_rows(text)
    assert rows[0] == ["id", "kind", "amount_cents", "description", "actor", "created_at"]
    descriptions = [row[3] for row in rows[1:]]
    assert descriptions == ["'=HYPERLINK(\"http://evil\")", "'+cmd", "'@SUM(1)",
                            'ok, "quoted"', "'-1500", "'" + FULL_WIDTH[0]]
    status, text = await suite.call("GET", f"/orgs/{org}/exports/members.csv", owner.token)
    assert status == 200 and owner.id in text
    assert all(isinstance(value, str) for row in typed_rows(text) for value in row)


async def test_negative_amounts_are_exported_as_numbers(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    for key, kind, cents in (("n1", "deposits", 5_000), ("n2", "charges", 1_500),
                             ("n3", "charges", 1)):
        status, _ = await suite.call("POST", f"/orgs/{org}/wallet/{kind}", owner.token,
                                     {"amount_cents": cents, "description": "-1500"},
                                     {"Idempotency-Key": key})
        assert status == 201
    status, text = await suite.call("GET", f"/orgs/{org}/exports/ledger.csv", owner.token)
    assert status == 200
    rows = typed_rows(text)[1:]
    assert [row[2] for row in rows] == [5_000, -1_500, -1]
    assert all(type(row[2]) is float for row in rows)  # unquoted: read as numbers
    assert all(row[3] == "'-1500" for row in rows)  # the same text a user wrote: defanged
    assert all(isinstance(row[i], str) for row in rows for i in (0, 1, 4, 5))
    assert text.splitlines()[2].split(",")[2] == "-1500"  # bare, as written


async def test_a_large_export_streams_in_constant_memory(suite: Suite,
                                                        admin: asyncpg.Connection) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    await admin.execute(
        "insert into tenant_api.ledger_entries (org_id, id, kind, amount_cents, description,"
        " actor) select $1, gen_random_uuid(), 'deposit', n, '=evil ' || n, 'bench'"
        " from generate_series(1, $2) as n", uuid.UUID(org), LARGE)
    tracemalloc.start()
    try:
        received = rows = 0
        async with suite.http.get(f"{suite.tenant}/orgs/{org}/exports/ledger.csv",
                                  headers={"Authorization": f"Bearer {owner.token}"}) as response:
            assert response.status == 200
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += len(chunk)
                rows += chunk.count(b"\r\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == LARGE + 1
    assert received > 60 * LARGE  # tens of megabytes went through ...
    assert peak < 16 * 1024 * 1024  # ... while Python never held more than a few at once
