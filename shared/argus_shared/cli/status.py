"""`argus status`: what the `argus up` running under the data directory runs, read from the
state file it keeps (`<data-dir>/run/suite.json`, argus_shared.cli.state), each service asked
for its /healthz and /readyz (a short timeout each, all at once); then where PostgreSQL, NATS,
the logs and the development mailbox are, with the newest mails.

Exit 0 when the gateway and every service answer healthy and ready; 1, after the table, with
one line naming what is not, or with `argus: no suite is running under <dir>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import aiohttp

from argus_shared.cli.state import SuiteState, read_state

PROBE_TIMEOUT = 2.0
NEWEST_MAILS = 5
HOST = "127.0.0.1"  # argus up serves on loopback only


class Unavailable(Exception):
    """Nothing runs, or something is not up: one line, exit 1."""


def add_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="what `argus up` runs: pids, ports, health, newest mail",
        description="What the `argus up` running under the data directory runs: the gateway "
                    "and each service (pid, port, /healthz, /readyz), PostgreSQL, NATS, the logs "
                    "and the newest development mail. Exit 0 when all is up, 1 otherwise.",
    )
    status.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,
                        help="the data directory of that `argus up` (as given before the command)")


@dataclass(frozen=True)
class Row:
    service: str
    pid: int | None
    port: int
    health: str  # ok, an HTTP status, or "down" (no answer)
    ready: str  # the same, or "-" (the gateway has no /readyz of its own)
    state: str  # what `argus up` says: starting, up, restarting
    restarts: int = 0

    @property
    def up(self) -> bool:
        return self.health == "ok" and self.ready in ("ok", "-") and self.state == "up"

    @property
    def shown_state(self) -> str:
        if not self.restarts:
            return self.state
        return f"{self.state} ({self.restarts} restart{'s' if self.restarts > 1 else ''})"


@dataclass(frozen=True)
class Mail:
    when: str
    to: str
    subject: str


def run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    state = read_state(data_dir)
    if state is None:
        raise Unavailable(f"no suite is running under {data_dir}")
    rows = asyncio.run(check(state))
    print(render(data_dir, state, rows, newest_mails(Path(state.mailbox))), flush=True)
    down = [f"{row.service} ({_why(row)})" for row in rows if not row.up]
    if down:
        raise Unavailable(f"not everything is up: {', '.join(down)}")


def _why(row: Row) -> str:
    if row.state != "up":
        return row.state
    return f"health {row.health}" if row.health != "ok" else f"ready {row.ready}"


async def check(state: SuiteState) -> list[Row]:
    """A row for the gateway and one per service, probed all at once."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT), cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        gateway = _probe(session, f"{state.gateway}/healthz")
        probes = [(_probe(session, f"http://{HOST}:{s.port}/healthz"),
                   _probe(session, f"http://{HOST}:{s.port}/readyz"))
                  for s in state.services.values()]
        answers = await asyncio.gather(gateway, *(p for pair in probes for p in pair))
    rows = [Row("gateway", state.pid, state.gateway_port, answers[0], "-",
                "up" if state.up else "starting")]
    for index, (name, service) in enumerate(state.services.items()):
        health, ready = answers[1 + 2 * index], answers[2 + 2 * index]
        rows.append(Row(name, service.pid, service.port, health, ready, service.state,
                        service.restarts))
    return rows


async def _probe(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as response:
            return "ok" if response.status == 200 else str(response.status)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return "down"


def newest_mails(mailbox: Path, count: int = NEWEST_MAILS) -> tuple[int, list[Mail]]:
    """How many mails the development mailbox holds, and the newest `count`, newest first."""
    found: list[tuple[int, str, Path]] = []
    with contextlib.suppress(OSError):
        for path in mailbox.glob("*.eml"):
            with contextlib.suppress(OSError):
                found.append((path.stat().st_mtime_ns, path.name, path))
    found.sort(reverse=True)
    mails = []
    parser = BytesHeaderParser(policy=policy.default)
    for mtime, _, path in found[:count]:
        try:
            headers = parser.parsebytes(path.read_bytes())
        except OSError:
            continue
        when = datetime.fromtimestamp(mtime / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        mails.append(Mail(when, str(headers.get("To", "?")), str(headers.get("Subject", ""))))
    return len(found), mails


def render(data_dir: Path, state: SuiteState, rows: list[Row],
           mailbox: tuple[int, list[Mail]]) -> str:
    overall = "up" if all(row.up for row in rows) else "not everything is up"
    lines = [f"argus up (pid {state.pid}) under {data_dir}, since {state.started_at}: {overall}",
             f"  {'service':<11} {'pid':<8} {'port':<6} {'health':<7} {'ready':<6} state"]
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        lines.append(f"  {row.service:<11} {pid:<8} {row.port:<6} {row.health:<7} "
                     f"{row.ready:<6} {row.shown_state}")
    total, mails = mailbox
    held = "empty" if not total else f"{total} mail{'s' if total > 1 else ''}, newest first"
    lines += [
        f"  PostgreSQL  {state.postgresql}",
        f"  NATS        {state.nats}",
        f"  logs        {state.logs}/<service>.log",
        f"  mailbox     {state.mailbox}  ({held})",
        *(f"    {mail.when}  {mail.to}  {mail.subject}" for mail in mails),
    ]
    return "\n".join(lines)
