"""The wallet: append-only ledger entries in integer cents, the balance moved in the same
transaction, every money POST behind an Idempotency-Key, large charges behind step-up, and a
reconciliation that proves balance = sum(entries) for every org."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any, NamedTuple

import asyncpg
import msgspec
from prometheus_client import Gauge

from argus_shared.errors import Problem
from argus_shared.event_types import WALLET_CHARGE, WALLET_DEPOSIT, WALLET_MISMATCH
from argus_shared.outbox import Ctx, record
from argus_tenant_api import SERVICE, queries
from argus_tenant_api.scope import Scope, require_step_up

log = logging.getLogger("argus.tenant_api.wallet")


JSON = "application/json"


class Fingerprint(NamedTuple):
    """What an Idempotency-Key is compared on: SHA-256 of the endpoint and the request."""
    canonical: bytes  # over the canonical form of the parsed request: what rows store
    raw: bytes  # over the body as sent: what rows stored before 0006


class Answer(NamedTuple):
    """A stored first answer, replayed as it was sent."""
    status: int
    body: bytes
    content_type: str


def canonical(parsed: msgspec.Struct) -> bytes:
    """The request's meaning as bytes: the validated struct re-encoded as compact JSON with its
    fields sorted and defaults filled in, so key order, whitespace, string escapes and an
    omitted default (`"description": ""`) do not change it. Numbers are the parsed integers
    (`1e2` or `100.0` never get here: they are not integers and are refused with a 422)."""
    return msgspec.json.encode(parsed, order="sorted")


def request_hash(endpoint: str, request: bytes) -> bytes:
    return hashlib.sha256(endpoint.encode() + b"\n" + request).digest()


def fingerprint(endpoint: str, raw: bytes, parsed: msgspec.Struct) -> Fingerprint:
    return Fingerprint(request_hash(endpoint, canonical(parsed)), request_hash(endpoint, raw))


def same_request(stored: queries.Row, request: Fingerprint) -> bool:
    digest = bytes(stored["request_hash"])
    if stored["response_body"] is None:  # stored before 0006: hashed over the body as sent
        return digest in (request.canonical, request.raw)
    return digest == request.canonical


def stored_answer(stored: queries.Row) -> Answer:
    if stored["response_body"] is None:  # stored before 0006: re-encoded, as it always was
        return Answer(stored["status"], msgspec.json.encode(stored["response"]), JSON)
    return Answer(stored["status"], bytes(stored["response_body"]), stored["content_type"])


async def replayed(conn: queries.Conn, scope: Scope, endpoint: str, key: str,
                   request: Fingerprint) -> Answer | None:
    """The stored answer for a replayed key (the key is the org's, on this endpoint); refused
    when the key came with a request of another meaning."""
    await queries.lock_idempotency(conn, scope.org_id, endpoint, key)
    stored = await queries.idempotency(conn, scope.org_id, endpoint, key)
    if stored is None:
        return None
    if not same_request(stored, request):
        raise Problem(422, "this Idempotency-Key was already used on this endpoint with a"
                      " different request (compared as parsed: key order and whitespace do not"
                      " matter); send a new key for a new request",
                      title="Idempotency-Key reused")
    return stored_answer(stored)


def check_step_up(scope: Scope, cents: int, threshold: int, now: float) -> None:
    if cents > threshold:
        require_step_up(scope.principal, now, f"a charge above {threshold / 100:.2f}")


async def move(conn: queries.Conn, scope: Scope, kind: str, cents: int, description: str,
               ctx: Ctx) -> dict[str, Any]:
    signed = cents if kind == "deposit" else -cents
    wallet = await queries.wallet_for_update(conn, scope.org_id)
    if wallet is None:
        raise Problem(404, "not found")
    if kind == "charge" and wallet["balance_cents"] + signed < 0:
        raise Problem(409, "insufficient balance", title="Insufficient balance",
                      balance_cents=wallet["balance_cents"])
    entry = await queries.insert_entry(conn, {
        "org_id": scope.org_id, "id": uuid.uuid4(), "kind": kind, "amount_cents": signed,
        "description": description, "actor": ":".join(scope.actor)})
    balance = await queries.add_to_balance(conn, scope.org_id, signed)
    event_type = WALLET_DEPOSIT if kind == "deposit" else WALLET_CHARGE
    await record(conn, SERVICE, ctx, event_type, actor=scope.actor,
                 resource=("ledger_entry", str(entry["id"])), org_id=scope.org_id,
                 data={"amount_cents": signed, "balance_cents": balance})
    return {"entry": entry_view(entry), "balance_cents": balance}


def entry_view(row: queries.Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "kind": row["kind"], "amount_cents": row["amount_cents"],
            "description": row["description"], "actor": row["actor"],
            "created_at": row["created_at"].isoformat()}


def encode_cursor(row: queries.Row) -> str:
    return msgspec.json.encode([row["created_at"].isoformat(), str(row["id"])]).hex()


def decode_cursor(cursor: str) -> tuple[Any, uuid.UUID]:
    from datetime import datetime

    try:
        created, entry_id = msgspec.json.decode(bytes.fromhex(cursor))
        return datetime.fromisoformat(created), uuid.UUID(entry_id)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise Problem(400, "the cursor is not valid", title="Bad cursor") from None


class Reconciler:
    """Proves balance = sum(entries) for every org; a mismatch raises a metric and an event."""

    def __init__(self, pool: asyncpg.Pool, registry: Any) -> None:
        self.pool = pool
        self.mismatches = Gauge("argus_wallet_mismatches",
                                "Wallets whose balance differs from the sum of their entries",
                                registry=registry)
        self.last_run = Gauge("argus_wallet_reconciled_timestamp_seconds",
                              "When reconciliation last finished (until then, when the "
                              "process started)", registry=registry)
        # The staleness alert counts from start: a process that never reconciles fires it an
        # hour in, and a fresh one does not fire it at once.
        self.last_run.set(time.time())

    async def run(self) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await queries.wallet_mismatches(conn)
            for row in rows:
                await record(conn, SERVICE, Ctx(), WALLET_MISMATCH,
                             actor=("system", "reconciler"),
                             resource=("wallet", str(row["org_id"])),
                             org_id=row["org_id"],
                             data={"balance_cents": row["balance_cents"],
                                   "entries_cents": row["entries_cents"]})
        self.mismatches.set(len(rows))
        self.last_run.set(time.time())
        if rows:
            log.error("wallet mismatch", extra={"orgs": [str(r["org_id"]) for r in rows]})
        return [dict(row) for row in rows]
