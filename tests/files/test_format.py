"""The at-rest format, attacked directly: every way of cutting, reordering, splicing or editing
sealed segments fails to decrypt; data keys are bound to their object; the sniffer, the range
parser and the Content-Disposition encoder do what the service relies on."""

from __future__ import annotations

import os
import re
import uuid
from urllib.parse import unquote

import pytest

from argus_files import keys
from argus_files.downloads import Span, disposition, parse_range
from argus_files.segments import (
    HEADER_SIZE,
    TAG,
    Header,
    IntegrityError,
    Opener,
    Sealer,
    nonce,
    segment_count,
    stored_size,
)
from argus_files.sniff import sniff
from argus_shared.crypto import SealError
from argus_shared.errors import Problem
from argus_shared.settings import KeyRing

SEG = 1024  # small segments keep the cases readable; the format is the same at 64 KiB


def sealed(data: bytes, key: bytes | None = None, header: Header | None = None,
           chunk: int = 700) -> tuple[bytes, bytes, Header]:
    key = key or os.urandom(32)
    header = header or Header.new(uuid.uuid4(), uuid.uuid4(), SEG)
    sealer = Sealer(key, header)
    out = [sealer.start()]
    for first in range(0, len(data), chunk):
        out += sealer.feed(data[first:first + chunk])
    out.append(sealer.finish())
    return b"".join(out), key, header


def segments_of(blob: bytes) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    return [body[i:i + SEG + TAG] for i in range(0, len(body), SEG + TAG)]


def opened(blob: bytes, key: bytes, header: Header, size: int) -> bytes:
    """Decrypt as the service does: the header checked, then segment by segment."""
    found = Header.decode(blob[:HEADER_SIZE], header.org_id, header.object_id)
    opener = Opener(key, found, size)
    parts = segments_of(blob)
    if len(parts) != opener.count:
        raise IntegrityError("segment count")
    return b"".join(opener.open(i, part) for i, part in enumerate(parts))


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_round_trip_at_every_boundary(size: int) -> None:
    data = os.urandom(size)
    blob, key, header = sealed(data)
    assert len(blob) == stored_size(size, SEG)
    assert len(segments_of(blob)) == segment_count(size, SEG)
    assert opened(blob, key, header, size) == data
    assert size < 16 or data[:64] not in blob  # the content is not stored in clear


def test_the_nonce_is_prefix_counter_and_last_flag() -> None:
    prefix = bytes(range(7))
    assert nonce(prefix, 0, False) == prefix + b"\x00\x00\x00\x00\x00"
    assert nonce(prefix, 258, True) == prefix + b"\x00\x00\x01\x02\x01"
    a, b = Header.new(uuid.uuid4(), uuid.uuid4()), Header.new(uuid.uuid4(), uuid.uuid4())
    assert a.prefix != b.prefix and len(a.encode()) == HEADER_SIZE


def test_truncation_fails_even_at_a_segment_boundary() -> None:
    data = os.urandom(4 * SEG)
    blob, key, header = sealed(data)
    parts = segments_of(blob)
    dropped = blob[:HEADER_SIZE] + b"".join(parts[:-1])
    with pytest.raises(IntegrityError):  # told the shorter size, the new last one is not last
        opened(dropped, key, header, 3 * SEG)
    with pytest.raises(IntegrityError):
        opened(blob[:-1], key, header, 4 * SEG)


def test_appending_or_reordering_segments_fails() -> None:
    blob, key, header = sealed(os.urandom(3 * SEG))
    head, parts = blob[:HEADER_SIZE], segments_of(blob)
    with pytest.raises(IntegrityError):
        opened(head + parts[1] + parts[0] + parts[2], key, header, 3 * SEG)
    with pytest.raises(IntegrityError):
        opened(head + parts[0] + parts[1] + parts[1] + parts[2], key, header, 4 * SEG)


def test_splicing_between_objects_fails_even_under_one_key() -> None:
    key, org = os.urandom(32), uuid.uuid4()
    one, _, h1 = sealed(os.urandom(2 * SEG), key, Header.new(org, uuid.uuid4(), SEG))
    two, _, _h2 = sealed(os.urandom(2 * SEG), key, Header.new(org, uuid.uuid4(), SEG))
    mixed = one[:HEADER_SIZE] + segments_of(one)[0] + segments_of(two)[1]
    with pytest.raises(IntegrityError):
        opened(mixed, key, h1, 2 * SEG)
    with pytest.raises(IntegrityError):  # another object's header names another object
        opened(two[:HEADER_SIZE] + one[HEADER_SIZE:], key, h1, 2 * SEG)


@pytest.mark.parametrize("where", [0, 5, 9, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + SEG + 3,
                                   -1])
def test_any_flipped_bit_fails(where: int) -> None:
    data = os.urandom(2 * SEG + 5)
    blob, key, header = sealed(data)
    broken = bytearray(blob)
    broken[where] ^= 0x01
    with pytest.raises(IntegrityError):
        opened(bytes(broken), key, header, len(data))


def test_the_wrong_key_fails() -> None:
    blob, _, header = sealed(b"secret" * 100)
    with pytest.raises(IntegrityError):
        opened(blob, os.urandom(32), header, 600)


def test_a_wrapped_data_key_is_bound_to_its_org_and_object() -> None:
    master = KeyRing.parse(f"k1:{'A' * 43}", "test")
    org, obj, data_key = uuid.uuid4(), uuid.uuid4(), keys.new_data_key()
    kid, wrapped = keys.wrap(master, org, obj, data_key)
    assert kid == "k1" and data_key not in wrapped and len(data_key) == 32
    assert keys.unwrap(master, org, obj, wrapped) == data_key
    for other_org, other_obj in ((uuid.uuid4(), obj), (org, uuid.uuid4())):
        with pytest.raises(SealError):
            keys.unwrap(master, other_org, other_obj, wrapped)
    rotated = KeyRing.parse(f"k2:{'B' * 43}\nk1:{'A' * 43}", "test")
    assert keys.unwrap(rotated, org, obj, wrapped) == data_key  # old keys keep unwrapping
    with pytest.raises(SealError):
        keys.unwrap(KeyRing.parse(f"k2:{'B' * 43}", "test"), org, obj, wrapped)


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png"),
    (b"\xff\xd8\xff\xe0" + bytes(100), "image/jpeg"),
    (b"GIF89a" + bytes(10), "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"PK\x03\x04" + bytes(30), "application/zip"),
    (b"hello, world\n", "text/plain"),
    ("naïve café ✓\n".encode(), "text/plain"),
    (b"", "text/plain"),
    (b"  <!DOCTYPE html><p>hi", "text/html"),
    (b"\xef\xbb\xbf<html>", "text/html"),
    (b"<script>alert(1)</script>", "text/html"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    (b"<?xml version='1.0'?><x/>", "application/xml"),
    (b"\x7fELF\x02\x01\x01", "application/x-executable"),
    (b"text then a NUL\x00", "application/octet-stream"),
    (b"\xc3\x28 invalid utf-8", "application/octet-stream"),
    (b"a<b and c>d", "text/plain"),
])
def test_the_type_comes_from_the_bytes(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(("header", "span"), [
    (None, None), ("bytes=0-0", Span(0, 0)), ("bytes=10-19", Span(10, 19)),
    ("bytes=90-", Span(90, 99)), ("bytes=-5", Span(95, 99)), ("bytes=-500", Span(0, 99)),
    ("bytes=95-1000", Span(95, 99)), ("items=0-5", None), ("bytes=0-1,5-6", None),
])
def test_ranges(header: str | None, span: Span | None) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=5-4",
                                    "bytes=abc", "bytes=-", "bytes=1-2-3"])
def test_unsatisfiable_or_malformed_ranges_are_416(header: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_range(header, 100)
    assert caught.value.status == 416
    assert caught.value.headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize("name", ["report.pdf", 'we"ird;name%.txt', "résumé ✓.txt",
                                  "new\\line.txt", "日本語.png", "a; filename=evil.html"])
def test_content_disposition_carries_the_exact_name(name: str) -> None:
    value = disposition(name)
    assert value.isascii() and "\n" not in value
    kind, fallback, extended = (part.strip() for part in value.split(";"))
    assert kind == "attachment"
    # the quoted fallback: printable ASCII without quote, backslash, percent or semicolon
    assert re.fullmatch(r'filename="[ !#-$&-:<-\[\]-~]*"', fallback), fallback
    # RFC 8187 `filename*`, which RFC 6266 recipients prefer: exactly the name
    match = re.fullmatch(r"filename\*=UTF-8''([A-Za-z0-9%._~-]*)", extended)
    assert match and unquote(match[1], errors="strict") == name
