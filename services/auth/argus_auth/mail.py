"""One sender interface: SMTP in production, a mailbox directory in development (`argus up`
prints its path; each message is one `.eml` file)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


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

    def __init__(self, url: str, sender: str) -> None:
        self.url, self.sender = urlsplit(url), sender

    async def send(self, to: str, subject: str, body: str) -> None:
        implicit = self.url.scheme == "smtps"
        await aiosmtplib.send(
            message(self.sender, to, subject, body),
            hostname=self.url.hostname, port=self.url.port or (465 if implicit else 587),
            username=unquote(self.url.username) if self.url.username else None,
            password=unquote(self.url.password) if self.url.password else None,
            use_tls=implicit, start_tls=False if implicit else self.url.scheme == "smtp",
            timeout=15,
        )
