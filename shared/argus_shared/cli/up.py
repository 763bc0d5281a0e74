"""`argus up`: infrastructure, migrations, the five services and the gateway, in one command.

Children run in their own sessions (so a terminal's Ctrl-C reaches only this supervisor, which
stops them in order) and die with it if it is killed. A service that exits is restarted with
back-off (`supervisor`); one that keeps failing at start-up stops the suite. Shutdown takes well
under 10 seconds: gateway, then services (SIGTERM, drained, killed after a deadline), then NATS
and PostgreSQL. While it runs, `<data-dir>/run/suite.json` says what runs where (`argus status`).

Development defaults (this suite only, never a service started on its own nor ARGUS_ENV=prod):
webhooks may deliver to loopback receivers (`ARGUS_WEBHOOKS_ALLOW_NETS`, unless it is set), and
the banner says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from argus_shared.cli.infra import Infrastructure, migrate_all, without_credentials
from argus_shared.cli.stack import GATEWAY_PREFIXES, Stack
from argus_shared.cli.state import ServiceState, SuiteState, remove_state
from argus_shared.cli.supervisor import ServiceSupervisor
from argus_shared.embedded import require_port
from argus_shared.gateway import create_gateway
from argus_shared.settings import SERVICES
from argus_shared.wal_archive import Sealer

SERVICE_STOP_TIMEOUT = 5.0
ALLOW_NETS = "ARGUS_WEBHOOKS_ALLOW_NETS"
# where webhooks may deliver in a development suite, past the SSRF rules: this machine only
DEV_WEBHOOK_NETS = "127.0.0.0/8,::1/128"


def run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    ports = {service: args.service_port_base + i for i, service in enumerate(SERVICES)}
    for what, port in [("gateway", args.port), *replica_ports(ports, args.replicas)]:
        require_port(port, what)
    archive: Path | None = args.archive.resolve() if args.archive else None
    infra = Infrastructure.from_env(data_dir, args.pg_port, args.nats_port, archive=archive)
    sealer = (Sealer(infra.secrets.keyring("master-keys"), archive, infra.admin_url)
              if archive else None)
    if sealer is not None:
        sealer.start()
    try:
        asyncio.run(migrate_all(infra))
        stack = Stack(infra.secrets, infra.database_url, infra.nats_url, ports,
                      public_url=public_url(args.port))
        asyncio.run(_supervise(stack, args.port, data_dir, infra.notes, args.replicas))
    finally:
        infra.stop()
        if sealer is not None:
            sealer.stop()
    print("argus: stopped", flush=True)


def replica_port(first: int, replica: int) -> int:
    """Replica 1 of a service on its own port; replica r five ports per replica above it."""
    return first + (replica - 1) * len(SERVICES)


def replica_ports(ports: Mapping[str, int], replicas: int) -> list[tuple[str, int]]:
    """(`auth`, port), (`auth-2`, port) … for every service and replica."""
    return [(service if r == 1 else f"{service}-{r}", replica_port(port, r))
            for r in range(1, replicas + 1) for service, port in ports.items()]


def public_url(gateway_port: int, environ: Mapping[str, str] = os.environ) -> str:
    """Where mail links point: the operator's ARGUS_PUBLIC_URL, else the gateway this run
    serves (`--port`)."""
    return environ.get("ARGUS_PUBLIC_URL") or f"http://127.0.0.1:{gateway_port}"


def _base_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """What children inherit: basics and the operator's ARGUS_* tuning, never the admin URL."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
    return {
        k: v
        for k, v in environ.items()
        if k in keep or (k.startswith("ARGUS_") and k != "ARGUS_DATABASE_ADMIN_URL")
    }


def dev_defaults(stack: Stack, service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """What a development suite gives `service` unless the operator set it: webhooks may deliver
    to loopback receivers (an empty ARGUS_WEBHOOKS_ALLOW_NETS keeps refusing them)."""
    if stack.env != "dev" or service != "webhooks" or ALLOW_NETS in environ:
        return {}
    return {ALLOW_NETS: DEV_WEBHOOK_NETS}


def service_environ(stack: Stack, service: str,
                    environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The whole environment `argus up` starts `service` with."""
    return {**dev_defaults(stack, service, environ), **_base_environ(environ),
            **stack.service_environment(service)}


def _webhook_note(environ: Mapping[str, str] = os.environ) -> str | None:
    """The banner's line on where webhooks may deliver beyond the SSRF rules."""
    given = environ.get(ALLOW_NETS)
    if given is None:
        nets = DEV_WEBHOOK_NETS.replace(",", ", ")
        return (f"webhooks    loopback targets allowed in this dev suite ({nets}); "
                f"{ALLOW_NETS}= refuses them")
    if given.strip():
        return f"webhooks    targets in {given} are allowed ({ALLOW_NETS})"
    return None


def _supervisors(stack: Stack, data_dir: Path, stop: asyncio.Event,
                 replicas: int) -> list[ServiceSupervisor]:
    for directory in ("logs", "run"):
        (data_dir / directory).mkdir(parents=True, exist_ok=True)
    made = []
    for replica in range(1, replicas + 1):
        for service in SERVICES:
            port = replica_port(stack.service_ports[service], replica)
            name = service if replica == 1 else f"{service}-{replica}"
            made.append(ServiceSupervisor(
                service, {**service_environ(stack, service), "ARGUS_PORT": str(port)},
                f"http://{stack.host}:{port}/readyz", data_dir / "logs" / f"{name}.log",
                data_dir / "run" / f"{name}.pid", stop, replica=replica, port=port))
    return made


class StateFile:
    """Keeps `<data-dir>/run/suite.json` current (argus_shared.cli.state) while the suite runs."""

    def __init__(self, stack: Stack, gateway_port: int, data_dir: Path,
                 supervisors: list[ServiceSupervisor]) -> None:
        self.data_dir = data_dir
        self.state = SuiteState(
            pid=os.getpid(), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            gateway=f"http://127.0.0.1:{gateway_port}", gateway_port=gateway_port,
            services={s.name: ServiceState(port=s.port) for s in supervisors},
            postgresql=without_credentials(stack.database_url),
            nats=without_credentials(stack.nats_url), mailbox=str(stack.mailbox),
            logs=str(data_dir / "logs"),
        )
        self.removed = False
        for supervisor in supervisors:
            supervisor.changed = self.changed

    def changed(self, supervisor: ServiceSupervisor) -> None:
        if self.removed:
            return
        child = supervisor.child
        self.state.services[supervisor.name] = ServiceState(
            port=self.state.services[supervisor.name].port,
            pid=child.proc.pid if child is not None and supervisor.state != "restarting"
            else None,
            state=supervisor.state, restarts=supervisor.restarts,
        )
        self.write()

    def all_up(self) -> None:
        self.state.up = True
        self.write()

    def write(self) -> None:
        self.state.write(self.data_dir / "run")

    def remove(self) -> None:
        self.removed = True
        remove_state(self.data_dir)


async def _all_ready(supervisors: list[ServiceSupervisor], tasks: list[asyncio.Task[None]]) -> None:
    """Until every service has been ready once; re-raise a supervisor's failure."""
    for supervisor in supervisors:
        ready = asyncio.ensure_future(supervisor.ready.wait())
        try:
            done, _ = await asyncio.wait([ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        for task in done - {ready}:
            task.result()


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()


async def _start_gateway(stack: Stack, port: int, replicas: int) -> web.AppRunner:
    gateway = create_gateway({
        s: [f"http://{stack.host}:{replica_port(stack.service_ports[s], r)}"
            for r in range(1, replicas + 1)]
        for s in SERVICES})
    runner = web.AppRunner(gateway, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _banner(stack: Stack, gateway_port: int, log_dir: Path, notes: list[str],
            replicas: int = 1) -> str:
    prefixes = " ".join(f"/{p}" for p in GATEWAY_PREFIXES)
    lines = [
        "Argus is up.",
        f"  gateway     http://127.0.0.1:{gateway_port}  ({prefixes}, /.well-known/jwks.json)",
        *(f"  {s:<11} {stack.service_url(s)}  (/healthz /readyz /metrics /openapi.json)"
          for s in SERVICES),
        *([f"  replicas    {replicas} of each service, ports "
           f"{stack.service_ports[SERVICES[0]]}-"
           f"{replica_port(stack.service_ports[SERVICES[-1]], replicas)}; the gateway takes "
           f"them in turn"] if replicas > 1 else []),
        *(f"  {note}" for note in notes),
        f"  mailbox     {stack.mailbox}  (development mail, one .eml per message)",
        f"  secrets     {stack.secrets.directory}",
        f"  logs        {log_dir}/<service>.log",
        f"  status      {_status_command(log_dir.parent)}  (what runs, its health, new mail)",
        *(f"  {note}" for note in [_webhook_note()] if note),
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _status_command(data_dir: Path, environ: Mapping[str, str] = os.environ) -> str:
    default = Path(environ.get("ARGUS_DATA_DIR") or ".argus").resolve()
    return "argus status" if data_dir == default else f"argus --data-dir {data_dir} status"


async def _supervise(stack: Stack, gateway_port: int, data_dir: Path, notes: list[str],
                     replicas: int = 1) -> None:
    """Run the services (each restarted when it exits) and the gateway until a signal, or until
    a service keeps failing at start-up; then stop the gateway and the services."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisors = _supervisors(stack, data_dir, stop, replicas)
    state = StateFile(stack, gateway_port, data_dir, supervisors)
    state.write()
    tasks = [asyncio.create_task(s.run(), name=f"supervise {s.service}") for s in supervisors]
    runner: web.AppRunner | None = None
    try:
        await _race(stop, _all_ready(supervisors, tasks))
        if stop.is_set():
            return
        runner = await _start_gateway(stack, gateway_port, replicas)
        state.all_up()
        print(_banner(stack, gateway_port, data_dir / "logs", notes, replicas), flush=True)
        await _race(stop, _first_failure(tasks))
    finally:
        state.remove()
        print("argus: stopping", flush=True)
        stop.set()
        if runner is not None:
            await runner.cleanup()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.stop_child(SERVICE_STOP_TIMEOUT) for s in supervisors))


async def _race(stop: asyncio.Event, awaitable: Awaitable[object]) -> None:
    """Wait for `awaitable` or for `stop`, whichever comes first; re-raise its failure."""
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (work, stopped):
        if task not in done:
            task.cancel()
    if work in done:
        work.result()
