"""Benchmark: `argus backup`'s sealed base (pg_basebackup to stdout through AES-256-GCM) and
its verify-and-extract on restore, in MB/s, each as a ratio of a plain `pg_basebackup -Ft` to a
directory and a plain tar extraction of the same cluster, in the same run. An embedded
PostgreSQL filled by `pgbench -i` (scale 10 by default, 100 with ARGUS_FULL=1).

    .venv/bin/python bench/backup_restore.py [--scale N]

Then WAL archive lag: with `argus up --archive`'s settings and sealer, `pgbench` writes for a
few seconds (20 with ARGUS_FULL=1); each second a segment switch is forced and the time until its
sealed file appears is the lag (PostgreSQL's archive_command, then the 2-second sealer). The
load is pgbench's, not the suite's login/ledger load.
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
from argus_shared.cli.backup import Source, _base
from argus_shared.cli.restore import _ChunkReader
from argus_shared.embedded import EmbeddedPostgres, free_port, pg_bin_dir
from argus_shared.settings import KeyRing
from argus_shared.wal_archive import Sealer, archive_settings, prepare_archive, segments

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


def archive_lag(pg: EmbeddedPostgres, keys: KeyRing, archive: Path, seconds: int) -> list[float]:
    """Force a segment switch once a second under pgbench load; each one's time to sealed."""
    sealer = Sealer(keys, archive)
    sealer.start()
    load = subprocess.Popen([str(pg_bin_dir() / "pgbench"), "-T", str(seconds), "-c", "4", "-h",
                             "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "postgres"],
                            env={**os.environ, "PGPASSWORD": pg.password},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lags = []
    try:
        while load.poll() is None:
            segment = subprocess.run(
                [str(pg_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                 "postgres", "-Atc", "select pg_walfile_name(pg_switch_wal())", "postgres"],
                env={**os.environ, "PGPASSWORD": pg.password}, capture_output=True, text=True,
                check=True).stdout.strip()
            start = time.perf_counter()
            while segment not in segments(archive) and time.perf_counter() - start < 30:
                time.sleep(0.05)
            lags.append(time.perf_counter() - start)
            time.sleep(1)
    finally:
        load.wait()
        sealer.stop()
    return lags


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
        source = Source("127.0.0.1", pg.port, "postgres", pg.password)
        ours = timed(lambda: _base(source, keys, sealed, CONTEXT))
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
        pg.stop()
        archive = root / "archive"
        prepare_archive(archive, (pg.user.pw_uid, pg.user.pw_gid) if pg.user else None)
        pg.settings.update(archive_settings(archive))
        pg.start()
        lags = sorted(archive_lag(pg, keys, archive, 20 if os.environ.get("ARGUS_FULL") else 5))
        print(f"WAL archive lag under pgbench load: median {lags[len(lags) // 2]:.2f} s, "
              f"max {lags[-1]:.2f} s over {len(lags)} segments (sealer interval 2 s)")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
