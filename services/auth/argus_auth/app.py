"""The auth service's application: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import aiohttp
from aiohttp import web

from argus_auth import SERVICE, accounts, api_keys, membership
from argus_auth.background import Background
from argus_auth.config import AuthConfig
from argus_auth.core import Auth
from argus_auth.oidc import OidcClient
from argus_auth.passwords import BreachCheck, Passwords
from argus_auth.routes import AUTH_KEY, ROUTES
from argus_auth.signing import SigningKeys
from argus_shared import events
from argus_shared.access import AccessVerifier, Revocations
from argus_shared.consumer import Consumer
from argus_shared.event_types import ORG_DELETED
from argus_shared.mail import mailer_for
from argus_shared.metrics import METRICS_KEY
from argus_shared.nats import serve
from argus_shared.ratelimit import RateLimiter
from argus_shared.runner import service_app
from argus_shared.settings import ConfigError, Settings
from argus_shared.web import ACCESS_KEY, LIMITER_KEY, NATS_KEY, POOL_KEY

ORG_DELETED_SUBJECT = events.subject_for("tenant-api", ORG_DELETED)


def create_app(settings: Settings, config: AuthConfig | None = None) -> web.Application:
    config = config or AuthConfig.from_env()
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    app = service_app(settings, ROUTES, title="Argus auth",
                      cleanup_ctx=[partial(_auth_context, settings, config)])
    app[LIMITER_KEY] = RateLimiter(clock=config.clock)  # one clock for limits and lockouts
    return app


async def _auth_context(settings: Settings, config: AuthConfig,
                        app: web.Application) -> AsyncIterator[None]:
    pool, nc = app[POOL_KEY], app[NATS_KEY]
    assert settings.master_keys is not None
    passwords = Passwords(config.argon2_memory_kib, config.argon2_time_cost,
                          config.argon2_parallelism, config.argon2_workers)
    await passwords.start()
    signing = SigningKeys(pool, settings.master_keys, config.access_ttl)
    await signing.load()
    revocations = Revocations()
    await revocations.start(nc.jetstream())
    verifier = AccessVerifier(signing.lookup, issuer=config.issuer, audience=config.audience,
                              revocations=revocations, clock=config.clock)
    background = Background(config.background_queue, config.background_workers,
                            config.background_jitter, app[METRICS_KEY].registry)
    async with aiohttp.ClientSession() as http:
        auth = Auth(
            pool=pool, config=config, passwords=passwords, mailer=mailer_for(config.mail),
            breach=BreachCheck(config.hibp_url, config.hibp_timeout),
            signing=signing, verifier=verifier, master=settings.master_keys,
            xut_keys=settings.xut_keys, js=nc.jetstream(), nc=nc, http=http,
            background=background,
            oidc={name: OidcClient(provider, config.sso, http, config.clock)
                  for name, provider in config.sso.providers.items()},
        )
        background.start()
        app[AUTH_KEY] = auth
        app[ACCESS_KEY] = verifier
        subscriptions = [
            await serve(nc, settings.xut_keys, service=SERVICE, method="introspect_api_key",
                        handler=partial(api_keys.introspect_handler, auth)),
            await serve(nc, settings.xut_keys, service=SERVICE, method="user",
                        handler=partial(accounts.user_rpc, auth)),
            await serve(nc, settings.xut_keys, service=SERVICE, method="export_user",
                        handler=partial(accounts.export_rpc, auth)),
            await serve(nc, settings.xut_keys, service=SERVICE, method="deactivate_user",
                        handler=partial(accounts.deactivate_rpc, auth)),
            await serve(nc, settings.xut_keys, service=SERVICE, method="purge_user",
                        handler=partial(accounts.purge_rpc, auth)),
        ]
        org_deletions = Consumer(nc, settings.xut_keys, durable=SERVICE,
                                 handler=partial(api_keys.org_deleted_handler, auth),
                                 subject=ORG_DELETED_SUBJECT, batch=20)
        memberships = Consumer(nc, settings.xut_keys,
                               durable=f"{SERVICE}-memberships",
                               handler=partial(membership.membership_events_handler, auth),
                               subject=membership.MEMBER_EVENTS, batch=50)
        await org_deletions.start()
        await memberships.start()
        yield
        await background.stop()  # before the pool, the mailer and the hashers go
        await memberships.stop()
        await org_deletions.stop()
        for sub in subscriptions:
            await sub.unsubscribe()
    await revocations.stop()
    await passwords.stop()
