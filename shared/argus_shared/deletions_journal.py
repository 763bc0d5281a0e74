"""Deletions kept outside the restored timeline: `<archive>/deletions.jsonl`, appended by the WAL
sealer as it sees them in the database. One line per event, by kind:

- `user`: a "delete my account" request (tenant-api's `user_deletions`: user id, when);
- `org`: an org deleted (tenant-api's `orgs.deleted_at`), and again once purged (`purged_at`).

A restore to any earlier moment re-applies each one before the restored suite starts. A user:
auth's user row goes (its sessions, tokens and factors with it), the memberships go, and the
request is recorded again, due now, so the restored purge job drives audit, webhooks and files
as the first time. An org: marked deleted again (so no member reaches it), its API keys gone,
its files crypto-shredded (their rows, holding the wrapped data keys, deleted, and the bytes
removed from the restored object store), purged if it had been, and `org.deleted` queued again
in tenant-api's outbox so every restored service does its share once more.

Every line is authenticated: an HMAC-SHA256, under a key derived from the master key ring
(`backup_seal.derived_key`, purpose "deletions-journal"), over the line's fields and the MAC of
the line before it, so a changed, inserted, removed or reordered line is refused (only lines
cut off the end are not detectable from the file itself). A journal that does not authenticate
stops the restore, with one line saying where.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from argus_shared.backup_seal import BackupSealError, derived_key
from argus_shared.settings import KeyRing

JOURNAL = "deletions.jsonl"
PURPOSE = b"deletions-journal"
USERS = "select user_id, requested_at from tenant_api.user_deletions order by requested_at"
ORGS = ("select org_id, deleted_at, purged_at from tenant_api.orgs where deleted_at is not null"
        " order by deleted_at")


class JournalError(BackupSealError):
    """The deletions journal does not authenticate; the message is one line."""


@dataclass
class Journal:
    users: dict[str, str]  # user id -> when its deletion was requested
    orgs: dict[str, tuple[str, str | None]]  # org id -> (deleted at, purged at)
    last_mac: str


def _body(entry: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":")).encode()


def _mac(keys: KeyRing, kid: str, previous: str, entry: dict[str, Any]) -> str:
    key = derived_key(keys, kid, PURPOSE)
    return hmac.new(key, previous.encode() + b"\n" + _body(entry), hashlib.sha256).hexdigest()


def _entry(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        raise JournalError(f"{path} line {number} is not JSON") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("mac"), str) or \
            not isinstance(entry.get("kid"), str):
        raise JournalError(f"{path} line {number} is not authenticated (no kid and mac)")
    return entry


def read_journal(keys: KeyRing, archive: Path) -> Journal:
    """The journal, every line authenticated in order; JournalError otherwise."""
    path = archive / JOURNAL
    journal = Journal({}, {}, "")
    if not path.exists():
        return journal
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = _entry(path, number, line)
        try:
            expected = _mac(keys, entry["kid"], journal.last_mac, entry)
        except BackupSealError as exc:
            raise JournalError(f"{path} line {number}: {exc}") from None
        if not hmac.compare_digest(expected, entry["mac"]):
            raise JournalError(f"{path} line {number} fails authentication: a line was "
                               "changed, added, removed or reordered")
        _apply(journal, entry)
        journal.last_mac = entry["mac"]
    return journal


def _apply(journal: Journal, entry: dict[str, Any]) -> None:
    if entry.get("kind") == "org":
        journal.orgs[entry["org_id"]] = (entry["deleted_at"], entry.get("purged_at"))
    else:
        journal.users[entry["user_id"]] = entry["requested_at"]


def _new_entries(journal: Journal, users: list[asyncpg.Record],
                 orgs: list[asyncpg.Record]) -> list[dict[str, Any]]:
    new: list[dict[str, Any]] = [
        {"kind": "user", "user_id": str(r["user_id"]),
         "requested_at": r["requested_at"].isoformat()}
        for r in users if str(r["user_id"]) not in journal.users]
    for row in orgs:
        purged = row["purged_at"].isoformat() if row["purged_at"] else None
        known = journal.orgs.get(str(row["org_id"]))
        if known is None or (purged and not known[1]):
            new.append({"kind": "org", "org_id": str(row["org_id"]),
                        "deleted_at": row["deleted_at"].isoformat(), "purged_at": purged})
    return new


async def capture(keys: KeyRing, admin_url: str, archive: Path) -> int:
    """Append the deletions not yet in the journal: how many."""
    journal = read_journal(keys, archive)
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        new = _new_entries(journal, await conn.fetch(USERS), await conn.fetch(ORGS))
    finally:
        await conn.close()
    if new:
        previous = journal.last_mac
        with (archive / JOURNAL).open("a") as out:
            for entry in new:
                entry["kid"] = keys.current
                entry["mac"] = previous = _mac(keys, keys.current, previous, entry)
                out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
    return len(new)


async def _reapply_user(conn: asyncpg.Connection, user_id: str, requested_at: str) -> bool:
    if await conn.fetchval("select 1 from tenant_api.user_deletions where user_id = $1",
                           user_id):
        return False
    async with conn.transaction():
        await conn.execute("delete from tenant_api.memberships where user_id = $1", user_id)
        await conn.execute("delete from auth.users where id = $1", user_id)
        done = json.dumps({"tenant-api": requested_at, "auth": requested_at})
        await conn.execute(
            "insert into tenant_api.user_deletions (user_id, requested_at, due_at,"
            " confirmations) values ($1, $2::text::timestamptz, now(), $3::jsonb)",
            user_id, requested_at, done)
    return True


async def _reapply_org(conn: asyncpg.Connection, org_id: str, deleted_at: str,
                       purged_at: str | None, files_dir: Path | None) -> bool:
    row = await conn.fetchrow("select deleted_at, purged_at from tenant_api.orgs"
                              " where org_id = $1", org_id)
    if row is None or (row["deleted_at"] and (row["purged_at"] or not purged_at)):
        return False  # not there yet, or already as deleted (and purged) as journaled
    async with conn.transaction():
        await conn.execute("update tenant_api.orgs set deleted_at = coalesce(deleted_at,"
                           " $2::text::timestamptz) where org_id = $1", org_id, deleted_at)
        await conn.execute("delete from auth.api_keys where org_id = $1", org_id)
        await conn.execute("delete from files.objects where org_id = $1", org_id)
        if purged_at:
            for table in ("invitations", "memberships", "projects"):
                await conn.execute(f"delete from tenant_api.{table} where org_id = $1", org_id)
            await conn.execute(
                "update tenant_api.orgs set purged_at = $2::text::timestamptz, name = 'deleted',"
                " slug = 'deleted-' || replace(org_id::text, '-', '') where org_id = $1",
                org_id, purged_at)
        await _queue_org_deleted(conn, org_id, deleted_at)
    if files_dir is not None:
        shutil.rmtree(files_dir / org_id, ignore_errors=True)
    return True


async def _queue_org_deleted(conn: asyncpg.Connection, org_id: str, deleted_at: str) -> None:
    from datetime import datetime, timedelta

    from argus_shared.event_types import ORG_DELETED, emitted_by
    from argus_shared.outbox import Ctx, prepare, request_event

    emitted_by(ORG_DELETED, "tenant-api")
    purge_by = datetime.fromisoformat(deleted_at) + timedelta(days=7)
    event = request_event(Ctx(request_id=None), ORG_DELETED, actor=("service", "tenant-api"),
                          resource=("org", org_id), org_id=org_id,
                          data={"purge_by": purge_by.isoformat()})
    row = prepare("tenant-api", event)
    await conn.execute(
        "insert into tenant_api.outbox (id, subject, org_id, payload, headers)"
        " values ($1, $2, $3, $4, $5::text::jsonb)",
        row.id, row.subject, row.org_id, row.payload, json.dumps(row.headers))


async def reapply(conn: asyncpg.Connection, journal: Journal,
                  files_dir: Path | None = None) -> tuple[int, int]:
    """Re-apply every journaled deletion the restored database does not have: (users, orgs)."""
    users = orgs = 0
    for user_id, requested_at in journal.users.items():
        users += await _reapply_user(conn, user_id, requested_at)
    for org_id, (deleted_at, purged_at) in journal.orgs.items():
        orgs += await _reapply_org(conn, org_id, deleted_at, purged_at, files_dir)
    return users, orgs
