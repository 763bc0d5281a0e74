"""The events tenant-api consumes: an account's changed email, kept current on its memberships
(the members list and members.csv show it) by asking auth for the address as it is now, so a
redelivered or late event can only ever write the current one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

import asyncpg
from nats.aio.client import Client

from argus_shared import db, events
from argus_shared.consumer import Received
from argus_shared.event_types import EMAIL_CHANGED
from argus_shared.logs import request_context
from argus_shared.nats import RpcError
from argus_shared.settings import KeyRing
from argus_tenant_api import accounts, queries

log = logging.getLogger("argus.tenant_api.events")
EMAIL_CHANGED_SUBJECT = events.subject_for("auth", EMAIL_CHANGED)


async def refresh_member_email(pool: asyncpg.Pool, nc: Client, keys: KeyRing, user_id: UUID,
                               request_id: str | None) -> None:
    try:
        email = (await accounts.account_of(nc, keys, user_id, request_id))["email"]
    except RpcError as exc:
        if exc.status == 404:
            return  # the account is gone: nothing to keep current
        raise
    async with pool.acquire() as conn:
        orgs = await queries.orgs_of_user(conn, user_id)
    for org in orgs:
        async with db.tenant_tx(pool, org["org_id"], user_id) as conn:
            await queries.set_member_email(conn, org["org_id"], user_id, email)
    log.info("member email refreshed", extra={"user_id": str(user_id), "orgs": len(orgs)})


async def account_events(pool: asyncpg.Pool, nc: Client, keys: KeyRing,
                         batch: Sequence[Received]) -> None:
    for item in batch:
        with request_context(item.request_id):
            await account_event(pool, nc, keys, item)


async def account_event(pool: asyncpg.Pool, nc: Client, keys: KeyRing, item: Received) -> None:
    event, claims = item.event, item.claims
    if event is None or claims is None or claims.iss != "auth" or event.resource.type != "user":
        log.warning("account event refused", extra={"reason": item.error or "shape"})
        return
    await refresh_member_email(pool, nc, keys, UUID(event.resource.id), event.request_id)
