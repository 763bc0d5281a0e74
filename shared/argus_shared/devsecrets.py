"""Development secrets under `.argus/secrets/`: created on first run (mode 0600), reused after,
and rotated by `argus keys rotate`. Production mounts the same files from its secret store.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from argus_shared.settings import SERVICES, ConfigError, KeyRing, format_keyring

KEYRINGS = ("xut-keys", "master-keys")  # kid:key lines; first is current
# Older keys kept after a rotation. X-User-Tokens live seconds, so one previous key is enough;
# master keys still unwrap stored data keys until those are re-wrapped, so none is dropped.
KEEP_PREVIOUS: dict[str, int | None] = {"xut-keys": 1, "master-keys": None}


def password_file(service: str) -> str:
    return f"db-{service}-password"


PASSWORD_FILES = (
    "pg-superuser-password",
    "db-owner-password",
    *(password_file(s) for s in SERVICES),
    "db-replication-password",  # argus_replication: `argus backup`'s pg_basebackup
)


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _new_kid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class DevSecrets:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def read(self, name: str) -> str:
        try:
            return self.path(name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret {self.path(name)}: {exc.strerror}") from None

    def keyring(self, name: str) -> KeyRing:
        return KeyRing.parse(self.read(name), str(self.path(name)))

    def service_passwords(self) -> Mapping[str, str]:
        return {service: self.read(password_file(service)) for service in SERVICES}


def ensure_dev_secrets(directory: Path) -> DevSecrets:
    """Create whatever secret is missing; never overwrite one that exists."""
    if not directory.exists():  # an existing one may be a read-only mount (compose, k8s)
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)
    for name in PASSWORD_FILES:
        if not (directory / name).exists():
            _write_private(directory / name, secrets.token_urlsafe(32) + "\n")
    for name in KEYRINGS:
        if not (directory / name).exists():
            key = {_new_kid(name.split("-")[0]): secrets.token_bytes(32)}
            _write_private(directory / name, format_keyring(key))
    store = DevSecrets(directory)
    for name in KEYRINGS:
        store.keyring(name)  # a malformed file stops start-up here, naming it
    return store


def rotate_keyring(store: DevSecrets, name: str) -> str:
    """Put a new current key first, keep the previous one(s) so tokens in flight still verify."""
    if name not in KEYRINGS:
        raise ConfigError(f"unknown key ring '{name}' (one of {', '.join(KEYRINGS)})")
    ring = store.keyring(name)
    kid = _new_kid(name.split("-")[0])
    keep = list(ring.keys.items())[: KEEP_PREVIOUS[name]]
    _write_private(store.path(name), format_keyring({kid: secrets.token_bytes(32), **dict(keep)}))
    return kid
