"""`argus drill`: the restore drill as one command. The latest backup is restored (to the end
of its WAL archive) into a throw-away directory; the whole suite is started on it by `argus up`
in a child process, on other ports, with its own embedded PostgreSQL and an empty NATS (nothing
of the live suite is touched: not its ports, data directory, archive or stream); then
`drill_checks` proves what it says. The report is printed and written as JSON
(`<backups>/drills/<time>.json`, and `latest.json`, the most recent drill's record;
`latest-passed.json` only when every check held). The drill suite is then stopped and its
directory removed. Any failed check: exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from argus_shared.cli import drill_checks
from argus_shared.cli.backup import default_dir, master_keys
from argus_shared.cli.restore import Commands, bases, restore
from argus_shared.embedded import EmbeddedPostgres, free_port, port_free
from argus_shared.settings import SERVICES

UP_TIMEOUT = 240.0
STOP_TIMEOUT = 30.0
BANNER_END = "Press Ctrl-C to stop."


class DrillFailed(Exception):
    """A check of the drill failed; the report is written all the same."""


def add_parser(commands: Commands) -> None:
    drilling = commands.add_parser("drill", help="restore the latest backup somewhere isolated, "
                                   "run the suite on it and check it; a JSON report")
    drilling.add_argument("--from", dest="source", type=Path)
    drilling.add_argument("--sample", type=int, default=20,
                          help="how many stored files to download and hash (default 20)")


def _ports() -> dict[str, int]:
    base = free_port()
    while not all(port_free(base + i) for i in range(len(SERVICES))):
        base = free_port()
    return {"gateway": free_port(), "base": base, "pg": free_port(), "nats": free_port()}


def _admin_url(data_dir: Path, port: int) -> str:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/argus"


def _prepare(data_dir: Path, sample: int) -> drill_checks.Prepared:
    port = free_port()
    pg = EmbeddedPostgres(data_dir / "pg", port,
                          (data_dir / "secrets" / "pg-superuser-password").read_text().strip())
    pg.start()
    try:
        return asyncio.run(drill_checks.prepare(_admin_url(data_dir, port), sample))
    finally:
        pg.stop()


def _child_environ() -> dict[str, str]:
    """The live suite's settings stay out: no ARGUS_* reaches the drill suite (no database or
    NATS URL, no WAL archive, no files directory): it runs on its own embedded servers."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}


class DrillSuite:
    """`argus up` on the restored directory, in a child process of its own session."""

    def __init__(self, data_dir: Path, ports: dict[str, int], log: Path) -> None:
        argv = [sys.executable, "-c", "from argus_shared.cli.main import main; main()",
                "--data-dir", str(data_dir), "up", "--port", str(ports["gateway"]),
                "--service-port-base", str(ports["base"]), "--pg-port", str(ports["pg"]),
                "--nats-port", str(ports["nats"])]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=_child_environ(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_up(self, timeout: float = UP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while BANNER_END not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise DrillFailed(f"the drill suite exited {self.proc.returncode} before it "
                                  f"was up: {self._tail()}")
            if time.monotonic() > deadline:
                raise DrillFailed(f"the drill suite was not up within {timeout:.0f}s")
            time.sleep(0.2)

    def _tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def _served(new: Path, args: argparse.Namespace, prepared: drill_checks.Prepared,
            log: Path) -> dict[str, Any]:
    ports = _ports()
    suite = DrillSuite(new, ports, log)
    try:
        suite.wait_up()
        print(f"argus: drill suite up on 127.0.0.1:{ports['gateway']}; checking", flush=True)
        return asyncio.run(drill_checks.served(
            _admin_url(new, ports["pg"]), f"http://127.0.0.1:{ports['gateway']}",
            master_keys(args.data_dir), prepared))
    finally:
        code = suite.stop()
        print(f"argus: drill suite stopped ({code})", flush=True)


def _write(report: dict[str, Any], source: Path) -> Path:
    drills = source / "drills"
    drills.mkdir(parents=True, exist_ok=True)
    text = msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"
    path = drills / f"{report['started_at'].replace(':', '')}.json"
    path.write_bytes(text)
    (drills / "latest.json").write_bytes(text)
    if report["ok"]:
        (drills / "latest-passed.json").write_bytes(text)
    return path


def _summary(checks: dict[str, Any]) -> str:
    audit, files, outbox = checks["audit"], checks["files"], checks["outbox"]
    return (f"migrations at head {sum(checks['migrations_at_head'].values())}/{len(SERVICES)}, "
            f"audit chains {audit['chains'] - len(audit['broken'])}/{audit['chains']} "
            f"({audit['events_checked']} events, {audit['signed_checkpoints']} signed "
            f"checkpoints), files {files['sampled'] - len(files['failed'])}/{files['sampled']}, "
            f"unbalanced wallets {checks['wallets_unbalanced']}, outbox events "
            f"{outbox['events'] - len(outbox['lost'])}/{outbox['events']} arrived")


def drill(args: argparse.Namespace) -> None:
    source = (args.source or default_dir(args.data_dir)).resolve()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    found = bases(source)
    scratch = Path(tempfile.mkdtemp(prefix="argus-drill-"))
    try:
        new = restore(argparse.Namespace(new_dir=scratch / "argus", source=source, backup=None,
                                         target_time=None, data_dir=args.data_dir))
        prepared = _prepare(new, args.sample)
        checks = _served(new, args, prepared, scratch / "up.log")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    failures = prepared.failures
    report = {"started_at": started, "finished_at": datetime.now(UTC).isoformat(
        timespec="seconds"), "backup": found[-1].id if found else None, "ok": not failures,
        "failures": failures, "checks": checks}
    path = _write(report, source)
    print(f"argus: drill {'passed' if not failures else 'FAILED'}: {_summary(checks)}; "
          f"report {path}", flush=True)
    for failure in failures:
        print(f"argus: drill: {failure}", flush=True)
    if failures:
        raise DrillFailed(f"drill failed ({len(failures)} checks); see {path}")
