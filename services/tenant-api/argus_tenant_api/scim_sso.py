"""SCIM and the org's own IdP together: a user the org's IdP provisioned (a SCIM user waiting
on its invitation) who then signs in through that same IdP (auth's `auth.user.signed_up` with
`via: sso`, or `auth.identity.linked`, naming the issuer) becomes a member at once, without
accepting the invitation: the account's email is verified by auth, and the issuer is the org's
own connection. The invitation is marked accepted; the usual `org.member.added` and the
revocation entry `member.<org>.<user>` (with the role) follow."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from nats.aio.client import Client

from argus_shared import db, emails, events
from argus_shared.access import revoke_membership
from argus_shared.consumer import Received
from argus_shared.event_types import IDENTITY_LINKED, MEMBER_ADDED, USER_SIGNED_UP
from argus_shared.logs import request_context
from argus_shared.nats import RpcError
from argus_shared.outbox import Ctx, record
from argus_shared.settings import KeyRing
from argus_tenant_api import SERVICE, accounts, queries, scim

log = logging.getLogger("argus.tenant_api.scim_sso")
SIGNED_UP_SUBJECT = events.subject_for("auth", USER_SIGNED_UP)
LINKED_SUBJECT = events.subject_for("auth", IDENTITY_LINKED)


def signed_in_through(event: events.Event) -> tuple[UUID, str] | None:
    """(user, issuer) of a sign-up through an IdP or a link of one; None for anything else."""
    if event.type == USER_SIGNED_UP and event.data.get("via") == "sso" and \
            event.resource.type == "user" and isinstance(event.data.get("idp"), str):
        return UUID(event.resource.id), event.data["idp"]
    if event.type == IDENTITY_LINKED and event.actor.type == "user" and \
            isinstance(event.data.get("issuer"), str):
        return UUID(event.actor.id), event.data["issuer"]
    return None


async def handler(pool: asyncpg.Pool, nc: Client, keys: KeyRing,
                  batch: Sequence[Received]) -> None:
    for item in batch:
        with request_context(item.request_id):
            event, claims = item.event, item.claims
            if event is None or claims is None or claims.iss != "auth":
                log.warning("sign-in event refused", extra={"reason": item.error or "shape"})
                continue
            found = signed_in_through(event)
            if found is not None:
                await link_pending(pool, nc, keys, *found, request_id=event.request_id)


async def link_pending(pool: asyncpg.Pool, nc: Client, keys: KeyRing, user_id: UUID,
                       issuer: str, request_id: str | None = None) -> list[UUID]:
    """The orgs where the user became a member."""
    try:
        account = await accounts.account_of(nc, keys, user_id, request_id)
    except RpcError as exc:
        if exc.status == 404:
            return []
        raise  # not acknowledged: tried again
    if not account.get("verified") or not isinstance(account.get("email"), str):
        return []
    try:
        email = emails.normalise(account["email"])
    except emails.EmailRefused:
        return []
    async with pool.acquire() as conn:
        pending = await queries.scim_pending_for(conn, email, issuer)
    joined = []
    for row in pending:
        role = await _join(pool, row["org_id"], row["id"], user_id, email)
        if role is not None:
            await revoke_membership(nc.jetstream(), str(row["org_id"]), str(user_id), role)
            joined.append(row["org_id"])
    return joined


async def _join(pool: asyncpg.Pool, org_id: UUID, scim_id: UUID, user_id: UUID,
                email: str) -> str | None:
    async with db.tenant_tx(pool, org_id, user_id) as conn:
        row = await queries.scim_user(conn, org_id, scim_id, lock=True)
        if row is None or not row["active"] or row["user_id"] is not None or \
                row["email"] != email:
            return None
        role = await scim.desired_role(conn, org_id, scim_id)
        if row["invitation_id"] is not None:
            await queries.accept_invitation(conn, org_id, row["invitation_id"])
        await queries.link_scim_user(conn, org_id, scim_id, user_id, None)
        if not await queries.insert_member(conn, org_id, user_id, role, email):
            return None
        data: dict[str, Any] = {"role": role, "via": "scim_sso"}
        await record(conn, SERVICE, Ctx(), MEMBER_ADDED, actor=("user", str(user_id)),
                     resource=("user", str(user_id)), org_id=org_id, data=data)
    log.info("provisioned user joined through the org's IdP",
             extra={"org_id": str(org_id), "user_id": str(user_id), "role": role})
    return role
