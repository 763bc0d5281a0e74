"""Single sign-on against a real OpenID Provider running as its own process
(`support.oidc_provider`): the code flow with PKCE, discovery and JWKS rotation, just-in-time
accounts, linking and unlinking, step-up and logout through the provider; and the attacks,
each refused with a clear problem and creating nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from argus_auth.sso_providers import SsoConfig
from argus_shared import xut
from argus_shared.nats import request
from support.auth_service import AuthService
from support.sso import PUBLIC, Browser, OpenIdProvider, provider, query_of, start_provider

ACCESS, REFRESH, STATE = "__Host-argus_access", "__Host-argus_refresh", "__Host-argus_sso"
P = "urn:argus:problem:"


@pytest.fixture(scope="module")
async def op(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpenIdProvider]:
    started = await start_provider(tmp_path_factory.mktemp("oidc-provider"))
    yield started
    await started.http.close()
    started.proc.kill()


@dataclass
class Sso:
    service: AuthService
    op: OpenIdProvider
    acme: str  # the tenant of the `acme` provider (a company IdP)
    evil: str  # the tenant of the `evil` provider (an IdP an attacker controls)

    def browser(self) -> Browser:
        return Browser(self.service)

    async def count(self, sql: str, *args: Any) -> int:
        async with self.service.auth.pool.acquire() as conn:
            return int(await conn.fetchval(sql, *args))

    async def nothing_for(self, email: str | None, sub: str) -> None:
        """No identity for the subject, no account for the email, no session of it."""
        assert await self.count("select count(*) from federated_identities where subject = $1",
                                sub) == 0
        if email is not None:
            assert await self.count("select count(*) from users where email = $1", email) == 0


@pytest.fixture
async def sso(make_auth_service: Any, op: OpenIdProvider) -> Sso:
    acme, evil = f"acme-{uuid.uuid4().hex[:8]}", f"evil-{uuid.uuid4().hex[:8]}"
    providers = {"acme": provider(op, "acme", acme), "evil": provider(op, "evil", evil),
                 "entra": provider(op, "entra", "organizations", preset="microsoft"),
                 "corp": provider(op, "corp", acme, allowed_domains=("corp.example",)),
                 "gsuite": provider(op, "gsuite", acme, preset="google",
                                    allowed_domains=("corp.example",))}
    for name, tenant in (("acme", acme), ("evil", evil), ("entra", "organizations"),
                         ("corp", acme), ("gsuite", acme)):
        await op.client(tenant, f"client-{name}", [name])
    config = SsoConfig(providers=providers, redirect_base=PUBLIC, jwks_min_refetch=0.0)
    return Sso(await make_auth_service(sso=config), op, acme, evil)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@example.com"


# happy paths -------------------------------------------------------------------------------------

async def test_first_sign_in_creates_a_verified_account_and_a_normal_session(sso: Sso) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, address, amr=["pwd", "mfa"])
    browser = sso.browser()
    done = await browser.sign_in("acme", "/app/home?tab=1")
    assert (done.status, done.location) == (303, "/app/home?tab=1"), done.body
    claims = claims_of(done.cookies[ACCESS])
    assert claims["idp"] == sso.op.issuer(sso.acme)
    assert claims["amr"] == ["fed", "mfa", "idp:pwd", "idp:mfa"] and claims["sid"]
    status, me = await sso.service.call("GET", "/me", done.cookies[ACCESS])
    assert status == 200 and me["email"] == address
    async with sso.service.auth.pool.acquire() as conn:
        account = await conn.fetchrow("select * from users where email = $1", address)
        session = await conn.fetchrow("select * from sessions where id = $1",
                                      uuid.UUID(claims["sid"]))
    assert account is not None and session is not None
    assert account["password_hash"] is None and account["email_verified_at"] is not None
    assert session["idp"] == sso.op.issuer(sso.acme) and session["idp_provider"] == "acme"
    status, identities = await sso.service.call("GET", "/account/identities",
                                                done.cookies[ACCESS])
    assert status == 200 and [(i["issuer"], i["subject"]) for i in identities] == [
        (sso.op.issuer(sso.acme), sub)]
    # a normal session: the refresh token rotates, and the new token keeps idp and amr
    status, tokens, _ = await sso.service.post("/token/refresh",
                                               {"refresh_token": done.cookies[REFRESH]})
    assert status == 200 and claims_of(tokens["access_token"])["idp"] == claims["idp"]
    assert "fed" in claims_of(tokens["access_token"])["amr"]
    # the same identity again: the same account, no second one
    again = await sso.browser().sign_in("acme")
    assert again.status == 303
    assert claims_of(again.cookies[ACCESS])["sub"] == claims["sub"]
    assert await sso.count("select count(*) from users where email = $1", address) == 1


async def test_export_my_data_lists_the_linked_identities(sso: Sso) -> None:
    sub = await sso.op.user(sso.acme, email())
    done = await sso.browser().sign_in("acme")
    user_id = claims_of(done.cookies[ACCESS])["sub"]
    auth = sso.service.auth
    exported = await request(auth.nc, auth.xut_keys, issuer="tenant-api", service="auth",
                             method="export_user", payload={"user_id": user_id},
                             identity=xut.Identity(sub=f"user:{user_id}"))
    assert [(i["issuer"], i["subject"]) for i in exported["identities"]] == [
        (sso.op.issuer(sso.acme), sub)]


async def test_providers_are_listed_and_an_unknown_one_is_404(sso: Sso) -> None:
    status, listed = await sso.service.call("GET", "/sso/providers")
    assert status == 200 and {p["name"] for p in listed} == {"acme", "evil", "entra", "corp",
                                                       "gsuite"}
    answer = await sso.browser().start("nope")
    assert answer.status == 404


async def test_the_authorization_request_uses_pkce_s256_a_nonce_and_a_host_cookie(
    sso: Sso
) -> None:
    started = await sso.browser().start("acme")
    assert started.status == 302 and started.location
    query = query_of(started.location)
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["nonce"] and query["state"] and query["response_type"] == "code"
    assert query["redirect_uri"] == f"{PUBLIC}/sso/acme/callback"
    assert query["state"] not in started.cookies[STATE]  # sealed, not readable


async def test_jwks_rotation_at_the_provider_is_picked_up(sso: Sso) -> None:
    await sso.op.user(sso.acme, email())
    assert (await sso.browser().sign_in("acme")).status == 303  # keys fetched and cached
    await sso.op.rotate(sso.acme, drop_old=True)  # the cached key set lacks the new kid
    await sso.op.user(sso.acme, email())
    done = await sso.browser().sign_in("acme")
    assert done.status == 303, done.body


async def test_microsoft_multi_tenant_issuer_must_match_the_tokens_tid(sso: Sso) -> None:
    tid = str(uuid.uuid4())
    await sso.op.user("organizations", email(), tid=tid)
    done = await sso.browser().sign_in("entra")
    assert done.status == 303, done.body
    assert claims_of(done.cookies[ACCESS])["idp"] == sso.op.issuer(tid)
    # Entra sends no email_verified: its xms_edov claim vouches for the email, or nothing does
    address, sub = email(), f"sub-{uuid.uuid4().hex[:12]}"
    await sso.op.control("organizations", "user", {"sub": sub, "tid": tid, "email": address})
    unvouched = await sso.browser().sign_in("entra")
    assert unvouched.status == 403 and unvouched.body["type"] == P + "sso-email-unverified"
    await sso.nothing_for(address, sub)
    await sso.op.control("organizations", "user", {"sub": sub, "tid": tid, "email": address,
                                                   "xms_edov": True})
    assert (await sso.browser().sign_in("entra")).status == 303
    address = email()
    sub = await sso.op.user("organizations", address, tid=str(uuid.uuid4()), attack="wrong_tid")
    refused = await sso.browser().sign_in("entra")
    assert refused.status == 401 and refused.body["type"] == P + "sso-refused"
    await sso.nothing_for(address, sub)


# linking -----------------------------------------------------------------------------------------

async def start_link(sso: Sso, token: str, name: str = "acme") -> tuple[int, Any, Browser]:
    browser = sso.browser()
    status, body, response = await sso.service.post(f"/sso/{name}/link",
                                                    {"return_to": "/settings"}, token)
    if status == 200:
        browser.cookies[STATE] = response.cookies[STATE].value
    return status, body, browser


async def test_link_while_signed_in_then_sign_in_with_it(sso: Sso) -> None:
    address, tokens = await sso.service.logged_in()
    sub = await sso.op.user(sso.acme, "work-" + address)  # another email: fine, it is verified
    status, body, browser = await start_link(sso, tokens["access_token"])
    assert status == 200, body
    done = await browser.get(await browser.to_provider(body["authorization_url"]))
    assert (done.status, done.location) == (303, "/settings"), done.body
    status, identities = await sso.service.call("GET", "/account/identities",
                                                tokens["access_token"])
    assert [i["subject"] for i in identities] == [sub]
    signed_in = await sso.browser().sign_in("acme")
    assert signed_in.status == 303
    assert claims_of(signed_in.cookies[ACCESS])["sub"] == claims_of(tokens["access_token"])["sub"]


async def test_linking_needs_a_fresh_sign_in(sso: Sso) -> None:
    _, tokens = await sso.service.logged_in()
    sso.service.clock.advance(600)
    status, body, _ = await start_link(sso, tokens["access_token"])
    assert status == 401 and body["type"] == P + "step-up-required"


async def test_a_link_whose_session_ended_meanwhile_links_nothing(sso: Sso) -> None:
    _, tokens = await sso.service.logged_in()
    sub = await sso.op.user(sso.acme, email())
    _, body, browser = await start_link(sso, tokens["access_token"])
    assert (await sso.service.post("/logout", None, tokens["access_token"]))[0] == 204
    done = await browser.get(await browser.to_provider(body["authorization_url"]))
    assert done.status == 401 and "session" in done.body["detail"]
    await sso.nothing_for(None, sub)


async def test_an_identity_linked_to_another_account_is_not_moved(sso: Sso) -> None:
    sub = await sso.op.user(sso.acme, email())
    first = await sso.browser().sign_in("acme")
    assert first.status == 303
    _, tokens = await sso.service.logged_in()
    _, body, browser = await start_link(sso, tokens["access_token"])
    done = await browser.get(await browser.to_provider(body["authorization_url"]))
    assert done.status == 409 and done.body["type"] == P + "identity-in-use"
    assert await sso.count("select count(*) from federated_identities where subject = $1",
                           sub) == 1
    _, mine = await sso.service.call("GET", "/account/identities", tokens["access_token"])
    assert mine == []


async def test_the_last_way_to_sign_in_cannot_be_unlinked(sso: Sso) -> None:
    await sso.op.user(sso.acme, email())
    done = await sso.browser().sign_in("acme")
    token = done.cookies[ACCESS]
    _, identities = await sso.service.call("GET", "/account/identities", token)
    status, body = await sso.service.call("DELETE", f"/account/identities/{identities[0]['id']}",
                                          token)
    assert status == 409 and body["type"] == P + "last-sign-in-method"
    assert len((await sso.service.call("GET", "/account/identities", token))[1]) == 1


async def test_a_password_account_can_unlink_its_identity(sso: Sso) -> None:
    _, tokens = await sso.service.logged_in()
    await sso.op.user(sso.acme, email())
    _, body, browser = await start_link(sso, tokens["access_token"])
    assert (await browser.get(await browser.to_provider(body["authorization_url"]))).status == 303
    token = tokens["access_token"]
    _, identities = await sso.service.call("GET", "/account/identities", token)
    status, _ = await sso.service.call("DELETE", f"/account/identities/{identities[0]['id']}",
                                       token)
    assert status == 204
    assert (await sso.service.call("GET", "/account/identities", token))[1] == []


async def test_another_accounts_identity_cannot_be_unlinked(sso: Sso) -> None:
    _, owner = await sso.service.logged_in()
    await sso.op.user(sso.acme, email())
    _, body, browser = await start_link(sso, owner["access_token"])
    assert (await browser.get(await browser.to_provider(body["authorization_url"]))).status == 303
    _, identities = await sso.service.call("GET", "/account/identities", owner["access_token"])
    _, other = await sso.service.logged_in()
    status, _ = await sso.service.call("DELETE", f"/account/identities/{identities[0]['id']}",
                                       other["access_token"])
    assert status == 404
    assert len((await sso.service.call("GET", "/account/identities",
                                       owner["access_token"]))[1]) == 1


# takeover attempts -------------------------------------------------------------------------------

async def test_an_idp_asserting_a_password_accounts_email_links_nothing(sso: Sso) -> None:
    victim = await sso.service.signed_up()
    sub = await sso.op.user(sso.evil, victim)  # "verified" by the attacker's own IdP
    done = await sso.browser().sign_in("evil")
    assert done.status == 409 and done.body["type"] == P + "sso-link-required"
    assert "password" in done.body["detail"] and ACCESS not in done.cookies
    await sso.nothing_for(None, sub)
    assert await sso.count("select count(*) from sessions s join users u on u.id = s.user_id"
                           " where u.email = $1", victim) == 0


async def test_an_attacker_idp_cannot_join_an_sso_account_by_its_email(sso: Sso) -> None:
    victim = email()
    await sso.op.user(sso.acme, victim)
    assert (await sso.browser().sign_in("acme")).status == 303
    sub = await sso.op.user(sso.evil, victim)
    done = await sso.browser().sign_in("evil")
    assert done.status == 409 and done.body["type"] == P + "sso-link-required"
    await sso.nothing_for(None, sub)


@pytest.mark.parametrize("claims", [{"verified": False}, {"email": None}],
                         ids=["email_verified_false", "no_email"])
async def test_an_unverified_email_creates_and_links_nothing(sso: Sso,
                                                              claims: dict[str, Any]) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, claims.pop("email", address), **claims)
    done = await sso.browser().sign_in("acme")
    assert done.status == 403 and done.body["type"] == P + "sso-email-unverified"
    await sso.nothing_for(address, sub)
    # nor linking: a signed-in user's link with an unverified email is refused too
    _, tokens = await sso.service.logged_in()
    await sso.op.user(sso.acme, address, sub=sub, verified=False)
    _, body, browser = await start_link(sso, tokens["access_token"])
    linked = await browser.get(await browser.to_provider(body["authorization_url"]))
    assert linked.status == 403
    await sso.nothing_for(address, sub)


async def test_a_provider_limited_to_domains_signs_in_only_those(sso: Sso) -> None:
    outsider = email()
    sub = await sso.op.user(sso.acme, outsider)
    done = await sso.browser().sign_in("corp")
    assert done.status == 403 and done.body["type"] == P + "sso-domain-not-allowed"
    await sso.nothing_for(outsider, sub)
    await sso.op.user(sso.acme, f"ada-{uuid.uuid4().hex[:6]}@corp.example")
    assert (await sso.browser().sign_in("corp")).status == 303


async def test_a_google_workspace_domain_needs_googles_hd_claim(sso: Sso) -> None:
    address = f"bo-{uuid.uuid4().hex[:6]}@corp.example"
    sub = await sso.op.user(sso.acme, address)  # a consumer account with a corp address
    done = await sso.browser().sign_in("gsuite")
    assert done.status == 403 and done.body["type"] == P + "sso-domain-not-allowed"
    await sso.nothing_for(address, sub)
    await sso.op.user(sso.acme, address, sub=sub, hd="corp.example")  # the Workspace's own
    assert (await sso.browser().sign_in("gsuite")).status == 303


# forged or replayed answers ----------------------------------------------------------------------

@pytest.mark.parametrize("attack", ["wrong_nonce", "other_key", "alg_none", "hs256",
                                    "wrong_aud", "wrong_iss", "expired", "bad_at_hash",
                                    "two_audiences"])
async def test_a_forged_id_token_is_refused_and_creates_nothing(sso: Sso, attack: str) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, address, attack=attack)
    done = await sso.browser().sign_in("acme")
    assert done.status == 401, (attack, done.body)
    assert done.body["type"] == P + "sso-refused" and done.body["detail"]
    assert ACCESS not in done.cookies
    await sso.nothing_for(address, sub)


async def test_a_sign_in_that_comes_back_too_late_is_refused(sso: Sso) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, address)
    browser = sso.browser()
    started = await browser.start("acme")
    assert started.location
    callback = await browser.to_provider(started.location)
    sso.service.clock.advance(601)  # the state lives 10 minutes
    done = await browser.get(callback)
    assert done.status == 400 and "too long" in done.body["detail"]
    await sso.nothing_for(address, sub)


async def test_a_callback_without_the_cookie_is_refused(sso: Sso) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, address)
    browser = sso.browser()
    started = await browser.start("acme")
    assert started.location
    callback = await browser.to_provider(started.location)
    done = await browser.get(callback, cookies={})  # another browser: a login CSRF
    assert done.status == 400 and done.body["type"] == P + "sso-state"
    await sso.nothing_for(address, sub)


async def test_a_wrong_state_or_another_sign_ins_cookie_is_refused(sso: Sso) -> None:
    address = email()
    sub = await sso.op.user(sso.acme, address)
    mine, theirs = sso.browser(), sso.browser()
    started = await mine.start("acme")
    await theirs.start("acme")
    assert started.location
    callback = await mine.to_provider(started.location)
    wrong = callback.replace("state=", "state=x")
    assert (await mine.get(wrong)).status == 400
    swapped = await theirs.get(callback)  # the code and state of one, the cookie of another
    assert swapped.status == 400 and swapped.body["type"] == P + "sso-state"
    await sso.nothing_for(address, sub)


async def test_a_replayed_callback_or_code_is_refused(sso: Sso) -> None:
    address = email()
    await sso.op.user(sso.acme, address)
    browser = sso.browser()
    started = await browser.start("acme")
    assert started.location
    callback = await browser.to_provider(started.location)
    cookie = {STATE: browser.cookies[STATE]}
    assert (await browser.get(callback, cookies=dict(cookie))).status == 303
    replay = await browser.get(callback, cookies=dict(cookie))
    assert replay.status == 400 and replay.body["type"] == P + "sso-state"
    # the spent code under a fresh state of this browser: the provider refuses it
    fresh = sso.browser()
    again = await fresh.start("acme")
    assert again.location
    state = query_of(again.location)["state"]
    code = query_of(callback)["code"]
    reused = await fresh.get(fresh.service.url(f"/sso/acme/callback?code={code}&state={state}"))
    assert reused.status == 401 and "invalid_grant" in reused.body["detail"]
    assert await sso.count("select count(*) from users where email = $1", address) == 1


async def test_an_authorization_response_from_another_issuer_is_refused(sso: Sso) -> None:
    """RFC 9207 mix-up defence: the response's `iss` is checked before the code is sent."""
    address = email()
    sub = await sso.op.user(sso.acme, address)
    browser = sso.browser()
    started = await browser.start("acme")
    assert started.location
    callback = await browser.to_provider(started.location)
    assert query_of(callback)["iss"] == sso.op.issuer(sso.acme)  # every sign-in here checks it
    answer = {**query_of(callback), "iss": sso.op.issuer(sso.evil)}
    mixed = await browser.get(f"{callback.partition('?')[0]}?{urlencode(answer)}")
    assert mixed.status == 401 and "(iss)" in mixed.body["detail"]
    assert await sso.op.token_log(sso.acme) == []  # the code never reached a token endpoint
    await sso.nothing_for(address, sub)


async def test_the_providers_error_answer_is_a_refusal(sso: Sso) -> None:
    browser = sso.browser()
    started = await browser.start("acme")
    assert started.location
    state = query_of(started.location)["state"]
    done = await browser.get(sso.service.url(
        f"/sso/acme/callback?error=access_denied&state={state}"))
    assert done.status == 401 and "access_denied" in done.body["detail"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
                                    "/\r\nSet-Cookie: x=1", "evil.example",
                                    "/\t/evil.example"])  # a browser drops the tab: //evil
async def test_open_redirect_return_urls_are_refused(sso: Sso, target: str) -> None:
    answer = await sso.browser().start("acme", target)
    assert answer.status == 400, (target, answer.location)
    assert answer.location is None and STATE not in answer.cookies


# step-up and logout through the provider ---------------------------------------------------------

async def test_step_up_through_the_provider_signs_in_again(sso: Sso) -> None:
    await sso.op.user(sso.acme, email())
    done = await sso.browser().sign_in("acme")
    token = done.cookies[ACCESS]
    sso.service.clock.advance(400)  # past the step-up window: a sensitive route says so
    status, body = await sso.service.call("DELETE", f"/account/identities/{uuid.uuid4()}", token)
    assert status == 401 and body["type"] == P + "step-up-required"
    sso.service.clock.advance(-400)
    sid = uuid.UUID(claims_of(token)["sid"])
    before = await _auth_time(sso, sid)
    browser = sso.browser()
    status, started, response = await sso.service.post("/sso/acme/reauth", {}, token)
    assert status == 200
    query = query_of(started["authorization_url"])
    assert (query["prompt"], query["max_age"]) == ("login", "0")
    browser.cookies[STATE] = response.cookies[STATE].value
    stepped = await browser.get(await browser.to_provider(started["authorization_url"]))
    assert stepped.status == 303, stepped.body
    fresh = claims_of(stepped.cookies[ACCESS])
    assert fresh["sid"] == str(sid) and "fed" in fresh["amr"]
    assert await _auth_time(sso, sid) > before


async def _auth_time(sso: Sso, sid: uuid.UUID) -> Any:
    async with sso.service.auth.pool.acquire() as conn:
        return await conn.fetchval("select auth_time from sessions where id = $1", sid)


async def test_logout_names_the_providers_end_session_url(sso: Sso) -> None:
    await sso.op.user(sso.acme, email())
    done = await sso.browser().sign_in("acme")
    status, body, _ = await sso.service.post("/sso/logout", None, done.cookies[ACCESS])
    assert status == 200
    assert body["end_session_url"].startswith(f"{sso.op.issuer(sso.acme)}/logout?")
    assert "client_id=client-acme" in body["end_session_url"]
    status, _, _ = await sso.service.post("/token/refresh",
                                          {"refresh_token": done.cookies[REFRESH]})
    assert status == 401
    # a browser's logout form is sent on to the provider (RP-initiated logout)
    again = await sso.browser().sign_in("acme")
    status, _, response = await sso.service.post(
        "/sso/logout", None, again.cookies[ACCESS], headers={"Accept": "text/html"},
        allow_redirects=False)
    assert status == 303
    assert response.headers["Location"].startswith(f"{sso.op.issuer(sso.acme)}/logout?")

