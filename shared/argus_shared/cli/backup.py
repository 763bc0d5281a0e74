"""`argus backup`: a base backup of the PostgreSQL cluster by PostgreSQL's own `pg_basebackup`
(tar to stdout, WAL fetched into it) and a copy of the files service's object store, each
streamed through AES-256-GCM under the master key ring (argus_shared.backup_seal), so no plain
byte reaches the backup directory; then a manifest that is itself authenticated.

Layout: `<to>/base/<id>/{postgresql.tar.sealed, objects.tar.sealed, manifest.json}` beside the
WAL archive `<to>/wal/` (`argus up --archive <to>`). THE MASTER KEYS ARE NOT IN A BACKUP.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from argus_shared.backup_manifest import BackupFile, Manifest, write_manifest
from argus_shared.backup_s3 import is_s3, upload
from argus_shared.backup_seal import seal_stream
from argus_shared.cli.infra import REPLICATION_PASSWORD
from argus_shared.cli.state import read_state
from argus_shared.devsecrets import ensure_dev_secrets
from argus_shared.embedded import EmbeddedError, pg_bin_dir
from argus_shared.provision import REPLICATION_ROLE
from argus_shared.settings import ConfigError, Env, KeyRing
from argus_shared.wal_archive import seal_incoming

BASE = "base"
KEYS_WARNING = ("argus: THE MASTER KEYS ARE NOT IN THIS BACKUP. Without the key ring {ring} it "
                "cannot be read: back that file up separately, somewhere else.")


class BackupFailed(Exception):
    """The backup could not be taken; the message is one line."""


def pg_tool(name: str) -> str:
    """A PostgreSQL client program: the embedded wheel's, else the one on PATH."""
    try:
        return str(pg_bin_dir() / name)
    except EmbeddedError:
        found = shutil.which(name)
        if found is None:
            raise BackupFailed(f"{name} is not installed (PostgreSQL client tools)") from None
        return found


def master_keys(data_dir: Path) -> KeyRing:
    """The ring backups are sealed under: ARGUS_MASTER_KEYS_FILE (a mounted secret), else the
    development ring under `<data-dir>/secrets`."""
    mounted = Env().str("ARGUS_MASTER_KEYS_FILE")
    if mounted:
        try:
            return KeyRing.parse(Path(mounted).read_text(), mounted)
        except OSError as exc:
            raise ConfigError(f"ARGUS_MASTER_KEYS_FILE {mounted}: {exc.strerror}") from None
    return ensure_dev_secrets(data_dir / "secrets").keyring("master-keys")


def default_dir(data_dir: Path) -> Path:
    return Path(Env().str("ARGUS_BACKUP_DIR") or data_dir / "backups")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    taking = commands.add_parser("backup", help="take an encrypted base backup (pg_basebackup "
                                 "and the file objects) with a signed manifest")
    taking.add_argument("--to", help="backup directory (ARGUS_BACKUP_DIR; <data-dir>/backups),"
                        " or s3://bucket/prefix (taken into that directory, then uploaded)")
    taking.add_argument("--pg-port", type=int, help="embedded PostgreSQL port (default: the "
                        "running suite's)")


@dataclass(frozen=True)
class Source:
    """Where pg_basebackup connects, and as whom."""

    host: str
    port: int
    user: str
    password: str


def _from_url(url: str) -> Source:
    parts = urlsplit(url)
    if not parts.username:
        raise ConfigError("the backup database URL names no user")
    return Source(str(parts.hostname or "127.0.0.1"), parts.port or 5432,
                  unquote(parts.username), unquote(parts.password or ""))


def source_of(args: argparse.Namespace) -> Source:
    """The cluster to back up: ARGUS_BACKUP_DATABASE_URL(_FILE) (the least-privilege
    REPLICATION role, deploy/backup-runbook.md), else ARGUS_DATABASE_ADMIN_URL(_FILE) as given,
    else the running embedded suite's PostgreSQL as that role (`argus up` provisions it)."""
    env = Env()
    for name in ("ARGUS_BACKUP_DATABASE_URL", "ARGUS_DATABASE_ADMIN_URL"):
        url = env.secret(name, required=False)
        if url:
            return _from_url(url)
    state = read_state(args.data_dir.resolve())
    port = args.pg_port or (int(state.postgresql.rsplit(":", 1)[1].split("/")[0])
                            if state else None)
    if port is None:
        raise ConfigError("no running suite under the data directory: give --pg-port")
    store = ensure_dev_secrets(args.data_dir / "secrets")
    return Source("127.0.0.1", port, REPLICATION_ROLE, store.read(REPLICATION_PASSWORD))


def _pump(source: IO[bytes], keys: KeyRing, target: Path, context: bytes) -> str:
    with target.open("wb") as sink:
        digest = seal_stream(keys, source, sink, context)
        sink.flush()
        os.fsync(sink.fileno())
    return digest


def _base(source: Source, keys: KeyRing, target: Path, context: bytes) -> tuple[str, str]:
    """Run pg_basebackup into `target`, sealed: (sha256, its stderr)."""
    argv = [pg_tool("pg_basebackup"), "-h", source.host, "-p", str(source.port),
            "-U", source.user, "-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "-v", "-P"]
    env = {**os.environ, "PGPASSWORD": source.password}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=_progress, args=(proc.stderr, errors), daemon=True)
    reader.start()
    digest = _pump(proc.stdout, keys, target, context)
    code = proc.wait()
    reader.join(5)
    text = b"".join(errors).decode(errors="replace")
    if code != 0:
        last = [line for line in text.splitlines() if line.strip()][-1:]
        raise BackupFailed(f"pg_basebackup failed: {' '.join(last)}")
    return digest, text


def _progress(stream: IO[bytes], into: list[bytes]) -> None:
    """Show pg_basebackup's progress (-P) on our stderr; keep its messages."""
    for line in iter(lambda: stream.read(256), b""):
        into.append(line)
        if sys.stderr.isatty():
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def _lsns(log: str) -> tuple[str, str, int]:
    start = re.search(r"write-ahead log start point: (\S+) on timeline (\d+)", log)
    end = re.search(r"write-ahead log end point: (\S+)", log)
    if not start or not end:
        raise BackupFailed("pg_basebackup did not report its WAL range")
    return start.group(1), end.group(1), int(start.group(2))


def _objects(files_dir: Path, keys: KeyRing, target: Path, context: bytes) -> str:
    """A tar of the object store, sealed, produced on a pipe so nothing plain is written."""
    read_end, write_end = os.pipe()

    def produce() -> None:
        with os.fdopen(write_end, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as tar:
            if files_dir.is_dir():
                tar.add(str(files_dir), arcname=".")

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    with os.fdopen(read_end, "rb") as source:
        digest = _pump(source, keys, target, context)
    producer.join()
    return digest


def _file(directory: Path, name: str, holds: str, digest: str) -> BackupFile:
    import hashlib
    sealed = directory / name
    with sealed.open("rb") as handle:
        sealed_digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return BackupFile(name, holds, digest, sealed_digest, sealed.stat().st_size)


def take(args: argparse.Namespace) -> Path:
    keys = master_keys(args.data_dir)
    bucket = args.to if is_s3(args.to) else None
    to = (Path(args.to) if args.to and not bucket else default_dir(args.data_dir)).resolve()
    if (to / "incoming").is_dir():
        seal_incoming(keys, to)
    started = datetime.now(UTC)
    backup_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    directory = to / BASE / backup_id
    directory.mkdir(parents=True, mode=0o700)
    source = source_of(args)
    print(f"argus: base backup {backup_id} of {source.user}@{source.host}:{source.port} into "
          f"{directory}", flush=True)
    pg_digest, log = _base(source, keys, directory / "postgresql.tar.sealed",
                           f"{backup_id}/postgresql.tar".encode())
    start_lsn, end_lsn, timeline = _lsns(log)
    files_dir = Path(Env().str("ARGUS_FILES_DIR") or args.data_dir.resolve() / "files")
    obj_digest = _objects(files_dir, keys, directory / "objects.tar.sealed",
                          f"{backup_id}/objects.tar".encode())
    manifest = Manifest(
        format=1, id=backup_id, started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(), start_lsn=start_lsn, end_lsn=end_lsn,
        timeline=timeline, key_id=keys.current, postgresql=_version(),
        files=[_file(directory, "postgresql.tar.sealed", "postgresql", pg_digest),
               _file(directory, "objects.tar.sealed", "objects", obj_digest)],
    )
    write_manifest(keys, manifest, directory)
    size = sum(f.sealed_bytes for f in manifest.files) / 1e6
    print(f"argus: backup {backup_id}: {size:.1f} MB, WAL {start_lsn}..{end_lsn}, "
          f"master key {keys.current}", flush=True)
    if bucket:
        sent = upload(to, bucket)
        print(f"argus: {sent} sealed files uploaded to {bucket}", flush=True)
    print(KEYS_WARNING.format(ring=args.data_dir.resolve() / "secrets" / "master-keys"),
          file=sys.stderr, flush=True)
    return directory


def _version() -> str:
    out = subprocess.run([pg_tool("pg_basebackup"), "--version"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip().rsplit(" ", 1)[-1]
