"""tenant-api's application: wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from functools import partial

from aiohttp import web

from argus_shared.consumer import Consumer
from argus_shared.mail import mailer_for
from argus_shared.metrics import METRICS_KEY
from argus_shared.nats import serve
from argus_shared.runner import REVOCATIONS_KEY, service_app, user_authentication
from argus_shared.settings import Settings
from argus_shared.web import NATS_KEY, POOL_KEY
from argus_tenant_api import SERVICE, events, rpc, scim_sso
from argus_tenant_api.config import CONFIG_KEY, TenantConfig
from argus_tenant_api.dsr import DataSubjects
from argus_tenant_api.org_purge import purge_deleted_orgs
from argus_tenant_api.roles import RoleCache
from argus_tenant_api.routes import DSR_KEY, MAILER_KEY, ROUTES
from argus_tenant_api.scope import ROLES_KEY
from argus_tenant_api.wallet import Reconciler

log = logging.getLogger("argus.tenant_api")
RECONCILER_KEY = web.AppKey("reconciler", Reconciler)


def create_app(settings: Settings, config: TenantConfig | None = None) -> web.Application:
    config = config or TenantConfig.from_env()
    app = service_app(settings, ROUTES, title="Argus tenant-api", cleanup_ctx=[
        user_authentication(config.auth_url, config.auth_issuer, config.auth_audience),
        _roles, partial(_rpc, settings), partial(_consumers, settings), _reconciliation,
        partial(_data_subjects, settings),
    ])
    app[CONFIG_KEY] = config
    app[MAILER_KEY] = mailer_for(config.mail)
    return app


async def _roles(app: web.Application) -> AsyncIterator[None]:
    app[ROLES_KEY] = RoleCache(app.get(REVOCATIONS_KEY))
    yield


async def _rpc(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    nc, keys, pool = app[NATS_KEY], settings.xut_keys, app[POOL_KEY]
    subs = [await serve(nc, keys, service=SERVICE, method="membership",
                        handler=partial(rpc.membership, pool)),
            await serve(nc, keys, service=SERVICE, method="sso_domain",
                        handler=partial(rpc.sso_domain, pool)),
            await serve(nc, keys, service=SERVICE, method="sso_connection",
                        handler=partial(rpc.sso_connection, pool, settings.master_keys))]
    yield
    for sub in subs:
        await sub.unsubscribe()


async def _consumers(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    nc = app[NATS_KEY]
    accounts = Consumer(nc, settings.xut_keys, durable=f"{SERVICE}-accounts",
                        handler=partial(events.account_events, app[POOL_KEY], nc,
                                        settings.xut_keys),
                        subject=events.EMAIL_CHANGED_SUBJECT, batch=20)
    sso_events = [Consumer(nc, settings.xut_keys, durable=f"{SERVICE}-{name}",
                           handler=partial(scim_sso.handler, app[POOL_KEY], nc,
                                           settings.xut_keys), subject=subject, batch=20)
                  for name, subject in (("sso-signups", scim_sso.SIGNED_UP_SUBJECT),
                                        ("sso-links", scim_sso.LINKED_SUBJECT))]
    await accounts.start()
    for consumer in sso_events:
        await consumer.start()
    yield
    for consumer in sso_events:
        await consumer.stop()
    await accounts.stop()


async def _reconciliation(app: web.Application) -> AsyncIterator[None]:
    reconciler = app[RECONCILER_KEY] = Reconciler(app[POOL_KEY], app[METRICS_KEY].registry)

    async def loop() -> None:
        while True:
            await asyncio.sleep(app[CONFIG_KEY].reconcile_seconds)
            await logged(reconciler.run(), "wallet reconciliation failed")

    task = asyncio.create_task(loop(), name="wallet-reconciliation")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def logged(work: Awaitable[object], failure: str) -> None:
    """A periodic job's run: a failure is logged and the next run tries again."""
    try:
        await work
    except Exception:
        log.exception(failure)


async def _data_subjects(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    subjects = app[DSR_KEY] = DataSubjects(app[POOL_KEY], app[NATS_KEY], settings.xut_keys,
                                           app[METRICS_KEY].registry)

    async def loop() -> None:
        while True:
            await asyncio.sleep(app[CONFIG_KEY].reconcile_seconds)
            await logged(subjects.purge_pending(), "account purges failed")
            await logged(purge_deleted_orgs(app[POOL_KEY]), "org purges failed")

    task = asyncio.create_task(loop(), name="account-and-org-purges")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
