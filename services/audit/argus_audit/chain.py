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
# built once (json.dumps with options builds an encoder per call); these options are the chain's
# byte format: changing them would break every stored link
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: Mapping[str, Any]) -> bytes:
    """Stable bytes for one event, from the values as stored."""
    occurred = row["occurred_at"]
    if isinstance(occurred, datetime):
        occurred = occurred.astimezone(UTC).isoformat(timespec="microseconds")
    document = {
        "event_id": str(row["event_id"]), "org_id": str(row["org_id"]), "seq": row["seq"],
        "type": row["type"], "occurred_at": occurred,
        "actor": [row["actor_type"], row["actor_id"]],
        "resource": [row["resource_type"], row["resource_id"]],
        "ip": row["ip"], "user_agent": row["user_agent"], "request_id": row["request_id"],
        "data": row["data"],
    }
    return _CANONICAL.encode(document).encode()


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
