"""Operating auth: the signing-key rotation command, and mail through a real SMTP server."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

from aiosmtpd.controller import Controller

from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from argus_shared.mail import SmtpMailer
from support.auth_service import AuthService
from support.processes import run_to_exit, service_command


async def test_rotate_signing_key_command(service: AuthService, stack: Stack) -> None:
    before = {row["kid"] for row in await service.auth.pool.fetch("select kid from signing_keys")}
    code, output = await asyncio.to_thread(
        run_to_exit, [*service_command("auth"), "rotate-signing-key"],
        stack.service_environment("auth"))
    assert code == 0, output
    rows = await service.auth.pool.fetch("select kid, retired_at from signing_keys")
    new = {row["kid"] for row in rows} - before
    assert len(new) == 1 and next(iter(new)) in output
    assert [row["kid"] for row in rows if row["retired_at"] is None] == list(new)


def test_unknown_command_is_one_line(stack: Stack) -> None:
    code, output = run_to_exit([*service_command("auth"), "frobnicate"],
                               stack.service_environment("auth"))
    assert code == 2 and output.count("\n") == 1 and "frobnicate" in output


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append((envelope.mail_from, envelope.rcpt_tos[0],  # type: ignore[attr-defined]
                              envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


async def test_smtp_mailer_delivers_to_a_real_smtp_server(tmp_path: Path) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = SmtpMailer(f"smtp+plain://127.0.0.1:{port}", "Argus <no-reply@argus.test>")
        await mailer.send("someone@example.com", "Verify your email", "Token: abc")
    finally:
        controller.stop()
    [(sender, recipient, content)] = inbox.messages
    message = email.message_from_bytes(content)
    assert recipient == "someone@example.com" and "no-reply@argus.test" in sender
    assert message["Subject"] == "Verify your email"
    assert "Token: abc" in message.get_payload()
