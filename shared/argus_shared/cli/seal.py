"""`argus backups seal-wal`: the WAL sealer on its own, for a PostgreSQL that archives into a
shared volume (compose's `wal-sealer` service, the Kubernetes sidecar): every `--every`
seconds (once without it) the segments PostgreSQL's `archive_command` left in
`<archive>/incoming` are sealed under the master key ring into `<archive>/wal`, and the
deletions seen in the database (ARGUS_DATABASE_ADMIN_URL(_FILE)) are journaled."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from argus_shared.backup_s3 import bucket_and_prefix, upload
from argus_shared.cli.backup import default_dir, master_keys
from argus_shared.deletions_journal import capture
from argus_shared.settings import Env
from argus_shared.wal_archive import INCOMING, WAL, seal_incoming


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sealing = actions.add_parser("seal-wal", help="seal the WAL PostgreSQL archived and "
                                 "journal deletions (once, or every --every seconds)")
    sealing.add_argument("--from", dest="source", type=Path)
    sealing.add_argument("--to", help="s3://bucket/prefix: upload what it lacks after each "
                         "round (the WAL between two bases, the journal)")
    sealing.add_argument("--every", type=float, default=0.0,
                         help="seconds between rounds; 0 (default): one round")


def _round(args: argparse.Namespace, url: str | None) -> tuple[int, int]:
    archive = (args.source or default_dir(args.data_dir)).resolve()
    for name in (INCOMING, WAL):
        (archive / name).mkdir(parents=True, exist_ok=True)
    keys = master_keys(args.data_dir)
    sealed = seal_incoming(keys, archive)
    journaled = asyncio.run(capture(keys, url, archive)) if url else 0
    if args.to:
        upload(archive, args.to)
    return sealed, journaled


def run(args: argparse.Namespace) -> None:
    url = Env().secret("ARGUS_DATABASE_ADMIN_URL", required=False)
    if args.to:
        bucket_and_prefix(args.to)  # a malformed target stops here, before any round
    while True:
        try:
            sealed, journaled = _round(args, url)
            if sealed or journaled or not args.every:
                print(f"argus: sealed {sealed} WAL files, journaled {journaled} deletions",
                      flush=True)
        except Exception as exc:
            if not args.every:
                raise
            print(f"argus: seal-wal: {type(exc).__name__}: {exc}".splitlines()[0],
                  file=sys.stderr, flush=True)
        if not args.every:
            return
        time.sleep(args.every)
