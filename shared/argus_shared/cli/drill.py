"""`argus drill`: restore the latest backup into a throw-away directory, start its PostgreSQL on
another port, check what can be checked from the database, and write the report as JSON
(`<backups>/drills/<time>.json` and `latest.json`: the most recent drill's record).

Checked: every service's migrations are at head (names and checksums), every wallet's balance
equals the sum of its ledger, and the outbox rows the restore will publish again. Not checked
yet, and said so in the report: audit chains and signed checkpoints, a sample of files
decrypting to their checksums (both need the suite started on the restored data).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from argus_shared.cli.backup import default_dir
from argus_shared.cli.restore import Commands, restore
from argus_shared.embedded import EmbeddedPostgres, free_port
from argus_shared.migrate import migrations_for
from argus_shared.runner import package_of
from argus_shared.settings import SERVICES, schema_of

NOT_CHECKED = ["audit chains and signed checkpoints", "files decrypt to their checksums",
               "the suite serving on the restored data"]
UNBALANCED = """
select count(*) from tenant_api.wallets w
left join (select org_id, sum(amount_cents) as total from tenant_api.ledger_entries
           group by org_id) l using (org_id)
where w.balance_cents <> coalesce(l.total, 0)"""


class DrillFailed(Exception):
    """A check of the drill failed; the report is written all the same."""


def add_parser(commands: Commands) -> None:
    drilling = commands.add_parser("drill", help="restore the latest backup somewhere isolated "
                                   "and check it; a JSON report")
    drilling.add_argument("--from", dest="source", type=Path)


async def _migrations(conn: asyncpg.Connection) -> dict[str, bool]:
    at_head = {}
    for service in SERVICES:
        rows = await conn.fetch(f'select name, checksum from "{schema_of(service)}"'
                                ".schema_migrations")
        wanted = {(m.name, m.checksum) for m in migrations_for(package_of(service))}
        at_head[service] = {(r["name"], r["checksum"]) for r in rows} == wanted
    return at_head


async def _checks(pg: EmbeddedPostgres) -> dict[str, Any]:
    conn = await asyncpg.connect(pg.admin_url.rsplit("/", 1)[0] + "/argus", timeout=10)
    try:
        outbox = {}
        for service in SERVICES:
            outbox[service] = await conn.fetchval(
                f'select count(*) from "{schema_of(service)}".outbox where sent_at is null')
        return {"migrations_at_head": await _migrations(conn),
                "wallets_unbalanced": await conn.fetchval(UNBALANCED),
                "outbox_to_publish_again": outbox}
    finally:
        await conn.close()


def _inspect(new: Path) -> dict[str, Any]:
    password = (new / "secrets" / "pg-superuser-password").read_text().strip()
    pg = EmbeddedPostgres(new / "pg", free_port(), password)
    pg.start()
    try:
        return asyncio.run(_checks(pg))
    finally:
        pg.stop()


def _write(report: dict[str, Any], source: Path) -> Path:
    drills = source / "drills"
    drills.mkdir(parents=True, exist_ok=True)
    text = msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"
    path = drills / f"{report['started_at'].replace(':', '')}.json"
    path.write_bytes(text)
    (drills / "latest.json").write_bytes(text)
    return path


def drill(args: argparse.Namespace) -> None:
    source = (args.source or default_dir(args.data_dir)).resolve()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    scratch = Path(tempfile.mkdtemp(prefix="argus-drill-"))
    try:
        restore(argparse.Namespace(new_dir=scratch / "argus", source=source, backup=None,
                                   target_time=None, data_dir=args.data_dir))
        checks = _inspect(scratch / "argus")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ok = all(checks["migrations_at_head"].values()) and checks["wallets_unbalanced"] == 0
    report = {"started_at": started, "finished_at": datetime.now(UTC).isoformat(
        timespec="seconds"), "ok": ok, "checks": checks, "not_checked": NOT_CHECKED}
    path = _write(report, source)
    print(f"argus: drill {'passed' if ok else 'FAILED'}: migrations at head "
          f"{sum(checks['migrations_at_head'].values())}/{len(SERVICES)}, unbalanced wallets "
          f"{checks['wallets_unbalanced']}; not checked: {', '.join(NOT_CHECKED)}; "
          f"report {path}", flush=True)
    if not ok:
        raise DrillFailed(f"drill failed; see {path}")
