"""What the auth domain functions share: the pool, settings, hashing, mail, keys, NATS and the
queue of work done after the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import asyncpg
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from argus_auth.background import Background
from argus_auth.config import AuthConfig
from argus_auth.oidc import OidcClient
from argus_auth.passwords import BreachCheck, Passwords
from argus_auth.signing import SigningKeys
from argus_auth.sso_orgs import OrgConnections
from argus_shared.access import AccessVerifier
from argus_shared.mail import Mailer
from argus_shared.settings import KeyRing


@dataclass
class Auth:
    pool: asyncpg.Pool
    config: AuthConfig
    passwords: Passwords
    breach: BreachCheck
    mailer: Mailer
    signing: SigningKeys
    verifier: AccessVerifier
    master: KeyRing
    xut_keys: KeyRing
    js: JetStreamContext
    nc: NatsClient
    http: aiohttp.ClientSession
    background: Background  # account-dependent work done after the answer
    oidc: dict[str, OidcClient] = field(default_factory=dict)  # SSO providers by name
    org_sso: OrgConnections = field(default_factory=OrgConnections)  # orgs' own connections

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.config.clock(), UTC)

    def timestamp(self) -> float:
        return self.config.clock()
