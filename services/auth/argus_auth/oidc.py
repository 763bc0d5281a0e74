"""The OpenID Connect relying party, on authlib: the authorization URL (code flow, PKCE S256),
the code exchange (authlib's token request and client authentication, sent with aiohttp), and
the ID token's checks (joserfc signature with an asymmetric allow-list, authlib's `CodeIDToken`
for iss, aud, azp, exp, iat, nonce, at_hash, auth_time). Discovery documents and JWKS are
fetched over HTTP and cached (`SsoConfig.metadata_ttl`); an unknown `kid` refetches the JWKS
(at most every `jwks_min_refetch` seconds), which is how a provider's key rotation is picked up.
Nothing here touches the database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from argus_auth.sso_providers import ALGORITHMS, TENANT_PLACEHOLDER, Provider, SsoConfig

log = logging.getLogger("argus.auth.oidc")
DISCOVERY = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 256 * 1024


class IdpUnavailable(Exception):
    """The provider did not answer (or not with a usable document)."""


class IdTokenRefused(Exception):
    """The provider's answer failed a check; the message says which (never a secret)."""


@dataclass
class Metadata:
    document: dict[str, Any]
    fetched_at: float
    keys: KeySet | None = None
    keys_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Verified:
    """An ID token that passed every check: the identity is (issuer, subject)."""

    issuer: str
    subject: str
    claims: dict[str, Any]
    id_token: str


@dataclass(frozen=True)
class Request:
    """What a sign-in sends to the provider and keeps (sealed, in the state cookie) to check
    what comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class OidcClient:
    """One per provider; shares the service's aiohttp session."""

    def __init__(self, provider: Provider, config: SsoConfig, http: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time) -> None:
        self.provider, self.config, self.http, self.clock = provider, config, http, clock
        self._meta: Metadata | None = None
        self._lock = asyncio.Lock()

    # discovery and keys --------------------------------------------------------------------

    async def metadata(self) -> Metadata:
        meta = self._meta
        if meta is not None and time.monotonic() - meta.fetched_at < self.config.metadata_ttl:
            return meta
        async with self._lock:
            if self._meta is None or self._meta is meta:
                document = await self._get_json(self.provider.issuer + DISCOVERY)
                self._check_document(document)
                self._meta = Metadata(document, time.monotonic())
            return self._meta

    def _check_document(self, document: dict[str, Any]) -> None:
        if not self.provider.document_issuer_ok(document.get("issuer")):
            raise IdpUnavailable("the discovery document names another issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise IdpUnavailable(f"the discovery document has no {name}")
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise IdpUnavailable("the provider does not support PKCE S256")

    async def key_set(self, meta: Metadata, kid: str | None) -> KeySet:
        """The JWKS, fetched when missing, stale, or not holding `kid` (rotation)."""
        asked = time.monotonic()
        stale = meta.keys is None or asked - meta.keys_at >= self.config.metadata_ttl
        unknown = meta.keys is not None and kid is not None and not _has_kid(meta.keys, kid)
        if stale or (unknown and asked - meta.keys_at >= self.config.jwks_min_refetch):
            async with meta.lock:
                if meta.keys is None or meta.keys_at <= asked:  # not refetched meanwhile
                    document = await self._get_json(meta.document["jwks_uri"])
                    try:
                        meta.keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                    except (JoseError, ValueError, TypeError, KeyError) as exc:
                        raise IdpUnavailable("the provider's JWKS is not a key set") from exc
                    meta.keys_at = time.monotonic()
        assert meta.keys is not None
        return meta.keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout)
        try:
            async with self.http.get(url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise IdpUnavailable(f"{url} answered {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IdpUnavailable(f"{url} did not answer") from exc
        return _json_object(body, url)

    # the flow ------------------------------------------------------------------------------

    async def authorization(self, redirect_uri: str, **extra: str) -> Request:
        """The URL to send the browser to, with a fresh state, nonce and PKCE verifier."""
        meta = await self.metadata()
        client = OAuth2Client(None, client_id=self.provider.client_id,
                              scope=" ".join(self.provider.scopes), redirect_uri=redirect_uri,
                              code_challenge_method="S256")
        verifier, nonce = generate_token(64), generate_token(32)
        url, state = client.create_authorization_url(
            meta.document["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
            **extra)
        return Request(url, state, nonce, verifier)

    async def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207: an `iss` in the authorization response must be this provider's, checked
        before the code goes anywhere (a mix-up attack sends it to another's token endpoint)."""
        if iss is None:
            return
        document_issuer = (await self.metadata()).document["issuer"]
        if self.provider.multi_tenant:
            head, _, tail = document_issuer.partition(TENANT_PLACEHOLDER)
            tenant = iss[len(head):len(iss) - len(tail)] if iss.startswith(head) \
                and iss.endswith(tail) else ""
            ok = iss in self.provider.expected_issuers(document_issuer, tenant)
        else:
            ok = iss in self.provider.expected_issuers(document_issuer, None)
        if not ok:
            raise IdTokenRefused("the authorization response comes from another issuer (iss)")

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for a code (authlib builds the request and the client
        authentication; an OAuth error there is a refusal)."""
        meta = await self.metadata()
        url = meta.document["token_endpoint"]
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri,
                                     code_verifier=code_verifier)
        method = _auth_method(meta.document)
        auth = ClientAuth(self.provider.client_id, self.provider.client_secret, method)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json"}
        url, headers, body = auth.prepare("POST", url, headers, body)
        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout)
        try:
            async with self.http.post(url, data=body, headers=headers, timeout=timeout,
                                      allow_redirects=False) as response:
                status = response.status
                raw = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IdpUnavailable("the token endpoint did not answer") from exc
        answer = _json_object(raw, "the token endpoint")
        if status != 200 or "error" in answer:
            error = str(answer.get("error", status))[:64]
            raise IdTokenRefused(f"the provider refused the code ({error})")
        if not isinstance(answer.get("id_token"), str):
            raise IdTokenRefused("the provider's answer has no ID token")
        return answer

    async def verify(self, tokens: dict[str, Any], nonce: str,
                     max_age: int | None = None) -> Verified:
        """Every check of OIDC Core 3.1.3.7 on the ID token; raises IdTokenRefused."""
        meta = await self.metadata()
        id_token = tokens["id_token"]
        algorithms = _algorithms(meta.document)
        registry = JWSRegistry(algorithms=algorithms)
        try:
            header = _header(id_token)
            if header.get("alg") not in algorithms:
                raise IdTokenRefused(f"the ID token's algorithm ({header.get('alg')!s:.16}) "
                                     "is not allowed")
            kid = header.get("kid") if isinstance(header.get("kid"), str) else None
            keys = await self.key_set(meta, kid)
            token = jwt.decode(id_token, keys, algorithms=algorithms, registry=registry)
        except IdTokenRefused:
            raise
        except (JoseError, ValueError, TypeError) as exc:
            raise IdTokenRefused(f"the ID token's signature does not verify "
                                 f"({type(exc).__name__})") from exc
        return self._check_claims(token.claims, dict(token.header), tokens, nonce, max_age,
                                  meta, id_token)

    def _check_claims(self, claims: dict[str, Any], header: dict[str, Any],
                      tokens: dict[str, Any], nonce: str, max_age: int | None, meta: Metadata,
                      id_token: str) -> Verified:
        issuers = self.provider.expected_issuers(meta.document["issuer"], claims.get("tid"))
        if not issuers:
            raise IdTokenRefused("the ID token's tenant (tid) is not usable")
        options: dict[str, Any] = {
            "iss": {"essential": True, "values": list(issuers)},
            "aud": {"essential": True, "value": self.provider.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True}, "iat": {"essential": True},
        }
        params: dict[str, Any] = {"nonce": nonce, "client_id": self.provider.client_id}
        if isinstance(tokens.get("access_token"), str):
            params["access_token"] = tokens["access_token"]
        if max_age is not None:
            params["max_age"] = max_age
        now = int(self.clock())
        try:
            CodeIDToken(claims, header, options, params).validate(now=now,
                                                                  leeway=self.config.leeway)
        except JoseError as exc:
            raise IdTokenRefused(f"the ID token is not valid: {exc.error}"
                                 f" {getattr(exc, 'description', '')}".strip()) from exc
        if isinstance(claims["aud"], list) and len(claims["aud"]) > 1 \
                and claims.get("azp") != self.provider.client_id:
            raise IdTokenRefused("the ID token has several audiences and is not ours (azp)")
        if now - claims["iat"] > self.config.max_token_age:
            raise IdTokenRefused("the ID token was issued too long ago (iat)")
        if max_age is not None and not _fresh(claims.get("auth_time"), max_age, now,
                                             self.config.leeway):
            raise IdTokenRefused("the provider did not sign you in again (auth_time)")
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
            raise IdTokenRefused("the ID token's subject is not usable")
        return Verified(claims["iss"], claims["sub"], claims, id_token)

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout, when the provider advertises an end_session_endpoint."""
        try:
            meta = await self.metadata()
        except IdpUnavailable:
            return None
        endpoint = meta.document.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        return str(add_params_to_uri(endpoint, [
            ("client_id", self.provider.client_id),
            ("post_logout_redirect_uri", post_logout_redirect_uri)]))


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _algorithms(document: dict[str, Any]) -> list[str]:
    offered = document.get("id_token_signing_alg_values_supported")
    if not isinstance(offered, list):
        return ["RS256"]  # OIDC Discovery: RS256 is the default and must be supported
    return [alg for alg in ALGORITHMS if alg in offered]


def _auth_method(document: dict[str, Any]) -> str:
    offered = document.get("token_endpoint_auth_methods_supported")
    if isinstance(offered, list) and "client_secret_basic" not in offered \
            and "client_secret_post" in offered:
        return "client_secret_post"
    return "client_secret_basic"


def _header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    try:
        decoded = _json_object(urlsafe_b64decode(head.encode()), "the ID token")
    except (IdpUnavailable, ValueError) as exc:
        raise IdTokenRefused("the ID token is not a JWS") from exc
    return decoded


def _fresh(auth_time: object, max_age: int, now: int, leeway: int) -> bool:
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        return False
    return now - auth_time <= max_age + leeway


def _json_object(raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise IdpUnavailable(f"{where} answered too much")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise IdpUnavailable(f"{where} did not answer JSON") from exc
    if not isinstance(value, dict):
        raise IdpUnavailable(f"{where} did not answer a JSON object")
    return value
