"""Secrets at rest that must be read back (TOTP secrets, webhook secrets, data keys, signing
keys): AES-256-GCM under the current master key, naming its `kid` so keys rotate, with the
context (owner id, purpose) bound as associated data so a sealed value cannot be moved."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from argus_shared.settings import KeyRing

VERSION = 1
NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value cannot be opened: unknown key, tampered, or bound to another context."""


def seal(keys: KeyRing, plaintext: bytes, context: bytes) -> bytes:
    kid = keys.current.encode()
    nonce = os.urandom(NONCE_BYTES)
    header = bytes([VERSION, len(kid)]) + kid
    ciphertext = AESGCM(keys.current_key[:32]).encrypt(nonce, plaintext, header + context)
    return header + nonce + ciphertext


def kid_of(sealed: bytes) -> str:
    if len(sealed) < 2 or sealed[0] != VERSION:
        raise SealError("unknown format")
    return sealed[2 : 2 + sealed[1]].decode()


def open_sealed(keys: KeyRing, sealed: bytes, context: bytes) -> bytes:
    kid = kid_of(sealed)
    key = keys.keys.get(kid)
    if key is None:
        raise SealError(f"master key {kid!r} is not configured")
    header_end = 2 + sealed[1]
    nonce = sealed[header_end : header_end + NONCE_BYTES]
    try:
        return AESGCM(key[:32]).decrypt(
            nonce, sealed[header_end + NONCE_BYTES :], sealed[:header_end] + context
        )
    except InvalidTag:
        raise SealError("sealed value was tampered with or belongs elsewhere") from None


def reseal(keys: KeyRing, sealed: bytes, context: bytes) -> bytes:
    """Re-encrypt under the current key (master-key rotation)."""
    return seal(keys, open_sealed(keys, sealed, context), context)


def sha256(value: str | bytes) -> bytes:
    """The at-rest form of a high-entropy token (API keys, refresh and email tokens)."""
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def equal(a: bytes | str, b: bytes | str) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)
