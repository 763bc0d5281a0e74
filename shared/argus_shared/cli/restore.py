"""`argus restore` and `argus backups list`: restore a base backup, and the WAL archived after
it, into a fresh data directory, to its latest moment or to `--target-time` (PostgreSQL's own
recovery: `restore_command` and `recovery_target_time`).

Every sealed file is authenticated and checked against the signed manifest before one byte is
written; a restore never goes into a directory that exists (so never over a running suite).
The archived WAL is opened into the new cluster's directory first, so the PostgreSQL user's
`restore_command` is a plain copy and never holds the master keys.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import asyncpg

from argus_shared.backup_manifest import Manifest, read_manifest, verified_manifest
from argus_shared.backup_s3 import downloaded, is_s3
from argus_shared.backup_seal import BackupSealError, open_stream
from argus_shared.cli.backup import BASE, default_dir, master_keys
from argus_shared.deletions_journal import Journal, read_journal, reapply
from argus_shared.devsecrets import DevSecrets, ensure_dev_secrets
from argus_shared.embedded import EmbeddedPostgres, free_port
from argus_shared.settings import ConfigError, Env, KeyRing
from argus_shared.wal_archive import open_segment, seal_incoming, segments

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
STAGING = "argus_restore_wal"
RECOVERY_TIMEOUT = 300.0


class RestoreFailed(Exception):
    """The restore was refused or failed; the message is one line."""


def add_parsers(commands: Commands) -> Commands:
    """`restore` and `backups list`; the `backups` actions, for more (`prune`)."""
    restoring = commands.add_parser("restore", help="restore a backup (to a point in time) into "
                                    "a new data directory")
    restoring.add_argument("--from", dest="source",
                           help="backup directory (ARGUS_BACKUP_DIR; <data-dir>/backups), or "
                           "s3://bucket/prefix (downloaded first)")
    restoring.add_argument("--backup", help="base backup id (default: the latest before the "
                           "target time)")
    restoring.add_argument("--target-time", help="ISO 8601 time with zone to recover to "
                           "(default: the end of the archived WAL)")
    restoring.add_argument("--data-dir", dest="new_dir", type=Path, required=True,
                           help="the new data directory (must not exist)")
    listing = commands.add_parser("backups", help="list the base backups and archived WAL")
    actions = listing.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="base backups, oldest first")
    listed.add_argument("--from", dest="source", type=Path)
    return actions


def bases(source: Path) -> list[Manifest]:
    found = []
    for directory in sorted((source / BASE).glob("*")):
        try:
            found.append(read_manifest(directory))
        except BackupSealError:
            continue
    return found


def list_backups(args: argparse.Namespace) -> None:
    source = (args.source or default_dir(args.data_dir)).resolve()
    for manifest in bases(source):
        size = sum(f.sealed_bytes for f in manifest.files) / 1e6
        print(f"{manifest.id}  {manifest.finished_at}  {size:8.1f} MB  WAL {manifest.start_lsn}"
              f"..{manifest.end_lsn}  key {manifest.key_id}")
    print(f"{len(segments(source))} archived WAL files in {source / 'wal'}")


def _chunks(keys: KeyRing, path: Path, context: bytes) -> Iterator[bytes]:
    with path.open("rb") as source:
        yield from open_stream(keys, source, context)


def _verify(keys: KeyRing, directory: Path) -> Manifest:
    """The manifest, once it and every file it names authenticate and match."""
    manifest = verified_manifest(keys, directory)
    for item in manifest.files:
        digest = hashlib.sha256()
        print(f"argus: verifying {item.name} ({item.sealed_bytes / 1e6:.1f} MB)", flush=True)
        for chunk in _chunks(keys, directory / item.name, f"{manifest.id}/{item.name}"
                             .removesuffix(".sealed").encode()):
            digest.update(chunk)
        if digest.hexdigest() != item.sha256:
            raise BackupSealError(f"{item.name} does not match its manifest checksum")
    return manifest


class _ChunkReader:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        taken = self.buffer if size < 0 else self.buffer[:size]
        self.buffer = self.buffer[len(taken):]
        return taken


def _extract(keys: KeyRing, directory: Path, manifest: Manifest, name: str, into: Path) -> None:
    context = f"{manifest.id}/{name}".removesuffix(".sealed").encode()
    reader = _ChunkReader(_chunks(keys, directory / name, context))
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        tar.extractall(into, filter="data")


def _choose(source: Path, backup: str | None, target: str | None) -> Path:
    candidates = bases(source)
    if backup:
        candidates = [m for m in candidates if m.id == backup]
    elif target:
        candidates = [m for m in candidates if m.finished_at < _utc(target)]
    if not candidates:
        raise RestoreFailed(f"no base backup in {source / BASE} fits" +
                            (f" the target time {target}" if target else ""))
    return source / BASE / candidates[-1].id


def _utc(text: str) -> str:
    from datetime import UTC, datetime
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--target-time {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--target-time {text!r} needs a zone (for example +00:00)")
    return moment.astimezone(UTC).isoformat()


def _stage_wal(keys: KeyRing, source: Path, pg_dir: Path) -> int:
    staging = pg_dir / STAGING
    staging.mkdir()
    names = segments(source)
    for index, segment in enumerate(names, 1):
        open_segment(keys, source, segment, staging / segment)
        if sys.stderr.isatty():
            print(f"\rargus: WAL {index}/{len(names)}", end="", file=sys.stderr, flush=True)
    return len(names)


def _recovery_config(pg_dir: Path, target: str | None) -> None:
    lines = [f"restore_command = 'cp \"{pg_dir / STAGING}/%f\" \"%p\"'",
             "recovery_target_action = 'promote'"]
    if target:
        lines.append(f"recovery_target_time = '{_utc(target)}'")
    with (pg_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n# argus restore\n" + "\n".join(lines) + "\n")
    (pg_dir / "recovery.signal").touch()
    (pg_dir / "postmaster.pid").unlink(missing_ok=True)


async def _promoted(pg: EmbeddedPostgres, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(pg.admin_url, timeout=10)
        try:
            if not await conn.fetchval("select pg_is_in_recovery()"):
                return
        finally:
            await conn.close()
        await asyncio.sleep(0.2)
    raise RestoreFailed(f"recovery did not finish within {seconds:.0f}s")


async def _after_recovery(pg: EmbeddedPostgres, journal: Journal,
                          files_dir: Path) -> tuple[tuple[int, int], int]:
    """Before anyone is served: journaled deletions again, then the outbox re-published."""
    conn = await asyncpg.connect(pg.admin_url.rsplit("/", 1)[0] + "/argus", timeout=10)
    try:
        return await reapply(conn, journal, files_dir), await _republish(conn)
    finally:
        await conn.close()


async def _republish(conn: asyncpg.Connection) -> int:
    """Mark every outbox row that is still kept as unsent: the restored suite's relays publish
    them again to its (empty) stream, and every consumer drops an event id it already has, so
    an event sent before the restore point but consumed after it is not lost."""
    tables = await conn.fetch("select table_schema from information_schema.tables"
                              " where table_name = 'outbox'")
    total = 0
    for row in tables:
        done = await conn.execute(f'update "{row[0]}".outbox set sent_at = null'
                                  " where sent_at is not null")
        total += int(done.rsplit(" ", 1)[1])
    return total


def _recover(pg_dir: Path, secrets: DevSecrets, journal: Journal) -> None:
    pg = EmbeddedPostgres(pg_dir, free_port(), secrets.read("pg-superuser-password"))
    try:
        pg.start(timeout=RECOVERY_TIMEOUT)
    except Exception as exc:
        tail = (pg_dir / "server.log").read_text(errors="replace").strip().splitlines()[-2:]
        raise RestoreFailed(f"recovery failed: {exc}: {' | '.join(tail)}") from None
    try:
        asyncio.run(_promoted(pg, RECOVERY_TIMEOUT))
        (users, orgs), again = asyncio.run(_after_recovery(pg, journal,
                                                           pg_dir.parent / "files"))
        print(f"argus: journaled deletions re-applied: {users} accounts, {orgs} orgs; {again} "
              "outbox events marked to publish again (consumers dedupe by id)")
    finally:
        pg.stop()
    shutil.rmtree(pg_dir / STAGING, ignore_errors=True)


def restore(args: argparse.Namespace) -> Path:
    new: Path = args.new_dir.resolve()
    if new.exists():
        raise RestoreFailed(f"{new} exists: a restore goes only into a new directory")
    if is_s3(args.source):
        with downloaded(args.source) as local:
            return restore(argparse.Namespace(**{**vars(args), "source": local}))
    source = Path(args.source or default_dir(args.data_dir)).resolve()
    secrets = ensure_dev_secrets(args.data_dir / "secrets")
    keys = master_keys(args.data_dir)
    if (source / "incoming").is_dir():
        seal_incoming(keys, source)
    directory = _choose(source, args.backup, args.target_time)
    try:
        manifest = _verify(keys, directory)
        journal = read_journal(keys, source)
    except BackupSealError as exc:
        raise RestoreFailed(f"backup {directory.name} refused: {exc}") from None
    new.mkdir(parents=True, mode=0o700)
    try:
        _restore_into(args, keys, source, directory, manifest, secrets, new, journal)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return new


def _restore_into(args: argparse.Namespace, keys: KeyRing, source: Path, directory: Path,
                  manifest: Manifest, secrets: DevSecrets, new: Path, journal: Journal) -> None:
    shutil.copytree(secrets.directory, new / "secrets")  # the operator's keys, not the backup's
    mounted = Env().str("ARGUS_MASTER_KEYS_FILE")
    if mounted:  # the ring the backup was read with, so the restored suite decrypts with it too
        shutil.copyfile(mounted, new / "secrets" / "master-keys")
    pg_dir = new / "pg"
    print(f"argus: restoring base {manifest.id} into {pg_dir}", flush=True)
    _extract(keys, directory, manifest, "postgresql.tar.sealed", pg_dir)
    _extract(keys, directory, manifest, "objects.tar.sealed", new / "files")
    staged = _stage_wal(keys, source, pg_dir)
    _recovery_config(pg_dir, args.target_time)
    print(f"argus: replaying WAL ({staged} archived files) to "
          f"{args.target_time or 'the end of the archive'}", flush=True)
    _recover(pg_dir, ensure_dev_secrets(new / "secrets"), journal)
    print(f"argus: restored into {new}; run: argus --data-dir {new} up", flush=True)
