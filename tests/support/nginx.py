"""A real nginx for tests, run unprivileged: its own prefix directory under a temporary one
(configuration, pid, temp paths, error and access logs), `daemon off`, one free loopback port.

As root (CI), nginx runs as `nobody`, so that a configuration which would write anywhere but
its prefix fails here as it would in the non-root, read-only Kubernetes container. Where nginx
is not installed the test is skipped, except under CI=true, where that is a failure (`.ci/run`
installs Debian's nginx when it is missing). Which nginx ran, and as whom, is printed in the
summary at the end of the run (`pytest_terminal_summary`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

NOBODY = 65534
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
USED = pytest.StashKey[set[str]]()


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is not installed, and CI must run the gateway tests with it "
                        "(.ci/run installs Debian's nginx when `command -v nginx` fails)")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; CI installs it)")
    return found


def version(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def main_conf_around(include: Path) -> str:
    """What the `nginx` image's own nginx.conf is to the compose form: a main context that
    includes the rendered file inside `http {}` (here with every path under the prefix)."""
    temp = "\n".join(f"    {name}_temp_path {name};" for name in TEMP_PATHS)
    return (
        "daemon off;\npid nginx.pid;\nerror_log stderr notice;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n{temp}\n    access_log /dev/stdout;\n    include {include};\n}}\n"
    )


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def error_log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")

    @property
    def access_log(self) -> str:
        return (self.directory / "access.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def run_nginx(
    config: pytest.Config, render: Callable[[str], str], *, compose_form: bool = False
) -> Iterator[Nginx]:
    """Start nginx with `render(listen)` (the rendered text for a listen address) and stop it.
    `compose_form`: the text is a conf.d file, wrapped in a main context as the image does."""
    binary = nginx_binary()
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="argus-nginx-"))
    text = render(f"127.0.0.1:{port}")
    conf = directory / "nginx.conf"
    if compose_form:
        (directory / "argus.conf").write_text(text)
        conf.write_text(main_conf_around(directory / "argus.conf"))
    else:
        conf.write_text(text)
    logs = {name: directory / name for name in ("error.log", "access.log")}
    for path in logs.values():
        path.touch()
    as_root = os.geteuid() == 0
    if as_root:
        for path in (directory, conf, *directory.iterdir(), *logs.values()):
            os.chown(path, NOBODY, NOBODY)
    who = f"uid {NOBODY} (nobody)" if as_root else f"uid {os.geteuid()}"
    config.stash.setdefault(USED, set()).add(f"{binary} ({version(binary)}) as {who}")
    argv = [binary, "-p", f"{directory}/", "-e", str(logs["error.log"]), "-c", str(conf)]
    with logs["access.log"].open("ab") as out, logs["error.log"].open("ab") as err:
        if as_root:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       start_new_session=True, user=NOBODY, group=NOBODY,
                                       extra_groups=[])
        else:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       start_new_session=True)
    nginx = Nginx(process, port, directory)
    try:
        _wait_for_port(nginx)
        yield nginx
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(nginx: Nginx, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nginx.process.poll() is not None:
            raise RuntimeError(f"nginx exited ({nginx.process.returncode}):\n{nginx.error_log}")
        try:
            with socket.create_connection(("127.0.0.1", nginx.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {nginx.port} in {timeout} s:\n{nginx.error_log}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config
                            ) -> None:
    used_by: set[str] = config.stash.get(USED, set())
    for used in sorted(used_by):
        terminalreporter.write_line(f"nginx used by the gateway tests: {used}")
