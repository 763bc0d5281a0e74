"""Invitations: a 256-bit single-use token (only its SHA-256 is stored) that expires in 7 days,
mailed to the invited address once the invitation has committed, with a link to the page that
accepts it (`<ARGUS_PUBLIC_URL>/tenant/pages/accept-invitation#<token>`).

The mail is sent after the commit, never inside the transaction: a mail that cannot be sent
loses nothing (the invitation exists, the answer says `mailed: false`), and an admin resends.
A resend issues a new token and a new 7-day expiry: the old token stops working, since only
its hash was kept, and so it could not be mailed again anyway."""

from __future__ import annotations

import hashlib
import logging
import secrets
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from argus_shared import emails, pages
from argus_shared.errors import Problem
from argus_shared.event_types import INVITATION_CREATED, INVITATION_RESENT
from argus_shared.handlers import not_found
from argus_shared.mail import Letter, Mailer
from argus_shared.outbox import Ctx, record
from argus_tenant_api import SERVICE, queries
from argus_tenant_api.scope import Scope

log = logging.getLogger("argus.tenant_api.invitations")

DAYS = 7
ACCEPT_PAGE = "accept-invitation"
PAGE_SUMMARIES = {ACCEPT_PAGE: "Page (HTML) the invitation mail links to: sign in and accept"}
PAGE_SCRIPTS = {ACCEPT_PAGE: ACCEPT_PAGE}


@dataclass(frozen=True)
class Issued:
    """An invitation with the token just issued for it (shown once, never stored), and what
    its mail names."""

    token: str
    row: queries.Row
    org_name: str
    inviter: str | None  # the inviter's email, when the membership has one


def _new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).digest()


def _expiry() -> datetime:
    return datetime.now(UTC) + timedelta(days=DAYS)


async def _issued(conn: queries.Conn, scope: Scope, token: str, row: queries.Row) -> Issued:
    org = await queries.org(conn, scope.org_id)
    inviter = await queries.member_email(conn, scope.org_id, scope.user_id) \
        if scope.user_id else None
    return Issued(token, row, org["name"] if org else "", inviter)


async def create(conn: queries.Conn, scope: Scope, email: str, role: str, ctx: Ctx) -> Issued:
    """In the org's transaction: the invitation and its event."""
    token, digest = _new_token()
    row = await queries.insert_invitation(conn, {
        "org_id": scope.org_id, "id": uuid.uuid4(), "email": emails.required(email),
        "role": role, "token_hash": digest, "invited_by": scope.user_id,
        "expires_at": _expiry()})
    await record(conn, SERVICE, ctx, INVITATION_CREATED, actor=scope.actor,
                 resource=("invitation", str(row["id"])), org_id=scope.org_id,
                 data={"role": role})
    return await _issued(conn, scope, token, row)


def _closed(row: queries.Row) -> str | None:
    """Why an invitation can no longer be accepted, or None while it is open."""
    if row["accepted_at"]:
        return "accepted"
    if row["revoked_at"]:
        return "revoked"
    return "expired" if row["expires_at"] <= datetime.now(UTC) else None


async def renew(conn: queries.Conn, scope: Scope, invitation_id: UUID, ctx: Ctx) -> Issued:
    """In the org's transaction: a new token and expiry for an open invitation of the org
    (404 for none, 409 for one accepted, revoked or expired), and the event."""
    found = await queries.invitation_for_update(conn, scope.org_id, invitation_id)
    if found is None:
        raise not_found()
    if state := _closed(found):
        raise Problem(409, f"the invitation was {state}; invite the address again instead",
                      title="Invitation closed")
    token, digest = _new_token()
    row = await queries.renew_invitation(conn, scope.org_id, invitation_id, digest, _expiry())
    await record(conn, SERVICE, ctx, INVITATION_RESENT, actor=scope.actor,
                 resource=("invitation", str(invitation_id)), org_id=scope.org_id,
                 data={"role": row["role"]})
    return await _issued(conn, scope, token, row)


def link(public_url: str, token: str) -> str:
    return pages.link(public_url, SERVICE, ACCEPT_PAGE, token)


def letter(public_url: str, issued: Issued) -> Letter:
    """The invitation mail: who invites, to which org, as what, until when, and the link."""
    row = issued.row
    article = "an" if row["role"][0] in "aeiou" else "a"
    lead = (f"{issued.inviter or 'An admin'} invited you to join the org "
            f"\"{issued.org_name}\" on Argus as {article} {row['role']}. Open this link to "
            f"accept, signed in with the Argus account of {row['email']}:")
    until = row["expires_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    expires = (f"The invitation works once and expires in {DAYS} days ({until}). If you did "
               "not expect it, ignore this mail: nobody joins without accepting.")
    route = f"POST {pages.prefix_of(SERVICE)}/invitations/accept"
    body = (f"{textwrap.fill(lead, 72)}\n\n{link(public_url, issued.token)}\n\n"
            f"{textwrap.fill(expires, 72)}\n\nOr, signed in, send this token to {route}:\n"
            f"Token: {issued.token}\n")
    return f"You are invited to {issued.org_name} on Argus", body


async def send(mailer: Mailer, public_url: str, issued: Issued) -> bool:
    """Mail the invitation; False (logged, never raised) when it could not be sent."""
    try:
        await mailer.send(issued.row["email"], *letter(public_url, issued))
    except Exception as exc:
        log.warning("invitation mail not sent; the invitation stands and can be resent",
                    extra={"invitation_id": str(issued.row["id"]), "error": type(exc).__name__})
        return False
    return True
