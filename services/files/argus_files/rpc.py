"""What files answers to data-subject requests (tenant-api's job, over NATS): a user's own
objects (metadata; the content is downloadable from the API until the account is purged), and
the purge of every namespace the user owns, crypto-shredded like any deletion."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from argus_files import deletion, queries
from argus_files.store import Store, view
from argus_shared import db, xut
from argus_shared.nats import RpcError
from argus_shared.outbox import Ctx


def _user(payload: Any) -> UUID:
    try:
        return UUID(payload["user_id"])
    except (KeyError, TypeError, ValueError):
        raise RpcError(400, "send user_id") from None


async def export_user(store: Store, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    user_id = _user(payload)
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "only the user's own data")
    async with store.pool.acquire() as conn:
        orgs = await queries.orgs_of_owner(conn, user_id)
    files: list[dict[str, Any]] = []
    for org_id in orgs:
        async with db.tenant_tx(store.pool, org_id, user_id) as conn:
            files += [view(row) for row in await queries.of_owner(conn, org_id, user_id)]
    return {"files": files,
            "note": "the content of each file downloads from GET /objects/{path}"}


async def purge_user(store: Store, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    user_id = _user(payload)
    if claims.sub != "service:tenant-api":
        raise RpcError(403, "only the data-subject request job purges accounts")
    async with store.pool.acquire() as conn:
        orgs = await queries.orgs_of_owner(conn, user_id)
    shredded = 0
    for org_id in orgs:
        rows = await deletion.shred(store, org_id, user_id, None,
                                    actor=("service", "tenant-api"),
                                    ctx=Ctx(request_id=claims.rid or None),
                                    record_empty=False)
        shredded += len(rows)
    return {"purged": True, "shredded": shredded}
