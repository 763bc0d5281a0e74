"""A backup's manifest: what it holds (each file's plaintext and sealed SHA-256), when it was
taken, the WAL range (start and end LSN) and the master key id; authenticated by an HMAC under a
key derived from that master key, so neither a field nor a file list can be changed unseen."""

from __future__ import annotations

import hmac
from pathlib import Path

import msgspec

from argus_shared.backup_seal import BackupSealError, mac
from argus_shared.settings import KeyRing

MANIFEST = "manifest.json"
FORMAT = 1


class BackupFile(msgspec.Struct, forbid_unknown_fields=True):
    name: str  # the sealed file, beside the manifest
    holds: str  # "postgresql" (pg_basebackup tar), "objects" (the files service's store)
    sha256: str  # of the plaintext
    sealed_sha256: str
    sealed_bytes: int


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    id: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    start_lsn: str
    end_lsn: str
    timeline: int
    key_id: str
    files: list[BackupFile]
    postgresql: str  # server version
    mac: str = ""

    def body(self) -> bytes:
        return msgspec.json.encode(msgspec.structs.replace(self, mac=""))


def write_manifest(keys: KeyRing, manifest: Manifest, directory: Path) -> None:
    signed = msgspec.structs.replace(manifest, mac=mac(keys, manifest.key_id, manifest.body()))
    text = msgspec.json.format(msgspec.json.encode(signed), indent=2) + b"\n"
    (directory / MANIFEST).write_bytes(text)


def read_manifest(directory: Path) -> Manifest:
    """The manifest as written, unverified (listing); BackupSealError if unreadable."""
    try:
        return msgspec.json.decode((directory / MANIFEST).read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackupSealError(f"{directory / MANIFEST}: {exc}") from None


def verified_manifest(keys: KeyRing, directory: Path) -> Manifest:
    manifest = read_manifest(directory)
    expected = mac(keys, manifest.key_id, manifest.body())
    if not hmac.compare_digest(expected, manifest.mac):
        raise BackupSealError(f"{directory / MANIFEST} fails authentication: a field was "
                              "changed, or it was written under another master key")
    if manifest.format != FORMAT:
        raise BackupSealError(f"{directory / MANIFEST}: unknown format {manifest.format}")
    return manifest
