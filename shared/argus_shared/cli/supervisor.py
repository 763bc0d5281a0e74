"""Keeps one service process of `argus up` running.

A service that exits while the suite is up is restarted after a back-off that doubles with each
restart in a row (`RestartPolicy`), and the restart is announced on stdout. One that keeps
exiting before it becomes ready (`max_startup_failures` in a row) is given up on: the supervisor
raises `StartupError`, and `argus up` stops the whole suite with that one line.

Each running process's pid is in `<run dir>/<service>.pid`; `changed` is called whenever the
service starts, becomes ready or exits (`state`: starting, up, restarting), so `argus up` can
tell `argus status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from argus_shared.embedded import die_with_parent
from argus_shared.runner import StartupError, package_of

READY_TIMEOUT = 60.0
READY_POLL = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """`first_delay` before the first restart, doubling with each restart in a row up to
    `max_delay`; a service that stayed up `stable_after` seconds starts from `first_delay` again.
    `max_startup_failures` exits in a row before becoming ready and the suite stops."""

    first_delay: float = 0.5
    max_delay: float = 10.0
    stable_after: float = 30.0
    max_startup_failures: int = 5

    def delay(self, in_a_row: int) -> float:
        """The wait before restart number `in_a_row` (1-based) since the service was stable."""
        return min(self.first_delay * 2 ** min(max(in_a_row - 1, 0), 32), self.max_delay)


def print_line(line: str) -> None:
    print(line, flush=True)


def describe_exit(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


@dataclass
class Child:
    service: str
    proc: asyncio.subprocess.Process
    log_path: Path

    def last_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln]
            if lines:
                return lines[-1][-300:]
        return "(no output)"


async def spawn(service: str, env: Mapping[str, str], log_path: Path) -> Child:
    """Start `python -m argus_<service>` in its own session, output appended to `log_path`;
    the kernel signals it if this process dies."""
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", package_of(service), env=dict(env),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, preexec_fn=die_with_parent,
        )
    return Child(service, proc, log_path)


def kill_leftovers(child: Child) -> None:
    """After a service died, end what it started in its session (its hashing workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, signal.SIGKILL)


async def first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until one of `awaitables` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _answers_ready(session: aiohttp.ClientSession, url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(url) as response:
            return response.status == 200
    return False


@dataclass
class ServiceSupervisor:
    """Runs one service until `stop` is set, restarting it whenever it exits."""

    service: str
    env: Mapping[str, str]
    ready_url: str
    log_path: Path
    pid_file: Path
    stop: asyncio.Event
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    say: Callable[[str], None] = print_line
    child: Child | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once first ready
    restarts: int = 0
    state: str = "starting"  # starting, up, restarting
    changed: Callable[[ServiceSupervisor], None] | None = None
    replica: int = 1  # which of the service's replicas (`--replicas`), from 1
    port: int = 0  # where it listens (for `argus status`)

    @property
    def name(self) -> str:
        """`auth` for the first replica, `auth-2` for the second, and so on."""
        return self.service if self.replica == 1 else f"{self.service}-{self.replica}"

    def _become(self, state: str) -> None:
        self.state = state
        if self.changed is not None:
            self.changed(self)

    async def run(self) -> None:
        """Keep the service running; StartupError when it keeps failing at start-up."""
        in_a_row = failures = 0
        while not self.stop.is_set():
            child = await self._start()
            up_since = await self._until_ready(child)
            if up_since is None:
                failures += 1
                if failures >= self.policy.max_startup_failures and not self.stop.is_set():
                    raise StartupError(self._giving_up(child, failures))
            else:
                failures = 0
                await first_of(child.proc.wait(), self.stop.wait())
                if time.monotonic() - up_since >= self.policy.stable_after:
                    in_a_row = 0
            if self.stop.is_set():
                return
            kill_leftovers(child)
            in_a_row += 1
            await self._back_off(child, self.policy.delay(in_a_row))

    async def _start(self) -> Child:
        self.child = await spawn(self.service, self.env, self.log_path)
        self.pid_file.write_text(f"{self.child.proc.pid}\n")
        self._become("starting")
        return self.child

    async def _until_ready(self, child: Child) -> float | None:
        """When it answered /readyz (monotonic time), or None if it exited or `stop` came first."""
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                probe = asyncio.ensure_future(_answers_ready(session, self.ready_url))
                await first_of(probe, child.proc.wait(), self.stop.wait())
                if self.stop.is_set() or child.proc.returncode is not None:
                    return None
                if probe.done() and probe.result():
                    self._now_ready(child)
                    return time.monotonic()
                await pause(self.stop, READY_POLL)
        raise StartupError(
            f"{self.name} not ready within {READY_TIMEOUT:.0f} s; giving up (log "
            f"{self.log_path}: {child.last_line()})"
        )

    def _now_ready(self, child: Child) -> None:
        if self.ready.is_set():
            self.say(f"argus: {self.name} is back (pid {child.proc.pid})")
        self.ready.set()
        self._become("up")

    async def _back_off(self, child: Child, delay: float) -> None:
        self.restarts += 1
        self._become("restarting")
        code = describe_exit(child.proc.returncode or 0)
        self.say(f"argus: {self.name} exited ({code}); restarting in {delay:g} s "
                 f"(restart {self.restarts})")
        await pause(self.stop, delay)

    def _giving_up(self, child: Child, failures: int) -> str:
        code = describe_exit(child.proc.returncode or 0)
        return (f"{self.name} exited {failures} times in a row before it was ready "
                f"(last: {code}); giving up. Its log: {self.log_path} (last line: "
                f"{child.last_line()})")

    async def stop_child(self, grace: float) -> None:
        """SIGTERM the running process, SIGKILL it after `grace` seconds; remove its pid file."""
        child = self.child
        if child is not None and child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        self.pid_file.unlink(missing_ok=True)
