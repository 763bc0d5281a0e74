"""The one service runner used by all five services.

`service_app` wires what every service shares around its route table: migrations at boot (as the
owner role, under the migration lock), the runtime-role pool, NATS and the event stream, the
outbox relay and pruner (with the outbox metrics), and `/readyz` checks of the database and
NATS. `run_service` is each process's entry point: settings, logging, tracing, serve, and on
SIGTERM/SIGINT stop accepting, drain in-flight requests, then close. Every start-up failure is
one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import nats.js.errors
from aiohttp import web
from nats.js import JetStreamContext

from argus_shared import db, shared_limits, xut
from argus_shared.access import AccessVerifier, ApiKeys, JwksCache, Revocations
from argus_shared.embedded import port_free
from argus_shared.logs import scrub, setup_logging
from argus_shared.metrics import METRICS_KEY
from argus_shared.migrate import MigrationError, applied_migrations, migrate, migrations_for
from argus_shared.nats import NatsUnavailable, connect, ensure_stream
from argus_shared.nats import request as nats_request
from argus_shared.outbox import Pruner, Relay
from argus_shared.ratelimit import RateLimiter
from argus_shared.request import XUT_CLAIMS
from argus_shared.routing import Route
from argus_shared.settings import OWNER_ROLE, ConfigError, Settings
from argus_shared.tracing import setup_tracing, tracing_middleware
from argus_shared.web import (
    ACCESS_KEY,
    API_KEYS_KEY,
    LIMITER_KEY,
    NATS_KEY,
    POOL_KEY,
    SETTINGS_KEY,
    build_app,
)

log = logging.getLogger("argus.runner")
READY_TIMEOUT = 2.0


class StartupError(Exception):
    """The service cannot start; the message is one line."""


def package_of(service: str) -> str:
    return "argus_" + service.replace("-", "_")


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}".rstrip(":")


async def _migrate(settings: Settings) -> None:
    assert settings.db_owner_password is not None
    try:
        conn = await db.connect(settings.database_url, OWNER_ROLE, settings.db_owner_password)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {_where(settings.database_url)} as {OWNER_ROLE}: "
            f"{_reason(exc)}"
        ) from None
    try:
        applied = await migrate(conn, settings.schema, migrations_for(package_of(settings.service)))
    except MigrationError as exc:
        raise StartupError(str(exc)) from None
    finally:
        await conn.close()
    if applied:
        log.info("migrations applied", extra={"applied": applied})


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    if settings.migrate_on_start:
        await _migrate(settings)
    try:
        pool = await db.create_pool(
            settings.database_url, settings.db_role, settings.db_password,
            schema=settings.schema, application_name=f"argus-{settings.service}",
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {_where(settings.database_url)} as {settings.db_role}: "
            f"{_reason(exc)}"
        ) from None
    try:
        if not settings.migrate_on_start:
            await _await_migrations(pool, settings)
    except BaseException:
        await pool.close()
        raise
    app[POOL_KEY] = pool
    yield
    await pool.close()


async def _await_migrations(pool: asyncpg.Pool, settings: Settings) -> None:
    """Deployed without migrations at start (a migrate step runs them: compose's `migrate`,
    the Kubernetes Job), wait until that step has applied every migration this version has,
    so that no service serves on an older schema; past ARGUS_MIGRATIONS_WAIT_SECONDS, stop."""
    wanted = {m.name for m in migrations_for(package_of(settings.service))}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.migrations_wait_seconds
    waiting = False
    while True:
        async with pool.acquire() as conn:
            missing = sorted(wanted - await applied_migrations(conn, settings.schema))
        if not missing:
            if waiting:
                log.info("migrations applied; starting")
            return
        if loop.time() >= deadline:
            raise StartupError(
                f"schema {settings.schema} lacks {len(missing)} of this version's migrations "
                f"({missing[0]} ...) after {settings.migrations_wait_seconds} s: run "
                f"`argus migrate` (the migrate image) first")
        if not waiting:
            log.info("waiting for the migrate step", extra={"missing": missing})
            waiting = True
        await asyncio.sleep(1.0)


async def _nats(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    try:
        nc = await connect(settings.nats_url, f"argus-{settings.service}")
    except NatsUnavailable as exc:
        raise StartupError(str(exc)) from None
    await ensure_stream(nc.jetstream())
    app[NATS_KEY] = nc
    if settings.rate_limit_store == "nats":
        await _share_rate_limits(app, nc.jetstream())
    yield
    with contextlib.suppress(Exception):
        await nc.drain()


async def _share_rate_limits(app: web.Application, js: JetStreamContext) -> None:
    """Count this service's rate limits in NATS with every other replica (the in-memory limiter
    stays as the fallback); a NATS without counters (before 2.12) keeps them per replica."""
    local = app[LIMITER_KEY]
    assert isinstance(local, RateLimiter)
    try:
        await shared_limits.ensure_stream(js)
    except (nats.js.errors.Error, shared_limits.NoCounters) as exc:
        log.warning("rate limits stay per replica: NATS cannot hold the shared counters "
                    "(nats-server 2.12 or newer can)", extra={"error": str(exc)[:200]})
        return
    fallbacks = shared_limits.fallback_counter(app[METRICS_KEY].registry)
    app[LIMITER_KEY] = shared_limits.SharedRateLimiter(
        js, app[SETTINGS_KEY].service, fallbacks, local=local, clock=local.clock)


async def _relay(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    relay = Relay(
        app[POOL_KEY], app[NATS_KEY].jetstream(), service=settings.service, keys=settings.xut_keys
    )
    await relay.start()
    yield
    await relay.stop()


async def _pruner(app: web.Application) -> AsyncIterator[None]:
    """Sent outbox rows past the retention deleted on a jittered schedule (needs no NATS)."""
    settings = app[SETTINGS_KEY]
    pruner = Pruner(
        app[POOL_KEY], app[METRICS_KEY].registry, keep_seconds=settings.outbox_keep_seconds,
        interval=settings.outbox_prune_seconds, service=settings.service,
    )
    await pruner.start()
    yield
    await pruner.stop()


async def _database_ready(app: web.Application) -> None:
    async with app[POOL_KEY].acquire() as conn:
        await conn.fetchval("select 1")


async def _nats_ready(app: web.Application) -> None:
    nc = app[NATS_KEY]
    if not nc.is_connected:
        raise ConnectionError("NATS is not connected")
    # nats-py hints an int; it waits that many seconds, fractions included
    await nc.flush(timeout=READY_TIMEOUT)  # type: ignore[arg-type]


async def whoami(request: web.Request) -> web.Response:
    """Echo the verified X-User-Token identity: a diagnostic for service-to-service calls."""
    claims = request[XUT_CLAIMS]
    return web.json_response(
        {"sub": claims.sub, "org": claims.org, "role": claims.role, "iss": claims.iss,
         "request_id": claims.rid}
    )


REVOCATIONS_KEY = web.AppKey("revocations", Revocations)


def user_authentication(
    auth_url: str, issuer: str, audience: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that lets a service (other than auth) accept end users: access tokens
    checked against auth's JWKS with revocations honoured, and API keys introspected by auth."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings, nc = app[SETTINGS_KEY], app[NATS_KEY]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:

            async def fetch(url: str) -> dict[str, Any]:
                async with http.get(url) as response:
                    response.raise_for_status()
                    return await response.json()

            async def introspect(secret: str) -> dict[str, Any]:
                return await nats_request(
                    nc, settings.xut_keys, issuer=settings.service, service="auth",
                    method="introspect_api_key", payload={"key": secret},
                    identity=xut.Identity(sub=f"service:{settings.service}"))

            revocations = app[REVOCATIONS_KEY] = Revocations()
            await revocations.start(nc.jetstream())
            app[ACCESS_KEY] = AccessVerifier(
                JwksCache(f"{auth_url}/.well-known/jwks.json", fetch), issuer=issuer,
                audience=audience, revocations=revocations)
            api_keys = app[API_KEYS_KEY] = ApiKeys(introspect, revocations)
            await api_keys.start(nc)
            yield
            await api_keys.stop()
            await revocations.stop()

    return context


def standard_routes() -> list[Route]:
    return [
        Route("GET", "/internal/whoami", whoami, "The verified X-User-Token identity",
              auth="service", tags=("internal",)),
    ]


def service_app(
    settings: Settings,
    routes: Sequence[Route],
    *,
    title: str,
    cleanup_ctx: Sequence[Callable[[web.Application], AsyncIterator[None]]] = (),
) -> web.Application:
    """A service's application: its routes plus everything every service shares."""
    app: web.Application
    app = build_app(
        settings,
        [*routes, *standard_routes()],
        title=title,
        ready_checks={
            "database": lambda: _database_ready(app),
            "nats": lambda: _nats_ready(app),
        },
        middlewares=[tracing_middleware()],
    )
    app.cleanup_ctx.extend([_database, _nats, _relay, _pruner, *cleanup_ctx])
    return app


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"argus: {scrub(message)}", file=sys.stderr, flush=True)
    raise SystemExit(code)


async def _serve(app: web.Application, settings: Settings) -> None:
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=settings.shutdown_timeout, access_log=None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.port and not port_free(settings.port, settings.host):
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: already in use")
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
            ) from None
        log.info("serving", extra={"host": settings.host, "port": settings.port})
        await stop.wait()
        log.info("stopping: draining in-flight requests")
    finally:
        await runner.cleanup()


def event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop where uvloop is installed (not on Windows), else asyncio's: per request
    most of a service's Python time outside crypto goes to the event loop and its transports."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)` on `event_loop()`."""
    with asyncio.Runner(loop_factory=event_loop) as runner:
        runner.run(main)


def run_service(
    service: str, create_app: Callable[[Settings], web.Application]
) -> NoReturn:
    try:
        settings = Settings.from_env(service)
    except ConfigError as exc:
        fail(str(exc))
    setup_logging(service, settings.log_level)
    setup_tracing(service, settings.otlp_endpoint)
    try:
        run_loop(_serve(create_app(settings), settings))
    except ConfigError as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(f"{service}: {exc}", 1)
    except KeyboardInterrupt:
        pass
    raise SystemExit(0)


Command = Callable[[Settings], Coroutine[Any, Any, str]]


def main(service: str, create_app: Callable[[Settings], web.Application],
         commands: Mapping[str, Command] | None = None) -> None:
    """A service's entry point: no argument runs the service; one argument runs one of its
    operator `commands` (each returns the line to print). Failures are one line."""
    commands = commands or {}
    args = sys.argv[1:]
    if not args:
        run_service(service, create_app)
    if len(args) != 1 or args[0] not in commands:
        fail(f"unknown command {' '.join(args)!r} (try: {', '.join(commands) or 'no arguments'})")
    try:
        print(asyncio.run(commands[args[0]](Settings.from_env(service))), flush=True)
    except ConfigError as exc:
        fail(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"{args[0]} failed: {_reason(exc)}", 1)
