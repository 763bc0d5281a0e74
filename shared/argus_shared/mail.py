"""Mail for every service that sends it (auth, tenant-api): one sender interface, SMTP in
production and a mailbox directory in development (`argus up` prints its path; each message is
one `.eml` file), and the settings both read the same way.

Settings: `ARGUS_SMTP_URL_FILE` (or `ARGUS_SMTP_URL`; `smtp://user:pass@host:587` with
STARTTLS, `smtps://...:465`), else `ARGUS_MAILBOX_DIR` for development (one of the two is
required); `ARGUS_MAIL_FROM`; `ARGUS_PUBLIC_URL`, the gateway's public origin, which mail links
point at (`<ARGUS_PUBLIC_URL>/<prefix>/pages/<page>#<token>`, see `argus_shared.pages`)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from argus_shared.settings import ConfigError, Env

Letter = tuple[str, str]  # subject, body
DEFAULT_FROM = "Argus <no-reply@argus.local>"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


@dataclass(frozen=True)
class MailSettings:
    mailbox_dir: Path | None = None
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = DEFAULT_FROM
    public_url: str = DEFAULT_PUBLIC_URL  # no trailing slash

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MailSettings:
        env = Env(environ)
        mailbox = env.str("ARGUS_MAILBOX_DIR")
        smtp = env.secret("ARGUS_SMTP_URL", required=False)
        if not mailbox and not smtp:
            raise ConfigError(
                "ARGUS_SMTP_URL_FILE (or ARGUS_MAILBOX_DIR for development) is not set"
            )
        return cls(
            mailbox_dir=Path(mailbox) if mailbox else None,
            smtp_url=smtp,
            mail_from=env.str("ARGUS_MAIL_FROM", DEFAULT_FROM) or DEFAULT_FROM,
            public_url=(env.str("ARGUS_PUBLIC_URL", DEFAULT_PUBLIC_URL)
                        or DEFAULT_PUBLIC_URL).rstrip("/"),
        )


def mailer_for(settings: MailSettings) -> Mailer:
    """SMTP when it is set, else the development mailbox."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url, settings.mail_from)
    if settings.mailbox_dir is None:
        raise ConfigError("ARGUS_SMTP_URL_FILE (or ARGUS_MAILBOX_DIR for development) is not set")
    return MailboxMailer(settings.mailbox_dir, settings.mail_from)


def message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail["Message-ID"] = f"<{uuid.uuid4()}@argus>"
    mail.set_content(body)
    return mail


class MailboxMailer:
    def __init__(self, directory: Path, sender: str) -> None:
        self.directory, self.sender = directory, sender

    async def send(self, to: str, subject: str, body: str) -> None:
        # as SMTP with SMTPUTF8 carries it: a non-ASCII address stays UTF-8, not an encoded-word
        data = message(self.sender, to, subject, body).as_bytes(policy=policy.SMTPUTF8)
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


class SmtpMailer:
    """`smtp://user:password@host:587` (STARTTLS required), `smtps://...:465` (implicit TLS),
    or `smtp+plain://host:port` (no TLS: only for a relay on the same host or in tests)."""

    def __init__(self, url: str, sender: str, timeout: float = 15) -> None:
        self.url, self.sender, self.timeout = urlsplit(url), sender, timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        implicit = self.url.scheme == "smtps"
        await aiosmtplib.send(
            message(self.sender, to, subject, body),
            hostname=self.url.hostname, port=self.url.port or (465 if implicit else 587),
            username=unquote(self.url.username) if self.url.username else None,
            password=unquote(self.url.password) if self.url.password else None,
            use_tls=implicit, start_tls=False if implicit else self.url.scheme == "smtp",
            timeout=self.timeout,
        )
