"""Benchmark: `argus backup`'s sealed base (pg_basebackup to stdout through AES-256-GCM) and
its verify-and-extract on restore, in MB/s, each as a ratio of a plain `pg_basebackup -Ft` to a
directory and a plain tar extraction of the same cluster, in the same run. An embedded
PostgreSQL filled by `pgbench -i` (scale 10 by default, 100 with ARGUS_FULL=1).

    .venv/bin/python bench/backup_restore.py [--scale N]

Not measured yet: WAL archive lag under the login/ledger write load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from argus_shared.backup_seal import open_stream
from argus_shared.cli.backup import _base
from argus_shared.cli.restore import _ChunkReader
from argus_shared.embedded import EmbeddedPostgres, free_port, pg_bin_dir
from argus_shared.settings import KeyRing

CONTEXT = b"bench/postgresql.tar"


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def plain_base(pg: EmbeddedPostgres, target: Path) -> None:
    subprocess.run([str(pg_bin_dir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "postgres", "-D", str(target), "-Ft", "-X", "fetch",
                    "--checkpoint=fast"], env={**os.environ, "PGPASSWORD": pg.password},
                   check=True)


def sealed_extract(keys: KeyRing, sealed: Path, into: Path) -> None:
    """As `argus restore` does: authenticate and hash it all, then decrypt into tar's stream."""
    digest = hashlib.sha256()
    with sealed.open("rb") as source:
        for chunk in open_stream(keys, source, CONTEXT):
            digest.update(chunk)
    with sealed.open("rb") as source:
        reader = _ChunkReader(open_stream(keys, source, CONTEXT))
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            tar.extractall(into / "pg", filter="data")


def plain_extract(tar_path: Path, into: Path) -> None:
    with tarfile.open(tar_path) as tar:
        tar.extractall(into / "pg", filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100 if os.environ.get("ARGUS_FULL") else 10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="argus-bench-backup-"))
    pg = EmbeddedPostgres(root / "pg", free_port(), secrets.token_urlsafe(16))
    keys = KeyRing({"bench": os.urandom(32)}, "bench")
    try:
        pg.start()
        subprocess.run([str(pg_bin_dir() / "pgbench"), "-i", "-q", "-s", str(args.scale), "-h",
                        "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "postgres"],
                       env={**os.environ, "PGPASSWORD": pg.password}, check=True,
                       capture_output=True)
        plain_dir, sealed = root / "plain", root / "base.sealed"
        plain = timed(lambda: plain_base(pg, plain_dir))
        ours = timed(lambda: _base("127.0.0.1", pg.port, pg.password, keys, sealed,
                                   CONTEXT))
        megabytes = (plain_dir / "base.tar").stat().st_size / 1e6
        (root / "r1").mkdir()
        (root / "r2").mkdir()
        plain_restore = timed(lambda: plain_extract(plain_dir / "base.tar", root / "r1"))
        our_restore = timed(lambda: sealed_extract(keys, sealed, root / "r2"))
        print(f"cluster {megabytes:.0f} MB (pgbench scale {args.scale})")
        print(f"base backup: plain pg_basebackup {megabytes / plain:.0f} MB/s, sealed "
              f"{megabytes / ours:.0f} MB/s, ratio {plain / ours:.2f} of plain")
        print(f"restore:     plain tar extract {megabytes / plain_restore:.0f} MB/s, "
              f"verify+extract {megabytes / our_restore:.0f} MB/s, ratio "
              f"{plain_restore / our_restore:.2f} of plain")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
