"""The hash chain: each row's hash is SHA-256(previous hash ‖ canonical event), where the
canonical form is rebuilt from the stored columns (so editing any column breaks the link), and
checkpoints sign a chain head with Ed25519 so a rewritten chain cannot re-sign itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from argus_shared.db import RowLike
from argus_shared.settings import KeyRing

GENESIS = bytes(32)
PLATFORM = UUID(int=0)  # the chain of events that belong to no org
# The chain's byte format (docs/audit-chain.md) is json.dumps(document, sort_keys=True,
# separators=(",", ":"), ensure_ascii=False) in UTF-8: changing it would break every stored
# link. msgspec writes those very bytes for strings, integers, true/false/null, arrays and
# objects with string keys (sorted by code point), several times faster than the json module;
# only its floats differ (1e16 for Python's 1e+16, 0.00001 for 1e-05), so a value holding a
# float has its floats rewritten as Python writes them. (This replaces a C encoder built through
# json.encoder.c_make_encoder, a CPython private.) tests/audit/test_chain_bytes.py pins it.
_fast = msgspec.json.Encoder(order="sorted").encode
_in_order = msgspec.json.Encoder().encode  # the document's own keys, written sorted by hand
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Float(Exception):
    pass


def _refuse_float(text: str) -> float:
    raise _Float


def _python_float(text: str) -> msgspec.Raw:
    return msgspec.Raw(repr(float(text)).encode())  # what json.dumps writes for that float


# msgspec's own bytes read back (in C, faster than a regex or a walk of the value in Python):
# raising at the first float, or with every float as Python writes it
_check = msgspec.json.Decoder(float_hook=_refuse_float).decode
_floats_as_python = msgspec.json.Decoder(float_hook=_python_float).decode


def canonical_json(value: Any) -> bytes:
    """`value` (as decoded from JSON: no NaN or infinity) the way json.dumps(value,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes it, in UTF-8."""
    try:
        fast = _fast(value)
    except TypeError:  # an object key that is not a string: never from decoded JSON
        return _JSON.encode(value).encode()
    try:
        _check(fast)
    except _Float:
        return _fast(_floats_as_python(fast))
    return fast


def canonical(row: RowLike) -> bytes:
    """Stable bytes for one event, from the values as stored: canonical_json of the document
    (keys in sorted order here, so that only `data` needs sorting)."""
    occurred = row["occurred_at"]
    if isinstance(occurred, datetime):
        occurred = utc_text(occurred)
    return _in_order({
        "actor": [row["actor_type"], row["actor_id"]],
        "data": msgspec.Raw(canonical_json(row["data"])),
        "event_id": str(row["event_id"]), "ip": row["ip"], "occurred_at": occurred,
        "org_id": str(row["org_id"]), "request_id": row["request_id"],
        "resource": [row["resource_type"], row["resource_id"]], "seq": int(row["seq"]),
        "type": row["type"], "user_agent": row["user_agent"],
    })


def utc_text(moment: datetime) -> str:
    """A time as the chain writes it: UTC, microseconds (what a timestamptz column keeps)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def link(prev_hash: bytes, row: RowLike) -> bytes:
    return hashlib.sha256(prev_hash + canonical(row)).digest()


def signing_key(master: KeyRing, kid: str | None = None) -> tuple[str, Ed25519PrivateKey]:
    """The checkpoint key of a master key: derived, so nothing else needs storing."""
    kid = kid or master.current
    seed = hmac.new(master.keys[kid], b"argus audit checkpoint key", hashlib.sha256).digest()
    return kid, Ed25519PrivateKey.from_private_bytes(seed)


def checkpoint_message(org_id: UUID, seq: int, head: bytes) -> bytes:
    return f"argus-audit-checkpoint:{org_id}:{seq}:".encode() + head


def sign(master: KeyRing, org_id: UUID, seq: int, head: bytes) -> tuple[str, bytes]:
    kid, key = signing_key(master)
    return kid, key.sign(checkpoint_message(org_id, seq, head))


def signature_ok(public: Ed25519PublicKey, org_id: UUID, seq: int, head: bytes,
                 signature: bytes) -> bool:
    try:
        public.verify(signature, checkpoint_message(org_id, seq, head))
    except InvalidSignature:
        return False
    return True
