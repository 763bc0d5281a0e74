"""An invitation is mailed, once it has committed, to the invited address (its normal form) with
a link to `<ARGUS_PUBLIC_URL>/tenant/pages/accept-invitation#<token>`: a page tenant-api serves
whose script signs in through auth and accepts, both beside it behind the gateway. An admin
resends an open invitation (a new token; the old one stops working); a mail that cannot be sent
leaves the invitation standing, says `mailed: false`, and a resend mails it later."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from argus_shared.embedded import free_port
from argus_shared.gateway import create_gateway
from argus_shared.mail import MailSettings
from argus_shared.settings import Settings
from support.auth_service import PASSWORD
from support.pages import Page, link_in, open_page
from support.suite import Suite, User, running_suite

PUBLIC_URL = "http://127.0.0.1:18080"  # a gateway elsewhere: the links must name it
REFUSED = "the invitation is invalid, used, revoked or expired"


def mails(mailbox: Path | None, address: str) -> list[EmailMessage]:
    """The mail sent to `address`, oldest first (sent before the answer: no waiting)."""
    assert mailbox is not None
    found = [message_from_bytes(path.read_bytes(), policy=policy.default)
             for path in sorted(mailbox.glob("*.eml"))] if mailbox.is_dir() else []
    return [mail for mail in found if str(mail["To"]) == address]


def text(mail: EmailMessage) -> str:
    return mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


def token_in(body: str) -> str:
    [token] = [line.removeprefix("Token: ") for line in body.splitlines()
               if line.startswith("Token: ")]
    return token


async def invite(suite: Suite, org: str, owner: User, email: str,
                 role: str = "member") -> dict[str, Any]:
    status, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                       {"email": email, "role": role})
    assert status == 201, invited
    return invited


async def resend(suite: Suite, org: str, owner: User, invitation_id: str) -> tuple[int, Any]:
    return await suite.call("POST", f"/orgs/{org}/invitations/{invitation_id}/resend",
                            owner.token)


async def accept(suite: Suite, user: User, token: str) -> int:
    return (await suite.call("POST", "/invitations/accept", user.token, {"token": token}))[0]


@dataclass
class Gateway:
    suite: Suite
    url: str


@pytest.fixture
async def gateway(make_auth_service: Callable[..., Any], settings_for: Callable[..., Settings],
                  tmp_path: Path) -> AsyncIterator[Gateway]:
    """auth and tenant-api behind the dev gateway, whose address is the public URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = await make_auth_service(public_url=url)
    mail = MailSettings(mailbox_dir=tmp_path / "tenant-api-mailbox", public_url=url)
    async with running_suite(auth, settings_for("tenant-api"), mail) as suite:
        server = TestServer(create_gateway({"auth": auth.base, "tenant-api": suite.tenant}),
                            host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield Gateway(suite, url)
        finally:
            await server.close()


async def sign_in_and_accept(http: aiohttp.ClientSession, page: Page, email: str,
                             token: str) -> tuple[int, Any]:
    """What the page's script does on submit: log in (JSON, no cookies), accept with the access
    token of that answer, log that session out."""
    login = urljoin(page.url, re.search(r'data-login="([^"]+)"', page.html).group(1))  # type: ignore[union-attr]
    logout = urljoin(page.url, re.search(r'data-logout="([^"]+)"', page.html).group(1))  # type: ignore[union-attr]
    async with http.post(login, json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 200
        access = (await response.json())["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    async with http.post(page.endpoint, json={"token": token}, headers=bearer) as response:
        answer = response.status, await response.json(content_type=None)
    async with http.post(logout, headers=bearer) as response:
        assert response.status == 204
    return answer


async def test_the_invitation_mail_links_to_a_page_that_signs_in_and_accepts(
    gateway: Gateway
) -> None:
    suite = gateway.suite
    owner = await suite.user()
    org = await suite.org(owner)
    invitee = await suite.user()
    invited = await invite(suite, org, owner, invitee.email.upper())  # another spelling
    assert invited["mailed"] is True
    [mail] = mails(suite.mailbox, invitee.email)  # to the normal form
    body = text(mail)
    _, listed = await suite.call("GET", f"/orgs/{org}", owner.token)
    assert listed["name"] in mail["Subject"] and f'"{listed["name"]}"' in body
    assert owner.email in body and "as a member" in body and "expires in 7 days" in body
    link = link_in(body)
    assert link == f"{gateway.url}/tenant/pages/accept-invitation#{invited['token']}"
    assert token_in(body) == invited["token"]

    page = await open_page(suite.http, link)  # through the gateway; headers checked there
    assert page.endpoint == f"{gateway.url}/tenant/invitations/accept"
    assert re.search(r'data-login="\.\./\.\./auth/login"', page.html)
    assert "post(page.login, {email, password})" in page.script
    assert "post(page.endpoint, {token}, access)" in page.script
    assert "Authorization = `Bearer ${accessToken}`" in page.script
    assert "mfa_required" in page.script  # an MFA account is told to accept via the API
    assert "name=" not in "".join(re.findall(r"<input\b[^>]*>", page.html))
    assert await sign_in_and_accept(suite.http, page, invitee.email, invited["token"]) == \
        (200, {"org_id": org, "role": "member"})
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert (invitee.id, "member") in [(m["user_id"], m["role"]) for m in members]


async def test_a_revoked_invitations_page_shows_the_refusal(gateway: Gateway) -> None:
    suite = gateway.suite
    owner = await suite.user()
    org = await suite.org(owner)
    invitee = await suite.user()
    invited = await invite(suite, org, owner, invitee.email, "viewer")
    path = f"/orgs/{org}/invitations/{invited['invitation']['id']}"
    assert (await suite.call("DELETE", path, owner.token))[0] == 204
    page = await open_page(suite.http, link_in(text(mails(suite.mailbox, invitee.email)[-1])))
    status, problem = await sign_in_and_accept(suite.http, page, invitee.email,
                                               invited["token"])
    assert status == 400 and problem["detail"] == REFUSED
    assert "`Not accepted: ${accepted.failure}.`" in page.script  # what the page shows
    assert "answer.detail" in page.script


async def test_a_resend_mails_a_new_token_and_the_old_one_stops_working(
    suite: Suite, admin: asyncpg.Connection
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    invitee = await suite.user()
    invited = await invite(suite, org, owner, invitee.email)
    invitation_id = invited["invitation"]["id"]
    await admin.execute("update tenant_api.invitations set expires_at = now() + interval '1 hour'"
                        " where id = $1", uuid.UUID(invitation_id))
    status, again = await resend(suite, org, owner, invitation_id)
    assert status == 200 and again["mailed"] is True
    assert again["invitation"]["id"] == invitation_id and again["token"] != invited["token"]
    expires = datetime.fromisoformat(again["invitation"]["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(days=7, minutes=-1)  # 7 days from now
    first, second = mails(suite.mailbox, invitee.email)
    assert token_in(text(first)) == invited["token"]
    assert token_in(text(second)) == again["token"] and again["token"] in link_in(text(second))
    assert await accept(suite, invitee, invited["token"]) == 400
    assert await accept(suite, invitee, again["token"]) == 200
    async with suite.reconciler.pool.acquire() as conn:
        assert await conn.fetchval(
            "select count(*) from outbox where subject ="
            " 'argus.events.tenant-api.org.invitation.resent' and org_id = $1",
            uuid.UUID(org)) == 1
    status, problem = await resend(suite, org, owner, invitation_id)
    assert status == 409 and "accepted" in problem["detail"]
    assert len(mails(suite.mailbox, invitee.email)) == 2  # nothing mailed


async def test_only_an_open_invitation_of_the_org_is_resent(
    suite: Suite, admin: asyncpg.Connection
) -> None:
    owner, other = await suite.user(), await suite.user()
    org, other_org = await suite.org(owner), await suite.org(other)
    email = f"i{uuid.uuid4().hex[:10]}@example.com"
    theirs = (await invite(suite, other_org, other, email))["invitation"]["id"]
    assert (await resend(suite, org, owner, theirs))[0] == 404  # another org's
    assert (await resend(suite, org, owner, str(uuid.uuid4())))[0] == 404  # unknown
    member = await suite.member(org, owner, "member")
    ours = (await invite(suite, org, owner, email))["invitation"]["id"]
    assert (await resend(suite, org, member, ours))[0] == 403  # owners and admins only
    await admin.execute("update tenant_api.invitations set expires_at = now()"
                        " - interval '1 second' where id = $1", uuid.UUID(ours))
    status, problem = await resend(suite, org, owner, ours)
    assert status == 409 and "expired" in problem["detail"]
    revoked = (await invite(suite, org, owner, email))["invitation"]["id"]
    assert (await suite.call("DELETE", f"/orgs/{org}/invitations/{revoked}", owner.token))[0] \
        == 204
    status, problem = await resend(suite, org, owner, revoked)
    assert status == 409 and "revoked" in problem["detail"]
    assert len(mails(suite.mailbox, email)) == 3  # the three invitations, no resend


class Inbox:
    """What a local SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, EmailMessage]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.rcpt_tos[0], mail))
        return "250 OK"


@pytest.fixture
async def smtp_suite(make_auth_service: Callable[..., Any],
                     settings_for: Callable[..., Settings]) -> AsyncIterator[tuple[Suite, int]]:
    """tenant-api mailing through SMTP on a local port where nothing listens yet."""
    port = free_port()
    mail = MailSettings(smtp_url=f"smtp+plain://127.0.0.1:{port}", public_url=PUBLIC_URL)
    async with running_suite(await make_auth_service(), settings_for("tenant-api"),
                             mail) as suite:
        yield suite, port


async def test_smtp_down_keeps_the_invitation_and_a_resend_mails_it_later(
    smtp_suite: tuple[Suite, int]
) -> None:
    suite, port = smtp_suite
    owner = await suite.user()
    org = await suite.org(owner)
    invitee = await suite.user()
    invited = await invite(suite, org, owner, invitee.email)
    assert invited["mailed"] is False  # nothing listens on the SMTP port
    _, listed = await suite.call("GET", f"/orgs/{org}/invitations", owner.token)
    assert [i["id"] for i in listed] == [invited["invitation"]["id"]]

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        status, again = await resend(suite, org, owner, invited["invitation"]["id"])
    finally:
        controller.stop()
    assert status == 200 and again["mailed"] is True
    [(recipient, mail)] = inbox.messages
    assert recipient == invitee.email
    assert link_in(text(mail)) == f"{PUBLIC_URL}/tenant/pages/accept-invitation#{again['token']}"
    assert await accept(suite, invitee, again["token"]) == 200
