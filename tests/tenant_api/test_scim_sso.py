"""SCIM and the org's own IdP together, against a real OpenID Provider process: a user the
org's SCIM client provisioned (no account yet, so an invitation waits) who then signs in
through the org's connection (auth creates the account just in time) is a member at once,
without the invitation; the same sign-in through another IdP joins nothing; deprovisioning
then ends the org scope."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from argus_auth.sso_providers import SsoConfig
from argus_shared.mail import MailSettings
from argus_shared.settings import Settings
from support.dns_server import DnsServer
from support.sso import PUBLIC, SECRET, Browser, OpenIdProvider, provider, start_provider
from support.suite import Suite, running_suite

ACCESS = "__Host-argus_access"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture(scope="module")
async def op(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpenIdProvider]:
    started = await start_provider(tmp_path_factory.mktemp("oidc-provider"))
    yield started
    await started.http.close()
    started.proc.kill()


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0))
    server.port = transport.get_extra_info("sockname")[1]
    yield server
    transport.close()


@pytest.fixture
async def sso_suite(make_auth_service: Callable[..., Any], settings_for: Callable[..., Settings],
                    tmp_path: Path, dns_server: DnsServer, op: OpenIdProvider
                    ) -> AsyncIterator[tuple[Suite, str]]:
    other = f"other-{uuid.uuid4().hex[:8]}"  # an IdP that is not the org's
    await op.client(other, "client-other", ["other"])
    auth = await make_auth_service(sso=SsoConfig(
        providers={"other": provider(op, "other", other)}, redirect_base=PUBLIC))
    async with running_suite(auth, settings_for("tenant-api"),
                             MailSettings(mailbox_dir=tmp_path / "mailbox"),
                             sso_nameserver=dns_server.address,
                             sso_dns_timeout_seconds=2) as running:
        yield running, other


async def scim(suite: Suite, token: str, method: str, path: str, body: Any = None) -> Any:
    async with suite.http.request(method, f"{suite.tenant}/scim/v2{path}",
                                  data=None if body is None else msgspec.json.encode(body),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/scim+json"}) as r:
        text = await r.text()
        return r.status, (msgspec.json.decode(text) if text else None)


async def members_of(suite: Suite, org: str, token: str) -> dict[str, str]:
    _, members = await suite.call("GET", f"/orgs/{org}/members", token)
    return {m["email"]: m["role"] for m in members}


async def until_member(suite: Suite, org: str, token: str, email: str) -> dict[str, str]:
    """The members once `email` is one (the link follows auth's event; 20 s at most)."""
    deadline = time.monotonic() + 20
    while email not in (found := await members_of(suite, org, token)):
        assert time.monotonic() < deadline, f"{email} did not join: {found}"
        await asyncio.sleep(0.1)
    return found


async def test_a_provisioned_user_who_signs_in_through_the_orgs_idp_is_a_member_at_once(
    sso_suite: tuple[Suite, str], dns_server: DnsServer, op: OpenIdProvider
) -> None:
    suite, other = sso_suite
    owner = await suite.user()
    org = await suite.org(owner)
    name, tenant = f"org-{org}", f"entra-{org[:8]}"
    await op.client(tenant, "client-org", [name])
    assert (await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token, {
        "issuer": op.issuer(tenant), "client_id": "client-org",
        "client_secret": SECRET}))[0] == 200
    domain = f"corp-{org[:8]}.example.com"
    _, claim = await suite.call("POST", f"/orgs/{org}/sso/domains", owner.token,
                                {"domain": domain})
    dns_server.publish(domain, claim["txt_record"]["value"])
    assert (await suite.call("POST", f"/orgs/{org}/sso/domains/{domain}/verify",
                             owner.token))[0] == 200
    _, issued = await suite.call("POST", f"/orgs/{org}/scim-tokens", owner.token)
    token = issued["token"]
    _, group = await scim(suite, token, "POST", "/Groups", {"displayName": "Admins"})

    # provisioned before any account exists: only an invitation so far
    ada, bob = f"ada-{org[:6]}@{domain}", f"bob-{org[:6]}@{domain}"
    status, provisioned = await scim(suite, token, "POST", "/Users", {"userName": ada})
    assert status == 201, provisioned
    await scim(suite, token, "PATCH", f"/Groups/{group['id']}", {
        "schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": provisioned["id"]}]}]})
    assert (await scim(suite, token, "POST", "/Users", {"userName": bob}))[0] == 201
    assert ada not in await members_of(suite, org, owner.token)

    # bob's account comes through another IdP: it joins nothing
    await op.user(other, bob)
    assert (await Browser(suite.auth).sign_in("other")).status == 303
    # ada signs in through the org's own IdP: an account just in time, and the membership
    await op.user(tenant, ada)
    done = await Browser(suite.auth).sign_in(name)
    assert done.status == 303, done.body
    members = await until_member(suite, org, owner.token, ada)
    assert members[ada] == "admin"  # the role her groups give
    assert bob not in members
    status, switched, _ = await suite.auth.post("/orgs/switch", {"org_id": org},
                                                token=done.cookies[ACCESS])
    assert status == 200, switched
    scoped = switched["access_token"]
    assert jwt.decode(scoped, options={"verify_signature": False})["role"] == "admin"
    _, found = await scim(suite, token, "GET", f"/Users/{provisioned['id']}")
    assert found["active"] is True
    _, invitations = await suite.call("GET", f"/orgs/{org}/invitations", owner.token)
    assert [i["accepted_at"] is not None for i in invitations if i["email"] == ada] == [True]

    # and deprovisioning ends it, as for anyone
    assert (await scim(suite, token, "PATCH", f"/Users/{provisioned['id']}", {
        "schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"active": False}}]}))[0] == 200
    assert (await suite.call("GET", f"/orgs/{org}/projects", scoped))[0] == 401
    assert (await suite.auth.post("/orgs/switch", {"org_id": org},
                                  token=done.cookies[ACCESS]))[0] == 404
