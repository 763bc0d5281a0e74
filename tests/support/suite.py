"""auth and tenant-api together, in-process on real sockets over one PostgreSQL and NATS, with
helpers to make users, orgs (with org-scoped tokens), projects and API keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from argus_shared.mail import MailSettings
from argus_shared.settings import Settings
from argus_tenant_api.app import RECONCILER_KEY
from argus_tenant_api.app import create_app as create_tenant_api
from argus_tenant_api.config import TenantConfig
from argus_tenant_api.wallet import Reconciler
from support.auth_service import AuthService

Json = Any


@dataclass
class User:
    email: str
    id: str
    token: str  # the current token: scoped to the org the user last created or joined
    refresh: str
    plain: str = ""  # the login's token, with no active org


@dataclass
class Suite:
    auth: AuthService
    tenant: str
    http: aiohttp.ClientSession
    reconciler: Reconciler
    app: Any = None
    mailbox: Path | None = None  # tenant-api's development mailbox (invitations)

    def tenant_app_dsr(self) -> Any:
        from argus_tenant_api.routes import DSR_KEY

        return self.app[DSR_KEY]

    async def call(self, method: str, path: str, token: str | None = None, body: Json = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Json]:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, f"{self.tenant}{path}", json=body,
                                     headers=sent) as response:
            if response.content_type.endswith("json"):
                return response.status, await response.json(content_type=None)
            return response.status, await response.text()

    async def user(self, email: str | None = None) -> User:
        email, tokens = await self.auth.logged_in(email)
        _, me = await self.auth.call("GET", "/me", tokens["access_token"])
        return User(email, me["id"], tokens["access_token"], tokens["refresh_token"],
                    tokens["access_token"])

    async def org(self, owner: User, slug: str | None = None) -> str:
        slug = slug or f"o-{uuid.uuid4().hex[:10]}"
        status, org = await self.call("POST", "/orgs", owner.plain or owner.token,
                                      {"name": slug, "slug": slug})
        assert status == 201, org
        owner.token = await self.switch(owner, org["org_id"])
        return org["org_id"]

    async def switch(self, user: User, org_id: str) -> str:
        """A token of the user's login session scoped to the org (asked with the login's own
        token, which no membership change revokes)."""
        status, body, _ = await self.auth.post("/orgs/switch", {"org_id": org_id},
                                               token=user.plain or user.token)
        assert status == 200, body
        return body["access_token"]

    async def member(self, org_id: str, owner: User, role: str) -> User:
        """A new user who accepted an invitation with `role`."""
        user = await self.user()
        status, invited = await self.call("POST", f"/orgs/{org_id}/invitations", owner.token,
                                          {"email": user.email, "role": role})
        assert status == 201, invited
        status, body = await self.call("POST", "/invitations/accept", user.token,
                                       {"token": invited["token"]})
        assert status == 200, body
        user.token = await self.switch(user, org_id)
        return user

    async def project(self, org_id: str, owner: User) -> str:
        status, project = await self.call("POST", f"/orgs/{org_id}/projects", owner.token,
                                          {"name": "p"})
        assert status == 201, project
        return project["id"]

    async def api_key(self, org_id: str, owner: User, project_id: str,
                      scopes: list[str]) -> dict[str, Any]:
        token = await self.switch(owner, org_id)
        status, created, _ = await self.auth.post(
            f"/orgs/{org_id}/projects/{project_id}/api-keys", {"name": "k", "scopes": scopes},
            token=token)
        assert status == 201, created
        return created


@contextlib.asynccontextmanager
async def running_suite(auth: AuthService, settings: Settings, mail: MailSettings,
                        **config_changes: Any) -> AsyncIterator[Suite]:
    """tenant-api in-process beside `auth`, mailing with `mail` (and TenantConfig fields
    changed by `config_changes`)."""
    config = TenantConfig(auth_url=auth.base, step_up_threshold_cents=500_00,
                          reconcile_seconds=3600, mail=mail, **config_changes)
    app = create_tenant_api(settings, config)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            yield Suite(auth, str(server.make_url("")).rstrip("/"), http, app[RECONCILER_KEY],
                        app, mail.mailbox_dir)
    finally:
        await server.close()


@pytest.fixture
async def suite(make_auth_service: Callable[..., Any], settings_for: Callable[..., Settings],
                tmp_path: Path) -> AsyncIterator[Suite]:
    auth = await make_auth_service()
    mail = MailSettings(mailbox_dir=tmp_path / "tenant-api-mailbox")
    async with running_suite(auth, settings_for("tenant-api"), mail) as running:
        yield running
