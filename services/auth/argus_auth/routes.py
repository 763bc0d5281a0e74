"""The auth service's route table: thin handlers that parse, call the domain, respond."""

from __future__ import annotations

from uuid import UUID

import msgspec
from aiohttp import web

from argus_auth import (
    accounts,
    api_keys,
    membership,
    mfa,
    orgs,
    queries,
    schemas,
    sessions,
    sso,
    sso_orgs,
)
from argus_auth.core import Auth
from argus_auth.pages import page_routes
from argus_shared import scoping
from argus_shared.access import ACCESS_CLAIMS, ACCESS_COOKIE, AccessClaims
from argus_shared.errors import Problem
from argus_shared.handlers import ctx_of, json, not_found, uuid_param
from argus_shared.problem_types import (
    CODE_USED,
    IDENTITY_IN_USE,
    IDP_UNAVAILABLE,
    LAST_SIGN_IN_METHOD,
    MFA_REQUIRED,
    SECOND_FACTOR_REQUIRED,
    SSO_DOMAIN_NOT_ALLOWED,
    SSO_EMAIL_UNVERIFIED,
    SSO_LINK_REQUIRED,
    SSO_REFUSED,
    SSO_REQUIRED,
    SSO_STATE,
    STEP_UP_REQUIRED,
)
from argus_shared.request import CLIENT_IP, REQUEST_ID
from argus_shared.routing import Answer, Answers, Public, Route
from argus_shared.validation import parse_json, parse_query
from argus_shared.web import LIMITER_KEY

AUTH_KEY = web.AppKey("auth", Auth)
REFRESH_COOKIE = "__Host-argus_refresh"
ADMIN_ROLES = ("owner", "admin")


def auth_of(request: web.Request) -> Auth:
    return request.app[AUTH_KEY]


def claims_of(request: web.Request) -> AccessClaims:
    return request[ACCESS_CLAIMS]


async def limit_account(request: web.Request, account: str) -> None:
    """Per-IP and per-account limits of a credential route, on top of the service-wide one.
    `account` is the identity exactly as the route's domain call takes it (a token, a user id);
    an email goes through `limit_email`, never here raw."""
    await _limit_ip(request)
    await _limit_identity(request, account)


async def limit_email(request: web.Request, email: str) -> str:
    """`limit_account` for an email: counted under its normal form, the one sign-up, login,
    lockout and reset use (so `A@X.COM`, fullwidth or decomposed spellings share one limit; a
    refused address is a 422, counted against the IP). Returns the normal form."""
    await _limit_ip(request)
    normal = accounts.normalise(email)
    await _limit_identity(request, normal)
    return normal


def _route_key(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


async def _limit_ip(request: web.Request) -> None:
    await request.app[LIMITER_KEY].hit(f"ip:{request.get(CLIENT_IP)}:{_route_key(request)}",
                                 auth_of(request).config.ip_limit_per_minute)


async def _limit_identity(request: web.Request, identity: str) -> None:
    await request.app[LIMITER_KEY].hit(f"account:{identity}:{_route_key(request)}",
                                 auth_of(request).config.account_limit_per_minute)


def require_step_up(request: web.Request) -> AccessClaims:
    claims = claims_of(request)
    if not claims.fresh(auth_of(request).config.step_up_window, auth_of(request).timestamp()):
        raise Problem(401, "re-authenticate (POST /reauth) and try again within 5 minutes",
                      title="Step-up required", type="urn:argus:problem:step-up-required")
    return claims


def accepted() -> web.Response:
    return json({"status": "accepted"}, 202)


def token_response(request: web.Request, issued: sessions.Issued) -> web.Response:
    response = json({"access_token": issued.access_token, "token_type": "Bearer",
                     "expires_in": issued.expires_in, "refresh_token": issued.refresh_token,
                     "session_id": str(issued.session_id)})
    _session_cookies(request, response, issued)
    return response


def _session_cookies(request: web.Request, response: web.StreamResponse,
                     issued: sessions.Issued) -> None:
    secure = auth_of(request).config.secure_cookies
    response.set_cookie(ACCESS_COOKIE, issued.access_token, max_age=issued.expires_in, path="/",
                        secure=secure, httponly=True, samesite="Lax")
    response.set_cookie(REFRESH_COOKIE, issued.refresh_token, path="/", secure=secure,
                        httponly=True, samesite="Lax",
                        max_age=auth_of(request).config.refresh_ttl)


# sign-up, login, tokens -------------------------------------------------------------------------

async def sign_up(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.SignUp)
    email = await limit_email(request, body.email)
    await accounts.sign_up(auth_of(request), email, body.password, ctx_of(request))
    return accepted()


async def verify_email(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.TokenOnly)
    await limit_account(request, body.token)
    await accounts.verify_email(auth_of(request), body.token, ctx_of(request))
    return json({"status": "verified"})


async def login(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.Login)
    email = await limit_email(request, body.email)
    result = await accounts.login(auth_of(request), email, body.password, ctx_of(request))
    if isinstance(result, str):
        return json({"mfa_required": True, "mfa_token": result})
    return token_response(request, result)


async def login_mfa(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.MfaLogin)
    await limit_account(request, body.mfa_token)
    issued = await mfa.complete_login(auth_of(request), body.mfa_token, body.code,
                                      body.recovery_code, ctx_of(request))
    return token_response(request, issued)


async def refresh(request: web.Request) -> web.Response:
    token = request.cookies.get(REFRESH_COOKIE)
    if request.can_read_body:
        token = (await parse_json(request, schemas.Refresh)).refresh_token or token
    if not token:
        raise Problem(401, "a refresh token is required", title="Unauthenticated")
    await limit_account(request, token)
    return token_response(request, await sessions.refresh(auth_of(request), token,
                                                          ctx_of(request)))


async def logout(request: web.Request) -> web.Response:
    claims = claims_of(request)
    await sessions.revoke(auth_of(request), UUID(claims.sub), UUID(claims.sid), ctx_of(request),
                          "logout")
    response = web.Response(status=204)
    response.del_cookie(ACCESS_COOKIE, path="/")
    response.del_cookie(REFRESH_COOKIE, path="/")
    return response


async def jwks(request: web.Request) -> web.Response:
    response = json({"keys": auth_of(request).signing.published()})
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


async def me(request: web.Request) -> web.Response:
    claims = claims_of(request)
    async with auth_of(request).pool.acquire() as conn:
        account = await queries.user_by_id(conn, UUID(claims.sub))
        mfa_on = await mfa.enabled(conn, UUID(claims.sub))
    if account is None:
        raise not_found()
    return json({"id": claims.sub, "email": account["email"], "mfa_enabled": mfa_on,
                 "org": claims.org, "role": claims.role, "session_id": claims.sid})


# sessions ---------------------------------------------------------------------------------------

async def list_sessions(request: web.Request) -> web.Response:
    claims = claims_of(request)
    auth = auth_of(request)
    async with auth.pool.acquire() as conn:
        rows = await queries.sessions_of(conn, UUID(claims.sub), auth.now())
    return json([{"id": str(r["id"]), "created_at": r["created_at"].isoformat(),
                  "last_used_at": r["last_used_at"].isoformat(), "ip": r["ip"],
                  "user_agent": r["user_agent"], "current": str(r["id"]) == claims.sid}
                 for r in rows])


async def revoke_session(request: web.Request) -> web.Response:
    claims = claims_of(request)
    session_id = uuid_param(request, "session_id")
    if not await sessions.revoke(auth_of(request), UUID(claims.sub), session_id, ctx_of(request),
                                 "revoked_by_user"):
        raise not_found()
    return web.Response(status=204)


async def revoke_other_sessions(request: web.Request) -> web.Response:
    claims = claims_of(request)
    count = await sessions.revoke_all(auth_of(request), UUID(claims.sub), ctx_of(request),
                                      "revoked_by_user", keep=UUID(claims.sid))
    return json({"revoked": count})


# step-up and MFA --------------------------------------------------------------------------------

async def reauth(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.Reauth)
    claims = claims_of(request)
    await limit_account(request, claims.sub)
    token = await orgs.step_up(auth_of(request), claims, body.password, body.code,
                               ctx_of(request))
    return json({"access_token": token, "token_type": "Bearer",
                 "expires_in": auth_of(request).config.access_ttl})


async def enrol_totp(request: web.Request) -> web.Response:
    claims = claims_of(request)
    auth = auth_of(request)
    async with auth.pool.acquire() as conn:
        account = await queries.user_by_id(conn, UUID(claims.sub))
    assert account is not None
    secret, uri = await mfa.enrol(auth, UUID(claims.sub), account["email"])
    return json({"secret": secret, "otpauth_uri": uri}, 201)


async def confirm_totp(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.CodeOnly)
    claims = claims_of(request)
    auth = auth_of(request)
    codes = await mfa.confirm(auth, UUID(claims.sub), body.code, ctx_of(request))
    async with auth.pool.acquire() as conn:
        others = [r for r in await queries.sessions_of(conn, UUID(claims.sub), auth.now())
                  if str(r["id"]) != claims.sid]
    return json({"recovery_codes": codes, "other_sessions": len(others),
                 "end_other_sessions": "POST /sessions/revoke-others"})


async def disable_totp(request: web.Request) -> web.Response:
    claims = require_step_up(request)
    await mfa.disable(auth_of(request), UUID(claims.sub), ctx_of(request))
    return json({"status": "disabled", "end_other_sessions": "POST /sessions/revoke-others"})


# passwords and email ----------------------------------------------------------------------------

async def forgot_password(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.EmailOnly)
    email = await limit_email(request, body.email)
    await accounts.request_reset(auth_of(request), email, ctx_of(request))
    return accepted()


async def reset_password(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.ResetPassword)
    await limit_account(request, body.token)
    await accounts.reset_password(auth_of(request), body.token, body.new_password,
                                  ctx_of(request))
    return json({"status": "reset"})


async def change_password(request: web.Request) -> web.Response:
    claims = require_step_up(request)
    body = await parse_json(request, schemas.ChangePassword)
    ended = await accounts.change_password(auth_of(request), UUID(claims.sub), UUID(claims.sid),
                                           body.new_password, ctx_of(request))
    return json({"status": "changed", "other_sessions_ended": ended})


async def change_email(request: web.Request) -> web.Response:
    claims = require_step_up(request)
    body = await parse_json(request, schemas.ChangeEmail)
    await accounts.request_email_change(auth_of(request), UUID(claims.sub), body.new_email,
                                        ctx_of(request))
    return accepted()


async def confirm_email(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.TokenOnly)
    await limit_account(request, body.token)
    await accounts.confirm_email_change(auth_of(request), body.token, ctx_of(request))
    return json({"status": "changed"})


# orgs -------------------------------------------------------------------------------------------

async def switch_org(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.SwitchOrg)
    token = await orgs.switch(auth_of(request), claims_of(request), UUID(body.org_id),
                              ctx_of(request))
    return json({"access_token": token, "token_type": "Bearer",
                 "expires_in": auth_of(request).config.access_ttl})


# API keys ---------------------------------------------------------------------------------------

async def org_scope(request: web.Request) -> tuple[UUID, UUID, UUID]:
    """(org, project, actor) for a route under /orgs/{org_id}/projects/{project_id}: the shared
    rule for the org (argus_shared.scoping), then the roles the route declares, judged on the
    member's role in tenant-api at this moment (not the token's claim); the project must
    exist in the org (else 404)."""
    org_id, principal = scoping.path_org(request)
    project_id = uuid_param(request, "project_id")
    claims = claims_of(request)
    found = await membership.of_project(auth_of(request), UUID(principal.id), org_id,
                                        project_id, request.get(REQUEST_ID),
                                        membership.SignedIn(claims.idp, claims.amr))
    scoping.check_role(request, found.role)
    if found.mfa_missing(claims.amr):
        raise membership.mfa_required()
    return org_id, project_id, UUID(principal.id)


async def create_api_key(request: web.Request) -> web.Response:
    org_id, project_id, actor = await org_scope(request)
    body = await parse_json(request, schemas.NewApiKey)
    secret, view = await api_keys.create(auth_of(request), org_id, project_id, actor, body.name,
                                         body.scopes, body.expires_in_days, ctx_of(request))
    return json({"key": secret, "api_key": view}, 201)


async def list_api_keys(request: web.Request) -> web.Response:
    org_id, project_id, actor = await org_scope(request)
    return json(await api_keys.list_for_project(auth_of(request), org_id, project_id, actor))


async def rotate_api_key(request: web.Request) -> web.Response:
    org_id, project_id, actor = await org_scope(request)
    body = await parse_json(request, schemas.RotateApiKey)
    secret, view = await api_keys.rotate(auth_of(request), org_id, project_id,
                                         uuid_param(request, "key_id"), actor,
                                         body.overlap_seconds, ctx_of(request))
    return json({"key": secret, "api_key": view}, 201)


async def revoke_api_key(request: web.Request) -> web.Response:
    org_id, project_id, actor = await org_scope(request)
    await api_keys.revoke(auth_of(request), org_id, project_id, uuid_param(request, "key_id"),
                          actor, ctx_of(request))
    return web.Response(status=204)


# single sign-on (argus_auth.sso) ---------------------------------------------------------------

def _state_cookie(request: web.Request, response: web.StreamResponse,
                  started: sso.Started) -> None:
    response.set_cookie(sso.STATE_COOKIE, started.cookie, max_age=started.max_age, path="/",
                        secure=auth_of(request).config.secure_cookies, httponly=True,
                        samesite="Lax")


async def sso_providers(request: web.Request) -> web.Response:
    return json([{"name": name, "display_name": client.provider.display_name,
                  "issuer": client.provider.issuer, "start": f"/sso/{name}/start"}
                 for name, client in auth_of(request).oidc.items()])


async def sso_discover(request: web.Request) -> web.Response:
    query = parse_query(request, schemas.SsoDiscoverQuery)
    email = await limit_email(request, query.email)
    found = await sso_orgs.discover(auth_of(request), email)
    if found is None:
        raise Problem(404, "no organisation signs in this email's domain through its SSO")
    return json(found)


async def sso_start(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, schemas.SsoStartQuery)
    await _limit_ip(request)
    started = await sso.start(auth_of(request), request.match_info["provider"], query.return_to)
    response = web.Response(status=302, headers={"Location": started.url,
                                                 "Cache-Control": "no-store"})
    _state_cookie(request, response, started)
    return response


async def sso_callback(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, schemas.SsoCallbackQuery)
    await _limit_ip(request)
    params = {k: v for k, v in msgspec.structs.asdict(query).items() if v is not None}
    done = await sso.callback(auth_of(request), request.match_info["provider"], params,
                              request.cookies.get(sso.STATE_COOKIE), ctx_of(request))
    response = web.Response(status=303, headers={"Location": done.return_to,
                                                 "Cache-Control": "no-store"})
    secure = auth_of(request).config.secure_cookies
    # a __Host- cookie is only replaced by one that is Secure too
    response.del_cookie(sso.STATE_COOKIE, path="/", secure=secure, httponly=True,
                        samesite="Lax")
    if done.issued is not None:
        _session_cookies(request, response, done.issued)
    if done.access_token is not None:
        response.set_cookie(ACCESS_COOKIE, done.access_token, path="/", secure=secure,
                            httponly=True, samesite="Lax",
                            max_age=auth_of(request).config.access_ttl)
    return response


async def sso_link(request: web.Request) -> web.Response:
    """Link a provider to the signed-in account: a sign-in within the step-up window (the
    password, or a provider already linked) is the proof that it is the owner asking."""
    claims = require_step_up(request)
    body = await parse_json(request, schemas.SsoStart)
    started = await sso.start(auth_of(request), request.match_info["provider"], body.return_to,
                              mode=sso.LINK, user_id=UUID(claims.sub),
                              session_id=UUID(claims.sid))
    response = json({"authorization_url": started.url})
    _state_cookie(request, response, started)
    return response


async def sso_reauth(request: web.Request) -> web.Response:
    claims = claims_of(request)
    body = await parse_json(request, schemas.SsoStart)
    started = await sso.start(auth_of(request), request.match_info["provider"], body.return_to,
                              mode=sso.REAUTH, user_id=UUID(claims.sub),
                              session_id=UUID(claims.sid), step_up=True)
    response = json({"authorization_url": started.url})
    _state_cookie(request, response, started)
    return response


async def sso_logout(request: web.Request) -> web.Response:
    """End this session, and say where to end the provider's session too (RP-initiated
    logout), when the session signed in through one that advertises it."""
    claims = claims_of(request)
    auth = auth_of(request)
    async with auth.pool.acquire() as conn:
        session = await queries.session_by_id(conn, UUID(claims.sid))
    await sessions.revoke(auth, UUID(claims.sub), UUID(claims.sid), ctx_of(request), "logout")
    provider = session["idp_provider"] if session is not None else None
    url = await sso.logout_url(auth, provider)
    if "text/html" in request.headers.get("Accept", ""):  # a browser's form: go there
        response = web.Response(status=303, headers={"Location": url or "/",
                                                     "Cache-Control": "no-store"})
    else:
        response = json({"end_session_url": url})
    response.del_cookie(ACCESS_COOKIE, path="/")
    response.del_cookie(REFRESH_COOKIE, path="/")
    return response


async def list_identities(request: web.Request) -> web.Response:
    return json(await sso.identities(auth_of(request), UUID(claims_of(request).sub)))


async def unlink_identity(request: web.Request) -> web.Response:
    claims = require_step_up(request)
    await sso.unlink(auth_of(request), UUID(claims.sub), uuid_param(request, "identity_id"),
                     ctx_of(request))
    return web.Response(status=204)


PUBLIC: Public = {"auth": "public", "tags": ("accounts",)}
KEYS_PATH = "/orgs/{org_id}/projects/{project_id}/api-keys"
# what handlers answer besides what their declarations imply (argus_shared.openapi)
LINK_USED: Answers = {400: "The link's token is invalid, used or expired"}
BREACHED: Answers = {422: "The password appears in known data breaches"}
STEP_UP: Answers = {
    401: Answer("Step-up required: sign in again (POST /reauth) within 5 minutes",
                problems=(STEP_UP_REQUIRED,))}
MEMBERSHIP: Answers = {
    503: Answer("Memberships cannot be checked right now (tenant-api is not answering)",
                headers={"Retry-After": "seconds to wait"})}
KEY_ADMIN = {**MEMBERSHIP, 403: Answer(
    "The org requires MFA for your role, or a session signed in through its SSO",
    problems=(MFA_REQUIRED, SSO_REQUIRED))}

SSO: Public = {"auth": "public", "tags": ("sso",)}
SSO_STATE_ANSWER = Answer("The callback is not this browser's sign-in: no or another state "
                          "cookie, a wrong or spent state, too late", problems=(SSO_STATE,))
SSO_IDP_DOWN: Answers = {
    502: Answer("The identity provider did not answer", problems=(IDP_UNAVAILABLE,)),
    503: Answer("An org's SSO connection cannot be read right now (tenant-api is not "
                "answering)", headers={"Retry-After": "seconds to wait"})}
SSO_START: Answers = {400: "return_to is not a relative path on this site",
                      404: "No such provider (configured, or an org's `org-<org id>`)",
                      **SSO_IDP_DOWN}
SSO_ROUTES: list[Route] = [
    Route("GET", "/sso/providers", sso_providers, "The identity providers one can sign in with",
          response=list[schemas.SsoProviderView], **SSO),
    Route("GET", "/sso/discover", sso_discover, "Which org's SSO signs in this email's "
          "domain (asked before a password; about domains only, never accounts)",
          query=schemas.SsoDiscoverQuery, response=schemas.SsoDiscovered,
          responses={404: "No org has verified the domain with an SSO connection",
                     503: Answer("tenant-api is not answering",
                                 headers={"Retry-After": "seconds to wait"})}, **SSO),
    Route("GET", "/sso/{provider}/start", sso_start, "Start signing in with a provider: a "
          "redirect to it, with the sealed __Host-argus_sso state cookie",
          query=schemas.SsoStartQuery, status=302,
          responses={302: Answer("To the provider's authorization endpoint",
                                 headers={"Location": "the provider's authorization URL",
                                          "Set-Cookie": "__Host-argus_sso (the sign-in state)"}),
                     **SSO_START}, **SSO),
    Route("GET", "/sso/{provider}/callback", sso_callback, "Where the provider sends the "
          "browser back: signs in (new session cookies), links or steps up, then redirects "
          "to return_to", query=schemas.SsoCallbackQuery, status=303,
          responses={303: Answer("Back to return_to", headers={
                         "Location": "the return_to path",
                         "Set-Cookie": "__Host-argus_access, __Host-argus_refresh"}),
                     400: SSO_STATE_ANSWER,
                     401: Answer("The provider's answer failed a check, or it refused",
                                 problems=(SSO_REFUSED,)),
                     403: Answer("The provider's email is not verified, or not of an allowed "
                                 "domain", problems=(SSO_EMAIL_UNVERIFIED,
                                                     SSO_DOMAIN_NOT_ALLOWED)),
                     404: "No such provider",
                     409: Answer("An account has this email: sign in with the password and "
                                 "link; or the identity is another account's",
                                 problems=(SSO_LINK_REQUIRED, IDENTITY_IN_USE)),
                     **SSO_IDP_DOWN}, **SSO),
    Route("POST", "/sso/{provider}/link", sso_link, "Link a provider to my account (step-up "
          "required): the URL to send the browser to, and the state cookie",
          body=schemas.SsoStart, response=schemas.SsoAuthorization,
          responses={**STEP_UP, **SSO_START}, tags=("sso",)),
    Route("POST", "/sso/{provider}/reauth", sso_reauth, "Step up through a linked provider "
          "(prompt=login, max_age=0): the URL to send the browser to",
          body=schemas.SsoStart, response=schemas.SsoAuthorization, responses=SSO_START,
          tags=("sso",)),
    Route("POST", "/sso/logout", sso_logout, "End this session; the provider's end-session "
          "URL when it advertises one (RP-initiated logout)", response=schemas.SsoLogout,
          responses={303: Answer("Asked with Accept: text/html (a browser's form): a redirect "
                                 "to the provider's end-session URL, or to /",
                                 headers={"Location": "where to go"})},
          tags=("sso",)),
    Route("GET", "/account/identities", list_identities, "My linked identity providers",
          response=list[schemas.IdentityView], tags=("sso",)),
    Route("DELETE", "/account/identities/{identity_id}", unlink_identity,
          "Unlink an identity provider (step-up required; never the last way to sign in)",
          status=204, responses={**STEP_UP, 409: Answer(
              "It is the account's last way to sign in", problems=(LAST_SIGN_IN_METHOD,))},
          tags=("sso",)),
]

ROUTES: list[Route] = [
    Route("POST", "/signup", sign_up, "Sign up (answers the same for a known email)",
          body=schemas.SignUp, response=schemas.Accepted, status=202, **PUBLIC),
    Route("POST", "/verify-email", verify_email, "Verify an email with its token",
          body=schemas.TokenOnly, responses=LINK_USED, **PUBLIC),
    Route("POST", "/login", login, "Log in with email and password: tokens, or an MFA "
          "challenge to complete at POST /login/mfa", body=schemas.Login,
          response=(schemas.Tokens, schemas.MfaRequired),
          responses={401: "Wrong email or password", 403: "The email is not verified yet",
                     429: Answer("Locked for a while after too many failed logins",
                                 headers={"Retry-After": "seconds until unlocked"})},
          **PUBLIC),
    Route("POST", "/login/mfa", login_mfa, "Complete a login with a TOTP or recovery code",
          body=schemas.MfaLogin, response=schemas.Tokens,
          responses={401: Answer("The challenge is invalid or expired, or the code is not "
                                 "valid or was already used", problems=(CODE_USED,)),
                     422: "Send either code or recovery_code"}, **PUBLIC),
    Route("POST", "/token/refresh", refresh, "Rotate a refresh token for new tokens (the body, "
          "or the refresh cookie)", body=schemas.Refresh, response=schemas.Tokens,
          responses={401: "No refresh token, or not a valid one",
                     503: Answer("The session changed while it was refreshed, or memberships "
                                 "cannot be checked right now: try again",
                                 headers={"Retry-After": "seconds to wait"})}, **PUBLIC),
    Route("POST", "/password/forgot", forgot_password, "Request a password reset email",
          body=schemas.EmailOnly, response=schemas.Accepted, status=202, **PUBLIC),
    Route("POST", "/password/reset", reset_password, "Reset a password with its token",
          body=schemas.ResetPassword, responses={**LINK_USED, **BREACHED}, **PUBLIC),
    Route("POST", "/email/confirm", confirm_email, "Confirm an email change with its token",
          body=schemas.TokenOnly, responses=LINK_USED, **PUBLIC),
    Route("GET", "/.well-known/jwks.json", jwks, "Public keys of access tokens", auth="public",
          tags=("tokens",)),
    Route("GET", "/me", me, "The signed-in user", responses={404: "The account is gone"},
          tags=("accounts",)),
    Route("POST", "/logout", logout, "End this session", status=204, tags=("sessions",)),
    Route("GET", "/sessions", list_sessions, "My sessions", tags=("sessions",)),
    Route("DELETE", "/sessions/{session_id}", revoke_session, "End one of my sessions",
          status=204, tags=("sessions",)),
    Route("POST", "/sessions/revoke-others", revoke_other_sessions, "End my other sessions",
          tags=("sessions",)),
    Route("POST", "/reauth", reauth, "Step-up: prove the password or a TOTP code again",
          body=schemas.Reauth,
          responses={401: Answer("Re-authentication failed, or the account has MFA and no "
                                 "code was sent", problems=(SECOND_FACTOR_REQUIRED, CODE_USED)),
                     422: "Neither password nor code, or a code for an account without MFA",
                     **MEMBERSHIP}, tags=("sessions",)),
    Route("POST", "/mfa/totp", enrol_totp, "Start TOTP enrolment", status=201,
          response=schemas.TotpEnrolment, responses={409: "A TOTP factor is already enabled"},
          tags=("mfa",)),
    Route("POST", "/mfa/totp/confirm", confirm_totp, "Confirm TOTP; returns recovery codes once",
          body=schemas.CodeOnly, response=schemas.RecoveryCodes,
          responses={409: "No TOTP enrolment was started", 422: "The code is not valid"},
          tags=("mfa",)),
    Route("DELETE", "/mfa/totp", disable_totp, "Disable TOTP (step-up required)",
          responses={**STEP_UP, 409: "MFA is not enabled"}, tags=("mfa",)),
    Route("POST", "/password/change", change_password, "Change password (step-up required)",
          body=schemas.ChangePassword, responses={**STEP_UP, **BREACHED}, tags=("accounts",)),
    Route("POST", "/email/change", change_email, "Change email (step-up required)",
          body=schemas.ChangeEmail, status=202, responses=STEP_UP, tags=("accounts",)),
    Route("POST", "/orgs/switch", switch_org, "An access token scoped to one of my orgs",
          body=schemas.SwitchOrg, responses={**KEY_ADMIN, 404: "Not a member of that org"},
          tags=("orgs",)),
    Route("POST", KEYS_PATH, create_api_key, "Issue an API key (shown once)",
          body=schemas.NewApiKey, response=schemas.ApiKeyCreated, status=201,
          roles=ADMIN_ROLES, responses=KEY_ADMIN, tags=("api-keys",)),
    Route("GET", KEYS_PATH, list_api_keys, "A project's API keys", roles=ADMIN_ROLES,
          responses=KEY_ADMIN, tags=("api-keys",)),
    Route("POST", KEYS_PATH + "/{key_id}/rotate", rotate_api_key,
          "Rotate an API key (new key shown once)", body=schemas.RotateApiKey,
          response=schemas.ApiKeyCreated, status=201, roles=ADMIN_ROLES, responses=KEY_ADMIN,
          tags=("api-keys",)),
    Route("DELETE", KEYS_PATH + "/{key_id}", revoke_api_key, "Revoke an API key", status=204,
          roles=ADMIN_ROLES, responses=KEY_ADMIN, tags=("api-keys",)),
    *SSO_ROUTES,
    *page_routes(),
]

