"""The part of ./argus that runs once it has found Python 3.11+ (this interpreter): install the
pinned uv into .argus/bootstrap, then make .venv exactly uv.lock, repairing a half-built one.

    python3 tools/bootstrap.py <checkout> <uv version>

Standard library only (it runs before anything is installed). Every failure is one line on
stderr naming the cause and the fix, with the path of the log holding uv's or pip's output
(.argus/bootstrap/*.log); exit 2 for a bad setting, 1 when something is unavailable.

A .venv is rebuilt from scratch, saying so in one line, when it is not a directory, has no
pyvenv.cfg or no bin/python, its bin/python points at an interpreter that is gone or does not
run, it was made by another interpreter than the one ./argus uses now, the last sync into it
did not finish (interrupted), or a package in it is half-installed (its .dist-info lacks
METADATA, RECORD or the INSTALLER uv writes last; after a sync that did not complete, every
file its RECORD lists is checked too). A healthy .venv costs one `uv sync` that finds nothing
to do (tens of milliseconds).
"""

from __future__ import annotations

import csv
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

STAMP = ".argus-synced"  # in .venv: the last sync completed and the venv was checked
PENDING = "sync-pending"  # in .argus/bootstrap: a sync started and has not finished


class Failure(Exception):
    """Stop with `argus: <message>` and this exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def say(message: str) -> None:
    print(f"argus: {message}", file=sys.stderr, flush=True)


# --- why a download or a sync failed -------------------------------------------------------

RETRY = "and run ./argus again"
TLS_FIX = ("set SSL_CERT_FILE=/path/to/proxy-ca.pem (uv, pip and Python honour it), or "
           "UV_SYSTEM_CERTS=1 (formerly UV_NATIVE_TLS=1) to trust the system store, " + RETRY)
NET_FIX = "check the network connection (and HTTPS_PROXY, UV_INDEX_URL if used) " + RETRY

# (pattern, exit code, cause, fix): the first that matches the failing output names the cause
CAUSES: list[tuple[str, int, str, str]] = [
    (r"No space left on device|os error 28|Errno 28|ENOSPC|Disk quota exceeded",
     1, "the disk is full",
     "free some space (uv's cache is {cache}) " + RETRY),
    (r"Hash mismatch|does not match its published SHA-256|DO NOT MATCH THE HASHES",
     1, "a download from {host} did not match its pinned SHA-256 (altered by a proxy, or cut "
        "short?)",
     "run ./argus again; if it persists, fetch from a network that does not rewrite "
     "downloads, or clear uv's cache (.argus/bootstrap/bin/uv cache clean)"),
    (r"invalid peer certificate|CERTIFICATE_VERIFY_FAILED|certificate verify failed|"
     r"UnknownIssuer|self[- ]signed certificate|unable to get local issuer|NotValidForName|"
     r"certificate has expired|CertificateExpired",
     1, "TLS certificate verification failed for {host} (a proxy that inspects TLS with its "
        "own CA?)", TLS_FIX),
    (r"407 Proxy Authentication Required|\b407\b.*[Pp]roxy",
     1, "the proxy {proxy} asks for credentials",
     "put them in HTTPS_PROXY=http://user:password@host:port " + RETRY),
    (r"dns error|failed to lookup address|Name or service not known|Temporary failure in name "
     r"resolution|nodename nor servname|getaddrinfo failed|No address associated with hostname",
     1, "a host name does not resolve ({host}{via}; no network, or no DNS?)", NET_FIX),
    (r"Network connectivity is disabled",
     2, "UV_OFFLINE is set and uv's cache lacks packages that uv.lock needs",
     "unset UV_OFFLINE (run once online) " + RETRY),
    (r"tunnel error|ProxyError|Unable to connect to proxy|Cannot connect to proxy|"
     r"Tunnel connection failed",
     1, "cannot connect to {host} through the proxy {proxy}",
     "check HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (or unset them) " + RETRY),
    (r"Connection refused|os error 111|Errno 111|Network is unreachable|os error 101|"
     r"No route to host|timed out|Connection reset|tcp connect error|Failed to establish a new "
     r"connection|RemoteDisconnected|Remote end closed|close_notify|connection error|"
     r"error sending request|Max retries exceeded|Could not fetch URL",
     1, "cannot reach {host}{via}", NET_FIX),
    (r"Permission denied|os error 13|Errno 13|Read-only file system|os error 30",
     1, "permission denied writing to the checkout or uv's cache",
     "make {root} and {cache} writable by you " + RETRY),
    (r"SSLError|\[SSL|TLS handshake|tls handshake|handshake failure",
     1, "the TLS connection to {host}{via} failed", TLS_FIX),
]
# where the failing part of an output starts: uv's `error:`, pip's complaints, a traceback
FAILING = re.compile(r"^(?:error|ERROR|Traceback|Could not fetch|WARNING: Retrying)|"
                     r"cannot download", re.M)
CAUSE_LINE = re.compile(r"^\s+(?:cause|Caused by):\s*(.+)$", re.M)
ERROR_LINE = re.compile(r"^(?:error|ERROR|[\w.]*Error|[\w.]*Exception)\b:?\s*(.+)$", re.M)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY",
                   "http_proxy")


def redact(url: str) -> str:
    """A URL without its user and password."""
    return re.sub(r"(//)[^/@\s]*@", r"\1***@", url)


def proxy_in(env: Mapping[str, str]) -> str | None:
    return next((redact(env[n]) for n in PROXY_VARIABLES if env.get(n)), None)


def failing_part(text: str) -> str:
    """The output from its first complaint on (warnings before it are not the cause)."""
    start = FAILING.search(text)
    return text[start.start():] if start else text


def host_in(text: str) -> str:
    """The first remote host the failing output names."""
    for pattern in (r"host='([^']+)'", r"\bhttps?://([^/\s'\"`)>]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).rsplit("@", 1)[-1]
    return "the package index"


def first_error(text: str) -> str:
    """The first error line, with the innermost `cause:` uv gives for it."""
    errors, causes = ERROR_LINE.findall(text), CAUSE_LINE.findall(text)
    lines = text.strip().splitlines()
    line = errors[0].strip() if errors else lines[-1].strip() if lines else "no output"
    if causes and causes[-1].strip() not in line:
        line = f"{line}: {causes[-1].strip()}"
    return line if len(line) <= 240 else line[:237] + "..."


def cause_of(text: str, env: Mapping[str, str], root: Path,
             cache: str) -> tuple[int, str, str] | None:
    """(exit code, cause, fix) for what a failed uv/pip/fetch printed, if it is known."""
    failing = failing_part(text)
    proxy = proxy_in(env)
    fields = {"host": host_in(failing), "proxy": proxy or "(none set)", "root": str(root),
              "via": f" through the proxy {proxy}" if proxy else "", "cache": cache}
    for pattern, code, cause, fix in CAUSES:
        if re.search(pattern, failing):
            return code, cause.format(**fields), fix.format(**fields)
    return None


def classify(text: str, env: Mapping[str, str], root: Path, cache: str) -> tuple[int, str, str]:
    """(exit code, cause, fix): a known cause, else the output's own error line."""
    known = cause_of(text, env, root, cache)
    return known or (1, first_error(failing_part(text)), "see the log, fix that " + RETRY)


# --- running uv and pip with their output in a log ------------------------------------------

class Log:
    """A log file under .argus/bootstrap that keeps its text in memory too (a full disk may
    refuse the file, never the message)."""

    def __init__(self, path: Path) -> None:
        self.path, self.parts = path, list[str]()
        self.error: OSError | None = None
        self.file: TextIO | None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("w", encoding="utf-8", errors="replace")
        except OSError as exc:
            self.file, self.error = None, exc

    def write(self, text: str) -> None:
        self.parts.append(text)
        if self.file is not None:
            try:
                self.file.write(text)
                self.file.flush()
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as exc:
                self.error = exc

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def where(self) -> str:
        if self.error is not None:
            return f"(log {self.path} could not be written: {self.error.strerror or self.error})"
        return f"(log: {self.path})"

    def run(self, argv: list[str], env: Mapping[str, str], cwd: Path) -> int:
        self.write(f"$ {' '.join(argv)}\n")
        try:
            proc = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace")
        except OSError as exc:
            self.write(f"cannot run {argv[0]}: {exc}\n")
            return 127
        assert proc.stdout is not None
        with proc:
            for line in proc.stdout:
                self.write(line)
        self.write(f"[exit {proc.returncode}]\n")
        return proc.returncode


# --- the bootstrap ---------------------------------------------------------------------------

class Bootstrap:
    def __init__(self, root: Path, uv_version: str) -> None:
        self.root = root
        self.uv_version = uv_version
        self.python = sys.executable  # the interpreter itself, never a shim (pyenv, asdf)
        self.bootstrap = root / ".argus" / "bootstrap"
        self.uv = self.bootstrap / "bin" / "uv"
        self.venv = root / ".venv"
        self.env = dict(os.environ)

    # uv

    def installed_uv_version(self) -> str | None:
        try:
            out = subprocess.run([str(self.uv), "--version"], capture_output=True, text=True,
                                 timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        words = out.stdout.split()
        return words[1] if out.returncode == 0 and len(words) > 1 else None

    def cache_dir(self) -> str:
        return self.env.get("UV_CACHE_DIR") or str(
            Path(self.env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv")

    def fail(self, what: str, log: Log, primary: str = "") -> Failure:
        """The failure of `what` from its output: `primary` (the last attempt's error) if it
        names a known cause, else the whole log."""
        cache = self.cache_dir()
        code, cause, fix = (cause_of(primary, self.env, self.root, cache) if primary else None
                            ) or classify(log.text + primary, self.env, self.root, cache)
        return Failure(code, f"{what} failed: {cause}; {fix} {log.where()}")

    def ensure_uv(self) -> None:
        if self.installed_uv_version() == self.uv_version:
            return
        say(f"installing uv {self.uv_version} into .argus/bootstrap")
        shutil.rmtree(self.bootstrap, ignore_errors=True)
        log = Log(self.bootstrap / "install-uv.log")
        try:
            if not self.env.get("ARGUS_FETCH_UV") and self.pip_install_uv(log):
                return
            # no venv/pip module (a bare Debian python3), or pip failed: uv's wheel directly
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import fetch_uv

            log.write(f"$ fetch_uv {self.uv_version} {self.uv}\n")
            try:
                fetch_uv.main(self.uv_version, self.uv)
            except fetch_uv.UnsupportedPlatform as exc:
                raise Failure(1, f"installing uv {self.uv_version} failed: {exc}; install uv "
                                 f"{self.uv_version} yourself and copy it to {self.uv}") from exc
            except (fetch_uv.FetchError, OSError) as exc:
                log.write(traceback.format_exc())
                raise self.fail(f"installing uv {self.uv_version}", log, str(exc)) from exc
            if self.installed_uv_version() != self.uv_version:
                log.write(f"{self.uv} --version did not answer {self.uv_version}\n")
                raise Failure(1, f"the uv fetched into {self.uv} does not run on this machine; "
                                 f"install uv {self.uv_version} yourself and copy it there "
                                 f"{log.where()}")
        finally:
            log.close()

    def pip_install_uv(self, log: Log) -> bool:
        if log.run([self.python, "-m", "venv", str(self.bootstrap)], self.env, self.root):
            return False
        cert = ["--cert", self.env["SSL_CERT_FILE"]] if self.env.get("SSL_CERT_FILE") else []
        pip = [str(self.bootstrap / "bin" / "python"), "-m", "pip", "install", "--no-input",
               "--disable-pip-version-check", *cert, f"uv=={self.uv_version}"]
        return log.run(pip, self.env, self.root) == 0 and (
            self.installed_uv_version() == self.uv_version)

    # .venv

    def diagnose(self) -> str | None:
        """Why .venv cannot be synced into as it is, or None (also when it does not exist)."""
        venv = self.venv
        if not venv.exists() and not venv.is_symlink():
            return None
        if not venv.is_dir():
            return "is not a directory"
        if not (venv / "pyvenv.cfg").is_file():
            return "has no pyvenv.cfg (a half-built venv)"
        python = venv / "bin" / "python"
        if not python.is_symlink() and not python.exists():
            return "has no bin/python (a half-built venv)"
        if not python.exists():
            return f"has a bin/python that points at a missing interpreter ({python.resolve()})"
        probe = ("import sys; print(*sys.version_info[:2]); "
                 "print(getattr(sys, '_base_executable', sys.executable))")
        try:
            out = subprocess.run([str(python), "-I", "-S", "-c", probe], capture_output=True,
                                 text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"has a bin/python that does not run ({exc})"
        lines = out.stdout.splitlines()
        if out.returncode != 0 or len(lines) < 2:
            detail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            return f"has a bin/python that does not run ({detail})"
        try:
            made_with, base = tuple(int(n) for n in lines[0].split()[:2]), lines[1]
        except ValueError:
            return f"has a bin/python that does not run (it printed {lines[0]!r})"
        now = f"Python {sys.version_info[0]}.{sys.version_info[1]} ({self.python})"
        if made_with != sys.version_info[:2]:
            return f"was made with Python {made_with[0]}.{made_with[1]} ({base}), not {now}"
        if not same_file(base, self.python):  # uv would recreate it silently: say so
            return f"was made with {base}, not {self.python}"
        return None

    def half_installed(self, every_file: bool) -> str | None:
        """A package of .venv that an interrupted install left behind, or None."""
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        site = self.venv / "lib" / version / "site-packages"
        if not site.is_dir():
            return f"has no lib/{version}/site-packages"
        for dist in sorted(site.glob("*.dist-info")):
            for name in ("METADATA", "RECORD", "INSTALLER"):
                if not (dist / name).is_file():
                    return f"has a half-installed package ({dist.name} has no {name})"
            if every_file:
                missing = missing_in_record(site, dist / "RECORD")
                if missing:
                    return f"has a half-installed package ({dist.name}: {missing} is missing)"
        return None

    def remove_venv(self) -> None:
        if self.venv.is_dir() and not self.venv.is_symlink():
            shutil.rmtree(self.venv)
        else:
            self.venv.unlink()

    def sync(self) -> None:
        env = {**self.env, "UV_PYTHON": self.python, "UV_PYTHON_DOWNLOADS": "never",
               "UV_PROJECT_ENVIRONMENT": str(self.venv)}
        log = Log(self.bootstrap / "uv-sync.log")
        try:
            code = log.run([str(self.uv), "sync", "--frozen", "--all-packages"], env, self.root)
        finally:
            log.close()
        if code != 0:  # uv stopped on its own: not interrupted; the next run checks every file
            (self.bootstrap / PENDING).unlink(missing_ok=True)
            raise self.fail("uv sync", log)
        if "Removed virtual environment" in log.text:  # a case diagnose() did not foresee
            say(f"uv rebuilt .venv for {self.python} {log.where()}")

    def recreate(self, why: str) -> None:
        say(f".venv {why}; recreating it from uv.lock")
        self.remove_venv()
        self.sync()
        problem = self.half_installed(every_file=True)
        if problem:
            raise Failure(1, f".venv still {problem} after being recreated; clear uv's cache "
                             f"(.argus/bootstrap/bin/uv cache clean) {RETRY}")

    def ensure_venv(self) -> None:
        pending = self.bootstrap / PENDING
        stamp = self.venv / STAMP
        why = self.diagnose()
        if why is None and pending.exists() and self.venv.exists():
            why = "was left half-built by a sync that did not finish"
        if why is None and not self.venv.exists():
            say("installing the dependencies into .venv from uv.lock (the first run downloads "
                "them: a few minutes)")
        checked = stamp.exists() and why is None
        touch(pending)
        if stamp.exists():
            stamp.unlink()
        if why is not None:
            self.recreate(why)
        else:
            self.sync()
            problem = self.half_installed(every_file=not checked)
            if problem:
                self.recreate(problem)
        (self.venv / STAMP).write_text(f"uv {self.uv_version}\n{self.python}\n")
        pending.unlink()

    def run(self) -> None:
        cert = self.env.get("SSL_CERT_FILE")
        if cert and not os.access(cert, os.R_OK):
            raise Failure(2, f"SSL_CERT_FILE={cert} is not a readable file; point it at your "
                             f"proxy's CA bundle (PEM) or unset it")
        with locked(self.root / ".argus" / "bootstrap.lock"):
            self.ensure_uv()
            self.ensure_venv()


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def missing_in_record(site: Path, record: Path) -> str | None:
    """The first file a RECORD lists that is not there."""
    with record.open(newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.reader(f):
            if not row or not row[0] or row[0].endswith(".pyc"):
                continue
            if not os.path.lexists(site / row[0]):
                return row[0]
    return None


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()} {time.time():.0f}\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One bootstrap at a time per checkout: a second ./argus waits here, then finds the
    venv the first one built (and never mistakes that sync for an interrupted one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + 1  # a healthy run holds it for a fraction of that
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    say("waiting for another ./argus to finish setting up .venv")
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    root, uv_version = Path(argv[1]), argv[2]
    try:
        Bootstrap(root, uv_version).run()
    except Failure as failure:
        say(failure.message)
        return failure.code
    except KeyboardInterrupt:
        say("interrupted while setting up .venv; run ./argus again to finish (it rebuilds "
            "a half-built .venv)")
        return 130
    except OSError as exc:  # .argus or .venv unwritable, the disk full, ...
        cause = "the disk is full" if exc.errno == 28 else exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        say(f"cannot set up .venv: {cause}{where}; free space or fix the permissions of "
            f"{root} {RETRY}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
