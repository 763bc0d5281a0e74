"""Unpadded base64url, decoded strictly (the stdlib silently drops characters outside the
alphabet, which would let a mangled token or key pass as a shorter one)."""

from __future__ import annotations

import base64
import binascii


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(text: str) -> bytes:
    """Raise ValueError unless `text` is base64url (padding optional)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64url") from None
