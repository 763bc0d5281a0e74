"""Deletions kept outside the restored timeline: `<archive>/deletions.jsonl`, one line per
"delete my account" request (user id, when), appended by the WAL sealer as it sees new rows in
tenant-api's `user_deletions`. A restore to any earlier moment re-applies each one before the
restored suite starts: auth's user row goes (its sessions, tokens and factors with it), the
memberships go, and the request is recorded again, due now, so the restored purge job drives
audit, webhooks and files to purge as they did the first time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg

JOURNAL = "deletions.jsonl"


def journaled(archive: Path) -> dict[str, str]:
    """User id -> when its deletion was requested."""
    path = archive / JOURNAL
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {line["user_id"]: line["requested_at"] for line in lines}


async def capture(admin_url: str, archive: Path) -> int:
    """Append the deletion requests not yet in the journal: how many."""
    known = journaled(archive)
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        rows = await conn.fetch("select user_id, requested_at from tenant_api.user_deletions"
                                " order by requested_at")
    finally:
        await conn.close()
    new = [r for r in rows if str(r["user_id"]) not in known]
    if new:
        with (archive / JOURNAL).open("a") as journal:
            for row in new:
                journal.write(json.dumps({"user_id": str(row["user_id"]),
                                          "requested_at": row["requested_at"].isoformat()})
                              + "\n")
            journal.flush()
            os.fsync(journal.fileno())
    return len(new)


async def reapply(conn: asyncpg.Connection, archive: Path) -> int:
    """Re-apply every journaled deletion the restored database does not have: how many."""
    applied = 0
    for user_id, requested_at in journaled(archive).items():
        if await conn.fetchval("select 1 from tenant_api.user_deletions where user_id = $1",
                               user_id):
            continue
        async with conn.transaction():
            await conn.execute("delete from tenant_api.memberships where user_id = $1", user_id)
            await conn.execute("delete from auth.users where id = $1", user_id)
            done = json.dumps({"tenant-api": requested_at, "auth": requested_at})
            await conn.execute(
                "insert into tenant_api.user_deletions (user_id, requested_at, due_at,"
                " confirmations) values ($1, $2::text::timestamptz, now(), $3::jsonb)",
                user_id, requested_at, done)
        applied += 1
    return applied
