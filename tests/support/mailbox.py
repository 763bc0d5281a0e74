"""The development mailbox of a service running as its own process: auth sends its mail after
the answer (argus_auth.background), so a reader polls until a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import re
import time
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

DEADLINE = 60.0


def body_of(mail: Message) -> str:
    """The text of a single-part mail (what the services send)."""
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes), "a multipart mail"
    return payload.decode()


def tokens_in(mailbox: Path) -> dict[str, str]:
    """The latest token mailed to each address."""
    found: dict[str, tuple[str, str]] = {}
    for path in mailbox.glob("*.eml"):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        match = re.search(r"Token: (\S+)", body_of(mail))
        if match and (str(mail["To"]) not in found or path.name > found[str(mail["To"])][0]):
            found[str(mail["To"])] = (path.name, match.group(1))
    return {to: token for to, (_, token) in found.items()}


async def tokens_for(mailbox: Path, addresses: list[str],
                     deadline: float = DEADLINE) -> dict[str, str]:
    """A token for each address, once all their mail has arrived (AssertionError past the
    deadline)."""
    end = time.monotonic() + deadline
    while True:
        tokens = tokens_in(mailbox) if mailbox.is_dir() else {}
        if all(address in tokens for address in addresses):
            return {address: tokens[address] for address in addresses}
        if time.monotonic() > end:
            missing = [a for a in addresses if a not in tokens]
            raise AssertionError(f"no mail within {deadline}s to {missing[:3]}")
        await asyncio.sleep(0.05)


def mails_to(mailbox: Path, address: str) -> list[str]:
    """The bodies of the mail sent to `address`, oldest first."""
    bodies = []
    for path in sorted(mailbox.glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        if str(mail["To"]) == address:
            bodies.append(body_of(mail))
    return bodies


async def mail_to(mailbox: Path, address: str, deadline: float = DEADLINE) -> str:
    """The latest mail to `address`, once one has arrived (AssertionError past the deadline)."""
    end = time.monotonic() + deadline
    while not (bodies := mails_to(mailbox, address) if mailbox.is_dir() else []):
        if time.monotonic() > end:
            raise AssertionError(f"no mail within {deadline}s to {address}")
        await asyncio.sleep(0.05)
    return bodies[-1]
