"""`argus backups prune`: drop base backups past the retention (ARGUS_BACKUP_RETENTION_DAYS, 30;
7 for a plan that keeps a week) and the archived WAL that no kept base needs.

What a point-in-time window still needs is kept: every base newer than the cut-off, the newest
base older than it (the only way to reach the cut-off moment itself), and the WAL from that
base's start onward. The newest base is never dropped. WAL is removed by PostgreSQL's own
`pg_archivecleanup` (sealed names: `-x .sealed`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argus_shared.backup_manifest import Manifest
from argus_shared.cli.backup import BASE, default_dir, pg_tool
from argus_shared.cli.restore import bases
from argus_shared.settings import Env
from argus_shared.wal_archive import SEALED, WAL


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pruning = actions.add_parser("prune", help="drop bases past retention and the WAL no kept "
                                 "base needs")
    pruning.add_argument("--from", dest="source", type=Path)
    pruning.add_argument("--days", type=int,
                         default=Env().int("ARGUS_BACKUP_RETENTION_DAYS", 30, 1, 3650),
                         help="retention in days (ARGUS_BACKUP_RETENTION_DAYS; 30)")


def kept(manifests: list[Manifest], cutoff: str) -> list[Manifest]:
    """The bases a window back to `cutoff` needs (manifests oldest first)."""
    newer = [m for m in manifests if m.finished_at >= cutoff]
    older = [m for m in manifests if m.finished_at < cutoff]
    return older[-1:] + newer


def segment_of(lsn: str, timeline: int) -> str:
    high, low = (int(part, 16) for part in lsn.split("/"))
    return f"{timeline:08X}{high:08X}{low >> 24:08X}"


def prune(args: argparse.Namespace) -> None:
    source = (args.source or default_dir(args.data_dir)).resolve()
    manifests = bases(source)
    cutoff = (datetime.now(UTC) - timedelta(days=args.days)).isoformat()
    keep = kept(manifests, cutoff)
    for manifest in manifests:
        if manifest not in keep:
            shutil.rmtree(source / BASE / manifest.id)
            print(f"argus: dropped base {manifest.id} ({manifest.finished_at})")
    if keep:
        oldest = segment_of(keep[0].start_lsn, keep[0].timeline)
        subprocess.run([pg_tool("pg_archivecleanup"), "-x", SEALED,
                        str(source / WAL), oldest], check=True)
        print(f"argus: kept {len(keep)} bases and the WAL from {oldest} ({args.days} days)")
