"""Backup files at rest: a stream cut into 1 MiB chunks, each AES-256-GCM under a key derived
(HKDF-SHA256) from the current master key, so a backup is useless without the master key ring.

Layout: `ARGB` 1 | kid length | kid | 8-byte random file prefix, then chunks of
`length (4 bytes) | ciphertext+tag`. Chunk n's nonce is the prefix and n; its associated data is
the header, the caller's context (backup id and file name, so a file cannot be moved between
backups or renamed), n, and a final flag, so reordering, truncation and splicing all fail.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
from collections.abc import Iterator
from typing import IO, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from argus_shared.settings import KeyRing

MAGIC = b"ARGB"
VERSION = 1
CHUNK = 1 << 20
PREFIX_BYTES = 8
TAG_BYTES = 16


class BackupSealError(Exception):
    """A sealed backup file cannot be opened: unknown key, tampered, truncated or moved."""


def derived_key(keys: KeyRing, kid: str, purpose: bytes) -> bytes:
    key = keys.keys.get(kid)
    if key is None:
        raise BackupSealError(f"master key {kid!r} is not in the key ring (keys are never in "
                              "a backup: restore the operator's copy of master-keys)")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"argus-backup/" + purpose)
    return hkdf.derive(key)


def _aad(header: bytes, context: bytes, index: int, final: bool) -> bytes:
    return header + context + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _chunks(source: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    current = source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        yield current, not following
        if not following:
            return
        current = following


def seal_stream(keys: KeyRing, source: IO[bytes], sink: BinaryIO, context: bytes) -> str:
    """Encrypt `source` into `sink`; the SHA-256 (hex) of the plaintext."""
    kid = keys.current
    aead = AESGCM(derived_key(keys, kid, b"data"))
    prefix = os.urandom(PREFIX_BYTES)
    header = MAGIC + bytes([VERSION, len(kid.encode())]) + kid.encode() + prefix
    sink.write(header)
    digest = hashlib.sha256()
    for index, (chunk, final) in enumerate(_chunks(source)):
        digest.update(chunk)
        nonce = prefix + index.to_bytes(4, "big")
        sealed = aead.encrypt(nonce, chunk, _aad(header, context, index, final))
        sink.write(len(sealed).to_bytes(4, "big") + sealed)
    return digest.hexdigest()


def _header(source: BinaryIO) -> tuple[bytes, str]:
    start = source.read(6)
    if len(start) < 6 or start[:4] != MAGIC or start[4] != VERSION:
        raise BackupSealError("not a sealed Argus backup file")
    kid = source.read(start[5])
    prefix = source.read(PREFIX_BYTES)
    return start + kid + prefix, kid.decode(errors="replace")


def open_stream(keys: KeyRing, source: io.BufferedReader, context: bytes) -> Iterator[bytes]:
    """The plaintext chunks of a sealed file; BackupSealError as soon as anything is wrong."""
    header, kid = _header(source)
    aead = AESGCM(derived_key(keys, kid, b"data"))
    prefix = header[-PREFIX_BYTES:]
    index = 0
    while True:
        length = source.read(4)
        if len(length) < 4:
            raise BackupSealError("sealed file is truncated")
        sealed = source.read(int.from_bytes(length, "big"))
        final = source.peek(1)[:1] == b""
        nonce = prefix + index.to_bytes(4, "big")
        try:
            chunk = aead.decrypt(nonce, sealed, _aad(header, context, index, final))
        except InvalidTag:
            raise BackupSealError(f"chunk {index} fails authentication (tampered, truncated, "
                                  "or sealed for another file)") from None
        yield chunk
        if final:
            return
        index += 1


def kid_of_file(source: BinaryIO) -> str:
    return _header(source)[1]


def mac(keys: KeyRing, kid: str, body: bytes) -> str:
    """HMAC-SHA256 (hex) of a manifest under a key derived from master key `kid`."""
    return hmac.new(derived_key(keys, kid, b"manifest"), body, hashlib.sha256).hexdigest()
