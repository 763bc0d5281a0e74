"""The audit trail end to end: events from the other services arrive over NATS, are chained,
queried, exported and verified; tampering, forgery and retention are attacked."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec
import pytest

from argus_audit import chain, ingest, queries
from argus_audit.maintenance import checkpoint_heads, prune
from argus_shared import events, xut
from argus_shared.db import connect
from argus_shared.nats import connect as nats_connect
from argus_shared.settings import OWNER_ROLE
from support.audit_service import Audit
from support.infra import Infra
from support.suite import Suite, User


async def org_with_log(suite: Suite, audit: Audit) -> tuple[User, str, str]:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    await audit.events_until(org, token, lambda evs: any(e["type"] == "org.created"
                                                          for e in evs))
    return owner, org, token


async def test_events_of_other_services_arrive_chained(suite: Suite, audit: Audit) -> None:
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    found = await audit.events_until(org, token, lambda evs: any(
        e["type"] == "project.created" for e in evs))
    types = [e["type"] for e in found]  # services publish independently: no order between them
    assert "org.created" in types and "project.created" in types
    first = found[0]
    assert first["seq"] == 1 and first["prev_hash"] == "00" * 32
    created = next(e for e in found if e["type"] == "org.created")
    assert created["actor"] == {"type": "user", "id": owner.id}
    for before, after in itertools.pairwise(found):
        assert after["seq"] == before["seq"] + 1 and after["prev_hash"] == before["hash"]


async def test_every_view_of_the_log_is_itself_logged(suite: Suite, audit: Audit) -> None:
    _, org, token = await org_with_log(suite, audit)
    found = await audit.events_until(org, token, lambda evs: any(
        e["type"] == "audit.log.viewed" for e in evs))
    assert any(e["type"] == "audit.log.viewed" for e in found)


async def test_only_owners_and_admins_of_that_org_read_it(suite: Suite, audit: Audit) -> None:
    owner, org, _ = await org_with_log(suite, audit)
    member = await suite.member(org, owner, "member")
    assert (await audit.get(f"/orgs/{org}/audit/events", await suite.switch(member, org)))[
        0] == 403
    outsider = await suite.user()
    other_org = await suite.org(outsider)
    outsider_token = await suite.switch(outsider, other_org)
    for path in ("events", "export.ndjson", "verify"):
        assert (await audit.get(f"/orgs/{org}/audit/{path}", outsider_token))[0] == 404


@pytest.mark.parametrize(("query", "status"), [
    ("?bogus=1", 422), ("?cursor=abc", 422), ("?action=DROP%20TABLE", 422), ("?limit=0", 422),
    ("?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 400), ("?since=yesterday", 422),
])
async def test_bad_queries_are_refused(suite: Suite, audit: Audit, query: str,
                                       status: int) -> None:
    _, org, token = await org_with_log(suite, audit)
    got, problem = await audit.get(f"/orgs/{org}/audit/events{query}", token)
    assert got == status, problem


async def test_filters_and_cursor_pages(suite: Suite, audit: Audit) -> None:
    owner, org, token = await org_with_log(suite, audit)
    for _ in range(3):
        await suite.project(org, owner)
    await audit.events_until(org, token, lambda evs: sum(
        e["type"] == "project.created" for e in evs) == 3)
    pages, cursor = [], ""
    while True:
        status, body = await audit.get(
            f"/orgs/{org}/audit/events?action=project.created&limit=2{cursor}", token)
        assert status == 200
        pages.append([e["type"] for e in body["events"]])
        if not body["next_cursor"]:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert [t for page in pages for t in page] == ["project.created"] * 3
    status, body = await audit.get(f"/orgs/{org}/audit/events?actor={owner.id}"
                                   "&resource_type=project", token)
    assert len(body["events"]) == 3


async def test_the_ndjson_export_carries_a_verifiable_chain(suite: Suite, audit: Audit) -> None:
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    await audit.events_until(org, token, lambda evs: any(e["type"] == "project.created"
                                                          for e in evs))
    status, text = await audit.get(f"/orgs/{org}/audit/export.ndjson", token)
    assert status == 200
    head = bytes(32)
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:  # what a SIEM does with the documented canonical form
        row = {"event_id": line["event_id"], "org_id": line["org_id"], "seq": line["seq"],
               "type": line["type"], "occurred_at": line["occurred_at"],
               "actor_type": line["actor"]["type"], "actor_id": line["actor"]["id"],
               "resource_type": line["resource"]["type"],
               "resource_id": line["resource"]["id"], "ip": line["ip"],
               "user_agent": line["user_agent"], "request_id": line["request_id"],
               "data": line["data"]}
        assert bytes.fromhex(line["prev_hash"]) == head
        head = hashlib.sha256(head + chain.canonical(row)).digest()
        assert head.hex() == line["hash"]
    assert len(lines) >= 2


async def test_verification_catches_an_edit_made_around_the_trigger(
    suite: Suite, audit: Audit, admin: asyncpg.Connection
) -> None:
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    found = await audit.events_until(org, token, lambda evs: len(evs) >= 3)
    status, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert status == 200 and result["ok"] is True and result["checked"] >= 3
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await admin.execute("update audit.audit_events set type = 'x' where org_id = $1",
                            uuid.UUID(org))
    target = found[1]["seq"]
    async with admin.transaction():
        await admin.execute("set local session_replication_role = replica")  # around triggers
        await admin.execute("update audit.audit_events set actor_id = 'someone-else'"
                            " where org_id = $1 and seq = $2", uuid.UUID(org), target)
    status, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == target
    assert "content was changed" in result["first_broken"]["reason"]


async def test_a_forged_checkpoint_is_caught(suite: Suite, audit: Audit,
                                             admin: asyncpg.Connection) -> None:
    _, org, token = await org_with_log(suite, audit)
    await checkpoint_heads(audit.pool, audit.master)
    status, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert status == 200 and result["ok"] is True
    assert await admin.fetchval("select count(*) from audit.checkpoints where org_id = $1",
                                uuid.UUID(org)) == 1
    await admin.execute("update audit.checkpoints set signature = $2 where org_id = $1",
                        uuid.UUID(org), bytes(64))
    _, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert result["ok"] is False and "signature" in result["first_broken"]["reason"]


async def test_forged_messages_are_quarantined_with_their_reason(
    suite: Suite, audit: Audit, infra: Infra, admin: asyncpg.Connection
) -> None:
    nc = await nats_connect(infra.nats_url, "forger")
    marker = f"forged-{uuid.uuid4().hex}"
    event = events.new_event("org.updated", actor=events.Actor("user", marker),
                             resource=events.Resource("org", "x"), org_id=str(uuid.uuid4()))
    body = events.encode(event)
    wrong_key = xut.KeyRing({"k1": b"f" * 32}, "k1")
    token = xut.sign(wrong_key, xut.Identity(sub=f"user:{marker}", org=event.org_id),
                     issuer="tenant-api", audience=events.EVENTS_AUDIENCE, body=body)
    await nc.jetstream().publish("argus.events.tenant-api.org.updated", body,
                                 headers={xut.HEADER: token})
    await nc.close()
    reason = await quarantine_reason(admin, marker)
    assert reason is not None and reason.startswith("token_")


async def quarantine_reason(admin: asyncpg.Connection, marker: str) -> str | None:
    """Why the message carrying `marker` was quarantined (waiting up to 10 s for it)."""
    for _ in range(100):
        reason = await admin.fetchval("select reason from audit.quarantine"
                                      " where position($1::bytea in payload) > 0",
                                      marker.encode())
        if reason is not None:
            return reason
        await asyncio.sleep(0.1)
    return None


async def test_an_event_delivered_twice_is_stored_once(suite: Suite, audit: Audit,
                                                       infra: Infra) -> None:
    owner, org, token = await org_with_log(suite, audit)
    keys = audit.settings.xut_keys
    event = events.new_event("project.renamed", actor=events.Actor("user", owner.id),
                             resource=events.Resource("project", "p"), org_id=org)
    body = events.encode(event)
    nc = await nats_connect(infra.nats_url, "twice")
    for attempt in range(2):  # different message ids: the stream keeps both copies
        header = xut.sign(keys, xut.Identity(sub=f"user:{owner.id}", org=org),
                          issuer="tenant-api", audience=events.EVENTS_AUDIENCE, body=body)
        await nc.jetstream().publish("argus.events.tenant-api.project.renamed", body,
                                     headers={xut.HEADER: header,
                                              "Nats-Msg-Id": f"{event.id}-{attempt}"})
    await nc.close()
    await audit.events_until(org, token, lambda evs: any(
        e["type"] == "project.renamed" for e in evs))
    await asyncio.sleep(1)  # time for the second copy to be consumed
    found = await audit.events_until(org, token, lambda evs: True)
    assert [e["event_id"] for e in found].count(event.id) == 1


async def publish_signed(audit: Audit, infra: Infra, event: events.Event, sub: str,
                         org: str, msg_id: str | None = None) -> None:
    body = events.encode(event)
    header = xut.sign(audit.settings.xut_keys, xut.Identity(sub=sub, org=org),
                      issuer="tenant-api", audience=events.EVENTS_AUDIENCE, body=body)
    nc = await nats_connect(infra.nats_url, "publisher")
    await nc.jetstream().publish(f"argus.events.tenant-api.{event.type}", body,
                                 headers={xut.HEADER: header, "Nats-Msg-Id": msg_id or event.id})
    await nc.close()


async def test_awkward_data_is_stored_as_hashed_and_verifies(
    suite: Suite, audit: Audit, infra: Infra, admin: asyncpg.Connection
) -> None:
    # numbers jsonb would rewrite, a NUL it would refuse, ids spelled in capitals
    owner, org, token = await org_with_log(suite, audit)
    data = {"big": 1e16, "negative_zero": -0.0, "tiny": 5e-324, "huge_int": 2**70,
            "nul": "a\u0000b", "line": "\u2028☃", "nested": {"b": [1.50, None], "a": True}}
    event = events.new_event("project.tagged", actor=events.Actor("user", owner.id),
                             resource=events.Resource("project", "p"), org_id=org, data=data)
    event.id, event.org_id = event.id.upper(), org.upper()
    await publish_signed(audit, infra, event, f"user:{owner.id}", org.upper())
    # a NUL where a text column has to hold it: refused with a reason, not retried for ever
    unstorable = events.new_event("project.tagged", actor=events.Actor("user", "a\u0000b"),
                                  resource=events.Resource("project", "p"), org_id=org)
    await publish_signed(audit, infra, unstorable, f"user:{owner.id}", org)
    found = await audit.events_until(org, token, lambda evs: any(
        e["type"] == "project.tagged" for e in evs))
    stored = next(e for e in found if e["type"] == "project.tagged")
    assert stored["event_id"] == event.id.lower()
    assert stored["data"] == data and str(stored["data"]["negative_zero"]) == "-0.0"
    status, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert status == 200 and result["ok"] is True, result
    reason = await quarantine_reason(admin, unstorable.id)
    assert reason == "unstorable: NUL character in a text field"
    _, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert result["ok"] is True and unstorable.id not in str(await audit.events_until(
        org, token, lambda evs: True))


async def test_an_event_id_stored_in_another_org_is_refused_not_dropped(
    suite: Suite, audit: Audit, infra: Infra, admin: asyncpg.Connection
) -> None:
    owner, org, _ = await org_with_log(suite, audit)
    other = str(uuid.uuid4())
    first = events.new_event("project.tagged", actor=events.Actor("user", owner.id),
                             resource=events.Resource("project", "p"), org_id=other)
    await publish_signed(audit, infra, first, "system:x", other)
    copy = events.Event(**{**msgspec.structs.asdict(first), "org_id": org})
    await publish_signed(audit, infra, copy, f"user:{owner.id}", org, msg_id="copy")
    assert await quarantine_reason(admin, f'"org_id":"{org}"') == \
        "duplicate_id: stored in another org's chain"
    stored = await admin.fetch("select org_id from audit.audit_events where event_id = $1",
                               uuid.UUID(first.id))
    assert [str(row["org_id"]) for row in stored] == [other]


async def test_the_database_refuses_rows_that_do_not_continue_their_chain(
    audit: Audit, admin: asyncpg.Connection
) -> None:
    """The runtime role's append path holds the linking rule itself: the next seq, and the
    previous link's hash."""
    org = str(uuid.uuid4())

    async def append(seq_step: int, prev: bytes | None) -> None:
        event = events.new_event("project.tagged", actor=events.Actor("user", "u"),
                                 resource=events.Resource("project", "p"), org_id=org)
        async with audit.pool.acquire() as conn, conn.transaction():
            (head,) = await queries.lock_chains(conn, [org], [event.id])
            row = ingest.row_of(event, org, head["seq"] + seq_step,
                                 datetime.now(UTC).isoformat())
            prev = bytes(head["hash"]) if prev is None else prev
            row["prev_hash"] = queries.bytea_text(prev)
            row["hash"] = queries.bytea_text(chain.link(prev, row))
            row["data"] = queries.json_text(event.data)
            await queries.append(conn, [org], [row])

    for seq_step, prev in ((2, None), (1, b"\x01" * 32), (0, None)):
        with pytest.raises(asyncpg.CheckViolationError, match="do not continue their chain"):
            await append(seq_step, prev)
    assert await admin.fetchval("select count(*) from audit.audit_events where org_id = $1",
                                uuid.UUID(org)) == 0
    await append(1, None)
    await append(1, None)
    assert await admin.fetchval("select max(seq) from audit.audit_events where org_id = $1",
                                uuid.UUID(org)) == 2


def test_the_canonical_form_is_sorted_compact_json() -> None:
    """The documented format a SIEM rebuilds: json.dumps(sort_keys, compact, ensure_ascii off)
    of the stored values, whichever way the row was read."""
    tricky = ['x"\\\n\x00é', "\u2028", "☃", "", "\x7f"]
    for text in tricky:
        row = {"event_id": uuid.uuid4(), "org_id": str(uuid.uuid4()), "seq": 7,
               "type": "a.b", "actor_type": "user", "actor_id": text,
               "resource_type": text, "resource_id": "1", "ip": None, "user_agent": text,
               "request_id": None,
               "occurred_at": datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=3))),
               "data": {"z": 1e16, text: [-0.0, None, True, {"b": 2**70, "a": text}]}}
        document = {"event_id": str(row["event_id"]), "org_id": row["org_id"], "seq": 7,
                    "type": "a.b", "occurred_at": "2026-05-01T09:00:00.000000+00:00",
                    "actor": ["user", text], "resource": [text, "1"], "ip": None,
                    "user_agent": text, "request_id": None, "data": row["data"]}
        assert chain.canonical(row) == json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def test_retention_removes_old_events_and_verification_still_holds(
    suite: Suite, audit: Audit, admin: asyncpg.Connection, database_url: str,
    owner_password: str,
) -> None:
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    found = await audit.events_until(org, token, lambda evs: len(evs) >= 3)
    await admin.execute("select audit.ensure_partitions(now() - interval '4 months', 4)")
    async with admin.transaction():  # age the first two events past the free plan's 90 days
        await admin.execute("set local session_replication_role = replica")
        await admin.execute(
            "update audit.audit_events set received_at = now() - interval '100 days'"
            " where org_id = $1 and seq <= 2", uuid.UUID(org))
    conn = await connect(database_url, OWNER_ROLE, owner_password)
    try:
        removed = await prune(conn, audit.master)
    finally:
        await conn.close()
    assert removed[org] == 2
    _status, result = await audit.get(f"/orgs/{org}/audit/verify", token)
    assert result["ok"] is True, result
    _, body = await audit.get(f"/orgs/{org}/audit/events", token)
    assert body["events"][0]["seq"] == 3 and found[0]["seq"] == 1
    with pytest.raises(asyncpg.PostgresError):  # nobody else gets around the trigger
        await admin.execute("delete from audit.audit_events where org_id = $1", uuid.UUID(org))



def test_the_prune_command_runs_as_the_owner(stack: Any) -> None:
    from support.processes import run_to_exit, service_command

    code, output = run_to_exit([*service_command("audit"), "prune"],
                               stack.service_environment("audit"))
    assert code == 0, output
    assert output.startswith("pruned ")


async def test_ingest_metrics_are_exported(suite: Suite, audit: Audit) -> None:
    await org_with_log(suite, audit)
    async with suite.http.get(f"{audit.base}/metrics") as response:
        text = await response.text()
    ingested = [line for line in text.splitlines()
                if line.startswith("argus_audit_events_ingested_total ")]
    assert ingested and float(ingested[0].split()[1]) >= 1
    for name in ("argus_audit_events_quarantined_total", "argus_audit_batch_seconds_bucket",
                 "argus_audit_consumer_pending"):
        assert name in text or name.removesuffix("_total") in text
