"""The files service's application: wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial
from uuid import UUID

from aiohttp import web

from argus_files import SERVICE, deletion, rpc
from argus_files.config import CONFIG_KEY, FilesConfig
from argus_files.metrics import FileMetrics
from argus_files.routes import ROUTES
from argus_files.segments import AES_GCM, Codec
from argus_files.storage import storage_for
from argus_files.store import STORE_KEY, Store
from argus_shared import events
from argus_shared.consumer import Consumer, Received
from argus_shared.event_types import ORG_DELETED
from argus_shared.logs import request_context
from argus_shared.metrics import METRICS_KEY
from argus_shared.nats import serve
from argus_shared.outbox import Ctx
from argus_shared.runner import StartupError, service_app, user_authentication
from argus_shared.settings import ConfigError, Settings
from argus_shared.web import NATS_KEY, POOL_KEY, READY_KEY

DURABLE = "files"
ORG_DELETED_SUBJECT = events.subject_for("tenant-api", ORG_DELETED)
log = logging.getLogger("argus.files")


def create_app(settings: Settings, config: FilesConfig | None = None, *,
               codec: Codec = AES_GCM) -> web.Application:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    config = config or FilesConfig.from_env()
    app = service_app(settings, ROUTES, title="Argus files", cleanup_ctx=[
        user_authentication(config.auth_url, config.auth_issuer, config.auth_audience),
        partial(_store, settings, config, codec), partial(_rpc, settings), _sweeper,
        partial(_org_deletions, settings),
    ])
    app[CONFIG_KEY] = config
    app[READY_KEY]["storage"] = lambda: app[STORE_KEY].storage.check()
    return app


async def _store(settings: Settings, config: FilesConfig, codec: Codec,
                 app: web.Application) -> AsyncIterator[None]:
    assert settings.master_keys is not None
    storage = storage_for(config)
    try:
        await storage.start()
    except Exception as exc:
        raise StartupError(f"files storage ({config.backend}) is not usable: {exc}") from None
    app[STORE_KEY] = Store(app[POOL_KEY], storage, settings.master_keys, codec, config,
                           FileMetrics.create(app[METRICS_KEY].registry))
    yield
    await storage.close()


async def _rpc(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    store = app[STORE_KEY]
    subs = [await serve(app[NATS_KEY], settings.xut_keys, service=SERVICE, method=method,
                        handler=partial(handler, store))
            for method, handler in (("export_user", rpc.export_user),
                                    ("purge_user", rpc.purge_user))]
    yield
    for sub in subs:
        await sub.unsubscribe()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE_KEY]

    async def loop() -> None:
        while True:
            try:
                await deletion.sweep(store)
            except Exception:
                log.exception("sweeping failed")
            await asyncio.sleep(store.config.sweep_seconds)

    task = asyncio.create_task(loop(), name="files-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _org_deletions(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    """A deleted org's files are shredded at once (tenant-api's `org.deleted` event)."""
    store = app[STORE_KEY]

    async def handle(batch: Sequence[Received]) -> None:
        for item in batch:
            with request_context(item.request_id):
                await org_deleted(store, item)

    consumer = Consumer(app[NATS_KEY], settings.xut_keys, durable=DURABLE,
                        handler=handle, subject=ORG_DELETED_SUBJECT, batch=20)
    await consumer.start()
    yield
    await consumer.stop()


async def org_deleted(store: Store, item: Received) -> None:
    """One `org.deleted` from tenant-api: the org's objects shredded."""
    event, claims = item.event, item.claims
    if event is None or claims is None or claims.iss != "tenant-api" or event.org_id is None:
        log.warning("org.deleted refused", extra={"reason": item.error or "issuer"})
        return
    rows = await deletion.shred(store, UUID(event.org_id), None, None,
                                actor=("service", "tenant-api"),
                                ctx=Ctx(request_id=event.request_id), record_empty=False)
    log.info("a deleted org's files shredded",
             extra={"org_id": event.org_id, "shredded": len(rows)})
