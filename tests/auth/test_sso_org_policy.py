"""auth's side of an org's SSO policy (tenant-api owns the policy: `require_sso` with the org's
connection): auth sends how each session signed in (`idp`, `amr`) with every membership
question, so an org that requires SSO gets org tokens only for sessions that signed in through
its connection's issuer, here a real OpenID Provider process; a password session is refused
with `403 sso-required`, and an org-scoped session loses the org at its next refresh."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from argus_auth.sso_providers import SsoConfig
from argus_shared.mail import MailSettings
from argus_shared.settings import Settings
from support.dns_server import DnsServer
from support.sso import (
    PUBLIC,
    SECRET,
    STATE_COOKIE,
    Browser,
    OpenIdProvider,
    provider,
    start_provider,
)
from support.suite import Suite, running_suite

ACCESS = "__Host-argus_access"


@pytest.fixture(scope="module")
async def op(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpenIdProvider]:
    started = await start_provider(tmp_path_factory.mktemp("oidc-provider"))
    yield started
    await started.http.close()
    started.proc.kill()


@pytest.fixture
async def org_suite(make_auth_service: Callable[..., Any], settings_for: Callable[..., Settings],
                    tmp_path: Path, op: OpenIdProvider) -> AsyncIterator[tuple[Suite, str]]:
    tenant = f"corp-{uuid.uuid4().hex[:8]}"
    await op.client(tenant, "client-corp", ["corp"])
    config = SsoConfig(providers={"corp": provider(op, "corp", tenant)}, redirect_base=PUBLIC)
    auth = await make_auth_service(sso=config)
    async with running_suite(auth, settings_for("tenant-api"),
                             MailSettings(mailbox_dir=tmp_path / "mailbox")) as running:
        yield running, tenant


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_an_org_that_requires_sso_gets_tokens_only_through_its_idp(
    org_suite: tuple[Suite, str], op: OpenIdProvider
) -> None:
    suite, tenant = org_suite
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    # the member links the org's IdP to the account (fresh password sign-in), then signs in
    await op.user(tenant, "m-" + member.email)
    status, body, response = await suite.auth.post("/sso/corp/link", {}, member.plain)
    assert status == 200, body
    linking = Browser(suite.auth, {STATE_COOKIE: response.cookies[STATE_COOKIE].value})
    assert (await linking.get(await linking.to_provider(body["authorization_url"]))).status \
        == 303
    signed_in = await Browser(suite.auth).sign_in("corp")
    federated = signed_in.cookies[ACCESS]
    assert claims(federated)["idp"] == op.issuer(tenant)
    # the org requires its connection (tenant-api's policy)
    connection = {"issuer": op.issuer(tenant), "client_id": "client-corp",
                  "client_secret": SECRET}
    status, view = await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token,
                                    connection)
    assert status == 200, view
    status, changed = await suite.call("PATCH", f"/orgs/{org}", owner.token,
                                       {"require_sso": True})
    assert status == 200, changed
    # a password session: refused, and told why
    status, refused, _ = await suite.auth.post("/orgs/switch", {"org_id": org},
                                               token=member.plain)
    assert status == 403 and refused["type"] == "urn:argus:problem:sso-required", refused
    assert "access_token" not in refused
    # the session that signed in through the org's IdP: an org token, carrying idp and fed
    status, switched, _ = await suite.auth.post("/orgs/switch", {"org_id": org},
                                                token=federated)
    assert status == 200, switched
    scoped = claims(switched["access_token"])
    assert (scoped["org"], scoped["role"], scoped["idp"]) == (org, "member", op.issuer(tenant))
    assert "fed" in scoped["amr"]
    # the member's earlier org-scoped password session loses the org at its refresh
    status, tokens, _ = await suite.auth.post("/token/refresh",
                                              {"refresh_token": member.refresh})
    assert status == 200 and "org" not in claims(tokens["access_token"]), tokens
    # owners are exempt (break-glass), as tenant-api decides
    assert (await suite.auth.post("/orgs/switch", {"org_id": org}, token=owner.plain))[0] == 200


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0))
    server.port = transport.get_extra_info("sockname")[1]
    yield server
    transport.close()


@pytest.fixture
async def dns_suite(make_auth_service: Callable[..., Any], settings_for: Callable[..., Settings],
                    tmp_path: Path, dns_server: DnsServer) -> AsyncIterator[Suite]:
    auth = await make_auth_service(sso=SsoConfig(redirect_base=PUBLIC))
    async with running_suite(auth, settings_for("tenant-api"),
                             MailSettings(mailbox_dir=tmp_path / "mailbox"),
                             sso_nameserver=dns_server.address,
                             sso_dns_timeout_seconds=2) as running:
        yield running


async def test_sign_in_through_an_orgs_own_connection_for_its_verified_domain(
    dns_suite: Suite, dns_server: DnsServer, op: OpenIdProvider
) -> None:
    suite = dns_suite
    owner = await suite.user()
    org = await suite.org(owner)
    name, tenant = f"org-{org}", f"entra-{org[:8]}"
    await op.client(tenant, "client-org", [name])
    connection = {"issuer": op.issuer(tenant), "client_id": "client-org",
                  "client_secret": SECRET}
    assert (await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token,
                             connection))[0] == 200
    domain = f"corp-{org[:8]}.example.com"
    _, claim = await suite.call("POST", f"/orgs/{org}/sso/domains", owner.token,
                                {"domain": domain})
    dns_server.publish(domain, claim["txt_record"]["value"])
    status, verified = await suite.call("POST", f"/orgs/{org}/sso/domains/{domain}/verify",
                                        owner.token)
    assert status == 200, verified
    assert (await suite.call("PATCH", f"/orgs/{org}", owner.token,
                             {"require_sso": True}))[0] == 200

    # a sign-in form asks first, and is pointed to the org's SSO (domains only)
    status, found = await suite.auth.call("GET", f"/sso/discover?email=ada%40{domain}")
    assert (status, found) == (200, {"provider": name, "start": f"/sso/{name}/start",
                                     "require_sso": True})
    assert (await suite.auth.call("GET", "/sso/discover?email=ada%40example.com"))[0] == 404

    # the org's IdP asserting an address of a domain the org has not verified: nothing made
    outsider = f"u{uuid.uuid4().hex[:8]}@example.com"
    sub = await op.user(tenant, outsider)
    refused = await Browser(suite.auth).sign_in(name)
    assert refused.status == 403, refused.body
    assert refused.body["type"] == "urn:argus:problem:sso-domain-not-allowed"
    async with suite.auth.auth.pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from users where email = $1", outsider) == 0
        assert await conn.fetchval("select count(*) from federated_identities"
                                   " where subject = $1", sub) == 0

    # one of its own: a new account, invited, then org tokens through the connection only
    ada = f"ada-{uuid.uuid4().hex[:6]}@{domain}"
    await op.user(tenant, ada)
    done = await Browser(suite.auth).sign_in(name)
    assert done.status == 303, done.body
    token = done.cookies[ACCESS]
    assert claims(token)["idp"] == op.issuer(tenant)
    status, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                       {"email": ada, "role": "member"})
    assert status == 201, invited
    status, body = await suite.call("POST", "/invitations/accept", token,
                                    {"token": invited["token"]})
    assert status == 200, body
    status, switched, _ = await suite.auth.post("/orgs/switch", {"org_id": org}, token=token)
    assert status == 200, switched
    assert claims(switched["access_token"])["org"] == org
