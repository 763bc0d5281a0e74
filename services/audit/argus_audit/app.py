"""The audit service's application: wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from argus_audit import SERVICE, maintenance, rpc
from argus_audit.ingest import Ingest, Metrics
from argus_audit.routes import ROUTES
from argus_audit.stream import Hub, control
from argus_audit.stream import Metrics as StreamMetrics
from argus_audit.stream_caps import Caps
from argus_audit.stream_http import (
    CAPS_KEY,
    HUB_KEY,
    RETRY_MS,
    STREAM_CONFIG_KEY,
    STREAM_METRICS_KEY,
    StreamConfig,
    police,
)
from argus_shared.access import API_KEY_REVOKED_SUBJECT
from argus_shared.consumer import Consumer
from argus_shared.metrics import METRICS_KEY
from argus_shared.nats import serve
from argus_shared.runner import service_app, user_authentication
from argus_shared.settings import ConfigError, Env, Settings
from argus_shared.web import NATS_KEY, POOL_KEY

DURABLE = "audit"
# events per batch: each batch is one transaction (three statements and a commit), so a
# larger one spreads that fixed cost; 1000 measured ~20% faster than 500 (bench/audit_ingest.py)
BATCH_SIZE = 1000
CONSUMER_KEY = web.AppKey("consumer", Consumer)
log = logging.getLogger("argus.audit")


def create_app(settings: Settings, checkpoint_seconds: int | None = None,
               auth_url: str | None = None) -> web.Application:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    env = Env()
    auth_url = (auth_url or env.str("ARGUS_AUTH_URL", "http://127.0.0.1:8101") or "").rstrip("/")
    every = checkpoint_seconds or env.int("ARGUS_AUDIT_CHECKPOINT_SECONDS", 300, 1)
    return service_app(settings, ROUTES, title="Argus audit", cleanup_ctx=[
        user_authentication(auth_url, env.str("ARGUS_AUTH_ISSUER", "argus-auth") or "",
                            env.str("ARGUS_AUTH_AUDIENCE", "argus") or ""),
        partial(_consume, settings), partial(_maintain, settings, every),
        partial(_rpc, settings), partial(_stream, settings, stream_config(settings)),
    ])


def stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(per_user=settings.stream_max_per_user,
                        per_org=settings.stream_max_per_org,
                        buffer=settings.stream_buffer_events,
                        heartbeat=settings.stream_heartbeat_seconds,
                        lease=settings.stream_lease_seconds)


async def _stream(settings: Settings, config: StreamConfig,
                  app: web.Application) -> AsyncIterator[None]:
    """The live-event fan-out (`GET /stream`): its own ordered consumer, the shared caps, API
    keys closed on auth's revocation broadcast, and a drain when the process stops."""
    nc = app[NATS_KEY]
    metrics = app[STREAM_METRICS_KEY] = StreamMetrics(app[METRICS_KEY].registry)
    app[STREAM_CONFIG_KEY] = config
    hub = app[HUB_KEY] = Hub(nc.jetstream(), settings.xut_keys, metrics)
    caps = app[CAPS_KEY] = Caps(config.per_user, config.per_org, config.lease)
    await caps.start(nc.jetstream())
    await hub.start()

    async def key_revoked(msg: Any) -> None:
        key_id = msg.data.decode()
        hub.close_where(lambda c: c.viewer.kind == "api_key" and c.viewer.id == key_id,
                        "revoked", control("revoked"))

    sub = await nc.subscribe(API_KEY_REVOKED_SUBJECT, cb=key_revoked)
    policing = asyncio.create_task(police(app), name="stream-police")

    async def drain(_: web.Application) -> None:
        hub.close_where(lambda c: True, "draining", control("drain", retry_ms=RETRY_MS))

    app.on_shutdown.append(drain)
    yield
    policing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await policing
    await sub.unsubscribe()
    await hub.stop()
    await caps.stop()


async def _consume(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    metrics = Metrics(app[METRICS_KEY].registry)
    consumer = app[CONSUMER_KEY] = Consumer(
        app[NATS_KEY], settings.xut_keys, durable=DURABLE,
        handler=Ingest(app[POOL_KEY], metrics), batch=BATCH_SIZE)
    await consumer.start()
    lag = Gauge("argus_audit_consumer_pending", "Messages waiting for the audit consumer",
                registry=app[METRICS_KEY].registry)

    async def watch_lag() -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await app[NATS_KEY].jetstream().consumer_info("ARGUS_EVENTS", DURABLE)
                lag.set(info.num_pending + info.num_ack_pending)
            await asyncio.sleep(5)

    task = asyncio.create_task(watch_lag(), name="audit-lag")
    yield
    task.cancel()
    await consumer.stop()


async def _maintain(settings: Settings, every: int, app: web.Application) -> AsyncIterator[None]:
    master = settings.master_keys
    assert master is not None

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await maintenance.checkpoint_heads(app[POOL_KEY], master)
            except Exception:
                log.exception("checkpointing failed")

    task = asyncio.create_task(loop(), name="audit-checkpoints")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _rpc(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    nc, pool = app[NATS_KEY], app[POOL_KEY]
    subs = [await serve(nc, settings.xut_keys, service=SERVICE, method=method,
                        handler=partial(handler, pool))
            for method, handler in (("export_user", rpc.export_user),
                                    ("purge_user", rpc.purge_user))]
    yield
    for sub in subs:
        await sub.unsubscribe()
