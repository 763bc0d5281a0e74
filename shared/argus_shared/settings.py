"""Settings from the environment, with secrets from files (`ARGUS_X_FILE`) or values (`ARGUS_X`).

Every problem is a `ConfigError` whose message is one line naming the setting, so that start-up
can print it and exit without a traceback.
"""

from __future__ import annotations

import builtins
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload
from urllib.parse import urlsplit

from argus_shared import b64

SERVICES: tuple[str, ...] = ("auth", "tenant-api", "audit", "webhooks", "files")
OWNER_ROLE = "argus_owner"
ENVIRONMENTS = ("dev", "test", "prod")

_KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line and names it."""


def schema_of(service: str) -> str:
    """The PostgreSQL schema a service owns: `tenant-api` -> `tenant_api`."""
    return service.replace("-", "_")


def role_of(service: str) -> str:
    """The runtime PostgreSQL role of a service: `tenant-api` -> `argus_tenant_api`."""
    return f"argus_{schema_of(service)}"


@dataclass(frozen=True)
class KeyRing:
    """Symmetric keys by `kid`; the first is current (used to sign/seal), the rest still verify."""

    keys: Mapping[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str, name: str, min_bytes: int = 32) -> KeyRing:
        """Parse lines `kid:base64url(key)`; blank lines and `#` comments are ignored."""
        keys: dict[str, bytes] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, encoded = line.partition(":")
            if not sep or not _KID_RE.match(kid):
                raise ConfigError(f"{name}: line {number} is not 'kid:base64url-key'")
            try:
                key = b64.decode(encoded)
            except ValueError:
                raise ConfigError(f"{name}: line {number}: key is not base64url") from None
            if len(key) < min_bytes:
                raise ConfigError(f"{name}: key '{kid}' is shorter than {min_bytes} bytes")
            if kid in keys:
                raise ConfigError(f"{name}: kid '{kid}' appears twice")
            keys[kid] = key
        if not keys:
            raise ConfigError(f"{name}: no keys found")
        return cls(keys=keys, current=next(iter(keys)))

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]

    def __repr__(self) -> str:  # never show key material
        return f"KeyRing(kids={list(self.keys)}, current={self.current!r})"


def format_keyring(keys: Mapping[str, bytes]) -> str:
    return "".join(f"{kid}:{b64.encode(key)}\n" for kid, key in keys.items())


class Env:
    """Reads `ARGUS_*` variables; every error names the variable. (Its methods are named after
    the types they read, so inside the class the builtins are spelled `builtins.str` etc.)"""

    def __init__(self, environ: Mapping[builtins.str, builtins.str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    @overload
    def str(self, name: builtins.str, default: builtins.str) -> builtins.str: ...
    @overload
    def str(self, name: builtins.str, default: None = None) -> builtins.str | None: ...
    def str(self, name: builtins.str,
            default: builtins.str | None = None) -> builtins.str | None:
        value = self.environ.get(name)
        return default if value is None or value == "" else value

    def required(self, name: builtins.str) -> builtins.str:
        value = self.str(name)
        if value is None:
            raise ConfigError(f"{name} is not set")
        return value

    def int(self, name: builtins.str, default: builtins.int, low: builtins.int = 0,
            high: builtins.int = 2**31) -> builtins.int:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = builtins.int(raw)
        except ValueError:
            raise ConfigError(f"{name}: '{raw}' is not an integer") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: {value} is outside {low}..{high}")
        return value

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.str(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: '{raw}' is not a boolean")

    def secret(self, name: builtins.str,
               required: builtins.bool = True) -> builtins.str | None:
        """`NAME` or the contents of the file named by `NAME_FILE` (trailing newline removed)."""
        path = self.str(f"{name}_FILE")
        if path is not None:
            try:
                text = Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
            if not text:
                raise ConfigError(f"{name}_FILE: {path} is empty")
            return text
        value = self.str(name)
        if value is None and required:
            raise ConfigError(f"{name}_FILE is not set (nor {name}): the secret is required")
        return value

    def keyring(self, name: builtins.str, required: builtins.bool = True) -> KeyRing | None:
        text = self.secret(name, required)
        return None if text is None else KeyRing.parse(text, name)


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{name}: '{_without_password(url)}' is not a {schemes[0]}:// URL")
    return url


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _networks(
    name: str, raw: str | None
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not raw:
        return ()
    try:
        return tuple(ipaddress.ip_network(item.strip()) for item in raw.split(",") if item.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """What one service process needs. Built by `Settings.from_env(service)`."""

    service: str
    env: str
    host: str
    port: int
    database_url: str
    db_password: str = field(repr=False)
    db_owner_password: str | None = field(repr=False)
    nats_url: str
    xut_keys: KeyRing = field(repr=False)
    master_keys: KeyRing | None = field(default=None, repr=False)
    migrate_on_start: bool = True
    migrations_wait_seconds: int = 300  # without migrate_on_start: wait for the migrate step
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
    cors_origin: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    otlp_endpoint: str | None = None
    rate_limit_ip_per_minute: int = 600
    rate_limit_org_per_minute: int = 6000
    rate_limit_key_per_minute: int = 1200
    rate_limit_store: str = "nats"  # "nats": one count for every replica; "memory": per replica
    shutdown_timeout: float = 8.0
    outbox_keep_seconds: int = 3600
    outbox_prune_seconds: int = 15
    # live events (`GET /audit/stream`): caps, back-pressure, keep-alive, cap leases
    stream_max_per_user: int = 5
    stream_max_per_org: int = 200
    stream_buffer_events: int = 256
    stream_heartbeat_seconds: float = 15.0
    stream_lease_seconds: float = 30.0

    @property
    def schema(self) -> str:
        return schema_of(self.service)

    @property
    def db_role(self) -> str:
        return role_of(self.service)

    @property
    def production(self) -> bool:
        return self.env == "prod"

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> Settings:
        if service not in SERVICES:
            raise ConfigError(f"unknown service '{service}' (one of {', '.join(SERVICES)})")
        env = Env(environ)
        mode = env.str("ARGUS_ENV", "dev") or "dev"
        if mode not in ENVIRONMENTS:
            raise ConfigError(f"ARGUS_ENV: '{mode}' is not one of {', '.join(ENVIRONMENTS)}")
        migrate = env.bool("ARGUS_MIGRATE_ON_START", True)
        xut_keys = env.keyring("ARGUS_XUT_KEYS")
        assert xut_keys is not None
        return cls(
            service=service,
            env=mode,
            host=env.str("ARGUS_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("ARGUS_PORT", 8000, 0, 65535),
            database_url=_check_url(
                "ARGUS_DATABASE_URL", env.required("ARGUS_DATABASE_URL"), ("postgresql", "postgres")
            ),
            db_password=env.secret("ARGUS_DB_PASSWORD") or "",
            db_owner_password=env.secret("ARGUS_DB_OWNER_PASSWORD", required=migrate),
            nats_url=_check_url("ARGUS_NATS_URL", env.required("ARGUS_NATS_URL"), ("nats", "tls")),
            xut_keys=xut_keys,
            master_keys=env.keyring("ARGUS_MASTER_KEYS", required=False),
            migrate_on_start=migrate,
            migrations_wait_seconds=env.int("ARGUS_MIGRATIONS_WAIT_SECONDS", 300, 0, 86400),
            log_level=(env.str("ARGUS_LOG_LEVEL", "INFO") or "INFO").upper(),
            max_body_bytes=env.int("ARGUS_MAX_BODY_BYTES", 1_048_576, 1024, 2**40),
            cors_origin=env.str("ARGUS_CORS_ORIGIN"),
            trusted_proxies=_networks("ARGUS_TRUSTED_PROXIES", env.str("ARGUS_TRUSTED_PROXIES")),
            otlp_endpoint=env.str("ARGUS_OTLP_ENDPOINT"),
            rate_limit_ip_per_minute=env.int("ARGUS_RATE_LIMIT_IP_PER_MINUTE", 600, 1),
            rate_limit_org_per_minute=env.int("ARGUS_RATE_LIMIT_ORG_PER_MINUTE", 6000, 1),
            rate_limit_key_per_minute=env.int("ARGUS_RATE_LIMIT_KEY_PER_MINUTE", 1200, 1),
            rate_limit_store=_rate_limit_store(env),
            shutdown_timeout=float(env.int("ARGUS_SHUTDOWN_TIMEOUT", 8, 1, 300)),
            outbox_keep_seconds=_outbox_keep_seconds(env),
            outbox_prune_seconds=env.int("ARGUS_OUTBOX_PRUNE_SECONDS", 15, 1, 86400),
            stream_max_per_user=env.int("ARGUS_STREAM_MAX_PER_USER", 5, 1, 10_000),
            stream_max_per_org=env.int("ARGUS_STREAM_MAX_PER_ORG", 200, 1, 1_000_000),
            stream_buffer_events=env.int("ARGUS_STREAM_BUFFER_EVENTS", 256, 1, 100_000),
            stream_heartbeat_seconds=float(env.int("ARGUS_STREAM_HEARTBEAT_SECONDS", 15, 1, 300)),
            stream_lease_seconds=float(env.int("ARGUS_STREAM_LEASE_SECONDS", 30, 3, 3600)),
        )


def _rate_limit_store(env: Env) -> str:
    store = env.str("ARGUS_RATE_LIMIT_STORE", "nats")
    if store not in ("nats", "memory"):
        raise ConfigError(f"ARGUS_RATE_LIMIT_STORE: {store!r} is neither 'nats' (one count for "
                          f"every replica) nor 'memory' (each replica its own)")
    return store


def _outbox_keep_seconds(env: Env) -> int:
    """How long a sent outbox row is kept: longer than JetStream's duplicate window, so a row is
    never gone while the stream would still drop its re-publication as a duplicate."""
    from argus_shared.nats import DUPLICATE_WINDOW  # nats imports this module

    keep = env.int("ARGUS_OUTBOX_KEEP_SECONDS", 3600, 1)
    if keep <= DUPLICATE_WINDOW:
        raise ConfigError(f"ARGUS_OUTBOX_KEEP_SECONDS: {keep} s does not exceed JetStream's "
                          f"duplicate window of {DUPLICATE_WINDOW} s")
    return keep
