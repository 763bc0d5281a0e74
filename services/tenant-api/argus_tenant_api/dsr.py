"""Data-subject requests. "Export my data" gathers the user's data from every service over NATS
request-reply. "Delete my account" deactivates the account at once (auth revokes every
session), removes the memberships, and records a request that a purge job drives to the end:
each service purges and confirms, within 7 days; overdue requests show on a metric."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from nats.aio.client import Client
from prometheus_client import Gauge

from argus_shared import db, xut
from argus_shared.access import revoke_membership
from argus_shared.errors import Problem
from argus_shared.event_types import MEMBER_REMOVED, USER_DELETION_REQUESTED
from argus_shared.nats import RpcError, request
from argus_shared.outbox import Ctx, record
from argus_shared.settings import KeyRing
from argus_tenant_api import SERVICE, queries

log = logging.getLogger("argus.tenant_api.dsr")
OTHER_SERVICES = ("auth", "audit", "webhooks", "files")
PURGE_WITHIN = timedelta(days=7)


class DataSubjects:
    def __init__(self, pool: asyncpg.Pool, nc: Client, keys: KeyRing, registry: Any) -> None:
        self.pool, self.nc, self.keys = pool, nc, keys
        self.overdue = Gauge("argus_dsr_deletions_overdue",
                             "Account deletions not confirmed by every service within 7 days",
                             registry=registry)

    async def _ask(self, service: str, method: str, sub: str, user_id: UUID, rid: str) -> Any:
        return await request(self.nc, self.keys, issuer=SERVICE, service=service, method=method,
                             payload={"user_id": str(user_id)},
                             identity=xut.Identity(sub=sub, request_id=rid), wait_seconds=5)

    async def export(self, user_id: UUID, rid: str) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            orgs = await queries.orgs_of_user(conn, user_id)
        bundle: dict[str, Any] = {
            "user_id": str(user_id), "generated_at": datetime.now(UTC).isoformat(),
            "services": {SERVICE: {"memberships": [
                {"org_id": str(o["org_id"]), "org": o["name"], "role": o["role"]} for o in orgs]}},
            "missing": [],
        }
        for service in OTHER_SERVICES:
            try:
                bundle["services"][service] = await self._ask(
                    service, "export_user", f"user:{user_id}", user_id, rid)
            except RpcError as exc:
                bundle["missing"].append({"service": service, "reason": exc.detail})
        bundle["complete"] = not bundle["missing"]
        return bundle

    async def request_deletion(self, user_id: UUID, ctx: Ctx) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            orgs = await queries.orgs_of_user(conn, user_id)
        await self._refuse_if_last_owner(user_id, orgs)
        try:
            await self._ask("auth", "deactivate_user", f"user:{user_id}", user_id,
                            ctx.request_id or "")
        except RpcError as exc:
            raise Problem(503, f"the account cannot be deactivated right now: {exc.detail}"
                          ) from None
        for org in orgs:
            async with db.tenant_tx(self.pool, org["org_id"], user_id) as conn:
                await queries.delete_member(conn, org["org_id"], user_id)
                await record(conn, SERVICE, ctx, MEMBER_REMOVED,
                             actor=("user", str(user_id)), resource=("user", str(user_id)),
                             org_id=org["org_id"],
                             data={"reason": "account_deleted"})
            await revoke_membership(self.nc.jetstream(), str(org["org_id"]), str(user_id),
                                    None)
        due = datetime.now(UTC) + PURGE_WITHIN
        async with self.pool.acquire() as conn, conn.transaction():
            row = await queries.insert_deletion(conn, user_id, due,
                                                {SERVICE: datetime.now(UTC).isoformat()})
            await record(conn, SERVICE, ctx, USER_DELETION_REQUESTED,
                         actor=("user", str(user_id)), resource=("user", str(user_id)),
                         data={"due_at": row["due_at"].isoformat()})
        return status_view(row)

    async def _refuse_if_last_owner(self, user_id: UUID, orgs: list[asyncpg.Record]) -> None:
        sole = []
        for org in orgs:
            if org["role"] == "owner":
                async with db.tenant_tx(self.pool, org["org_id"], user_id) as conn:
                    if await queries.owner_count(conn, org["org_id"]) == 1:
                        sole.append(org["slug"])
        if sole:
            raise Problem(409, "you are the last owner of " + ", ".join(sole) +
                          ": make someone else owner or delete the org first",
                          title="Last owner", orgs=sole)

    async def status(self, user_id: UUID) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await queries.deletion(conn, user_id)
        return None if row is None else status_view(row)

    async def purge_pending(self) -> int:
        """Ask every service that has not confirmed yet to purge; returns how many confirmed."""
        confirmed = 0
        async with self.pool.acquire() as conn:
            rows = await queries.pending_deletions(conn)
        for row in rows:
            for service in OTHER_SERVICES:
                if service in row["confirmations"]:
                    continue
                try:
                    answer = await self._ask(service, "purge_user", f"service:{SERVICE}",
                                             row["user_id"], "")
                except RpcError as exc:
                    log.warning("purge not confirmed", extra={"service": service,
                                                              "reason": exc.detail})
                    continue
                async with self.pool.acquire() as conn:
                    await queries.confirm_deletion(conn, row["user_id"], service,
                                                   [SERVICE, *OTHER_SERVICES], answer)
                confirmed += 1
        async with self.pool.acquire() as conn:
            self.overdue.set(await queries.overdue_deletions(conn))
        return confirmed


def status_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"requested_at": row["requested_at"].isoformat(), "due_at": row["due_at"].isoformat(),
            "confirmed": sorted(row["confirmations"]),
            "answers": {k: v.get("answer") for k, v in row["confirmations"].items()
                        if isinstance(v, dict)},
            "pending": [s for s in (SERVICE, *OTHER_SERVICES) if s not in row["confirmations"]],
            "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None}
