"""Tenant isolation, generated from the route tables of every service: for each route that takes
a resource id, a member of org A gets 404 (never 403, never data) for org B's resource, for
reads and writes, by user token and by API key. A new route is covered without a new test; a
route whose path parameter or body has no sample (support/tenants.py) fails until one is
added. Plus the same rules checked at SQL level for the runtime role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from argus_shared import db
from argus_shared.routing import Route
from argus_shared.settings import Settings
from argus_tenant_api.routes import ROUTES as TENANT_ROUTES
from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite
from support.tenants import ID_ROUTES, Services, Tenant, path_for, send, tenant
from support.webhooks_service import Webhooks


@pytest.fixture
def services(audit: Audit, webhooks: Webhooks, files: Files) -> Services:
    return Services(audit, webhooks, files)


@pytest.fixture
async def two_tenants(suite: Suite, services: Services) -> tuple[Tenant, Tenant]:
    return (await tenant(suite, services.webhooks, services.files),
            await tenant(suite, services.webhooks, services.files))


@pytest.mark.parametrize(("service", "route"), ID_ROUTES,
                         ids=[f"{s}:{r.method} {r.path}" for s, r in ID_ROUTES])
async def test_another_orgs_resource_is_404_by_user_token(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], service: str, route: Route,
    services: Services,
) -> None:
    attacker, victim = two_tenants
    path = path_for(route, victim)
    for token in (attacker.owner.token, attacker.scoped):
        status, body = await send(suite, service, route, path, token, services)
        assert status == 404, (route.method, path, status, body)
        assert victim.org not in str(body).replace(path, "")


@pytest.mark.parametrize(("service", "route"), [(s, r) for s, r in ID_ROUTES if r.scopes],
                         ids=[f"{s}:{r.method} {r.path}" for s, r in ID_ROUTES if r.scopes])
async def test_another_orgs_resource_is_404_by_api_key(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], service: str, route: Route,
    services: Services,
) -> None:
    attacker, victim = two_tenants
    status, body = await send(suite, service, route, path_for(route, victim),
                              attacker.api_key["key"], services)
    assert status == 404, (route.method, route.path, status, body)


async def test_the_victims_data_did_not_change(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], services: Services
) -> None:
    attacker, victim = two_tenants
    webhooks, files = services.webhooks, services.files
    _, projects_before = await suite.call("GET", f"/orgs/{victim.org}/projects",
                                          victim.owner.token)
    _, endpoints_before = await webhooks.call("GET", f"/orgs/{victim.org}/webhooks/endpoints",
                                              victim.scoped)
    for service, route in ID_ROUTES:
        if route.method != "GET":
            await send(suite, service, route, path_for(route, victim), attacker.scoped,
                       services)
    assert (await suite.call("GET", f"/orgs/{victim.org}/wallet", victim.owner.token))[1] == {
        "balance_cents": 0}
    _, members = await suite.call("GET", f"/orgs/{victim.org}/members", victim.owner.token)
    assert sorted(m["role"] for m in members) == ["member", "owner"]
    _, projects = await suite.call("GET", f"/orgs/{victim.org}/projects", victim.owner.token)
    assert projects == projects_before
    _, endpoints = await webhooks.call("GET", f"/orgs/{victim.org}/webhooks/endpoints",
                                       victim.scoped)
    assert endpoints == endpoints_before
    stored = await files.download(victim.scoped, f"{victim.org}/{victim.member.id}/{victim.file}")
    assert (stored.status, stored.body) == (200, b"the victim's file")


TENANT_TABLES = {"tenant_api": ["orgs", "memberships", "invitations", "projects", "wallets",
                                "ledger_entries", "idempotency_keys", "scim_tokens",
                                "scim_users", "scim_groups", "scim_group_members",
                                "scim_role_mappings", "sso_connections", "sso_domains"],
                 "auth": ["api_keys"], "files": ["objects"]}


async def test_the_runtime_roles_see_only_the_org_they_set(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], settings_for: Callable[..., Settings]
) -> None:
    a, b = two_tenants
    for schema, tables in TENANT_TABLES.items():
        settings = settings_for(schema.replace("_", "-"))
        pool = await db.create_pool(settings.database_url, settings.db_role,
                                    settings.db_password, schema=settings.schema)
        try:
            for table in tables:
                async with db.tenant_tx(pool, None) as conn:
                    assert await conn.fetchval(f"select count(*) from {table}") == 0, table
                for org in (a.org, b.org):
                    async with db.tenant_tx(pool, org) as conn:
                        found = await conn.fetch(f"select distinct org_id from {table}")
                        assert {r[0] for r in found} <= {uuid.UUID(org)}, table
        finally:
            await pool.close()


SCOPED_READS = ("scoped_projects", "scoped_members", "scoped_invitations")


async def test_a_scoped_read_sees_one_org_and_leaves_no_scope_behind(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], settings_for: Callable[..., Settings]
) -> None:
    """The one-round-trip list reads scope their own statement: only the named org's rows, the
    scope is gone with the statement, and a transaction scoped to another org cannot be
    re-scoped through them."""
    a, b = two_tenants
    settings = settings_for("tenant-api")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, max_size=1)
    try:
        async with pool.acquire() as conn:
            for tenant, other in ((a, b), (b, a)):
                org = uuid.UUID(tenant.org)
                projects = await conn.fetch("select * from scoped_projects($1, null)", org)
                invitations = await conn.fetch("select * from scoped_invitations($1, null)", org)
                members = await conn.fetch("select * from scoped_members($1, null)", org)
                assert tenant.project in {str(r["id"]) for r in projects}
                assert tenant.invitation in {str(r["id"]) for r in invitations}
                assert {r["org_id"] for r in [*projects, *invitations]} == {org}
                users = {str(r["user_id"]) for r in members}
                assert {tenant.owner.id, tenant.member.id} <= users
                assert not users & {other.owner.id, other.member.id}
                # the next statement on the same connection is unscoped again: RLS fails closed
                assert await conn.fetchval("select count(*) from projects") == 0
                assert not await conn.fetchval("select current_setting('app.org_id', true)")
        for function in SCOPED_READS:
            with pytest.raises(asyncpg.RaiseError, match="scoped to another org"):
                async with db.tenant_tx(pool, a.org) as conn:
                    await conn.fetch(f"select * from {function}($1, null)", uuid.UUID(b.org))
    finally:
        await pool.close()


async def test_rows_cannot_be_written_into_or_pointed_at_another_org(
    suite: Suite, two_tenants: tuple[Tenant, Tenant], settings_for: Callable[..., Settings],
    admin: asyncpg.Connection,
) -> None:
    a, b = two_tenants
    status, _ = await suite.call("POST", f"/orgs/{a.org}/wallet/deposits", a.owner.token,
                                 {"amount_cents": 100}, {"Idempotency-Key": "one"})
    assert status == 201
    settings = settings_for("tenant-api")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # RLS WITH CHECK
            async with db.tenant_tx(pool, a.org) as conn:
                await conn.execute("insert into projects (org_id, id, name, created_by)"
                                   " values ($1, $2, 'x', $3)", uuid.UUID(b.org), uuid.uuid4(),
                                   uuid.UUID(a.owner.id))
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            # even around RLS (superuser), a child's foreign key leads with its own org_id, so
            # org A's key cannot name org B's key as the one it was rotated from
            await admin.execute(
                "insert into auth.api_keys (org_id, id, project_id, name, prefix, key_hash,"
                " scopes, created_by, rotated_from_id) values ($1, $2, $3, 'x', 'p', $4,"
                " '{files:read}', $5, $6)", uuid.UUID(a.org), uuid.uuid4(),
                uuid.UUID(a.project), uuid.uuid4().bytes, uuid.UUID(a.owner.id),
                uuid.UUID(b.api_key["api_key"]["id"]))
        for statement in ("update ledger_entries set amount_cents = 1",
                          "delete from ledger_entries", "truncate ledger_entries"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with db.tenant_tx(pool, a.org) as conn:
                    await conn.execute(statement)
        for ddl in ("create table x (id int)", "alter table projects add column y int",
                    "drop table projects"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with pool.acquire() as conn:
                    await conn.execute(ddl)
        async with pool.acquire() as conn:
            assert not await conn.fetchval("select rolbypassrls from pg_roles"
                                           " where rolname = current_user")
    finally:
        await pool.close()


SCIM_ID_ROUTES = [r for r in TENANT_ROUTES if r.path.startswith("/scim/v2/") and "{" in r.path]
SCIM_BODIES = {"PUT /scim/v2/Users/{scim_id}": {"userName": "taken@example.com"},
               "PATCH /scim/v2/Users/{scim_id}": {
                   "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "value": {"active": False}}]},
               "PUT /scim/v2/Groups/{scim_id}": {"displayName": "Admins", "members": []},
               "PATCH /scim/v2/Groups/{scim_id}": {
                   "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "members", "value": []}]}}


async def scim_call(suite: Suite, token: str, method: str, path: str,
                    body: object = None) -> tuple[int, Any]:
    async with suite.http.request(method, f"{suite.tenant}/scim/v2{path}", json=body, headers={
            "Authorization": f"Bearer {token}"}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else {})


async def test_another_orgs_scim_token_sees_and_changes_nothing(
    suite: Suite, two_tenants: tuple[Tenant, Tenant]
) -> None:
    """Every SCIM route that takes an id, from the route table: org A's SCIM token gets 404
    for org B's users and groups, its lists and filters show none of them, and org B's
    member, user and group are as they were."""
    attacker, victim = two_tenants
    status, user = await scim_call(suite, victim.scim_token, "POST", "/Users",
                                   {"userName": victim.member.email})
    assert status == 201, user
    status, group = await scim_call(suite, victim.scim_token, "POST", "/Groups",
                                    {"displayName": "Admins", "members": [{"value": user["id"]}]})
    assert status == 201, group
    assert SCIM_ID_ROUTES, "the SCIM routes are in the table"
    for route in SCIM_ID_ROUTES:
        target = user if "/Users/" in route.path else group
        path = route.path.removeprefix("/scim/v2").replace("{scim_id}", str(target["id"]))
        body = SCIM_BODIES.get(f"{route.method} {route.path}")
        status, answer = await scim_call(suite, attacker.scim_token, route.method, path, body)
        assert status == 404, (route.method, route.path, status, answer)
        assert victim.org not in str(answer)
    for path in ("/Users", "/Groups", f'/Users?filter=userName eq "{victim.member.email}"',
                 '/Groups?filter=displayName eq "Admins"'):
        status, listed = await scim_call(suite, attacker.scim_token, "GET", path)
        assert (status, listed["totalResults"]) == (200, 0), (path, listed)
    # a group of A cannot take B's user as a member
    status, refused = await scim_call(suite, attacker.scim_token, "POST", "/Groups", {
        "displayName": "Admins", "members": [{"value": user["id"]}]})
    assert status == 400, refused
    status, still = await scim_call(suite, victim.scim_token, "GET", f"/Users/{user['id']}")
    assert (status, still["active"], still["groups"][0]["value"]) == (200, True, group["id"])
    _, members = await suite.call("GET", f"/orgs/{victim.org}/members", victim.owner.token)
    assert {m["user_id"]: m["role"] for m in members}[victim.member.id] == "admin"
