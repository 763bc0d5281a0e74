"""CSV exports: defanged cells, streamed in constant memory."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
import uuid

import asyncpg

from argus_tenant_api.exports import defang
from support.suite import Suite

LARGE = 1_000_000 if os.environ.get("ARGUS_FULL") else 200_000  # ARGUS_FULL=1: the full size


def test_formula_cells_are_defanged() -> None:
    for dangerous in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert defang(dangerous) == "'" + dangerous
    assert defang("plain") == "plain" and defang(None) == "" and defang(12) == "12"


async def test_ledger_and_members_exports_defang_what_users_wrote(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    written = ('=HYPERLINK("http://evil")', "+cmd", "@SUM(1)", 'ok, "quoted"')
    for index, text in enumerate(written):
        status, _ = await suite.call("POST", f"/orgs/{org}/wallet/deposits", owner.token,
                                     {"amount_cents": 1, "description": text},
                                     {"Idempotency-Key": f"e{index}"})
        assert status == 201
    status, text = await suite.call("GET", f"/orgs/{org}/exports/ledger.csv", owner.token)
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "kind", "amount_cents", "description", "actor", "created_at"]
    descriptions = [row[3] for row in rows[1:]]
    assert descriptions == ["'=HYPERLINK(\"http://evil\")", "'+cmd", "'@SUM(1)", 'ok, "quoted"']
    status, text = await suite.call("GET", f"/orgs/{org}/exports/members.csv", owner.token)
    assert status == 200 and owner.id in text


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
