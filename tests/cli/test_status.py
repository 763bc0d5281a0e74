"""`argus status` against a real `argus up`: every service up with its pid, port, health and
readiness, the mailbox and its newest mail; a killed service seen restarting and back; nothing
running once the suite stopped, or when none was ever started."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from argus_shared.cli.state import state_path
from argus_shared.settings import SERVICES
from support.argus_up import ARGUS, PASSWORD, Gateway, RunningSuite, argus_up
from support.mailbox import mail_to
from support.processes import run_to_exit

DEADLINE = 90.0
Table = dict[str, list[str]]


def status(data_dir: Path, *, after: bool = False) -> tuple[int, str]:
    """`argus --data-dir D status`, or `argus status --data-dir D`."""
    where = ["--data-dir", str(data_dir)]
    return run_to_exit([ARGUS, *(["status", *where] if after else [*where, "status"])], {},
                       timeout=30)


def table(output: str) -> Table:
    """The rows of the status table by their first column: [pid, port, health, ready, state]."""
    rows: Table = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in ("gateway", *SERVICES) and line.startswith("  "):
            rows[cells[0]] = [*cells[1:5], " ".join(cells[5:])]
    return rows


def pid_files(data_dir: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in (data_dir / "run").glob("*.pid")}


def assert_all_up(suite: RunningSuite, output: str, killed: tuple[str, int] | None = None) -> None:
    rows = table(output)
    assert set(rows) == {"gateway", *SERVICES}, output
    assert rows["gateway"] == [str(suite.proc.popen.pid), str(suite.ports["gateway"]), "ok",
                               "-", "up"], output
    pids = pid_files(suite.data_dir)
    for index, service in enumerate(SERVICES):
        state = "up (1 restart)" if killed and service == killed[0] else "up"
        assert rows[service] == [str(pids[service]), str(suite.ports["base"] + index), "ok",
                                 "ok", state], output


async def test_status_with_no_suite_running_is_one_line(tmp_path: Path) -> None:
    for after in (False, True):
        code, output = status(tmp_path / "none", after=after)
        assert (code, output) == (1, f"argus: no suite is running under {tmp_path / 'none'}\n")
    # what a suite killed with SIGKILL leaves: a state file naming a process that is gone
    path = state_path(tmp_path / "stale")
    path.parent.mkdir(parents=True)
    gone = run_to_exit(["sh", "-c", "echo $$"], {})[1].strip()
    path.write_text(json.dumps({
        "pid": int(gone), "started_at": "2026-01-01T00:00:00+00:00",
        "gateway": "http://127.0.0.1:9", "gateway_port": 9, "services": {},
        "postgresql": "", "nats": "", "mailbox": "", "logs": "", "up": True,
    }))
    code, output = status(tmp_path / "stale")
    assert (code, output) == (1, f"argus: no suite is running under {tmp_path / 'stale'}\n")


async def until_status(data_dir: Path, done: Callable[[int, str], bool],
                       what: str) -> tuple[int, str, list[str]]:
    """Run `argus status` until `done(code, output)`: that code and output, and every output
    before it."""
    deadline = time.monotonic() + DEADLINE
    seen: list[str] = []
    while True:
        code, output = await asyncio.to_thread(status, data_dir)
        assert "Traceback" not in output, output
        if done(code, output):
            return code, output, seen
        seen.append(output)
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}; last:\n{output}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(300)
async def test_status_follows_a_running_suite(tmp_path: Path) -> None:
    email = "status@example.com"
    async with argus_up(tmp_path / "up.log") as suite:
        assert "status      argus --data-dir" in suite.banner
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            await Gateway(http, suite.gateway).call(
                "POST", "/auth/signup", body={"email": email, "password": PASSWORD}, expect=202)
        await mail_to(suite.mailbox, email)

        for after in (False, True):
            code, output = status(suite.data_dir, after=after)
            assert code == 0, output
            assert_all_up(suite, output)
        lines = output.splitlines()
        assert lines[0].startswith(f"argus up (pid {suite.proc.popen.pid}) under "
                                   f"{suite.data_dir}, since ") and lines[0].endswith(": up")
        assert f"  PostgreSQL  postgresql://127.0.0.1:{suite.ports['pg']}/argus" in lines
        assert f"  NATS        nats://127.0.0.1:{suite.ports['nats']}" in lines
        assert f"  mailbox     {suite.mailbox}  (1 mail, newest first)" in lines
        [mail] = [line.split("  ") for line in lines if line.startswith("    ")]
        assert mail[3:] == [email, "Verify your email"], lines
        secrets = {line.rsplit(":", 1)[-1] for p in (suite.data_dir / "secrets").iterdir()
                   for line in p.read_text().splitlines() if len(line) >= 16}
        state = state_path(suite.data_dir).read_text()
        assert secrets and not [s for s in secrets if s in output or s in state]

        # a service killed: seen restarting (or already back), then back with a new pid
        killed = pid_files(suite.data_dir)["files"]
        os.kill(killed, signal.SIGKILL)
        code, output, seen = await until_status(
            suite.data_dir,
            lambda code, out: code == 0 and table(out)["files"][0] != str(killed),
            "files back under a new pid")
        assert_all_up(suite, output, killed=("files", killed))
        for earlier in seen:  # the killed one as the supervisor saw it meanwhile
            pid, *_, state = table(earlier)["files"]
            if pid == str(killed):
                assert state == "up" and earlier.splitlines()[0].endswith("not everything is up")
                continue  # killed, not yet noticed: it does not answer
            assert (pid == "-") == (state == "restarting (1 restart)"), earlier
            assert state in ("restarting (1 restart)", "starting (1 restart)"), earlier
            assert earlier.endswith(f"argus: not everything is up: files ({state.split()[0]})\n")

        assert await suite.stop(signal.SIGINT) == 0, suite.proc.output
        code, output = status(suite.data_dir)
        assert (code, output) == (1, f"argus: no suite is running under {suite.data_dir}\n")
        assert not state_path(suite.data_dir).exists()
