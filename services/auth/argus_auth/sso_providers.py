"""OpenID Connect providers as configuration: any number, each from `ARGUS_SSO_<NAME>_*`
variables and a client secret file, with presets for Google and Microsoft Entra ID.

    ARGUS_SSO_PROVIDERS=google,microsoft,acme
    ARGUS_SSO_GOOGLE_CLIENT_ID=...             ARGUS_SSO_GOOGLE_CLIENT_SECRET_FILE=/run/secrets/g
    ARGUS_SSO_MICROSOFT_TENANT=organizations   (or a tenant id: a single-tenant app)
    ARGUS_SSO_ACME_ISSUER=https://idp.acme.example   ARGUS_SSO_ACME_PRESET=oidc
    ARGUS_SSO_<NAME>_SCOPES="openid email profile"   ARGUS_SSO_<NAME>_ALLOWED_DOMAINS=acme.example
    ARGUS_SSO_REDIRECT_BASE=https://app.example/auth  (default: ARGUS_PUBLIC_URL + /auth)

The redirect URI registered at the provider is `<redirect base>/sso/<name>/callback`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from argus_shared.settings import ConfigError, Env

GOOGLE_ISSUER = "https://accounts.google.com"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
TENANT_PLACEHOLDER = "{tenantid}"
# Entra's multi-tenant endpoints: the discovery document's issuer is a template, and a token's
# `iss` must be that template with the token's own `tid` in it
MULTI_TENANT = ("organizations", "common", "consumers")
PRESETS = ("google", "microsoft", "oidc")
# asymmetric signatures only: never `none`, never an HMAC keyed with a public value
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")
DEFAULT_SCOPES = ("openid", "email", "profile")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_TENANT = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


@dataclass(frozen=True)
class Provider:
    name: str
    display_name: str
    preset: str
    issuer: str  # where discovery is asked (`<issuer>/.well-known/openid-configuration`)
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    allowed_domains: tuple[str, ...] = ()  # empty: any email domain
    multi_tenant: bool = False  # iss is the document's `{tenantid}` template filled with `tid`
    other_issuers: tuple[str, ...] = ()  # spellings the provider also signs (Google's bare host)

    def expected_issuers(self, document_issuer: str, tid: object) -> tuple[str, ...]:
        """The `iss` values a token may carry, from the discovery document's issuer."""
        if not self.multi_tenant:
            return (document_issuer, *self.other_issuers)
        if not isinstance(tid, str) or not _TENANT.match(tid) or tid in MULTI_TENANT:
            return ()
        return (document_issuer.replace(TENANT_PLACEHOLDER, tid),)

    def document_issuer_ok(self, document_issuer: object) -> bool:
        """Discovery's issuer must be the one configured (OIDC Discovery 4.3); a multi-tenant
        endpoint's is the `{tenantid}` template of the same authority."""
        if not isinstance(document_issuer, str):
            return False
        if not self.multi_tenant:
            return document_issuer == self.issuer
        base, _, tail = self.issuer.rstrip("/").rpartition("/")
        authority, _, tenant = base.rpartition("/")
        if tenant in MULTI_TENANT:  # https://login.microsoftonline.com/organizations/v2.0
            return document_issuer == f"{authority}/{TENANT_PLACEHOLDER}/{tail}"
        return False

    def email_allowed(self, email: str) -> bool:
        if not self.allowed_domains:
            return True
        return email.rpartition("@")[2] in self.allowed_domains


@dataclass(frozen=True)
class SsoConfig:
    providers: Mapping[str, Provider] = field(default_factory=dict)
    redirect_base: str = "http://127.0.0.1:8080/auth"
    state_ttl: int = 600  # a sign-in must come back within 10 minutes
    metadata_ttl: int = 3600  # discovery and JWKS are fetched again after an hour
    jwks_min_refetch: float = 10.0  # an unknown `kid` refetches the JWKS at most this often
    leeway: int = 60  # clock skew allowed on exp / iat / auth_time
    max_token_age: int = 600  # an ID token issued longer ago than this is refused
    http_timeout: float = 5.0

    def redirect_uri(self, name: str) -> str:
        return f"{self.redirect_base.rstrip('/')}/sso/{name}/callback"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 public_url: str = "http://127.0.0.1:8080") -> SsoConfig:
        env = Env(environ)
        names = [n.strip() for n in (env.str("ARGUS_SSO_PROVIDERS") or "").split(",")
                 if n.strip()]
        providers = {}
        for name in names:
            if not _NAME.match(name):
                raise ConfigError(f"ARGUS_SSO_PROVIDERS: '{name}' is not a provider name "
                                  "(a-z, 0-9, '-', at most 32)")
            providers[name] = provider_from_env(env, name)
        base = env.str("ARGUS_SSO_REDIRECT_BASE") or f"{public_url.rstrip('/')}/auth"
        return cls(providers=providers, redirect_base=base,
                   state_ttl=env.int("ARGUS_SSO_STATE_TTL", cls.state_ttl, 60, 3600))


def provider_from_env(env: Env, name: str) -> Provider:
    var = f"ARGUS_SSO_{name.upper().replace('-', '_')}"
    preset = env.str(f"{var}_PRESET") or (name if name in PRESETS else "oidc")
    if preset not in PRESETS:
        raise ConfigError(f"{var}_PRESET: '{preset}' is not one of {', '.join(PRESETS)}")
    secret = env.secret(f"{var}_CLIENT_SECRET")
    assert secret is not None
    scopes = tuple((env.str(f"{var}_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
    domains = tuple(d.strip().lower() for d in (env.str(f"{var}_ALLOWED_DOMAINS") or "")
                    .split(",") if d.strip())
    return make_provider(
        name, preset, client_id=env.required(f"{var}_CLIENT_ID"), client_secret=secret,
        issuer=env.str(f"{var}_ISSUER"), tenant=env.str(f"{var}_TENANT"),
        authority=env.str(f"{var}_AUTHORITY"), scopes=scopes, allowed_domains=domains,
        display_name=env.str(f"{var}_DISPLAY_NAME"), setting=var,
    )


def make_provider(name: str, preset: str, *, client_id: str, client_secret: str,
                  issuer: str | None = None, tenant: str | None = None,
                  authority: str | None = None, scopes: tuple[str, ...] = DEFAULT_SCOPES,
                  allowed_domains: tuple[str, ...] = (), display_name: str | None = None,
                  setting: str = "provider") -> Provider:
    """A provider from a preset: `google` (issuer https://accounts.google.com), `microsoft`
    (Entra: `<authority>/<tenant>/v2.0`; organizations/common/consumers are multi-tenant) or
    `oidc` (an issuer URL is required)."""
    if "openid" not in scopes:
        raise ConfigError(f"{setting}_SCOPES: must include 'openid'")
    multi, others = False, tuple[str, ...]()
    if preset == "google":
        issuer = issuer or GOOGLE_ISSUER
        others = ("accounts.google.com",) if issuer == GOOGLE_ISSUER else ()
    elif preset == "microsoft":
        tenant = tenant or "organizations"
        if not _TENANT.match(tenant):
            raise ConfigError(f"{setting}_TENANT: '{tenant}' is not a tenant id or name")
        issuer = issuer or f"{(authority or MICROSOFT_AUTHORITY).rstrip('/')}/{tenant}/v2.0"
        multi = tenant in MULTI_TENANT
    elif not issuer:
        raise ConfigError(f"{setting}_ISSUER is not set: an oidc provider needs its issuer URL")
    check_issuer_url(f"{setting}_ISSUER", issuer)
    titles = {"google": "Google", "microsoft": "Microsoft"}
    return Provider(name=name, display_name=display_name or titles.get(preset, name),
                    preset=preset, issuer=issuer.rstrip("/"), client_id=client_id,
                    client_secret=client_secret, scopes=scopes,
                    allowed_domains=allowed_domains, multi_tenant=multi, other_issuers=others)


def check_issuer_url(setting: str, url: str) -> None:
    """https, or http to this machine only (a provider the tests run on loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ConfigError(f"{setting}: '{url}' is not an https:// URL")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
