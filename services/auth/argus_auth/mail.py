"""One sender interface: SMTP in production, a mailbox directory in development (`argus up`
prints its path; each message is one `.eml` file); and what auth mails, each link opening a
page of `argus_auth.pages` through the gateway at `ARGUS_PUBLIC_URL`."""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
import uuid
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from argus_auth import pages

Letter = tuple[str, str]  # subject, body


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


# what auth mails ---------------------------------------------------------------------------------
# Each token mail says what its link does and when it expires, and keeps a `Token:` line for
# clients of the API.

def _token_mail(lead: str, link: str, ttl: int, otherwise: str, route: str, token: str) -> str:
    expires = f"The link works once and expires in {pages.expiry(ttl)}. {otherwise}"
    return (f"{textwrap.fill(lead, 72)}\n\n{link}\n\n{textwrap.fill(expires, 72)}\n\n"
            f"Or send this token to {route}:\nToken: {token}\n")


def verification(public_url: str, token: str, ttl: int) -> Letter:
    return "Verify your email", _token_mail(
        "Open this link to verify your email address and finish signing up for Argus:",
        pages.link(public_url, pages.VERIFY_PAGE, token), ttl,
        "If you did not sign up, ignore this mail: no account is activated without it.",
        "POST /auth/verify-email", token)


def password_reset(public_url: str, token: str, ttl: int) -> Letter:
    return "Reset your password", _token_mail(
        "Reset your password: open this link to choose a new one (every session of the account "
        "then ends):", pages.link(public_url, pages.RESET_PAGE, token), ttl,
        "If you did not ask for it, ignore this mail: your password stays as it is.",
        "POST /auth/password/reset (with new_password)", token)


def email_change(public_url: str, token: str, ttl: int) -> Letter:
    return "Confirm your new email", _token_mail(
        "Confirm your new email address: open this link to make it your Argus account's "
        "address:", pages.link(public_url, pages.CONFIRM_PAGE, token), ttl,
        "If you did not ask for it, ignore this mail: the account keeps its address.",
        "POST /auth/email/confirm", token)


def sign_up_attempt() -> Letter:
    return "Sign-up attempt", textwrap.fill(
        "Someone tried to sign up with this email, which already has an account. If it was "
        "you, log in or reset your password; if not, ignore this mail.", 72) + "\n"
