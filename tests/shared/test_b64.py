"""base64url as tokens and keys use it: round trip, and everything outside the alphabet refused
(the stdlib decoder would silently drop it and decode a shorter value)."""

from __future__ import annotations

import os

import pytest

from argus_shared import b64


@pytest.mark.parametrize("size", range(0, 34))
def test_every_length_round_trips(size: int) -> None:
    data = os.urandom(size)
    text = b64.encode(data)
    assert "=" not in text and b64.decode(text) == data
    assert b64.decode(text + "=" * (-len(text) % 4)) == data


@pytest.mark.parametrize("text", ["ab+c", "ab/c", "a b", "ab\nc", "ab=c", "abc*", "é",
                                  "abcde"])
def test_anything_outside_base64url_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64.decode(text)
