"""An org's own SSO in tenant-api: its OIDC connection (owners/admins; the client secret sealed
at rest and read back only by auth), email domains proven by a DNS TXT record looked up with
dnspython against a DNS server this test runs on 127.0.0.1 (a real UDP socket), the internal
lookup of a verified domain, and `require_sso` / `sso_mfa_from_idp` as the membership RPC that
auth asks before minting org tokens answers them (attacked: a password session, another
issuer, a member, an owner)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from argus_shared import xut
from argus_shared.mail import MailSettings
from argus_shared.nats import RpcError, request
from argus_shared.settings import Settings
from argus_shared.web import NATS_KEY
from support.dns_server import DnsServer
from support.suite import Suite, User, running_suite

ISSUER = "https://login.example.com/tenant-1/v2.0"
CONNECTION = {"issuer": ISSUER, "client_id": "argus-client", "client_secret": "s3cr3t-value-42"}


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
                    tmp_path: Path, dns_server: DnsServer) -> AsyncIterator[Suite]:
    auth = await make_auth_service()
    mail = MailSettings(mailbox_dir=tmp_path / "mailbox")
    async with running_suite(auth, settings_for("tenant-api"), mail,
                             sso_nameserver=dns_server.address,
                             sso_dns_timeout_seconds=2) as running:
        yield running


async def rpc(suite: Suite, settings: Settings, method: str, payload: dict[str, Any],
              sub: str, issuer: str = "auth") -> Any:
    return await request(suite.app[NATS_KEY], settings.xut_keys, issuer=issuer,
                         service="tenant-api", method=method, payload=payload,
                         identity=xut.Identity(sub=sub))


async def membership(suite: Suite, settings: Settings, user: User, org: str,
                     idp: str | None, amr: list[str]) -> Any:
    return await rpc(suite, settings, "membership",
                     {"user_id": user.id, "org_id": org, "idp": idp, "amr": amr},
                     f"user:{user.id}")


async def test_connection_is_for_admins_and_its_secret_only_for_auth(
    sso_suite: Suite, settings_for: Callable[..., Settings], admin: asyncpg.Connection
) -> None:
    suite, settings = sso_suite, settings_for("tenant-api")
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    path = f"/orgs/{org}/sso/connection"
    assert (await suite.call("PUT", path, member.token, CONNECTION))[0] == 403
    assert (await suite.call("GET", path, owner.token))[0] == 404
    for bad in ({**CONNECTION, "issuer": "http://idp.example.com"},  # not https
                {**CONNECTION, "client_secret": "two words"}, {**CONNECTION, "extra": 1}):
        assert (await suite.call("PUT", path, owner.token, bad))[0] == 422, bad
    status, view = await suite.call("PUT", path, owner.token, CONNECTION)
    assert status == 200 and view["client_secret_set"] is True, view
    assert CONNECTION["client_secret"] not in str(view)
    assert (await suite.call("GET", path, owner.token))[1] == view
    stored = await admin.fetchval("select client_secret from tenant_api.sso_connections"
                                  " where org_id = $1", uuid.UUID(org))
    assert CONNECTION["client_secret"].encode() not in stored
    found = await rpc(suite, settings, "sso_connection", {"org_id": org}, "service:auth")
    assert (found["issuer"], found["client_secret"]) == (ISSUER, CONNECTION["client_secret"])
    with pytest.raises(RpcError) as refused:
        await rpc(suite, settings, "sso_connection", {"org_id": org}, "service:webhooks",
                  issuer="webhooks")
    assert refused.value.status == 403
    # a sealed secret moved to another org's row does not open there
    other = await suite.org(owner)
    await suite.call("PUT", f"/orgs/{other}/sso/connection", owner.token, CONNECTION)
    await admin.execute("update tenant_api.sso_connections set client_secret = $1"
                        " where org_id = $2", stored, uuid.UUID(other))
    with pytest.raises(RpcError) as moved:
        await rpc(suite, settings, "sso_connection", {"org_id": other}, "service:auth")
    assert moved.value.status == 500
    token = await suite.switch(owner, org)
    assert (await suite.call("DELETE", path, token))[0] == 204
    assert (await suite.call("GET", path, token))[0] == 404


async def test_a_domain_is_verified_by_its_txt_record_for_one_org(
    sso_suite: Suite, dns_server: DnsServer, settings_for: Callable[..., Settings]
) -> None:
    suite, settings = sso_suite, settings_for("tenant-api")
    owner = await suite.user()
    org = await suite.org(owner)
    domain = f"acme-{org[:8]}.example.com"
    await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token, CONNECTION)
    status, claim = await suite.call("POST", f"/orgs/{org}/sso/domains", owner.token,
                                     {"domain": domain.upper() + "."})
    assert status == 201 and claim["domain"] == domain and claim["verified"] is False, claim
    value = claim["txt_record"]["value"]
    assert value.startswith("argus-verify=") and claim["txt_record"]["name"] == domain
    verify = f"/orgs/{org}/sso/domains/{domain}/verify"

    status, problem = await suite.call("POST", verify, owner.token)  # nothing published
    assert (status, problem["type"]) == (422, "urn:argus:problem:domain-not-verified")
    dns_server.publish(domain, "v=spf1 -all", "argus-verify=someone-elses-token")
    assert (await suite.call("POST", verify, owner.token))[0] == 422
    asked = dns_server.queries
    assert asked >= 2  # the lookups went to the test's server
    with pytest.raises(RpcError) as none:
        await rpc(suite, settings, "sso_domain", {"domain": domain}, "service:auth")
    assert none.value.status == 404

    dns_server.publish(domain, "v=spf1 -all", value)
    status, verified = await suite.call("POST", verify, owner.token)
    assert status == 200 and verified["verified"] is True, verified
    found = await rpc(suite, settings, "sso_domain", {"domain": domain.upper()}, "service:auth")
    assert found == {"domain": domain, "org_id": org, "issuer": ISSUER,
                     "client_id": "argus-client", "require_sso": False}

    # the internal HTTP lookup: auth's X-User-Token only
    url = f"{suite.tenant}/internal/sso/domain/{domain}"
    for issuer, expected in (("auth", 200), ("webhooks", 403)):
        token = xut.sign(settings.xut_keys, xut.Identity(sub=f"service:{issuer}"),
                         issuer=issuer, audience="tenant-api")
        async with suite.http.get(url, headers={xut.HEADER: token}) as response:
            assert response.status == expected
            if expected == 200:
                assert (await response.json())["org_id"] == org
    async with suite.http.get(url) as response:
        assert response.status == 401

    # another org claims the same domain and publishes its own value: never verified there
    rival = await suite.user()
    rival_org = await suite.org(rival)
    _, rival_claim = await suite.call("POST", f"/orgs/{rival_org}/sso/domains", rival.token,
                                      {"domain": domain})
    dns_server.publish(domain, value, rival_claim["txt_record"]["value"])
    status, taken = await suite.call("POST", f"/orgs/{rival_org}/sso/domains/{domain}/verify",
                                     rival.token)
    assert status == 409, taken
    assert (await rpc(suite, settings, "sso_domain", {"domain": domain},
                      "service:auth"))["org_id"] == org


async def test_require_sso_refuses_org_tokens_to_sessions_not_from_the_orgs_idp(
    sso_suite: Suite, settings_for: Callable[..., Settings]
) -> None:
    suite, settings = sso_suite, settings_for("tenant-api")
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    status, body = await suite.call("PATCH", f"/orgs/{org}", owner.token, {"require_sso": True})
    assert status == 409, body  # no connection yet
    await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token, CONNECTION)
    status, body = await suite.call("PATCH", f"/orgs/{org}", owner.token, {"require_sso": True})
    assert status == 200 and body["require_sso"] is True, body

    for idp, amr in ((None, ["pwd"]), ("https://attacker.example.com", ["fed"]),
                     (ISSUER + "/", ["fed"])):
        with pytest.raises(RpcError) as refused:
            await membership(suite, settings, member, org, idp, amr)
        assert refused.value.status == 403 and refused.value.detail.startswith("sso-required")
    answer = await membership(suite, settings, member, org, ISSUER, ["fed"])
    assert (answer["role"], answer["sso_session"], answer["require_sso"]) == ("member", True,
                                                                              True)
    owned = await membership(suite, settings, owner, org, None, ["pwd"])  # break-glass
    assert (owned["role"], owned["sso_session"]) == ("owner", False)
    # through auth as it is today: the member's password session gets no org token
    status, switched, _ = await suite.auth.post("/orgs/switch", {"org_id": org},
                                                token=member.plain)
    assert status in (403, 503) and "access_token" not in switched, switched
    with pytest.raises(RpcError) as malformed:
        await membership(suite, settings, member, org, ISSUER, "fed")  # type: ignore[arg-type]
    assert malformed.value.status == 400
    assert (await suite.call("DELETE", f"/orgs/{org}/sso/connection", owner.token))[0] == 409


async def test_mfa_from_the_idp_counts_only_when_the_org_says_so(
    sso_suite: Suite, settings_for: Callable[..., Settings]
) -> None:
    suite, settings = sso_suite, settings_for("tenant-api")
    owner = await suite.user()
    org = await suite.org(owner)
    admin_user = await suite.member(org, owner, "admin")
    await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token, CONNECTION)
    await suite.call("PATCH", f"/orgs/{org}", owner.token, {"require_mfa": True})
    answer = await membership(suite, settings, admin_user, org, ISSUER, ["fed", "mfa"])
    assert (answer["require_mfa"], answer["mfa_from_idp"]) == (True, False)  # not trusted yet
    status, _ = await suite.call("PATCH", f"/orgs/{org}", owner.token,
                                 {"sso_mfa_from_idp": True})
    assert status == 200
    answer = await membership(suite, settings, admin_user, org, ISSUER, ["fed", "mfa"])
    assert (answer["require_mfa"], answer["mfa_from_idp"]) == (False, True)
    for idp, amr in ((ISSUER, ["fed"]), ("https://other.example.com", ["fed", "mfa"]),
                     (None, ["pwd", "mfa"])):
        answer = await membership(suite, settings, admin_user, org, idp, amr)
        assert (answer["require_mfa"], answer["mfa_from_idp"]) == (True, False), (idp, amr)


async def test_a_dns_server_that_does_not_answer_verifies_nothing(
    sso_suite: Suite, dns_server: DnsServer
) -> None:
    suite = sso_suite
    owner = await suite.user()
    org = await suite.org(owner)
    domain = f"down-{org[:8]}.example.com"
    _, claim = await suite.call("POST", f"/orgs/{org}/sso/domains", owner.token,
                                {"domain": domain})
    dns_server.publish(domain, claim["txt_record"]["value"])
    assert dns_server.transport is not None
    dns_server.transport.close()  # the nameserver's port is closed now
    status, problem = await suite.call("POST", f"/orgs/{org}/sso/domains/{domain}/verify",
                                       owner.token)
    assert status == 503, problem
    _, domains = await suite.call("GET", f"/orgs/{org}/sso/domains", owner.token)
    assert domains[0]["verified"] is False
