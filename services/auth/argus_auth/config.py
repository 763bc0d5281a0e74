"""The auth service's own settings (beyond the shared ones), from `ARGUS_*` variables."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from argus_auth.sso_providers import SsoConfig
from argus_shared.mail import MailSettings
from argus_shared.settings import Env

MAX_DEFAULT_WORKERS = 4


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it), at most
    MAX_DEFAULT_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 2, MAX_DEFAULT_WORKERS)


@dataclass(frozen=True)
class AuthConfig:
    issuer: str = "argus-auth"
    audience: str = "argus"
    access_ttl: int = 900
    refresh_ttl: int = 30 * 24 * 3600
    refresh_grace: int = 10
    verify_ttl: int = 24 * 3600
    reset_ttl: int = 3600
    challenge_ttl: int = 300
    step_up_window: int = 300
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # hashing processes: one per usable core, and no more than a handful (each is ~20 MB plus
    # the hash's memory; a container may see all of a large node's cores)
    argon2_workers: int = field(default_factory=usable_cores)
    hibp_url: str | None = "https://api.pwnedpasswords.com/range/"
    hibp_timeout: float = 2.0
    ip_limit_per_minute: int = 30  # per client IP on each credential route
    account_limit_per_minute: int = 20  # per email or user on each credential route
    # account-dependent work of sign-up, reset and email change, done after the 202
    # (argus_auth.background): jobs waiting at most (past it a job is dropped), workers, and the
    # random delay before a job starts
    background_queue: int = 1000
    background_workers: int = 8
    background_jitter: float = 0.1
    lockout_threshold: int = 5
    lockout_base: float = 10.0
    lockout_cap: float = 300.0
    # the mailer and where mail links point (ARGUS_SMTP_URL_FILE / ARGUS_MAILBOX_DIR,
    # ARGUS_MAIL_FROM, ARGUS_PUBLIC_URL: read as every service that mails reads them)
    mail: MailSettings = field(default_factory=MailSettings)
    secure_cookies: bool = True
    # OpenID Connect providers (ARGUS_SSO_*; argus_auth.sso_providers)
    sso: SsoConfig = field(default_factory=SsoConfig)
    clock: Callable[[], float] = time.time

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthConfig:
        env = Env(environ)
        mail = MailSettings.from_env(environ)  # first, as before: no mailer, no start
        hibp = env.str("ARGUS_HIBP_URL", cls.hibp_url)
        return cls(
            issuer=env.str("ARGUS_AUTH_ISSUER", cls.issuer) or cls.issuer,
            audience=env.str("ARGUS_AUTH_AUDIENCE", cls.audience) or cls.audience,
            argon2_memory_kib=env.int("ARGUS_ARGON2_MEMORY_KIB", cls.argon2_memory_kib, 8, 2**22),
            argon2_time_cost=env.int("ARGUS_ARGON2_TIME_COST", cls.argon2_time_cost, 1, 100),
            argon2_parallelism=env.int("ARGUS_ARGON2_PARALLELISM", cls.argon2_parallelism, 1, 64),
            argon2_workers=env.int("ARGUS_ARGON2_WORKERS", usable_cores(), 1, 64),
            hibp_url=None if hibp in ("off", "none") else hibp,
            mail=mail,
            sso=SsoConfig.from_env(environ, mail.public_url),
            secure_cookies=env.bool("ARGUS_SECURE_COOKIES", True),
            ip_limit_per_minute=env.int("ARGUS_AUTH_IP_LIMIT_PER_MINUTE", 30, 1),
            account_limit_per_minute=env.int("ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE", 20, 1),
            background_queue=env.int("ARGUS_AUTH_BACKGROUND_QUEUE", cls.background_queue, 1),
            background_workers=env.int("ARGUS_AUTH_BACKGROUND_WORKERS", cls.background_workers,
                                       1, 256),
        )
