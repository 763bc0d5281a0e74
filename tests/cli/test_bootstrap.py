"""`./argus` before the argus command runs: a half-built .venv is rebuilt, saying so in one line;
a healthy one is kept (one quick `uv sync`); a bootstrap that cannot finish is one line naming
the cause, the fix and the log of uv's or pip's output, with a non-zero exit.

Every test runs the real script in a copy of the checkout (this suite's own .venv and .argus
are never touched) whose .argus/bootstrap holds the uv this checkout's ./argus installed, so
uv is not downloaded again. Syncs that should succeed run with UV_OFFLINE=1 from uv's cache,
which ./argus filled before the suite started; the ones that should fail get an empty cache
and every download sent to a loopback proxy (a closed port, or one that presents a
self-signed certificate as a TLS-inspecting proxy does). Nothing leaves the machine.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".argus" / "bootstrap" / "bin" / "uv"
# the interpreter this suite's .venv was made from: what ./argus picks on this machine
PYTHON = getattr(sys, "_base_executable", sys.executable)
SOURCES = ("argus", "tools", "pyproject.toml", "uv.lock", "shared", "services")
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "UV_CACHE_DIR", "XDG_CACHE_HOME")

pytestmark = pytest.mark.skipif(not UV.exists(), reason="needs the uv ./argus installs")


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_checkout(dest: Path) -> Path:
    """What ./argus needs from this checkout, and the uv it installed (nothing else)."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    (dest / ".argus" / "bootstrap" / "bin").mkdir(parents=True)
    shutil.copy2(UV, dest / ".argus" / "bootstrap" / "bin" / "uv")
    return dest


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
    env.update(ARGUS_PYTHON=PYTHON, UV_OFFLINE="1")
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}  # "" removes a variable


def argus(checkout: Path, *args: str, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`./argus --help` (or `args`): the bootstrap, then the argus command."""
    return subprocess.run([str(checkout / "argus"), *(args or ("--help",))],
                          env=env or environment(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def broken_packages(venv: Path) -> list[str]:
    """Packages of `venv` an interrupted install left incomplete (checked here on its own,
    not with the code under test)."""
    site, broken = site_packages(venv), []
    for dist in sorted(site.glob("*.dist-info")):
        if not all((dist / n).is_file() for n in ("METADATA", "RECORD", "INSTALLER")):
            broken.append(dist.name)
            continue
        for line in (dist / "RECORD").read_text().splitlines():
            path = line.rsplit(",", 2)[0].strip('"')
            if path and not path.endswith(".pyc") and not os.path.lexists(site / path):
                broken.append(f"{dist.name}: {path}")
                break
    return broken


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("argus: ") and "Traceback" not in stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a checkout with a healthy .venv, shared by the tests that break it --------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkout = copy_checkout(tmp_path_factory.mktemp("bootstrap") / "checkout")
    done = argus(checkout)
    assert done.returncode == 0, done.stderr
    assert "installing the dependencies into .venv" in done.stderr
    return checkout


@pytest.fixture
def checkout(built: Path) -> Path:
    """`built`, healthy again whatever the test before it did."""
    (built / ".argus" / "bootstrap" / "sync-pending").unlink(missing_ok=True)
    venv = built / ".venv"
    if not (venv / "bin" / "python").exists() or broken_packages(venv):
        if venv.is_dir():
            shutil.rmtree(venv)
        else:
            venv.unlink(missing_ok=True)
        assert argus(built).returncode == 0
    return built


def test_a_healthy_venv_is_kept_and_starts_at_once(checkout: Path, tmp_path: Path) -> None:
    # reached through a shim (pyenv, asdf): uv was given the shim's path and, as it is not
    # the venv's interpreter, removed and recreated .venv on every run
    shim = tmp_path / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{PYTHON}" "$@"\n')
    shim.chmod(0o755)
    sentinel = checkout / ".venv" / "kept"
    sentinel.write_text("")
    started = time.monotonic()
    done = argus(checkout, env=environment(ARGUS_PYTHON=str(shim)))
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and done.stderr == ""
    assert sentinel.exists(), "the healthy .venv was recreated"
    log = (checkout / ".argus" / "bootstrap" / "uv-sync.log").read_text()
    assert "Creating virtual environment" not in log and "Installed" not in log
    assert elapsed < 10, f"a healthy start took {elapsed:.1f} s"


@pytest.mark.parametrize("args", [(), ("help",), ("--help",)])
def test_the_wrapper_lists_every_command_test_and_lint_included(
    checkout: Path, args: tuple[str, ...]
) -> None:
    done = subprocess.run([str(checkout / "argus"), *args], env=environment(COLUMNS="100"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    listed = [line.split()[0] for line in done.stdout.split("commands:\n", 1)[1].splitlines()
              if line.startswith("    ")]
    for command in ("up", "migrate", "keys", "audit", "gateway", "events", "status", "test",
                    "lint", "help"):
        assert command in listed, done.stdout


def remove_python(venv: Path, tmp: Path) -> None:
    (venv / "bin" / "python").unlink()


def python_of_a_removed_interpreter(venv: Path, tmp: Path) -> None:
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to(tmp / "uninstalled" / "python3.11")


def remove_cfg_and_python(venv: Path, tmp: Path) -> None:  # uv refuses this one outright
    (venv / "pyvenv.cfg").unlink()
    for python in (venv / "bin").glob("python*"):
        python.unlink()


def make_it_a_file(venv: Path, tmp: Path) -> None:
    shutil.rmtree(venv)
    venv.write_text("")


def a_module_of_six(venv: Path) -> tuple[Path, Path]:
    """six's .dist-info and its module (six is a dependency of python-dateutil)."""
    return next(site_packages(venv).glob("six-*.dist-info")), site_packages(venv) / "six.py"


def half_install_a_package(venv: Path, tmp: Path) -> None:
    """What a sync killed while copying a wheel leaves, and a later `uv sync` does not notice:
    a .dist-info without the INSTALLER uv writes last, files missing."""
    dist, module = a_module_of_six(venv)
    (dist / "INSTALLER").unlink()
    module.unlink()


def lose_files_during_an_unfinished_sync(venv: Path, tmp: Path) -> None:
    (venv / ".argus-synced").unlink()  # the sync that follows did not complete
    a_module_of_six(venv)[1].unlink()


def interrupt_the_last_sync(venv: Path, tmp: Path) -> None:
    (venv.parent / ".argus" / "bootstrap" / "sync-pending").write_text("4242\n")


@pytest.mark.parametrize(("damage", "reason"), [
    (remove_python, "has no bin/python"),
    (python_of_a_removed_interpreter, "points at a missing interpreter"),
    (remove_cfg_and_python, "has no pyvenv.cfg"),
    (make_it_a_file, "is not a directory"),
    (half_install_a_package, "half-installed package (six-"),
    (lose_files_during_an_unfinished_sync, "six.py is missing"),
    (interrupt_the_last_sync, "a sync that did not finish"),
])
def test_a_half_built_venv_is_recreated(checkout: Path, tmp_path: Path,
                                        damage: Callable[[Path, Path], None],
                                        reason: str) -> None:
    damage(checkout / ".venv", tmp_path)
    done = argus(checkout)
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert reason in line and "recreating it" in line
    assert broken_packages(checkout / ".venv") == []
    imported = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c",
                               "import six, argus_shared"], capture_output=True, check=False)
    assert imported.returncode == 0, imported.stderr
    again = argus(checkout)
    assert again.returncode == 0 and again.stderr == ""


def other_interpreter() -> str | None:
    """A Python 3 on this machine that is not the one ./argus uses (any version uv can use)."""
    names = [f"python3.{minor}" for minor in range(8, 16)] + ["python3"]
    found = [shutil.which(n) for n in names] + ["/usr/bin/python3", "/usr/local/bin/python3"]
    found += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    for candidate in filter(None, found):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"],
                               capture_output=True, text=True, check=False)
        real = probe.stdout.strip()
        if probe.returncode == 0 and real and not os.path.samefile(real, PYTHON):
            return real
    return None


def test_a_venv_of_another_interpreter_is_recreated(checkout: Path) -> None:
    other = other_interpreter()
    if other is None:
        pytest.skip("no second Python interpreter on this machine")
    shutil.rmtree(checkout / ".venv")
    made = subprocess.run([str(UV), "venv", "--python", other, str(checkout / ".venv")],
                          env=environment(UV_PYTHON_DOWNLOADS="never"), capture_output=True,
                          text=True, check=False)
    assert made.returncode == 0, made.stderr
    done = argus(checkout)
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert "was made with" in line and "recreating it" in line
    assert broken_packages(checkout / ".venv") == []


# --- a first sync, interrupted or run twice at once ------------------------------------------

def start_first_run(checkout: Path) -> subprocess.Popen[str]:
    # one package at a time, so that the install is long enough to be interrupted
    return subprocess.Popen([str(checkout / "argus"), "--help"],
                            env=environment(UV_CONCURRENT_INSTALLS="1"), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_packages(checkout: Path, run: subprocess.Popen[str], count: int) -> None:
    """Until the first run's sync has created .venv and installed `count` packages in it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        venv = checkout / ".venv"
        if venv.is_dir() and len(list(venv.glob("lib/python3.*/site-packages/*.dist-info"))
                                 ) >= count:
            return
        time.sleep(0.005)
    run.kill()
    pytest.skip("the first sync finished before the test could step in")


@pytest.mark.parametrize("how", ["killed", "ctrl-c"])
def test_an_interrupted_first_sync_is_rebuilt(tmp_path: Path, how: str) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    run = start_first_run(checkout)
    wait_for_packages(checkout, run, 10)
    os.killpg(run.pid, signal.SIGKILL if how == "killed" else signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    if how == "ctrl-c":
        assert run.returncode == 130, stderr
        assert stderr.splitlines()[-1].startswith("argus: interrupted while setting up .venv")
    done = argus(checkout)
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert "a sync that did not finish" in line and "recreating it" in line
    assert broken_packages(checkout / ".venv") == []


def test_two_first_runs_at_once_share_one_sync(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    first = start_first_run(checkout)
    wait_for_packages(checkout, first, 0)  # uv is at work: building, then installing
    second = argus(checkout)  # waits for the first (saying so after 1 s), finds .venv done
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    # without the lock, the second would take the first's sync for an interrupted one
    assert "recreating" not in first_err + second.stderr
    assert broken_packages(checkout / ".venv") == []


# --- failures: one line, the cause, the fix, the log, a non-zero exit ------------------------

def test_a_missing_argus_python_is_a_setting_error(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    done = argus(checkout, env=environment(ARGUS_PYTHON="/nonexistent/python3"))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "ARGUS_PYTHON=/nonexistent/python3 is not an executable" in line
    assert "unset it" in line


def test_an_old_argus_python_is_a_setting_error(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    old = tmp_path / "python3.9"  # answers as Python 3.9 would
    old.write_text('#!/bin/sh\ncase "$2" in *print*) echo 3.9.18 ;; *) exit 1 ;; esac\n')
    old.chmod(0o755)
    done = argus(checkout, env=environment(ARGUS_PYTHON=str(old)))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "is Python 3.9.18" in line and "3.11 or newer" in line


def test_no_python_on_path_is_unavailable(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    bin_dir = tmp_path / "bin"  # what the script needs besides Python
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    done = argus(checkout, env=environment(ARGUS_PYTHON="", PATH=str(bin_dir)))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "no Python 3.11 or newer on PATH" in line and "ARGUS_PYTHON=" in line


def offline_first_run(tmp_path: Path, **env: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A first run with an empty uv cache: everything must be downloaded."""
    checkout = copy_checkout(tmp_path / "checkout")
    cache = tmp_path / "empty-cache"
    done = argus(checkout, env=environment(UV_OFFLINE="", UV_CACHE_DIR=str(cache),
                                           UV_HTTP_RETRIES="0", NO_PROXY="", **env))
    return checkout, done


def test_an_unreachable_package_index_is_one_line_with_the_log(tmp_path: Path) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    checkout, done = offline_first_run(tmp_path, HTTPS_PROXY=proxy, HTTP_PROXY=proxy,
                                       ALL_PROXY=proxy)
    assert done.returncode == 1
    line = one_line(done.stderr.replace(
        "argus: installing the dependencies into .venv from uv.lock (the first run downloads "
        "them: a few minutes)\n", ""))
    log = checkout / ".argus" / "bootstrap" / "uv-sync.log"
    assert line.startswith("argus: uv sync failed: cannot connect to ")
    assert f"through the proxy {proxy}" in line and "HTTPS_PROXY" in line
    assert line.endswith(f"(log: {log})")
    assert "Connection refused" in log.read_text()


def test_a_tls_inspecting_proxy_names_ssl_cert_file(tmp_path: Path) -> None:
    with InspectingProxy(tmp_path) as proxy:
        _, done = offline_first_run(tmp_path / "untrusted", HTTPS_PROXY=proxy.url,
                                    HTTP_PROXY=proxy.url, SSL_CERT_FILE="", SSL_CERT_DIR="")
        assert done.returncode == 1
        line = done.stderr.splitlines()[-1]
        assert "uv sync failed: TLS certificate verification failed for " in line
        assert "SSL_CERT_FILE=/path/to/proxy-ca.pem" in line and "UV_NATIVE_TLS=1" in line
        # given the proxy's CA, uv trusts it: what fails then is only that it serves nothing
        _, trusted = offline_first_run(tmp_path / "trusted", HTTPS_PROXY=proxy.url,
                                       HTTP_PROXY=proxy.url, SSL_CERT_FILE=str(proxy.ca))
        assert trusted.returncode == 1
        assert "certificate" not in trusted.stderr and "uv sync failed" in trusted.stderr


def test_an_unreadable_ssl_cert_file_is_a_setting_error(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    done = argus(checkout, env=environment(SSL_CERT_FILE=str(tmp_path / "missing.pem")))
    assert done.returncode == 2
    assert "SSL_CERT_FILE=" in one_line(done.stderr) and "missing.pem" in done.stderr


def uv_wheel_pages(digest: str) -> dict[str, bytes]:
    """PyPI's JSON for uv and one wheel, as tools/fetch_uv.py asks for them."""
    fetch_uv = load_tool("fetch_uv")
    import platform

    tag = fetch_uv.TAGS.get((platform.system(), platform.machine()))
    if tag is None:
        pytest.skip("no uv wheel for this platform")
    release = [{"filename": f"uv-0.13.9-py3-none-{tag}.whl", "digests": {"sha256": digest},
                "url": "https://files.pythonhosted.org/packages/uv-0.13.9.whl"}]
    return {"/pypi/uv/json": json.dumps({"releases": {"0.13.9": release}}).encode(),
            "/packages/uv-0.13.9.whl": b"not the wheel that was published"}


@pytest.mark.parametrize("trusted", [False, True])
def test_fetching_uv_fails_in_one_line(tmp_path: Path, trusted: bool) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    shutil.rmtree(checkout / ".argus" / "bootstrap")  # uv not installed yet
    with InspectingProxy(tmp_path, uv_wheel_pages("0" * 64)) as proxy:
        done = argus(checkout, env=environment(
            ARGUS_FETCH_UV="1", HTTPS_PROXY=proxy.url, NO_PROXY="",
            SSL_CERT_FILE=str(proxy.ca) if trusted else "", SSL_CERT_DIR=""))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "argus: installing uv 0.13.9 into .argus/bootstrap" and len(lines) == 2
    log = checkout / ".argus" / "bootstrap" / "install-uv.log"
    assert lines[1].startswith("argus: installing uv 0.13.9 failed: ")
    assert lines[1].endswith(f"(log: {log})") and log.is_file()
    if trusted:
        assert "did not match its pinned SHA-256" in lines[1]
    else:
        assert "TLS certificate verification failed for pypi.org" in lines[1]
        assert "SSL_CERT_FILE" in lines[1]


def test_a_failing_uv_sync_is_one_line_with_uvs_error(checkout: Path) -> None:
    lock = checkout / "uv.lock"
    original = lock.read_text()
    lock.write_text("version = [\n")
    try:
        done = argus(checkout)
    finally:
        lock.write_text(original)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("argus: uv sync failed: ") and "uv.lock" in line
    assert line.endswith(f"(log: {checkout / '.argus' / 'bootstrap' / 'uv-sync.log'})")


# --- what uv, pip and urllib print, read as causes ---------------------------------------------

UV_DISK_FULL = """\
error: Failed to install: ruff-0.17.6-py3-none-manylinux_2_17_x86_64.whl (ruff==0.17.6)
  cause: Failed to copy to `/x/.venv/lib/python3.11/site-packages/ruff-0.17.6.data/scripts/ruff`
  cause: failed to copy file from /root/.cache/uv/archive-v0/d/ruff to /x/.tmpPiVg6N: \
No space left on device (os error 28)
"""
PIP_DISK_FULL = """\
Installing collected packages: uv
ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device
"""
UV_HASH = """\
error: Failed to download `six==1.17.0`
  Caused by: Hash mismatch for `six==1.17.0`

Expected:
  sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274

Computed:
  sha256:0000000000000000000000000000000000000000000000000000000000000000
"""
UV_DNS = """\
  cause: Failed to fetch: https://pypi.invalid/simple/hatchling/
  cause: error sending request for url (https://pypi.invalid/simple/hatchling/)
  cause: client error (Connect)
  cause: dns error
  cause: failed to lookup address information: Name or service not known
"""
PIP_TLS = """\
WARNING: Location 'file:///opt/pypi/simple/uv/' is ignored: it is neither a file nor a directory.
Could not fetch URL https://pypi.org/simple/uv/: There was a problem confirming the ssl \
certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: \
/simple/uv/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] \
certificate verify failed: self-signed certificate (_ssl.c:1006)'))) - skipping
ERROR: Could not find a version that satisfies the requirement uv==0.13.9 (from versions: none)
"""
PIP_PROXY = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after \
connection broken by 'ProxyError('Cannot connect to proxy.', NewConnectionError('<pip._vendor.\
urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: \
[Errno 111] Connection refused'))': /simple/uv/
"""
URLLIB_DISK_FULL = "OSError: [Errno 28] No space left on device\n"


@pytest.mark.parametrize(("output", "cause", "fix"), [
    (UV_DISK_FULL, "the disk is full", "free some space"),
    (PIP_DISK_FULL, "the disk is full", "free some space"),
    (URLLIB_DISK_FULL, "the disk is full", "free some space"),
    (UV_HASH, "did not match its pinned SHA-256", "uv cache clean"),
    (UV_DNS, "a host name does not resolve (pypi.invalid", "check the network"),
    (PIP_TLS, "TLS certificate verification failed for pypi.org", "SSL_CERT_FILE="),
    (PIP_PROXY, "through the proxy http://***@proxy:3128", "HTTPS_PROXY"),
])
def test_tool_output_is_read_as_its_cause(output: str, cause: str, fix: str) -> None:
    bootstrap = load_tool("bootstrap")
    env = {"HTTPS_PROXY": "http://user:secret@proxy:3128"} if "Proxy" in output else {}
    code, found_cause, found_fix = bootstrap.classify(output, env, Path("/x"), "/cache")
    assert code == 1 and cause in found_cause and fix in found_fix
    assert "secret" not in found_cause + found_fix


# --- a TLS-inspecting proxy on loopback --------------------------------------------------------

class InspectingProxy:
    """An HTTPS proxy on loopback that, as a TLS-inspecting corporate proxy does, answers
    CONNECT itself and presents a certificate of its own (self-signed) CA for pypi.org and
    files.pythonhosted.org. It connects nowhere: it serves `pages` (path -> body) and closes
    the connection on anything else."""

    def __init__(self, tmp: Path, pages: dict[str, bytes] | None = None) -> None:
        self.pages = pages or {}
        self.ca = tmp / "proxy-ca.pem"
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Inspecting Proxy CA")])
        now = datetime.datetime.now(datetime.UTC)
        hosts = [x509.DNSName("pypi.org"), x509.DNSName("files.pythonhosted.org")]
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(hosts), critical=False)
                .sign(key, hashes.SHA256()))
        self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = tmp / "proxy-key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.ca, key_file)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> InspectingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.server.close()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if not read_head(conn).startswith(b"CONNECT "):
                return
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self.tls.wrap_socket(conn, server_side=True) as tls:
                path = read_head(tls).split(b" ")[1].decode()
                body = self.pages.get(path)
                if body is not None:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                b"Connection: close\r\n\r\n%s" % (len(body), body))
        except (OSError, IndexError):
            pass  # the client refused the certificate, or went away
        finally:
            conn.close()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the request ended")
        data += chunk
    return data

