"""The wallet: integer cents, append-only entries, idempotency keys, step-up, reconciliation."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any, NamedTuple

import asyncpg
import msgspec
import pytest

from support.suite import Suite, User


async def wallet_of(suite: Suite) -> tuple[User, str]:
    owner = await suite.user()
    return owner, await suite.org(owner)


async def money(suite: Suite, org: str, kind: str, token: str, body: Any,
                key: str | None = "k1") -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    return await suite.call("POST", f"/orgs/{org}/wallet/{kind}", token, body, headers)


class Sent(NamedTuple):
    status: int
    body: bytes  # as it came over the wire
    content_type: str
    replayed: str | None  # the Idempotent-Replayed header


async def post_raw(suite: Suite, org: str, kind: str, token: str, raw: bytes,
                   key: str) -> Sent:
    """A money POST of exactly these bytes, answered with exactly the bytes that came back."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Idempotency-Key": key}
    async with suite.http.post(f"{suite.tenant}/orgs/{org}/wallet/{kind}", data=raw,
                               headers=headers) as response:
        return Sent(response.status, await response.read(),
                    response.headers.get("Content-Type", ""),
                    response.headers.get("Idempotent-Replayed"))


async def balance(suite: Suite, org: str, token: str) -> int:
    return (await suite.call("GET", f"/orgs/{org}/wallet", token))[1]["balance_cents"]


async def entry_count(suite: Suite, org: str, token: str) -> int:
    return len((await suite.call("GET", f"/orgs/{org}/wallet/entries?limit=200", token))[1][
        "entries"])


async def test_deposits_and_charges_move_the_balance(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    status, body = await money(suite, org, "deposits", owner.token, {"amount_cents": 10_000})
    assert status == 201 and body["balance_cents"] == 10_000
    status, body = await money(suite, org, "charges", owner.token, {"amount_cents": 2_550}, "k2")
    assert status == 201 and body["entry"]["amount_cents"] == -2_550
    assert await balance(suite, org, owner.token) == 7_450
    status, problem = await money(suite, org, "charges", owner.token, {"amount_cents": 8_000},
                                  "k3")
    assert status == 409 and problem["balance_cents"] == 7_450


async def test_a_replayed_key_returns_the_original_answer_once_applied(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    body = {"amount_cents": 500, "description": "top-up"}
    first = await money(suite, org, "deposits", owner.token, body, "same-key")
    again = await money(suite, org, "deposits", owner.token, body, "same-key")
    assert first == again and first[0] == 201
    assert await balance(suite, org, owner.token) == 500
    status, problem = await money(suite, org, "deposits", owner.token,
                                  {"amount_cents": 501}, "same-key")
    assert status == 422 and problem["title"] == "Idempotency-Key reused"
    assert await entry_count(suite, org, owner.token) == 1


TOP_UP = b'{"amount_cents": 500, "description": "top-up"}'


async def test_a_replay_is_the_first_answer_byte_for_byte(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    first = await post_raw(suite, org, "deposits", owner.token, TOP_UP, "bytes")
    again = await post_raw(suite, org, "deposits", owner.token, TOP_UP, "bytes")
    assert first.status == again.status == 201 and first.replayed is None
    assert again.replayed == "true"
    assert again.body == first.body  # the bytes, not the parsed JSON: key order included
    assert again.content_type == first.content_type == "application/json"
    assert await entry_count(suite, org, owner.token) == 1


@pytest.mark.parametrize(("raw", "other_form"), [
    (TOP_UP, b'{\n  "description" : "top-up",\n\t"amount_cents":500\n}\n'),  # order, spaces
    (TOP_UP, b'{"amount_cents":500,"description":"\\u0074op-up"}'),  # an escape, same text
    (b'{"amount_cents":500}', b'{"description":"","amount_cents":500}'),  # the default, spelled
])
async def test_the_same_request_in_another_form_is_a_replay(suite: Suite, raw: bytes,
                                                            other_form: bytes) -> None:
    owner, org = await wallet_of(suite)
    first = await post_raw(suite, org, "deposits", owner.token, raw, "form")
    again = await post_raw(suite, org, "deposits", owner.token, other_form, "form")
    assert first.status == 201 and first.replayed is None
    assert (again.status, again.replayed, again.body) == (201, "true", first.body)
    assert await entry_count(suite, org, owner.token) == 1
    assert await balance(suite, org, owner.token) == 500


@pytest.mark.parametrize("other_meaning", [
    b'{"description":"top-up","amount_cents":501}',
    b'{"amount_cents":500,"description":"top-up!"}',
    b'{"amount_cents":500}',
])
async def test_a_key_reused_with_another_meaning_is_refused(suite: Suite,
                                                            other_meaning: bytes) -> None:
    owner, org = await wallet_of(suite)
    assert (await post_raw(suite, org, "deposits", owner.token, TOP_UP, "meaning")).status == 201
    refused = await post_raw(suite, org, "deposits", owner.token, other_meaning, "meaning")
    problem = msgspec.json.decode(refused.body)
    assert refused.status == 422 and problem["title"] == "Idempotency-Key reused"
    assert "different request" in problem["detail"] and refused.replayed is None
    assert await entry_count(suite, org, owner.token) == 1
    assert await balance(suite, org, owner.token) == 500


async def test_keys_are_per_org_and_per_endpoint(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    other_owner, other_org = await wallet_of(suite)
    raw = b'{"amount_cents":300}'
    first = await post_raw(suite, org, "deposits", owner.token, raw, "shared")
    charge = await post_raw(suite, org, "charges", owner.token, raw, "shared")
    elsewhere = await post_raw(suite, other_org, "deposits", other_owner.token, raw, "shared")
    assert [s.status for s in (first, charge, elsewhere)] == [201, 201, 201]
    assert not any(s.replayed for s in (first, charge, elsewhere))
    assert await balance(suite, org, owner.token) == 0
    assert await balance(suite, other_org, other_owner.token) == 300


async def test_a_concurrent_double_submit_makes_one_entry(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    forms = [b'{"amount_cents":700,"description":"once"}',
             b'{ "description": "once", "amount_cents": 700 }'] * 3
    sent = await asyncio.gather(*(post_raw(suite, org, "deposits", owner.token, raw, "race")
                                  for raw in forms))
    assert {s.status for s in sent} == {201}
    assert sorted(s.replayed or "" for s in sent) == [""] + ["true"] * (len(forms) - 1)
    assert len({s.body for s in sent}) == 1
    assert await entry_count(suite, org, owner.token) == 1
    assert await balance(suite, org, owner.token) == 700


async def test_a_key_stored_before_the_canonical_form_replays_as_before(
        suite: Suite, admin: asyncpg.Connection) -> None:
    owner, org = await wallet_of(suite)
    raw = b'{"amount_cents": 500}'
    stored = {"entry": {"id": str(uuid.uuid4()), "amount_cents": 500}, "balance_cents": 500}
    await admin.execute(  # a row as the code before 0006 wrote it: raw hash, jsonb only
        "insert into tenant_api.idempotency_keys (org_id, endpoint, key, request_hash, status,"
        " response) values ($1, 'POST deposit', 'old', $2, 201, $3::jsonb)", uuid.UUID(org),
        hashlib.sha256(b"POST deposit\n" + raw).digest(), msgspec.json.encode(stored).decode())
    again = await post_raw(suite, org, "deposits", owner.token, raw, "old")
    assert (again.status, again.replayed) == (201, "true")
    assert msgspec.json.decode(again.body) == stored
    refused = await post_raw(suite, org, "deposits", owner.token, b'{"amount_cents":501}', "old")
    assert refused.status == 422
    assert await entry_count(suite, org, owner.token) == 0


@pytest.mark.parametrize(("body", "key", "status"), [
    ({"amount_cents": 100}, None, 400),
    ({"amount_cents": -100}, "k", 422),
    ({"amount_cents": 0}, "k", 422),
    ({"amount_cents": 1.5}, "k", 422),
    ({"amount_cents": "100"}, "k", 422),
    ({"amount_cents": 10**13}, "k", 422),
    ({"amount_cents": 100, "currency": "EUR"}, "k", 422),
    ({"amount_cents": 100}, "x" * 201, 400),
])
async def test_bad_money_requests_write_nothing(suite: Suite, body: Any, key: str | None,
                                                status: int) -> None:
    owner, org = await wallet_of(suite)
    got, problem = await money(suite, org, "deposits", owner.token, body, key)
    assert got == status, problem
    assert await balance(suite, org, owner.token) == 0
    assert await entry_count(suite, org, owner.token) == 0


async def test_large_charges_need_a_recent_sign_in(suite: Suite) -> None:
    suite.auth.clock.now = time.time() - 6 * 60  # signed in six minutes ago
    owner, org = await wallet_of(suite)
    await money(suite, org, "deposits", owner.token, {"amount_cents": 200_000})
    status, _ = await money(suite, org, "charges", owner.token, {"amount_cents": 500_00}, "c1")
    assert status == 201  # at the threshold: no step-up
    status, problem = await money(suite, org, "charges", owner.token,
                                  {"amount_cents": 500_01}, "c2")
    assert status == 401 and "re-authenticate" in problem["detail"]
    suite.auth.clock.now = time.time()
    _, fresh, _ = await suite.auth.post("/reauth", {"password": "correct horse battery staple"},
                                        token=owner.token)
    status, _ = await money(suite, org, "charges", fresh["access_token"],
                            {"amount_cents": 500_01}, "c2")
    assert status == 201


async def test_api_keys_need_the_wallet_scope(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    project = await suite.project(org, owner)
    reader = await suite.api_key(org, owner, project, ["wallet:read"])
    writer = await suite.api_key(org, owner, project, ["wallet:write"])
    assert (await suite.call("GET", f"/orgs/{org}/wallet", reader["key"]))[0] == 200
    status, _ = await money(suite, org, "deposits", reader["key"], {"amount_cents": 100})
    assert status == 403
    status, _ = await money(suite, org, "deposits", writer["key"], {"amount_cents": 100})
    assert status == 201
    status, _ = await money(suite, org, "charges", writer["key"], {"amount_cents": 600_00},
                            "big")
    assert status == 401  # a key cannot step up
    assert (await suite.call("GET", f"/orgs/{org}/members", writer["key"]))[0] == 403


async def test_entries_page_with_a_cursor(suite: Suite) -> None:
    owner, org = await wallet_of(suite)
    for index in range(5):
        await money(suite, org, "deposits", owner.token, {"amount_cents": index + 1}, f"p{index}")
    seen: list[int] = []
    cursor = ""
    while True:
        query = f"?limit=2{'&cursor=' + cursor if cursor else ''}"
        status, page = await suite.call("GET", f"/orgs/{org}/wallet/entries{query}", owner.token)
        assert status == 200
        seen += [e["amount_cents"] for e in page["entries"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == [1, 2, 3, 4, 5]
    for bad in ("?cursor=zz", "?limit=0", "?limit=x", "?sort=asc"):
        status, _ = await suite.call("GET", f"/orgs/{org}/wallet/entries{bad}", owner.token)
        assert status in (400, 422), bad


async def test_ledger_entries_are_append_only_for_every_role(suite: Suite, admin: asyncpg.Connection
                                                             ) -> None:
    owner, org = await wallet_of(suite)
    await money(suite, org, "deposits", owner.token, {"amount_cents": 100})
    for statement in ("update tenant_api.ledger_entries set amount_cents = 1",
                      "delete from tenant_api.ledger_entries",
                      "truncate tenant_api.ledger_entries cascade"):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await admin.execute(statement)  # even the superuser
    for values in (("deposit", -5), ("charge", 5), ("deposit", 0)):
        with pytest.raises(asyncpg.CheckViolationError):
            await admin.execute(
                "insert into tenant_api.ledger_entries (org_id, id, kind, amount_cents, actor)"
                " values ($1, $2, $3, $4, 'x')", uuid.UUID(org), uuid.uuid4(), *values)


async def test_reconciliation_catches_a_tampered_balance(suite: Suite,
                                                         admin: asyncpg.Connection) -> None:
    owner, org = await wallet_of(suite)
    await money(suite, org, "deposits", owner.token, {"amount_cents": 1_000})
    assert [r for r in await suite.reconciler.run() if str(r["org_id"]) == org] == []
    await admin.execute("update tenant_api.wallets set balance_cents = 999_999 where org_id = $1",
                        uuid.UUID(org))
    try:
        found = [r for r in await suite.reconciler.run() if str(r["org_id"]) == org]
        assert found and found[0]["entries_cents"] == 1_000
        assert suite.reconciler.mismatches._value.get() >= 1
        payload = await admin.fetchval(
            "select payload from tenant_api.outbox where subject like '%wallet.mismatch'"
            " and org_id = $1", uuid.UUID(org))
        assert b'"balance_cents":999999' in payload
    finally:
        await admin.execute("update tenant_api.wallets set balance_cents = 1000 where org_id = $1",
                            uuid.UUID(org))
