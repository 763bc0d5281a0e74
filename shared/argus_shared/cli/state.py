"""What a running `argus up` tells `argus status`: `<data-dir>/run/suite.json`.

`argus up` writes it when its services start and rewrites it whenever one of them starts, becomes
ready or exits (each write whole, through a temporary file and a rename, so a reader never sees
half of one); it removes it when it stops. It holds where things are (the gateway, each
service's port and current pid, PostgreSQL and NATS without credentials, the mailbox and the
logs), never a secret.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

STATE_FILE = "suite.json"


class ServiceState(msgspec.Struct, forbid_unknown_fields=False):
    port: int
    pid: int | None = None
    state: str = "starting"  # starting, up, restarting
    restarts: int = 0


class SuiteState(msgspec.Struct, forbid_unknown_fields=False):
    pid: int  # the `argus up` process, which also serves the gateway
    started_at: str  # ISO 8601, UTC
    gateway: str  # its URL
    gateway_port: int
    services: dict[str, ServiceState]
    postgresql: str
    nats: str
    mailbox: str
    logs: str
    up: bool = False  # every service was ready once and the gateway serves

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        temporary = run_dir / f".{STATE_FILE}.{os.getpid()}"
        temporary.write_bytes(msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n")
        os.replace(temporary, run_dir / STATE_FILE)


def state_path(data_dir: Path) -> Path:
    return data_dir / "run" / STATE_FILE


def read_state(data_dir: Path) -> SuiteState | None:
    """What the `argus up` running under `data_dir` wrote, or None: no file, one that is not a
    state file, or one a process left that is no longer running (killed with SIGKILL)."""
    try:
        state = msgspec.json.decode(state_path(data_dir).read_bytes(), type=SuiteState)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return None
    return state if alive(state.pid) else None


def remove_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(data_dir).unlink()


def alive(pid: int | None) -> bool:
    """Whether a process with this pid runs (a zombie does not)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # Linux: a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True
