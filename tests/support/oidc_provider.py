"""A real OpenID Provider for the SSO tests, run as its own process on 127.0.0.1:

    python tests/support/oidc_provider.py --port PORT

Each tenant is an issuer of its own, `http://127.0.0.1:PORT/<tenant>/v2.0`, with its own RSA
signing keys, clients and test user; the tenant `organizations` is Microsoft Entra's
multi-tenant endpoint: its discovery document's issuer is the `{tenantid}` template and each
token's `iss` carries the user's `tid`. Under `<issuer>/`:

- `.well-known/openid-configuration`, `jwks` (the published keys), `authorize` (code flow,
  PKCE S256 required; consent is automatic for the tenant's test user; `prompt=login` or
  `max_age=0` signs the user in again, a new `auth_time`), `token` (client_secret_basic or
  _post, the code spent once, the PKCE verifier checked with authlib's S256 comparison, an ID
  token signed with joserfc), `logout` (the end-session endpoint);
- test-only controls: `POST control/client` (client_id, client_secret, redirect_uris),
  `POST control/user` (the claims of who signs in next, and an `attack` on the ID token it
  gets: wrong_nonce, other_key, alg_none, hs256, wrong_aud, wrong_iss, expired, bad_at_hash,
  two_audiences, wrong_tid), `POST control/rotate` (a new current signing key; `drop_old`
  unpublishes the others), `GET control/log` (what the token endpoint answered)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

MULTI_TENANT = "organizations"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Tenant:
    name: str
    keys: list[RSAKey] = field(default_factory=lambda: [RSAKey.generate_key(2048, auto_kid=True)])
    published: list[RSAKey] = field(default_factory=list)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    user: dict[str, Any] | None = None
    attack: str | None = None
    auth_time: int | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048))

    def __post_init__(self) -> None:
        self.published = list(self.keys)


class Provider:
    def __init__(self, port: int) -> None:
        self.port = port
        self.tenants: dict[str, Tenant] = {}

    def base(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/{tenant}/v2.0"

    def tenant(self, request: web.Request) -> Tenant:
        name = request.match_info["tenant"]
        if name not in self.tenants:
            self.tenants[name] = Tenant(name)
        return self.tenants[name]

    def token_issuer(self, tenant: Tenant, user: dict[str, Any]) -> str:
        if tenant.name == MULTI_TENANT:
            return self.base(str(user.get("tid", "")))
        return self.base(tenant.name)

    # discovery and keys --------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        tenant = self.tenant(request)
        base = self.base(tenant.name)
        issuer = self.base("{tenantid}") if tenant.name == MULTI_TENANT else base
        return web.json_response({
            "issuer": issuer, "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
            "end_session_endpoint": f"{base}/logout",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
            "authorization_response_iss_parameter_supported": tenant.name != MULTI_TENANT,
        })

    async def jwks(self, request: web.Request) -> web.Response:
        tenant = self.tenant(request)
        return web.json_response(KeySet(list(tenant.published)).as_dict(private=False))

    # the flow ------------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        tenant, q = self.tenant(request), request.query
        client = tenant.clients.get(q.get("client_id", ""))
        if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
            return web.json_response({"error": "invalid_client"}, status=400)
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split() \
                or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self._back(q, {"error": "invalid_request"})
        if tenant.user is None:
            return self._back(q, {"error": "login_required"})
        now = int(time.time())
        if tenant.auth_time is None or q.get("prompt") == "login" or q.get("max_age") == "0":
            tenant.auth_time = now
        code = secrets.token_urlsafe(24)
        tenant.codes[code] = {"client_id": q["client_id"], "redirect_uri": q["redirect_uri"],
                              "challenge": q["code_challenge"], "nonce": q.get("nonce"),
                              "user": dict(tenant.user), "attack": tenant.attack,
                              "auth_time": tenant.auth_time, "used": False,
                              "expires": now + 60}
        back = {"code": code}
        if tenant.name != MULTI_TENANT:  # RFC 9207 (Entra's multi-tenant endpoint sends none)
            back["iss"] = self.base(tenant.name)
        return self._back(q, back)

    def _back(self, q: Any, params: dict[str, str]) -> web.Response:
        if q.get("state"):
            params["state"] = q["state"]
        sep = "&" if "?" in q["redirect_uri"] else "?"
        raise web.HTTPFound(q["redirect_uri"] + sep + urlencode(params))

    async def token(self, request: web.Request) -> web.Response:
        tenant = self.tenant(request)
        form = await request.post()
        client_id, secret = _client_credentials(request, form)
        client = tenant.clients.get(client_id or "")
        if client is None or not hmac.compare_digest(client["client_secret"], secret or ""):
            return self._error(tenant, "invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._error(tenant, "unsupported_grant_type")
        grant = tenant.codes.get(str(form.get("code", "")))
        if grant is None or grant["used"] or grant["expires"] < time.time() \
                or grant["client_id"] != client_id:
            if grant is not None:
                grant["used"] = True
            return self._error(tenant, "invalid_grant")
        grant["used"] = True  # spent whatever follows: a replay is refused
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._error(tenant, "invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        if not verifier or not compare_s256_code_challenge(verifier, grant["challenge"]):
            return self._error(tenant, "invalid_grant")
        access_token = secrets.token_urlsafe(24)
        id_token = self.id_token(tenant, grant, client_id or "", access_token)
        tenant.log.append({"status": 200})
        return web.json_response({"access_token": access_token, "token_type": "Bearer",
                                  "expires_in": 3600, "id_token": id_token,
                                  "scope": "openid email profile"})

    def _error(self, tenant: Tenant, error: str, status: int = 400) -> web.Response:
        tenant.log.append({"status": status, "error": error})
        return web.json_response({"error": error}, status=status)

    def id_token(self, tenant: Tenant, grant: dict[str, Any], client_id: str,
                 access_token: str) -> str:
        user, attack, now = grant["user"], grant["attack"], int(time.time())
        claims: dict[str, Any] = {
            "iss": self.token_issuer(tenant, user), "sub": user["sub"], "aud": client_id,
            "azp": client_id, "iat": now, "exp": now + 300, "auth_time": grant["auth_time"],
            "nonce": grant["nonce"], "at_hash": create_half_hash(access_token, "RS256"),
        }
        claims["at_hash"] = claims["at_hash"].decode() if isinstance(claims["at_hash"], bytes) \
            else claims["at_hash"]
        for name in ("email", "email_verified", "amr", "tid", "xms_edov", "name", "hd"):
            if name in user:
                claims[name] = user[name]
        claims = self._attacked(tenant, claims, attack)
        key = tenant.keys[0]
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        if attack == "alg_none":
            return f"{b64(json.dumps({'alg': 'none', 'kid': key.kid}).encode())}." \
                   f"{b64(json.dumps(claims).encode())}."
        if attack == "hs256":  # an HMAC keyed with the public key, a classic confusion
            head = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
            body = b64(json.dumps(claims).encode())
            public = json.dumps(key.as_dict(private=False)).encode()
            mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{b64(mac)}"
        if attack == "other_key":
            return jwt.encode(header, claims, tenant.other_key)
        return jwt.encode(header, claims, key)

    def _attacked(self, tenant: Tenant, claims: dict[str, Any],
                  attack: str | None) -> dict[str, Any]:
        now = int(time.time())
        changes: dict[str, dict[str, Any]] = {
            "wrong_nonce": {"nonce": "not-the-one-sent"},
            "wrong_aud": {"aud": "someone-else", "azp": "someone-else"},
            "wrong_iss": {"iss": self.base("evil")},
            "expired": {"iat": now - 7200, "exp": now - 3600},
            "bad_at_hash": {"at_hash": b64(b"0123456789abcdef")},
            "two_audiences": {"aud": [claims["aud"], "another-client"], "azp": "another-client"},
            "wrong_tid": {"tid": "00000000-0000-0000-0000-00000000beef"},
        }
        return {**claims, **changes.get(attack or "", {})}

    async def logout(self, request: web.Request) -> web.Response:
        tenant = self.tenant(request)
        tenant.auth_time = None
        return web.Response(text="signed out")

    # test controls -------------------------------------------------------------------------

    async def control_client(self, request: web.Request) -> web.Response:
        tenant, body = self.tenant(request), await request.json()
        tenant.clients[body["client_id"]] = body
        return web.json_response({"ok": True})

    async def control_user(self, request: web.Request) -> web.Response:
        tenant, body = self.tenant(request), await request.json()
        tenant.attack = body.pop("attack", None)
        if tenant.user is None or tenant.user.get("sub") != body.get("sub"):
            tenant.auth_time = None
        tenant.user = body
        return web.json_response({"ok": True})

    async def control_rotate(self, request: web.Request) -> web.Response:
        tenant, body = self.tenant(request), await request.json()
        key = RSAKey.generate_key(2048, auto_kid=True)
        tenant.keys.insert(0, key)
        tenant.published = [key] if body.get("drop_old") else [key, *tenant.published]
        return web.json_response({"kid": key.kid})

    async def control_log(self, request: web.Request) -> web.Response:
        return web.json_response(self.tenant(request).log)

    def app(self) -> web.Application:
        app = web.Application()
        prefix = "/{tenant}/v2.0"
        app.router.add_get(prefix + "/.well-known/openid-configuration", self.discovery)
        app.router.add_get(prefix + "/jwks", self.jwks)
        app.router.add_get(prefix + "/authorize", self.authorize)
        app.router.add_post(prefix + "/token", self.token)
        app.router.add_get(prefix + "/logout", self.logout)
        app.router.add_post(prefix + "/control/client", self.control_client)
        app.router.add_post(prefix + "/control/user", self.control_user)
        app.router.add_post(prefix + "/control/rotate", self.control_rotate)
        app.router.add_get(prefix + "/control/log", self.control_log)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def _client_credentials(request: web.Request, form: Any) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None, None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(Provider(args.port).app(), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
