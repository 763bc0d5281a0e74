"""What a tenant may see of a target's answer besides its status: at most `EXCERPT_CHARS`
characters of text, control and format characters replaced; nothing of a binary answer."""

from __future__ import annotations

import codecs
import unicodedata

EXCERPT_CHARS = 256
READ_BYTES = 4 * EXCERPT_CHARS  # 256 characters in any encoding take at most this many bytes
TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript",
                        "application/x-www-form-urlencoded", "application/x-ndjson"})
SPACES = frozenset("\t\n\r\v\f\u2028\u2029\x85")
REPLACEMENT = "\ufffd"


def is_text_type(content_type: str | None) -> bool:
    """Whether a media type is text (None: no Content-Type, judged from the bytes)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in TEXT_TYPES or media.endswith(("+json", "+xml"))


def excerpt(body: bytes, content_type: str | None, charset: str | None) -> str | None:
    """The start of an answer as the tenant may see it, or None for a non-text answer."""
    if not is_text_type(content_type):
        return None
    if content_type is None and _looks_binary(body):
        return None
    return clean(_decode(body, charset))


def clean(text: str | None) -> str | None:
    """`text` cut to `EXCERPT_CHARS` characters, line breaks as spaces and every other control,
    format, private-use, surrogate or unassigned character replaced (also for stored rows)."""
    if text is None:
        return None
    return "".join(_shown(ch) for ch in text[:EXCERPT_CHARS])


def _shown(ch: str) -> str:
    if ch in SPACES:
        return " "
    return REPLACEMENT if unicodedata.category(ch).startswith("C") else ch


def _looks_binary(body: bytes) -> bool:
    if b"\x00" in body:
        return True
    try:  # a character cut at the end of what was read is not a failure
        codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
    except UnicodeDecodeError:
        return True
    return False


def _decode(body: bytes, charset: str | None) -> str:
    for name in (charset, "utf-8"):
        if name and _is_text_codec(name):
            try:
                return codecs.getincrementaldecoder(name)(errors="replace").decode(
                    body, final=False)
            except (UnicodeError, LookupError, TypeError, ValueError):
                continue
    return body.decode("utf-8", errors="replace")


def _is_text_codec(name: str) -> bool:
    try:
        info = codecs.lookup(name)
    except LookupError:
        return False
    return bool(getattr(info, "_is_text_encoding", True))
