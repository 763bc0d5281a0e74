"""The at-rest format of an object: a header, then the content in segments, each sealed with
AES-256-GCM under the object's own data key (the STREAM construction).

    header   = b"ARGF" ‖ version (1) ‖ segment size (4, big-endian) ‖ nonce prefix (7)
               ‖ org id (16) ‖ object id (16)                                      48 bytes
    segment  = AES-256-GCM(data key, nonce, plaintext, aad=header)   plaintext ≤ segment size
    nonce    = nonce prefix (7, random per object) ‖ counter (4, big-endian) ‖ last flag (1)

Every segment authenticates the whole header (so the header cannot be altered or moved to
another object), its position (the counter: reordering fails) and whether it is the last one
(so dropping segments from the end, or appending some, fails). An empty object is one empty last
segment. Only whole segments are ever released, each after its tag has been checked.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"ARGF"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
TAG = 16
PREFIX = 7
HEADER_SIZE = len(MAGIC) + 1 + 4 + PREFIX + 16 + 16
MAX_SEGMENTS = 2**32
_HEADER = struct.Struct(f">4sBI{PREFIX}s16s16s")


class IntegrityError(Exception):
    """Stored bytes do not decrypt: tampered, truncated, reordered or from another object."""


@dataclass(frozen=True)
class Header:
    segment_size: int
    prefix: bytes
    org_id: uuid.UUID
    object_id: uuid.UUID

    @classmethod
    def new(cls, org_id: uuid.UUID, object_id: uuid.UUID,
            segment_size: int = SEGMENT_SIZE) -> Header:
        return cls(segment_size, os.urandom(PREFIX), org_id, object_id)

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.segment_size, self.prefix, self.org_id.bytes,
                            self.object_id.bytes)

    @classmethod
    def decode(cls, raw: bytes, org_id: uuid.UUID, object_id: uuid.UUID) -> Header:
        if len(raw) != HEADER_SIZE:
            raise IntegrityError("the stored object is shorter than its header")
        magic, version, size, prefix, org, obj = _HEADER.unpack(raw)
        if magic != MAGIC or version != VERSION or not 0 < size <= 2**24:
            raise IntegrityError("the stored object's header is not an Argus files header")
        if org != org_id.bytes or obj != object_id.bytes:
            raise IntegrityError("the stored object belongs to another object")
        return cls(size, prefix, org_id, object_id)


def nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise ValueError("object has too many segments")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def segment_count(size: int, segment_size: int = SEGMENT_SIZE) -> int:
    """Segments of a `size`-byte plaintext (an empty one still has its empty last segment)."""
    return max(1, -(-size // segment_size))


def stored_size(size: int, segment_size: int = SEGMENT_SIZE, tag: int = TAG) -> int:
    return HEADER_SIZE + size + tag * segment_count(size, segment_size)


class Sealer:
    """Encrypts a stream: feed plaintext, collect sealed bytes; the last segment is sealed by
    `finish`, so a segment is only sealed once it is known whether more follow."""

    def __init__(self, key: bytes, header: Header) -> None:
        self.aead = AESGCM(key)
        self.header = header
        self.aad = header.encode()
        self.size = header.segment_size
        self.index = 0
        self.pending = bytearray()

    def start(self) -> bytes:
        return self.aad

    def feed(self, data: bytes) -> list[bytes]:
        """Sealed segments ready to store (all but the newest `segment size` bytes)."""
        self.pending += data
        out: list[bytes] = []
        size = self.size
        if len(self.pending) <= size:
            return out
        view = memoryview(self.pending)
        offset = 0
        while len(self.pending) - offset > size:
            out.append(self._seal(view[offset:offset + size], last=False))
            offset += size
        view.release()
        del self.pending[:offset]
        return out

    def finish(self) -> bytes:
        sealed = self._seal(bytes(self.pending), last=True)
        self.pending.clear()
        return sealed

    def _seal(self, plaintext: bytes | memoryview, last: bool) -> bytes:
        sealed = self.aead.encrypt(nonce(self.header.prefix, self.index, last), plaintext,
                                   self.aad)
        self.index += 1
        return sealed


class Opener:
    """Decrypts segments of one object, each checked against its position and last flag."""

    tag = TAG

    def __init__(self, key: bytes, header: Header, size: int) -> None:
        self.aead = AESGCM(key)
        self.header = header
        self.aad = header.encode()
        self.count = segment_count(size, header.segment_size)

    @property
    def sealed_segment(self) -> int:
        return self.header.segment_size + self.tag

    def open(self, index: int, sealed: bytes | memoryview) -> bytes:
        last = index == self.count - 1
        try:
            return self.aead.decrypt(nonce(self.header.prefix, index, last), sealed, self.aad)
        except InvalidTag:
            raise IntegrityError(f"segment {index} of the stored object failed to decrypt: it was "
                                 "altered, truncated, reordered or belongs elsewhere") from None


@dataclass(frozen=True)
class Codec:
    """How segments are sealed and opened (AES-256-GCM; a benchmark swaps in a pass-through to
    measure what encryption costs)."""

    sealer: type[Sealer] = Sealer
    opener: type[Opener] = Opener

    @property
    def tag(self) -> int:
        return self.opener.tag


AES_GCM = Codec()
