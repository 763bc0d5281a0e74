"""Org switching over NATS, and API keys: issued once, scoped, rotated, revoked, introspected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from nats.aio.client import Client

from argus_shared import xut
from argus_shared.nats import RpcError, connect, request, serve
from argus_shared.settings import Settings
from support.auth_service import AuthService
from support.infra import Infra

MEMBERSHIPS: dict[tuple[str, str], dict[str, Any]] = {}
PROJECTS: set[tuple[str, str]] = set()  # (org, project)


@pytest.fixture
async def nc(infra: Infra) -> AsyncIterator[Client]:
    client = await connect(infra.nats_url, "test-api-keys")
    yield client
    await client.drain()


@pytest.fixture
async def tenant_api_stand_in(nc: Client, settings_for: Callable[..., Settings]
                              ) -> AsyncIterator[None]:
    """tenant-api's membership answer over NATS, as its issue will serve it."""
    keys = settings_for("tenant-api").xut_keys

    async def membership(claims: xut.Claims, payload: dict[str, str]) -> dict[str, Any]:
        found = MEMBERSHIPS.get((payload["user_id"], payload["org_id"]))
        if found is None or claims.sub != f"user:{payload['user_id']}":
            raise RpcError(404, "not a member")
        if "project_id" in payload:
            return {**found, "project": (payload["org_id"], payload["project_id"]) in PROJECTS}
        return found

    sub = await serve(nc, keys, service="tenant-api", method="membership", handler=membership)
    yield
    await sub.unsubscribe()


async def in_org(service: AuthService, role: str, org: str | None = None,
                 **policy: Any) -> tuple[str, str, str]:
    """(access token scoped to the org, or a new one, org id, user id)."""
    _, tokens = await service.logged_in()
    status, me = await service.call("GET", "/me", tokens["access_token"])
    org = org or str(uuid.uuid4())
    MEMBERSHIPS[(me["id"], org)] = {"role": role, **policy}
    status, body, _ = await service.post("/orgs/switch", {"org_id": org},
                                         token=tokens["access_token"])
    assert status == 200, body
    return body["access_token"], org, me["id"]


async def test_switching_org_without_tenant_api_is_a_clear_503(service: AuthService) -> None:
    _, tokens = await service.logged_in()
    status, problem, _ = await service.post("/orgs/switch", {"org_id": str(uuid.uuid4())},
                                            token=tokens["access_token"])
    assert status == 503 and "tenant-api" in problem["detail"]


async def test_switching_org_needs_a_membership(
    service: AuthService, tenant_api_stand_in: None
) -> None:
    token, org, _ = await in_org(service, "admin")
    status, me = await service.call("GET", "/me", token)
    assert (me["org"], me["role"]) == (org, "admin")
    status, _, _ = await service.post("/orgs/switch", {"org_id": str(uuid.uuid4())},
                                      token=token)
    assert status == 404


async def test_an_org_that_requires_mfa_refuses_admins_without_it(
    service: AuthService, tenant_api_stand_in: None
) -> None:
    _, tokens = await service.logged_in()
    _, me = await service.call("GET", "/me", tokens["access_token"])
    org = str(uuid.uuid4())
    MEMBERSHIPS[(me["id"], org)] = {"role": "owner", "require_mfa": True}
    status, problem, _ = await service.post("/orgs/switch", {"org_id": org},
                                            token=tokens["access_token"])
    assert status == 403 and problem["title"] == "MFA required"


def project_in(org: str) -> str:
    project = str(uuid.uuid4())
    PROJECTS.add((org, project))
    return project


def keys_path(org: str, project: str) -> str:
    return f"/orgs/{org}/projects/{project}/api-keys"


async def introspect(nc: Client, settings: Settings, key: str) -> dict[str, Any]:
    return await request(nc, settings.xut_keys, issuer="files", service="auth",
                         method="introspect_api_key", payload={"key": key},
                         identity=xut.Identity(sub="service:files"))


async def test_api_keys_are_shown_once_stored_hashed_and_introspected(
    service: AuthService, tenant_api_stand_in: None, nc: Client,
    settings_for: Callable[..., Settings],
) -> None:
    token, org, _ = await in_org(service, "admin")
    project = project_in(org)
    status, created, _ = await service.post(
        keys_path(org, project), {"name": "ci", "scopes": ["files:read", "webhooks:write"],
                                  "expires_in_days": 30}, token=token)
    assert status == 201
    key = created["key"]
    assert key.startswith("argus_sk_") and len(key) >= 9 + 43
    status, listed = await service.call("GET", keys_path(org, project), token)
    assert status == 200 and [k["id"] for k in listed] == [created["api_key"]["id"]]
    assert key not in str(listed) and listed[0]["prefix"] == key[:14]
    async with service.auth.pool.acquire() as conn:
        await conn.execute("select set_config('app.org_id', $1, false)", org)
        stored = await conn.fetchval("select key_hash from api_keys where org_id = $1",
                                     uuid.UUID(org))
        await conn.execute("select set_config('app.org_id', '', false)")
    assert key.encode() not in stored and len(stored) == 32
    answer = await introspect(nc, settings_for("files"), key)
    assert answer["org_id"] == org and answer["project_id"] == project
    _, listed = await service.call("GET", keys_path(org, project), token)
    assert listed[0]["last_used_at"] is not None
    assert answer["scopes"] == ["files:read", "webhooks:write"]
    with pytest.raises(RpcError) as unknown:
        await introspect(nc, settings_for("files"), key[:-2] + "xx")
    assert unknown.value.status == 404


async def test_revoked_and_rotated_keys_stop_working(
    service: AuthService, tenant_api_stand_in: None, nc: Client,
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for("files")
    token, org, _ = await in_org(service, "owner")
    project = project_in(org)
    _, first, _ = await service.post(keys_path(org, project),
                                     {"name": "a", "scopes": ["files:read"]}, token=token)
    status, rotated, _ = await service.post(
        f"{keys_path(org, project)}/{first['api_key']['id']}/rotate", {"overlap_seconds": 60},
        token=token)
    assert status == 201 and rotated["api_key"]["rotated_from_id"] == first["api_key"]["id"]
    assert (await introspect(nc, settings, first["key"]))["id"] == first["api_key"]["id"]
    service.clock.advance(61)
    with pytest.raises(RpcError):
        await introspect(nc, settings, first["key"])  # the overlap is over
    assert (await introspect(nc, settings, rotated["key"]))["org_id"] == org
    status, _ = await service.call("DELETE",
                                   f"{keys_path(org, project)}/{rotated['api_key']['id']}", token)
    assert status == 204
    with pytest.raises(RpcError):
        await introspect(nc, settings, rotated["key"])


async def test_api_keys_belong_to_owners_and_admins_of_that_org_only(
    service: AuthService, tenant_api_stand_in: None
) -> None:
    admin, org, _ = await in_org(service, "admin")
    member, _, _ = await in_org(service, "member", org)
    project = project_in(org)
    body = {"name": "x", "scopes": ["files:read"]}
    status, _, _ = await service.post(keys_path(org, project), body, token=member)
    assert status == 403  # a member of their own org lacks the role
    other_admin, _, _ = await in_org(service, "admin")
    _, created, _ = await service.post(keys_path(org, project), body, token=admin)
    key_id = created["api_key"]["id"]
    for method, path in (("GET", keys_path(org, project)),
                         ("DELETE", f"{keys_path(org, project)}/{key_id}"),
                         ("POST", f"{keys_path(org, project)}/{key_id}/rotate")):
        status, _ = await service.call(method, path, other_admin,
                                       body={} if method == "POST" else None)
        assert status == 404, (method, path)  # another tenant: 404, never 403
    status, _ = await service.call("DELETE", f"{keys_path(org, project)}/{uuid.uuid4()}", admin)
    assert status == 404


@pytest.mark.parametrize(
    "body",
    [{"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]},
     {"name": "x", "scopes": ["tenant:write"]}, {"name": "x", "scopes": ["files:read", "a:read"]},
     {"name": "", "scopes": ["files:read"]}, {"name": "x", "scopes": ["files:read"], "x": 1},
     {"name": "x", "scopes": ["files:read"], "expires_in_days": 0}],
)
async def test_bad_api_key_requests_write_nothing(
    service: AuthService, tenant_api_stand_in: None, body: dict[str, Any]
) -> None:
    token, org, _ = await in_org(service, "admin")
    project = project_in(org)
    status, _, _ = await service.post(keys_path(org, project), body, token=token)
    assert status == 422
    status, listed = await service.call("GET", keys_path(org, project), token)
    assert listed == []


async def test_openapi_lists_every_auth_route(service: AuthService) -> None:
    from argus_auth.routes import ROUTES

    async with service.http.get(service.url("/openapi.json")) as response:
        spec = await response.json()
    for route in ROUTES:
        assert route.method.lower() in spec["paths"][route.path], route.path
    await asyncio.sleep(0)


async def test_introspection_caches_are_cleared_by_a_revocation(
    service: AuthService, tenant_api_stand_in: None, nc: Client,
    settings_for: Callable[..., Settings],
) -> None:
    from argus_shared.access import ApiKeys

    settings = settings_for("files")
    calls: list[str] = []

    async def call(key: str) -> dict[str, Any]:
        calls.append(key)
        return await introspect(nc, settings, key)

    cache = ApiKeys(call)
    await cache.start(nc)
    token, org, _ = await in_org(service, "admin")
    project = project_in(org)
    _, created, _ = await service.post(keys_path(org, project),
                                       {"name": "c", "scopes": ["files:read"]}, token=token)
    await cache.lookup(created["key"])
    await cache.lookup(created["key"])
    assert len(calls) == 1  # cached
    await service.call("DELETE", f"{keys_path(org, project)}/{created['api_key']['id']}", token)
    for _ in range(50):
        if not cache.entries:
            break
        await asyncio.sleep(0.05)
    assert cache.entries == {}
    with pytest.raises(RpcError):
        await cache.lookup(created["key"])
    await cache.stop()
