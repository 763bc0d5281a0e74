"""Deleting an org, across every service: its org-scoped tokens and API keys stop working
everywhere at once (NATS KV), each service purges what it holds on `org.deleted` (auth its API
keys, webhooks its endpoints, files its objects), and tenant-api purges its own rows once the
grace period is over, keeping only the financial records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from argus_shared import db
from argus_shared.db import one
from argus_shared.settings import Settings
from argus_tenant_api.org_purge import purge_deleted_orgs
from support.files_service import Files
from support.suite import Suite
from support.webhooks_service import Webhooks


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10
                     ) -> None:
    for _ in range(int(seconds * 20)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


async def status_of(suite: Suite, method: str, url: str, headers: dict[str, str]) -> int:
    async with suite.http.request(method, url, headers=headers) as response:
        await response.read()
        return response.status


async def count(admin: asyncpg.Connection, table: str, org: str) -> int:
    return int(await admin.fetchval(f"select count(*) from {table} where org_id = $1",
                                    uuid.UUID(org)))


async def test_a_deleted_org_stops_working_everywhere_and_is_purged_everywhere(
    suite: Suite, webhooks: Webhooks, files: Files, admin: asyncpg.Connection,
    settings_for: Callable[..., Settings],
) -> None:
    owner = await suite.user()
    slug = f"doomed-{uuid.uuid4().hex[:8]}"
    org = await suite.org(owner, slug)
    member = await suite.member(org, owner, "member")
    project = await suite.project(org, owner)
    key = (await suite.api_key(org, owner, project, ["files:read", "webhooks:write"]))["key"]
    owner_token, member_token = await suite.switch(owner, org), await suite.switch(member, org)
    await files.uploaded(member_token, org, member.id, b"org data")
    status, _ = await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", owner_token,
                                    {"url": webhooks.receiver.url, "event_types": ["*"]})
    assert status == 201
    status, _ = await suite.call("POST", f"/orgs/{org}/wallet/deposits", owner.token,
                                 {"amount_cents": 1234}, {"Idempotency-Key": "d1"})
    assert status == 201
    uses: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"{files.base}/objects/{org}/{member.id}",
         {"Authorization": f"Bearer {member_token}"}),
        ("GET", f"{files.base}/objects/{org}", {"X-API-Key": key}),
        ("GET", f"{webhooks.base}/orgs/{org}/webhooks/endpoints",
         {"Authorization": f"Bearer {owner_token}"}),
        ("GET", f"{suite.tenant}/orgs/{org}/projects", {"Authorization": f"Bearer {owner_token}"}),
    ]
    for method, url, headers in uses:
        assert await status_of(suite, method, url, headers) == 200, url

    status, _ = await suite.call("DELETE", f"/orgs/{org}", owner.token)
    assert status == 204

    for method, url, headers in uses:  # tokens and keys: refused on every service
        async def refused(method: str = method, url: str = url,
                          headers: dict[str, str] = headers) -> bool:
            return await status_of(suite, method, url, headers) in (401, 404)
        await eventually(refused, f"{method} {url} refused", seconds=2)
    # the org is gone (404) at once, and its tokens are revoked (401) once the KV write lands
    assert (await suite.call("GET", f"/orgs/{org}", owner.token))[0] in (401, 404)
    status, _, _ = await suite.auth.post("/orgs/switch", {"org_id": org}, token=owner.plain)
    assert status == 404  # and no new token for it

    async def purged_by_services() -> bool:
        return [await count(admin, table, org) for table in
                ("auth.api_keys", "webhooks.endpoints", "files.objects")] == [0, 0, 0]
    await eventually(purged_by_services, "auth, webhooks and files purged the org")

    settings = settings_for("tenant-api")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema)
    try:
        assert uuid.UUID(org) not in await purge_deleted_orgs(pool)  # within the grace period
        assert await count(admin, "tenant_api.memberships", org) == 2
        later = datetime.now(UTC) + timedelta(days=7, minutes=1)
        assert uuid.UUID(org) in await purge_deleted_orgs(pool, later)
    finally:
        await pool.close()
    for table in ("memberships", "invitations", "projects"):
        assert await count(admin, f"tenant_api.{table}", org) == 0, table
    kept: dict[str, Any] = dict(one(await admin.fetchrow(
        "select o.slug, o.name, o.purged_at is not null as purged, w.balance_cents,"
        " (select count(*) from tenant_api.ledger_entries l where l.org_id = o.org_id) as entries"
        " from tenant_api.orgs o join tenant_api.wallets w using (org_id)"
        " where o.org_id = $1", uuid.UUID(org))))
    assert kept["purged"] and kept["name"] == "deleted"
    assert (kept["balance_cents"], kept["entries"]) == (1234, 1)  # financial records stay
    assert kept["slug"] != slug
    await suite.org(owner, slug)  # the name is free again
