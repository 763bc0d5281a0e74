"""The hash chain: each row's hash is SHA-256(previous hash ‖ canonical event), where the
canonical form is rebuilt from the stored columns (so editing any column breaks the link), and
checkpoints sign a chain head with Ed25519 so a rewritten chain cannot re-sign itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from argus_shared.settings import KeyRing

GENESIS = bytes(32)
PLATFORM = UUID(int=0)  # the chain of events that belong to no org
# the chain's byte format is json.dumps(document, sort_keys=True, separators=(",", ":"),
# ensure_ascii=False): changing it would break every stored link. The document's own keys are
# fixed, so it is written out in sorted order by hand; only `data` goes through the encoder
# (built once: json.dumps with options builds a new encoder per call)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_string = json.encoder.encode_basestring  # what that encoder writes for a str
# the C encoder behind json.dumps, made once (JSONEncoder.encode makes one per call); no cycle
# check, as `data` comes from decoded JSON
_make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_data_chunks = _make and _make(None, _CANONICAL.default, _string, None, ":", ",", True, False,
                               True)


def _data(value: Any) -> str:
    return "".join(_data_chunks(value, 0)) if _data_chunks else _CANONICAL.encode(value)


def _text(value: str | None) -> str:
    return "null" if value is None else _string(value)


def canonical(row: Mapping[str, Any]) -> bytes:
    """Stable bytes for one event, from the values as stored."""
    occurred = row["occurred_at"]
    if isinstance(occurred, datetime):
        occurred = utc_text(occurred)
    return (
        f'{{"actor":[{_text(row["actor_type"])},{_text(row["actor_id"])}],'
        f'"data":{_data(row["data"])},"event_id":{_text(str(row["event_id"]))},'
        f'"ip":{_text(row["ip"])},"occurred_at":{_text(occurred)},'
        f'"org_id":{_text(str(row["org_id"]))},"request_id":{_text(row["request_id"])},'
        f'"resource":[{_text(row["resource_type"])},{_text(row["resource_id"])}],'
        f'"seq":{int(row["seq"])},"type":{_text(row["type"])},'
        f'"user_agent":{_text(row["user_agent"])}}}'
    ).encode()


def utc_text(moment: datetime) -> str:
    """A time as the chain writes it: UTC, microseconds (what a timestamptz column keeps)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def link(prev_hash: bytes, row: Mapping[str, Any]) -> bytes:
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
