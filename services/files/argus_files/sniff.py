"""The content type of an upload, judged from its first bytes (never from the name or the
type the client declares), and the allow-list it is checked against."""

from __future__ import annotations

import codecs

WINDOW = 4096
DEFAULT_ALLOWED = (
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "application/zip",
    "text/plain",
)
OCTET_STREAM = "application/octet-stream"
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"\x1f\x8b\x08", "application/gzip"),
    (b"\x7fELF", "application/x-executable"),
    (b"MZ", "application/x-msdownload"),
)
# markup a browser would render as a document (WHATWG MIME sniffing's HTML patterns, plus SVG
# and XML): refused as text/plain even though it is text
_MARKUP: tuple[tuple[bytes, str], ...] = (
    (b"<?xml", "application/xml"), (b"<svg", "image/svg+xml"),
    *((tag, "text/html") for tag in (
        b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font",
        b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p", b"<!--")),
)
_TEXT_CONTROLS = frozenset(b"\t\n\r\f")


def sniff(head: bytes) -> str:
    """The type of content starting with `head` (up to `WINDOW` bytes; fewer only at its end)."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = _text(head)
    if text is None:
        return OCTET_STREAM
    return _markup(text) or "text/plain"


def _text(head: bytes) -> str | None:
    """`head` as text when it is UTF-8 (an incomplete last character is allowed) without NULs
    or control characters other than tab, line breaks and form feed."""
    if any(byte < 0x20 and byte not in _TEXT_CONTROLS for byte in head) or b"\x7f" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _markup(text: str) -> str | None:
    start = text.lstrip("\ufeff \t\n\r\f").encode()[:32].lower()
    for tag, kind in _MARKUP:
        if start.startswith(tag) and (tag.endswith((b"--", b"xml")) or len(start) == len(tag)
                                      or start[len(tag):len(tag) + 1] in (b" ", b">", b"/")):
            return kind
    return None
