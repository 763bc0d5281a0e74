"""An org's own OIDC connection as a provider of auth: `org-<org id>` (so its redirect URI is
`<redirect base>/sso/org-<org id>/callback`). tenant-api owns the connection; auth asks it for
the issuer, client id and client secret (`argus.rpc.tenant-api.sso_connection`, answered to
auth alone) and keeps the client for CONNECTION_TTL seconds: a changed or removed connection
is seen within that bound. A first sign-in through an org's connection creates an account only
for an email whose domain that org has verified (`argus.rpc.tenant-api.sso_domain`), so an
org's IdP cannot claim addresses of domains it does not own."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from argus_auth.oidc import OidcClient
from argus_auth.sso_providers import Provider, make_provider
from argus_shared import xut
from argus_shared.errors import Problem
from argus_shared.nats import RpcError, request
from argus_shared.problem_types import IDP_UNAVAILABLE, SSO_DOMAIN_NOT_ALLOWED
from argus_shared.settings import ConfigError

if TYPE_CHECKING:
    from argus_auth.core import Auth

PREFIX = "org-"
CONNECTION_TTL = 60.0
_ORG = re.compile(r"^org-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


@dataclass
class Cached:
    fetched_at: float
    key: tuple[str, str, str]
    client: OidcClient


class OrgConnections:
    def __init__(self) -> None:
        self.cache: dict[str, Cached] = {}

    async def client(self, auth: Auth, name: str) -> OidcClient | None:
        """The org's connection as a client; None when `name` is no org's or it has none."""
        match = _ORG.match(name)
        if match is None:
            return None
        org_id = match.group(1)
        cached = self.cache.get(org_id)
        if cached is not None and time.monotonic() - cached.fetched_at < CONNECTION_TTL:
            return cached.client
        answer = await _ask(auth, "sso_connection", {"org_id": org_id})
        if answer is None:
            self.cache.pop(org_id, None)
            return None
        key = (str(answer["issuer"]), str(answer["client_id"]), str(answer["client_secret"]))
        if cached is not None and cached.key == key:  # unchanged: keep its discovery cache
            cached.fetched_at = time.monotonic()
            return cached.client
        try:
            provider = make_provider(name, "oidc", issuer=key[0], client_id=key[1],
                                     client_secret=key[2], display_name=f"org {org_id}",
                                     setting="the org's SSO connection")
        except ConfigError as exc:
            raise Problem(502, f"the org's SSO connection is not usable: {exc}",
                          title="Identity provider unavailable", type=IDP_UNAVAILABLE) from None
        client = OidcClient(provider, auth.config.sso, auth.http, auth.config.clock)
        self.cache[org_id] = Cached(time.monotonic(), key, client)
        return client


def org_of(provider: Provider) -> str | None:
    match = _ORG.match(provider.name)
    return match.group(1) if match else None


async def check_domain(auth: Auth, provider: Provider, email: str) -> None:
    """Through an org's connection, only emails of a domain that org verified."""
    org_id = org_of(provider)
    if org_id is None:
        return
    domain = email.rpartition("@")[2]
    owner = await _ask(auth, "sso_domain", {"domain": domain})
    if owner is None or owner.get("org_id") != org_id:
        raise Problem(403, f"this organisation's sign-in is for the email domains it has "
                      f"verified, not {domain}", title="Email domain not allowed",
                      type=SSO_DOMAIN_NOT_ALLOWED)


async def discover(auth: Auth, email: str) -> dict[str, Any] | None:
    """Home-realm discovery: the org connection that signs in this email's domain (the org
    verified the domain), so a sign-in form can point to SSO before asking for a password.
    It tells about domains only (published in DNS anyway), never about accounts."""
    domain = email.rpartition("@")[2]
    owner = await _ask(auth, "sso_domain", {"domain": domain})
    if owner is None:
        return None
    name = f"{PREFIX}{owner['org_id']}"
    return {"provider": name, "start": f"/sso/{name}/start",
            "require_sso": bool(owner.get("require_sso"))}


async def _ask(auth: Auth, method: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    identity = xut.Identity(sub="service:auth")
    try:
        answer = await request(auth.nc, auth.xut_keys, issuer="auth", service="tenant-api",
                               method=method, payload=payload, identity=identity)
    except RpcError as exc:
        if exc.status == 404:
            return None
        raise Problem(503, "the org's SSO settings cannot be read right now (tenant-api is not "
                      "answering); try again later", title="Service unavailable",
                      headers={"Retry-After": "1"}) from None
    return dict(answer)
