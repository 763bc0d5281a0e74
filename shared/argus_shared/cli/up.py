"""`argus up`: infrastructure, migrations, the five services and the gateway, in one command.

Children run in their own sessions (so a terminal's Ctrl-C reaches only this supervisor, which
stops them in order) and die with it if it is killed. Shutdown takes well under 10 seconds:
gateway, then services (SIGTERM, drained, killed after a deadline), then NATS and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from argus_shared.cli.infra import Infrastructure, migrate_all
from argus_shared.cli.stack import GATEWAY_PREFIXES, Stack
from argus_shared.embedded import die_with_parent, require_port
from argus_shared.gateway import create_gateway
from argus_shared.runner import StartupError, package_of
from argus_shared.settings import SERVICES

READY_TIMEOUT = 60.0
SERVICE_STOP_TIMEOUT = 5.0


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


def run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    ports = {service: args.service_port_base + i for i, service in enumerate(SERVICES)}
    for what, port in [("gateway", args.port), *ports.items()]:
        require_port(port, what)
    infra = Infrastructure.from_env(data_dir, args.pg_port, args.nats_port)
    try:
        asyncio.run(migrate_all(infra))
        stack = Stack(infra.secrets, infra.database_url, infra.nats_url, ports)
        asyncio.run(_supervise(stack, args.port, data_dir / "logs", infra.notes))
    finally:
        infra.stop()
    print("argus: stopped", flush=True)


async def _start_child(stack: Stack, service: str, log_dir: Path) -> Child:
    log_path = log_dir / f"{service}.log"
    log = log_path.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", package_of(service),
        env={**_base_environ(), **stack.service_environment(service)},
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True, preexec_fn=die_with_parent,
    )
    log.close()
    return Child(service, proc, log_path)


def _base_environ() -> dict[str, str]:
    """What children inherit: basics and the operator's ARGUS_* tuning, never the admin URL."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
    return {
        k: v
        for k, v in os.environ.items()
        if k in keep or (k.startswith("ARGUS_") and k != "ARGUS_DATABASE_ADMIN_URL")
    }


async def _wait_ready(stack: Stack, child: Child) -> None:
    url = f"{stack.service_url(child.service)}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if child.proc.returncode is not None:
                raise StartupError(f"{child.service} exited: {child.last_line()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise StartupError(
        f"{child.service} not ready within {READY_TIMEOUT:.0f}s: {child.last_line()}"
    )


async def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)

    async def reap(child: Child) -> None:
        try:
            await asyncio.wait_for(child.proc.wait(), SERVICE_STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            await child.proc.wait()

    await asyncio.gather(*(reap(child) for child in children))


def _banner(stack: Stack, gateway_port: int, log_dir: Path, notes: list[str]) -> str:
    prefixes = " ".join(f"/{p}" for p in GATEWAY_PREFIXES)
    lines = [
        "Argus is up.",
        f"  gateway     http://127.0.0.1:{gateway_port}  ({prefixes}, /.well-known/jwks.json)",
        *(f"  {s:<11} {stack.service_url(s)}  (/healthz /readyz /metrics /openapi.json)"
          for s in SERVICES),
        *(f"  {note}" for note in notes),
        f"  mailbox     {stack.mailbox}  (development mail, one .eml per message)",
        f"  secrets     {stack.secrets.directory}",
        f"  logs        {log_dir}/<service>.log",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


async def _supervise(stack: Stack, gateway_port: int, log_dir: Path, notes: list[str]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[Child] = []
    runner: web.AppRunner | None = None
    try:
        children = [await _start_child(stack, service, log_dir) for service in SERVICES]
        await _race(stop, asyncio.gather(*(_wait_ready(stack, c) for c in children)))
        if stop.is_set():
            return
        gateway = create_gateway(
            {s: stack.service_url(s) for s in SERVICES}, GATEWAY_PREFIXES
        )
        runner = web.AppRunner(gateway, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", gateway_port).start()
        print(_banner(stack, gateway_port, log_dir, notes), flush=True)
        exited = [asyncio.ensure_future(c.proc.wait()) for c in children]
        await _race(stop, asyncio.wait(exited, return_when=asyncio.FIRST_COMPLETED))
        dead = [c for c in children if c.proc.returncode is not None]
        if dead and not stop.is_set():
            raise StartupError(f"{dead[0].service} exited: {dead[0].last_line()}")
    finally:
        print("argus: stopping", flush=True)
        if runner is not None:
            await runner.cleanup()
        await _stop_children(children)


async def _race(stop: asyncio.Event, awaitable: object) -> None:
    """Wait for `awaitable` or for `stop`, whichever comes first; re-raise its failure."""
    work = asyncio.ensure_future(awaitable)  # type: ignore[arg-type]
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (work, stopped):
        if task not in done:
            task.cancel()
    if work in done:
        work.result()
