"""Recompute a chain from its start (or its last retention checkpoint) and name the first link
that does not hold: a gap in the sequence, a previous-hash that does not match, a row whose
content no longer gives its hash, or a checkpoint whose signature or hash is wrong."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from argus_audit import chain, queries
from argus_shared import db
from argus_shared.settings import KeyRing


async def verify_chain(pool: asyncpg.Pool, master: KeyRing, org_id: UUID) -> dict[str, Any]:
    async with db.tenant_tx(pool, org_id) as conn:
        start = await queries.retention_checkpoint(conn, org_id)
        marks = {row["seq"]: row for row in await queries.checkpoints(conn, org_id)}
        seq, head = (start["seq"], bytes(start["hash"])) if start else (0, chain.GENESIS)
        if start is not None and not _signed(master, org_id, start):
            return broken(start["seq"], "the retention checkpoint's signature is not valid", 0)
        checked = 0
        async for row in conn.cursor(queries.CHAIN, org_id, seq, prefetch=500):
            problem = _check(row, seq, head)
            if problem is None and row["seq"] in marks:
                problem = _check_mark(master, org_id, row, marks[row["seq"]])
            if problem:
                return broken(row["seq"], problem, checked)
            seq, head = row["seq"], bytes(row["hash"])
            checked += 1
    return {"ok": True, "checked": checked, "head_seq": seq, "head_hash": head.hex()}


def _check(row: asyncpg.Record, seq: int, head: bytes) -> str | None:
    if row["seq"] != seq + 1:
        return f"sequence gap: expected {seq + 1}"
    if bytes(row["prev_hash"]) != head:
        return "previous hash does not match the link before it"
    if chain.link(head, row) != bytes(row["hash"]):
        return "the stored event does not match its hash (content was changed)"
    return None


def _check_mark(master: KeyRing, org_id: UUID, row: asyncpg.Record,
                mark: asyncpg.Record) -> str | None:
    if bytes(mark["hash"]) != bytes(row["hash"]):
        return "a signed checkpoint records another hash for this link"
    if not _signed(master, org_id, mark):
        return "a checkpoint's signature is not valid"
    return None


def _signed(master: KeyRing, org_id: UUID, mark: asyncpg.Record) -> bool:
    if mark["kid"] not in master.keys:
        return False
    _, key = chain.signing_key(master, mark["kid"])
    return chain.signature_ok(key.public_key(), org_id, mark["seq"], bytes(mark["hash"]),
                              bytes(mark["signature"]))


def broken(seq: int, reason: str, checked: int) -> dict[str, Any]:
    return {"ok": False, "checked": checked, "first_broken": {"seq": seq, "reason": reason}}
