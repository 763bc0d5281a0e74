"""Real processes for tests: start one with an environment, wait for it, stop it, read output.

Every process gets the breached-password check on loopback (the local range server that
`support.hibp_server` runs, else off) and is refused any setting that points off this machine."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from argus_shared.runner import package_of
from support.offline import assert_loopback_settings

PYTHON = sys.executable
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")


def base_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in BASE_ENV_KEYS}
    env["ARGUS_HIBP_URL"] = os.environ.get("ARGUS_HIBP_URL") or "off"
    return env


def environ_for(env: Mapping[str, str]) -> dict[str, str]:
    """`env` over the base, checked: outside services only on loopback."""
    full = {**base_environ(), **env}
    assert_loopback_settings(full)
    return full


def service_command(service: str) -> list[str]:
    return [PYTHON, "-m", package_of(service)]


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], log_path: Path) -> Proc:
        full = environ_for(env)
        log = log_path.open("wb")
        popen = subprocess.Popen(
            argv, env=full, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return cls(popen, log_path)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def run_to_exit(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a command to its end; (exit code, stdout + stderr)."""
    done = subprocess.run(
        argv, env=environ_for(env), capture_output=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


async def wait_ready(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise AssertionError(f"process exited {proc.popen.returncode}: {proc.output}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"not ready within {timeout}s: {proc.output[-2000:]}")
