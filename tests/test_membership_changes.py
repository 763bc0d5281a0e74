"""A membership change holds on every route of every service at once, including right after a
refresh: a member is demoted, removed and re-added while holding an access token, a refresh
token and an API key they minted. After each change the member's refreshed token must behave
exactly like the token of someone who has had the new membership all along (a fresh viewer, a
stranger, a fresh member), route by route, generated from the route tables."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestServer

from argus_shared.routing import Route
from argus_shared.settings import Settings
from argus_tenant_api.app import create_app as create_tenant_api
from argus_tenant_api.config import CONFIG_KEY
from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite, User
from support.tenants import ID_ROUTES, Services, Tenant, path_for, send, tenant
from support.webhooks_service import Webhooks

GET_ROUTES = [(service, route) for service, route in ID_ROUTES if route.method == "GET"]


@pytest.fixture
def services(audit: Audit, webhooks: Webhooks, files: Files) -> Services:
    return Services(audit, webhooks, files)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def statuses(suite: Suite, services: Services, victim: Tenant, token: str,
                   routes: list[tuple[str, Route]]) -> dict[str, int]:
    found = {}
    for service, route in routes:
        status, _ = await send(suite, service, route, path_for(route, victim), token, services)
        found[f"{service}:{route.method} {route.path}"] = status
    return found


async def behaves_alike(suite: Suite, services: Services, victim: Tenant, subject: str,
                        reference: str) -> None:
    """Every id-taking route answers `subject` as it answers `reference`, route by route:
    `subject` goes first, so a write it should not have made shows in the reference's answer
    too. Reads first, then writes (a permitted write could change what a read returns)."""
    for routes in (GET_ROUTES, [r for r in ID_ROUTES if r[1].method != "GET"]):
        for service, route in routes:
            path = path_for(route, victim)
            mine, body = await send(suite, service, route, path, subject, services)
            theirs, _ = await send(suite, service, route, path, reference, services)
            assert mine == theirs, (service, route.method, route.path, mine, theirs, body)


async def refreshed(suite: Suite, user: User) -> str:
    """Rotate the user's refresh token (kept on `user`) and return the new access token."""
    status, body, _ = await suite.auth.post("/token/refresh", {"refresh_token": user.refresh})
    assert status == 200, body
    user.refresh = body["refresh_token"]
    return body["access_token"]


async def refused_everywhere(services: Services, suite: Suite, org: str, token: str) -> None:
    """A token no service accepts any more (401), on one org route of each."""
    for base, path in ((suite.tenant, f"/orgs/{org}/projects"),
                       (services.audit.base, f"/orgs/{org}/audit/events"),
                       (services.webhooks.base, f"/orgs/{org}/webhooks/endpoints"),
                       (suite.auth.base, "/me")):
        async with suite.http.get(f"{base}{path}",
                                  headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 401, (base, path, response.status)


async def set_role(suite: Suite, victim: Tenant, user: User, role: str) -> None:
    status, body = await suite.call("PATCH", f"/orgs/{victim.org}/members/{user.id}",
                                    victim.owner.token, {"role": role})
    assert status == 200, body


async def test_demoted_removed_and_readded_members_get_exactly_the_new_access(
    suite: Suite, services: Services
) -> None:
    victim = await tenant(suite, services.webhooks, services.files)
    subject = await suite.member(victim.org, victim.owner, "admin")
    viewer = await suite.member(victim.org, victim.owner, "viewer")
    fresh_member = await suite.member(victim.org, victim.owner, "member")
    stranger = await suite.user()
    as_admin = await suite.switch(subject, victim.org)
    key = await suite.api_key(victim.org, subject, victim.project, ["tenant:read"])
    as_viewer = await suite.switch(viewer, victim.org)

    # the comparison can fail: an admin and a viewer differ on some routes
    before = await statuses(suite, services, victim, as_admin, GET_ROUTES)
    assert before != await statuses(suite, services, victim, as_viewer, GET_ROUTES)

    await set_role(suite, victim, subject, "viewer")
    await refused_everywhere(services, suite, victim.org, as_admin)
    demoted = await refreshed(suite, subject)
    assert (claims(demoted)["org"], claims(demoted)["role"]) == (victim.org, "viewer")
    await behaves_alike(suite, services, victim, demoted, as_viewer)

    status, _ = await suite.call("DELETE", f"/orgs/{victim.org}/members/{subject.id}",
                                 victim.owner.token)
    assert status == 204
    await refused_everywhere(services, suite, victim.org, demoted)
    removed = await refreshed(suite, subject)
    assert "org" not in claims(removed) and "role" not in claims(removed)
    await behaves_alike(suite, services, victim, removed, stranger.token)
    assert (await suite.auth.post("/orgs/switch", {"org_id": victim.org},
                                  token=removed))[0] == 404
    # the rule for keys: they belong to the org's project and outlive whoever minted them
    assert (await suite.call("GET", f"/orgs/{victim.org}/projects", key["key"]))[0] == 200

    status, invited = await suite.call("POST", f"/orgs/{victim.org}/invitations",
                                       victim.owner.token,
                                       {"email": subject.email, "role": "member"})
    assert status == 201, invited
    assert (await suite.call("POST", "/invitations/accept", removed,
                             {"token": invited["token"]}))[0] == 200
    assert "org" not in claims(await refreshed(suite, subject))  # the old scope stays ended
    readded = await suite.switch(subject, victim.org)
    assert claims(readded)["role"] == "member"
    await behaves_alike(suite, services, victim, readded,
                        await suite.switch(fresh_member, victim.org))


async def test_a_token_minted_from_a_stale_role_is_refused_by_every_service(
    suite: Suite, services: Services
) -> None:
    """A refresh that read the membership just before a change still mints a token with the
    old role, issued after the change; no service may accept it."""
    victim = await tenant(suite, services.webhooks, services.files)
    subject = await suite.member(victim.org, victim.owner, "admin")
    admin_token = await suite.switch(subject, victim.org)
    await set_role(suite, victim, subject, "viewer")
    stale = {**claims(admin_token), "iat": time.time(), "exp": int(time.time()) + 900}
    await asyncio.sleep(0.2)  # well after the change reached every service
    await refused_everywhere(services, suite, victim.org, suite.auth.auth.signing.sign(stale))


async def test_api_keys_are_minted_only_by_a_current_admin_of_an_existing_project(
    suite: Suite, services: Services, admin: Any
) -> None:
    victim = await tenant(suite)
    subject = await suite.member(victim.org, victim.owner, "admin")
    token = await suite.switch(subject, victim.org)
    body = {"name": "k", "scopes": ["tenant:read"]}
    missing = f"/orgs/{victim.org}/projects/{uuid.uuid4()}/api-keys"
    assert (await suite.auth.post(missing, body, token=token))[0] == 404
    assert (await suite.auth.call("GET", missing, token))[0] == 404
    # demoted behind every cache and broadcast's back (as if tenant-api stopped between its
    # commit and its revocation): the token still says admin, the membership does not
    await admin.execute("update tenant_api.memberships set role = 'viewer'"
                        " where org_id = $1 and user_id = $2",
                        uuid.UUID(victim.org), uuid.UUID(subject.id))
    path = f"/orgs/{victim.org}/projects/{victim.project}/api-keys"
    status, problem, _ = await suite.auth.post(path, body, token=token)
    assert status == 403, problem


async def test_a_removal_missed_by_the_broadcast_is_made_good_from_the_event(
    suite: Suite, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tenant-api stops between its commit and its revocation write (the write is dropped):
    the removal event (outbox, durable) ends the sessions' org scope and revokes the member's
    tokens all the same."""
    from argus_tenant_api import routes as tenant_routes

    async def lost(*args: object) -> None:
        return None

    victim = await tenant(suite)
    subject = await suite.member(victim.org, victim.owner, "admin")
    token = await suite.switch(subject, victim.org)
    monkeypatch.setattr(tenant_routes, "revoke_membership", lost)
    status, _ = await suite.call("DELETE", f"/orgs/{victim.org}/members/{subject.id}",
                                 victim.owner.token)
    assert status == 204
    for _ in range(200):
        async with suite.auth.auth.pool.acquire() as conn:
            org = await conn.fetchval("select org_id from sessions where id = $1",
                                      uuid.UUID(claims(token)["sid"]))
        if org is None:
            break
        await asyncio.sleep(0.05)
    assert org is None
    await asyncio.sleep(0.2)  # the revocation written after the session, on its way
    await refused_everywhere(services, suite, victim.org, token)


@pytest.fixture
async def second_tenant_api(suite: Suite, settings_for: Any) -> AsyncIterator[str]:
    settings: Settings = settings_for("tenant-api")
    config = suite.app[CONFIG_KEY]  # the same settings: another replica
    server = TestServer(create_tenant_api(settings, config))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_a_change_on_one_replica_holds_on_the_other_at_once(
    suite: Suite, second_tenant_api: str
) -> None:
    victim = await tenant(suite)
    subject = await suite.member(victim.org, victim.owner, "admin")
    path = f"/orgs/{victim.org}/invitations"

    async def on_second(token: str) -> int:
        async with suite.http.get(f"{second_tenant_api}{path}",
                                  headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status

    assert await on_second(subject.token) == 200  # the admin role is now cached there
    await set_role(suite, victim, subject, "viewer")  # on the first replica
    demoted = await refreshed(suite, subject)
    deadline = time.monotonic() + 2  # the KV watcher's delivery, nothing else
    while (status := await on_second(demoted)) != 403 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert status == 403
