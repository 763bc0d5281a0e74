"""What `argus drill` checks on a restored copy, in two rounds.

Before the suite starts (`prepare`, the restored cluster on its own): the migrations the backup
holds against the code's (names and checksums), the outbox events the restored relays must
publish again, a sample of stored files, and one throw-away API key per live org (audit:read,
files:read; only ever in the drill's copy, valid one hour) for the suite's own APIs.

While the drill suite runs (`served`): every audit chain recomputed from the database with the
audit service's own verifier (sequence, hashes, and each signed checkpoint's hash and Ed25519
signature under the restored master keys), every live org's chain once more through the audit
API, the sampled files downloaded through the files API and hashed against their stored SHA-256
(the service decrypts them under the restored keys), every wallet's balance against the sum of
its ledger, and every outbox event published and arrived in the audit trail (stored, or at
least quarantined with its reason: never silently missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import asyncpg

from argus_shared import db
from argus_shared.access import API_KEY_PREFIX
from argus_shared.cli.infra import without_credentials
from argus_shared.events import SUBJECT_PREFIX
from argus_shared.migrate import migrations_for
from argus_shared.runner import package_of
from argus_shared.settings import SERVICES, KeyRing, schema_of

DRILL_SCOPES = ["audit:read", "files:read"]
ARRIVAL_TIMEOUT = 90.0
UNBALANCED = """
select count(*) from tenant_api.wallets w
left join (select org_id, sum(amount_cents) as total from tenant_api.ledger_entries
           group by org_id) l using (org_id)
where w.balance_cents <> coalesce(l.total, 0)"""
SAMPLE = """
select org_id, owner_id, id, sha256 from files.objects
where status = 'stored' and org_id = any($1::uuid[]) order by random() limit $2"""


@dataclass
class Prepared:
    migrations_at_head: dict[str, bool]
    keys: dict[str, str]  # live org id -> a drill API key
    files: list[dict[str, str]]  # org_id, owner_id, id, sha256 (hex)
    events: list[str]  # ids of the outbox events on ARGUS_EVENTS
    failures: list[str] = field(default_factory=list)


async def _migrations(conn: asyncpg.Connection) -> dict[str, bool]:
    at_head = {}
    for service in SERVICES:
        rows = await conn.fetch(f'select name, checksum from "{schema_of(service)}"'
                                ".schema_migrations")
        wanted = {(m.name, m.checksum) for m in migrations_for(package_of(service))}
        at_head[service] = {(r["name"], r["checksum"]) for r in rows} == wanted
    return at_head


async def _drill_key(conn: asyncpg.Connection, org_id: str) -> str:
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "insert into auth.api_keys (org_id, id, project_id, name, prefix, key_hash, scopes,"
        " created_by, expires_at) values ($1, $2, $3, 'argus drill', $4, $5, $6, $7,"
        " now() + interval '1 hour')",
        org_id, uuid.uuid4(), uuid.uuid4(), secret[:14],
        hashlib.sha256(secret.encode()).digest(), DRILL_SCOPES, uuid.uuid4())
    return secret


async def _outbox_events(conn: asyncpg.Connection) -> list[str]:
    ids: list[str] = []
    for service in SERVICES:
        rows = await conn.fetch(f'select id from "{schema_of(service)}".outbox'
                                " where subject like $1", SUBJECT_PREFIX + ".%")
        ids.extend(str(r["id"]) for r in rows)
    return ids


async def prepare(admin_url: str, sample: int) -> Prepared:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        orgs = [str(r["org_id"]) for r in await conn.fetch(
            "select org_id from tenant_api.orgs where deleted_at is null")]
        keys = {org: await _drill_key(conn, org) for org in orgs}
        files = [{"org_id": str(r["org_id"]), "owner_id": str(r["owner_id"]),
                  "id": str(r["id"]), "sha256": bytes(r["sha256"]).hex()}
                 for r in await conn.fetch(SAMPLE, orgs, sample)]
        return Prepared(await _migrations(conn), keys, files, await _outbox_events(conn))
    finally:
        await conn.close()


async def _chains(admin_url: str, master: KeyRing) -> dict[str, Any]:
    from argus_audit.verify import verify_chain

    parts = urlsplit(admin_url)  # the audit service's own pool set-up (JSON codecs, zone)
    pool = await db.create_pool(without_credentials(admin_url), str(parts.username),
                                unquote(parts.password or ""), schema="audit", max_size=2)
    try:
        async with pool.acquire() as conn:
            orgs = [r["org_id"] for r in await conn.fetch("select org_id from chain_heads")]
            marks = await conn.fetchval("select count(*) from checkpoints")
        broken = {}
        events = 0
        for org_id in orgs:
            result = await verify_chain(pool, master, org_id)
            if not result["ok"]:
                broken[str(org_id)] = result["first_broken"]
            events += result["checked"]
        return {"chains": len(orgs), "events_checked": events, "signed_checkpoints": marks,
                "broken": broken}
    finally:
        await pool.close()


async def _api_chains(http: aiohttp.ClientSession, gateway: str,
                      keys: dict[str, str]) -> dict[str, str]:
    """Live orgs whose chain the audit API does not call whole: org -> why."""
    problems = {}
    for org_id, key in keys.items():
        async with http.get(f"{gateway}/audit/orgs/{org_id}/audit/verify",
                            headers={"X-API-Key": key}) as answer:
            body = await answer.json(content_type=None)
        if answer.status != 200 or not body.get("ok"):
            problems[org_id] = f"{answer.status} {body.get('first_broken') or body}"
    return problems


async def _files(http: aiohttp.ClientSession, gateway: str, keys: dict[str, str],
                 files: list[dict[str, str]]) -> dict[str, Any]:
    failed = {}
    for item in files:
        path = f"/files/objects/{item['org_id']}/{item['owner_id']}/{item['id']}"
        digest = hashlib.sha256()
        async with http.get(gateway + path, headers={"X-API-Key": keys[item["org_id"]]}) as got:
            async for chunk in got.content.iter_chunked(1 << 16):
                digest.update(chunk)
        if got.status != 200:
            failed[item["id"]] = f"download answered {got.status}"
        elif digest.hexdigest() != item["sha256"]:
            failed[item["id"]] = "the downloaded bytes do not match the stored SHA-256"
    return {"sampled": len(files), "failed": failed}


async def _missing(conn: asyncpg.Connection, ids: list[str]) -> tuple[list[str], list[str]]:
    """(events neither stored nor quarantined, events quarantined)."""
    absent = [str(r["id"]) for r in await conn.fetch(
        "select i.id from unnest($1::uuid[]) as i(id) where not exists"
        " (select 1 from audit.seen_events s where s.event_id = i.id)", ids)]
    quarantined = [i for i in absent if await conn.fetchval(
        "select 1 from audit.quarantine where position(convert_to($1, 'UTF8') in payload) > 0",
        i)]
    return [i for i in absent if i not in quarantined], quarantined


async def _unsent(conn: asyncpg.Connection) -> int:
    total = 0
    for service in SERVICES:
        total += await conn.fetchval(
            f'select count(*) from "{schema_of(service)}".outbox where sent_at is null')
    return int(total)


async def _outbox(admin_url: str, ids: list[str], seconds: float) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        deadline = time.monotonic() + seconds
        while True:
            unsent = await _unsent(conn)
            lost, quarantined = await _missing(conn, ids)
            if (not lost and not unsent) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        return {"events": len(ids), "unsent": unsent, "lost": lost,
                "quarantined": quarantined, "wallets_unbalanced": await conn.fetchval(UNBALANCED)}
    finally:
        await conn.close()


async def served(admin_url: str, gateway: str, master: KeyRing, prepared: Prepared,
                 arrival_timeout: float = ARRIVAL_TIMEOUT) -> dict[str, Any]:
    """The checks made while the drill suite serves; `prepared.failures` gets what failed."""
    outbox = await _outbox(admin_url, prepared.events, arrival_timeout)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = await _api_chains(http, gateway, prepared.keys)
        files = await _files(http, gateway, prepared.keys, prepared.files)
    chains = await _chains(admin_url, master)
    chains["api_refused"] = api
    wallets = outbox.pop("wallets_unbalanced")
    failures = prepared.failures
    failures += [f"migrations of {s} are not at head"
                 for s, ok in prepared.migrations_at_head.items() if not ok]
    failures += [f"audit chain of org {org} broken at seq {b['seq']}: {b['reason']}"
                 for org, b in chains["broken"].items()]
    failures += [f"audit API verify of org {org}: {why}" for org, why in api.items()]
    failures += [f"file {obj}: {why}" for obj, why in files["failed"].items()]
    failures += [f"{wallets} wallets do not reconcile"] if wallets else []
    failures += [f"{len(outbox['lost'])} outbox events never arrived"] if outbox["lost"] else []
    failures += [f"{outbox['unsent']} outbox events not published"] if outbox["unsent"] else []
    return {"migrations_at_head": prepared.migrations_at_head, "audit": chains, "files": files,
            "wallets_unbalanced": wallets, "outbox": outbox}
