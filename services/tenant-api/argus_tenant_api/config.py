"""tenant-api's own settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from argus_shared.mail import MailSettings
from argus_shared.settings import Env


@dataclass(frozen=True)
class TenantConfig:
    auth_url: str = "http://127.0.0.1:8101"
    auth_issuer: str = "argus-auth"
    auth_audience: str = "argus"
    step_up_threshold_cents: int = 500_00
    reconcile_seconds: int = 300
    # where verified-domain TXT records are looked up: host[:port] (None: the system's)
    sso_nameserver: str | None = None
    sso_dns_timeout_seconds: int = 3
    # invitation mail: ARGUS_SMTP_URL_FILE / ARGUS_MAILBOX_DIR, ARGUS_MAIL_FROM and
    # ARGUS_PUBLIC_URL, read as auth reads them (argus_shared.mail)
    mail: MailSettings = field(default_factory=MailSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TenantConfig:
        env = Env(environ)
        mail = MailSettings.from_env(environ)
        return cls(
            auth_url=(env.str("ARGUS_AUTH_URL", cls.auth_url) or cls.auth_url).rstrip("/"),
            auth_issuer=env.str("ARGUS_AUTH_ISSUER", cls.auth_issuer) or cls.auth_issuer,
            auth_audience=env.str("ARGUS_AUTH_AUDIENCE", cls.auth_audience) or cls.auth_audience,
            step_up_threshold_cents=env.int("ARGUS_STEP_UP_THRESHOLD_CENTS", 500_00, 0),
            reconcile_seconds=env.int("ARGUS_RECONCILE_SECONDS", 300, 1),
            sso_nameserver=env.str("ARGUS_SSO_NAMESERVER") or None,
            sso_dns_timeout_seconds=env.int("ARGUS_SSO_DNS_TIMEOUT_SECONDS", 3, 1),
            mail=mail,
        )


CONFIG_KEY = web.AppKey("tenant_config", TenantConfig)
