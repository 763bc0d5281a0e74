"""Build a service app on the shared stack without a database, served on a real socket."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from argus_shared.routing import Route
from argus_shared.settings import KeyRing, Settings, format_keyring
from argus_shared.web import build_app

XUT_KEYS = format_keyring({"k1": os.urandom(32), "k0": os.urandom(32)})


def offline_settings(service: str = "auth", **overrides: str) -> Settings:
    env = {
        "ARGUS_DATABASE_URL": "postgresql://127.0.0.1:1/none",
        "ARGUS_NATS_URL": "nats://127.0.0.1:1",
        "ARGUS_DB_PASSWORD": "unused",
        "ARGUS_MIGRATE_ON_START": "false",
        "ARGUS_XUT_KEYS": XUT_KEYS,
        **overrides,
    }
    return Settings.from_env(service, env)


def keys() -> KeyRing:
    return KeyRing.parse(XUT_KEYS, "test")


@asynccontextmanager
async def serve(
    routes: Sequence[Route], settings: Settings | None = None, **app_kwargs: Any
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = build_app(settings or offline_settings(), routes, title="test", **app_kwargs)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield str(server.make_url("")).rstrip("/"), session
    finally:
        await server.close()


class Captured(logging.Handler):
    """Collects formatted records of one logger."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        if formatter:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@asynccontextmanager
async def capture(
    logger: str, formatter: logging.Formatter | None = None
) -> AsyncIterator[Captured]:
    handler = Captured(formatter)
    target = logging.getLogger(logger)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)
