"""Unpadded base64url, decoded strictly (the stdlib silently drops characters outside the
alphabet, which would let a mangled token or key pass as a shorter one)."""

from __future__ import annotations

import base64
import binascii

# base64url to the standard alphabet; "+" and "/" become a character the strict decoder refuses
_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/**")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(text: str) -> bytes:
    """Raise ValueError unless `text` is base64url (padding optional)."""
    try:
        standard = (text + "=" * (-len(text) % 4)).encode("ascii").translate(_TO_STANDARD)
        return binascii.a2b_base64(standard, strict_mode=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise ValueError("not base64url") from None
