"""The webhooks service's own settings."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from argus_shared.settings import ConfigError, Env

RETRY_SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the host's addresses; the system resolver unless a test injects one
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Provider:
    name: str
    scheme: str  # "stripe" or "standard"
    secret: str = field(repr=False)


@dataclass(frozen=True)
class WebhooksConfig:
    https_only: bool = True
    allow_nets: tuple[Network, ...] = ()  # explicit exceptions to the SSRF rules (dev, tests)
    attempt_timeout: float = 15.0
    schedule: tuple[int, ...] = RETRY_SCHEDULE
    retry_after_cap: int = 3600
    lease_seconds: int = 60
    workers: int = 16
    poll_seconds: float = 0.5
    disable_after_days: int = 5
    rotation_overlap_hours: int = 24
    tolerance_seconds: int = 300
    providers: Mapping[str, Provider] = field(default_factory=dict)
    resolve: Resolve | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, production: bool, environ: Mapping[str, str] | None = None
                 ) -> WebhooksConfig:
        env = Env(environ)
        nets = env.str("ARGUS_WEBHOOKS_ALLOW_NETS") or ""
        try:
            allow = tuple(ipaddress.ip_network(n.strip()) for n in nets.split(",") if n.strip())
        except ValueError as exc:
            raise ConfigError(f"ARGUS_WEBHOOKS_ALLOW_NETS: {exc}") from None
        config = cls(
            https_only=env.bool("ARGUS_WEBHOOKS_HTTPS_ONLY", production),
            allow_nets=allow,
            workers=env.int("ARGUS_WEBHOOKS_WORKERS", 16, 1, 512),
            attempt_timeout=float(env.int("ARGUS_WEBHOOKS_ATTEMPT_TIMEOUT", 15, 1, 120)),
            lease_seconds=env.int("ARGUS_WEBHOOKS_LEASE_SECONDS", 60, 2, 3600),
            providers=parse_providers(env.secret("ARGUS_WEBHOOKS_INBOUND", required=False)),
        )
        if config.lease_seconds <= config.attempt_timeout:
            raise ConfigError(
                "ARGUS_WEBHOOKS_LEASE_SECONDS must be longer than ARGUS_WEBHOOKS_ATTEMPT_TIMEOUT"
            )
        return config


def parse_providers(text: str | None) -> dict[str, Provider]:
    """Lines `name:stripe:whsec_...` or `name:standard:whsec_...`."""
    providers: dict[str, Provider] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.strip().partition(":")
        scheme, _, secret = rest.partition(":")
        if scheme not in ("stripe", "standard") or not name or not secret:
            raise ConfigError(f"ARGUS_WEBHOOKS_INBOUND: line {number} is not name:scheme:secret")
        providers[name] = Provider(name, scheme, secret)
    return providers


CONFIG_KEY = web.AppKey("webhooks_config", WebhooksConfig)
