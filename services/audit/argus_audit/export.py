"""The NDJSON export of an org's chain, and its verification from that file alone
(docs/audit-chain.md; `argus audit verify FILE.ndjson`).

Each line is one event of the chain, in `seq` order: every field the canonical form hashes, as
the chain hashes it, with `prev_hash` and `hash` in hex. The first line of a chain that
retention has cut carries the signed `retention_checkpoint` (the last removed link) it continues
from; any other chain starts at `seq` 1 from 32 zero bytes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from argus_audit import chain, queries

CHUNK = 500  # lines per write
Hex32 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$")]
Uuid = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")]


async def export_chunks(conn: queries.Conn, org_id: UUID,
                        view: Callable[[Any], dict[str, Any]]) -> AsyncIterator[bytes]:
    """The org's chain as NDJSON lines of `view(row)`, with the chain's own time text and the
    retention checkpoint, CHUNK lines at a time."""
    start = await queries.retention_checkpoint(conn, org_id)
    lines: list[bytes] = []
    async for row in conn.cursor(queries.CHAIN, org_id, start["seq"] if start else 0,
                                 prefetch=CHUNK):
        item = view(row)
        item["occurred_at"] = chain.utc_text(row["occurred_at"])  # .000000 written too
        if start is not None:
            item["retention_checkpoint"] = checkpoint_view(start)
            start = None
        lines.append(json.dumps(item, separators=(",", ":")).encode() + b"\n")
        if len(lines) >= CHUNK:
            yield b"".join(lines)
            lines.clear()
    if lines:
        yield b"".join(lines)


def checkpoint_view(mark: Any) -> dict[str, Any]:
    return {"seq": mark["seq"], "hash": bytes(mark["hash"]).hex(), "kid": mark["kid"],
            "signature": bytes(mark["signature"]).hex()}


class Party(msgspec.Struct):
    type: str
    id: str


class Checkpoint(msgspec.Struct):
    seq: int
    hash: Hex32
    kid: str
    signature: Hex64


class Line(msgspec.Struct):
    """One exported event as verification reads it (other fields, such as received_at, are
    not hashed and not read)."""
    org_id: Uuid
    seq: int
    event_id: Uuid
    type: str
    occurred_at: str
    actor: Party
    resource: Party
    ip: str | None
    user_agent: str | None
    request_id: str | None
    data: Any
    prev_hash: Hex32
    hash: Hex32
    retention_checkpoint: Checkpoint | None = None


class Malformed(Exception):
    """A line that is not an exported event (exit 2)."""


class Broken(Exception):
    """A line that does not continue its chain (exit 1)."""


@dataclass
class Verified:
    events: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)  # org -> (seq, hash)
    unchecked_checkpoints: int = 0  # retention checkpoints trusted without a key

    def summary(self) -> str:
        text = f"{self.events} events in {len(self.heads)} chains verified"
        if self.unchecked_checkpoints:
            text += (f" ({self.unchecked_checkpoints} from a retention checkpoint whose"
                     " signature was not checked: give --checkpoint-key)")
        return text


_decode = msgspec.json.Decoder(Line).decode


def verify_lines(lines: Iterable[bytes], key: Ed25519PublicKey | None = None) -> Verified:
    """Check every line continues its org's chain; raise Broken or Malformed naming the first
    line (counted from 1) that does not."""
    verified = Verified()
    for number, raw in enumerate(lines, 1):
        try:
            line = _decode(raw)
        except msgspec.DecodeError as exc:
            raise Malformed(f"line {number}: not an exported event: {exc}") from None
        problem = _check(verified, line, key)
        if problem:
            raise Broken(f"line {number} (seq {line.seq} of org {line.org_id}): {problem}")
        verified.heads[line.org_id] = (line.seq, line.hash)
        verified.events += 1
    return verified


def _check(verified: Verified, line: Line, key: Ed25519PublicKey | None) -> str | None:
    mark = line.retention_checkpoint
    if line.org_id in verified.heads:
        if mark is not None:
            return "a retention checkpoint in the middle of a chain"
        seq, head = verified.heads[line.org_id]
    elif mark is not None:
        seq, head = mark.seq, mark.hash
        if key is None:
            verified.unchecked_checkpoints += 1
        elif not chain.signature_ok(key, UUID(line.org_id), seq, bytes.fromhex(head),
                                    bytes.fromhex(mark.signature)):
            return "the retention checkpoint's signature is not valid under the given key"
    else:
        seq, head = 0, chain.GENESIS.hex()
    return _link_problem(line, seq, head)


def _link_problem(line: Line, seq: int, head: str) -> str | None:
    if line.seq != seq + 1:
        return f"expected seq {seq + 1} (a line before it is missing or out of order)"
    if line.prev_hash != head:
        return "prev_hash is not the hash of the link before it"
    if hashlib.sha256(bytes.fromhex(head) + chain.canonical(_row(line))).hexdigest() != line.hash:
        return "the event does not give its hash (its content was changed)"
    return None


def _row(line: Line) -> dict[str, Any]:
    return {"event_id": line.event_id, "org_id": line.org_id, "seq": line.seq,
            "type": line.type, "occurred_at": line.occurred_at, "actor_type": line.actor.type,
            "actor_id": line.actor.id, "resource_type": line.resource.type,
            "resource_id": line.resource.id, "ip": line.ip, "user_agent": line.user_agent,
            "request_id": line.request_id, "data": line.data}

