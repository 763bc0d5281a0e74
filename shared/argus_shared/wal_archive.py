"""Continuous WAL archiving into `<archive>/wal`, sealed under the master key ring.

PostgreSQL's own `archive_command` copies each finished segment into `<archive>/incoming` (a
copy to a hidden name, then a rename, so a half-copied segment is never taken as whole). The
PostgreSQL server runs as its own unprivileged user and never holds the master keys; a sealer
that does (`argus up --archive`'s thread, or `argus backups seal-wal` from cron/a sidecar)
encrypts each one into `<archive>/wal/<segment>.sealed` and removes the plain copy. The plain
window is bounded by the sealer's interval (2 s under `argus up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from argus_shared.backup_seal import open_stream, seal_stream
from argus_shared.deletions_journal import capture
from argus_shared.settings import ConfigError, KeyRing

INCOMING = "incoming"
WAL = "wal"
SEALED = ".sealed"
SEAL_INTERVAL = 2.0


def archive_settings(archive: Path, timeout_seconds: int = 60) -> Mapping[str, str]:
    """The server settings that archive into `archive` (`-c` flags, never postgresql.conf, so
    a cluster restored from it does not archive into the same place)."""
    incoming = archive.resolve() / INCOMING
    if "'" in str(incoming) or '"' in str(incoming):
        raise ConfigError(f"archive directory {archive} must not contain quotes")
    command = (f'cp "%p" "{incoming}/.%f.part" && mv "{incoming}/.%f.part" "{incoming}/%f"')
    return {"archive_mode": "on", "archive_command": command,
            "archive_timeout": str(timeout_seconds)}


def prepare_archive(archive: Path, owner: tuple[int, int] | None) -> None:
    """Create the archive's directories; `incoming` writable by the PostgreSQL user."""
    for name in (INCOMING, WAL):
        (archive / name).mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(archive / INCOMING, *owner)
        for parent in [archive.resolve(), *archive.resolve().parents]:
            parent.chmod(parent.stat().st_mode | 0o001)
    (archive / WAL).chmod(0o700)


def _context(segment: str) -> bytes:
    return b"wal/" + segment.encode()


def seal_incoming(keys: KeyRing, archive: Path) -> int:
    """Seal every whole segment in `incoming`: how many."""
    count = 0
    for plain in sorted((archive / INCOMING).glob("[!.]*")):
        target = archive / WAL / (plain.name + SEALED)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:  # another sealer (the suite's, a restore's) may take it first
            with plain.open("rb") as source, partial.open("wb") as sink:
                seal_stream(keys, source, sink, _context(plain.name))
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, target)
            plain.unlink()
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            continue
        count += 1
    return count


def segments(archive: Path) -> list[str]:
    return sorted(p.name[: -len(SEALED)] for p in (archive / WAL).glob("*" + SEALED))


def open_segment(keys: KeyRing, archive: Path, segment: str, target: Path) -> None:
    with (archive / WAL / (segment + SEALED)).open("rb") as source, target.open("wb") as sink:
        for chunk in open_stream(keys, source, _context(segment)):
            sink.write(chunk)


class Sealer(threading.Thread):
    """Seals what PostgreSQL archives, every SEAL_INTERVAL seconds, until stopped."""

    def __init__(self, keys: KeyRing, archive: Path, admin_url: str | None = None) -> None:
        super().__init__(name="wal-sealer", daemon=True)
        self.keys, self.archive, self.stopping = keys, archive, threading.Event()
        self.admin_url = admin_url  # to journal deletions (argus_shared.deletions_journal)

    def run(self) -> None:
        while not self.stopping.wait(SEAL_INTERVAL):
            with contextlib.suppress(OSError):
                seal_incoming(self.keys, self.archive)
            if self.admin_url:
                with contextlib.suppress(Exception):  # not migrated yet, or PostgreSQL away
                    asyncio.run(capture(self.keys, self.admin_url, self.archive))

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        with contextlib.suppress(OSError):
            seal_incoming(self.keys, self.archive)
