"""What a running suite is made of: where its secrets live, and each service's environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from argus_shared.devsecrets import DevSecrets, password_file
from argus_shared.gateway_rules import GATEWAY
from argus_shared.settings import SERVICES

DEFAULT_SERVICE_PORTS: Mapping[str, int] = {
    service: 8101 + index for index, service in enumerate(SERVICES)
}
# The gateway routes /<prefix>/... to a service, stripping the prefix (argus_shared.gateway_rules).
GATEWAY_PREFIXES: Mapping[str, str] = GATEWAY.prefixes


@dataclass(frozen=True)
class Stack:
    secrets: DevSecrets
    database_url: str  # host, port and database; each role brings its own password
    nats_url: str
    service_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SERVICE_PORTS))
    env: str = "dev"
    host: str = "127.0.0.1"
    # where auth's breached-password check goes: unset leaves auth's default (the public range
    # API), except under ARGUS_ENV=test where it is off unless given
    hibp_url: str | None = None
    # where the suite is reached (the gateway): auth's and tenant-api's mail links point there
    public_url: str | None = None
    # where rate limits are counted (ARGUS_RATE_LIMIT_STORE); unset: the services' default, NATS
    rate_limit_store: str | None = None

    def service_url(self, service: str) -> str:
        return f"http://{self.host}:{self.service_ports[service]}"

    def service_environment(self, service: str) -> dict[str, str]:
        """The ARGUS_* variables a service process runs with; secrets as *_FILE paths."""
        files = self.secrets.path
        return {
            "ARGUS_ENV": self.env,
            "ARGUS_HOST": self.host,
            "ARGUS_PORT": str(self.service_ports[service]),
            "ARGUS_DATABASE_URL": self.database_url,
            "ARGUS_NATS_URL": self.nats_url,
            "ARGUS_DB_PASSWORD_FILE": str(files(password_file(service))),
            "ARGUS_DB_OWNER_PASSWORD_FILE": str(files("db-owner-password")),
            "ARGUS_XUT_KEYS_FILE": str(files("xut-keys")),
            "ARGUS_MASTER_KEYS_FILE": str(files("master-keys")),
            "ARGUS_TRUSTED_PROXIES": "127.0.0.1/32",
            "ARGUS_MAILBOX_DIR": str(self.mailbox),
            "ARGUS_FILES_DIR": str(self.secrets.directory.parent / "files"),
            "ARGUS_AUTH_URL": self.service_url("auth"),
            **self._breach_check(),
            **({"ARGUS_PUBLIC_URL": self.public_url} if self.public_url else {}),
            **({"ARGUS_RATE_LIMIT_STORE": self.rate_limit_store}
               if self.rate_limit_store else {}),
        }

    def _breach_check(self) -> dict[str, str]:
        if self.hibp_url:
            return {"ARGUS_HIBP_URL": self.hibp_url}
        return {"ARGUS_HIBP_URL": "off"} if self.env == "test" else {}

    @property
    def mailbox(self) -> Path:
        """Where development mail lands (one .eml file per message)."""
        return self.secrets.directory.parent / "mailbox"
