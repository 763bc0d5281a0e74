"""The webhooks service's application: wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from argus_shared.consumer import Consumer
from argus_shared.metrics import METRICS_KEY
from argus_shared.nats import serve
from argus_shared.runner import service_app, user_authentication
from argus_shared.settings import ConfigError, Env, Settings
from argus_shared.web import NATS_KEY, POOL_KEY
from argus_webhooks import SERVICE, rpc
from argus_webhooks.config import CONFIG_KEY, WebhooksConfig
from argus_webhooks.delivery import Deliverer, Metrics
from argus_webhooks.fanout import FanOut
from argus_webhooks.routes import ROUTES

DELIVERER_KEY = web.AppKey("deliverer", Deliverer)
log = logging.getLogger("argus.webhooks")


def create_app(settings: Settings, config: WebhooksConfig | None = None,
               auth_url: str | None = None) -> web.Application:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    env = Env()
    auth_url = (auth_url or env.str("ARGUS_AUTH_URL", "http://127.0.0.1:8101") or "").rstrip("/")
    app = service_app(settings, ROUTES, title="Argus webhooks", cleanup_ctx=[
        user_authentication(auth_url, env.str("ARGUS_AUTH_ISSUER", "argus-auth") or "",
                            env.str("ARGUS_AUTH_AUDIENCE", "argus") or ""),
        partial(_fan_out, settings), partial(_deliver, settings), partial(_rpc, settings),
    ])
    app[CONFIG_KEY] = config or WebhooksConfig.from_env(settings.production)
    return app


async def _fan_out(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    consumer = Consumer(app[NATS_KEY], settings.xut_keys, durable="webhooks",
                        handler=FanOut(app[POOL_KEY]))
    await consumer.start()
    yield
    await consumer.stop()


async def _deliver(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    assert settings.master_keys is not None
    deliverer = app[DELIVERER_KEY] = Deliverer(app[POOL_KEY], settings.master_keys,
                                               app[CONFIG_KEY], Metrics(app[METRICS_KEY].registry))
    work = asyncio.create_task(deliverer.run(), name="webhook-delivery")

    async def stats() -> None:
        while True:
            with contextlib.suppress(Exception):
                await deliverer.refresh_metrics()
            await asyncio.sleep(5)

    gauges = asyncio.create_task(stats(), name="webhook-stats")
    yield
    deliverer.stop()
    for task in (gauges, work):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await deliverer.close()


async def _rpc(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    subs = [await serve(app[NATS_KEY], settings.xut_keys, service=SERVICE, method=method,
                        handler=handler)
            for method, handler in (("export_user", rpc.export_user),
                                    ("purge_user", rpc.purge_user))]
    yield
    for sub in subs:
        await sub.unsubscribe()
