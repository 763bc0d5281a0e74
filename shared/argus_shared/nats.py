"""NATS: a connection that reconnects forever once up, the `ARGUS_EVENTS` stream, and
request-reply whose every message carries an `X-User-Token` bound to its body.

The request id crosses request-reply in the token's `rid` claim (signed with the rest): `request`
puts the current one there (`argus_shared.logs.request_id_var`) unless the caller names one, and
`serve` runs each handler with it, so the answering service's log lines (one `rpc answered` line
per call among them) and the events it records carry the caller's request id."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from opentelemetry import trace

from argus_shared import tracing, xut
from argus_shared.events import STREAM, SUBJECT_PREFIX
from argus_shared.logs import request_context, request_id_var
from argus_shared.settings import KeyRing

log = logging.getLogger("argus.nats")
rpc_log = logging.getLogger("argus.rpc")  # one line per answered call, like the access log
CONNECT_TIMEOUT = 5.0
STREAM_MAX_AGE = 7 * 24 * 3600
DUPLICATE_WINDOW = 2 * 60
RPC_PREFIX = "argus.rpc"
RPC_CONCURRENCY = 64  # requests one `serve` handles at once; more wait in the subscription


class NatsUnavailable(Exception):
    """NATS cannot be reached; the message is one line."""


class RpcError(Exception):
    """A request-reply call failed: `status` follows HTTP (404, 401, 503, ...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


async def connect(url: str, name: str) -> Client:
    """Connect once (fail fast, one clear error), then reconnect forever on loss."""
    nc = Client()
    failures: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        if not nc.is_connected and not failures_done.is_set():
            failures.append(exc)  # reported once, as one line, if the first connect fails
            return
        log.warning("nats error", extra={"error": str(exc)[:200]})

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    failures_done = asyncio.Event()
    where = urlsplit(url).netloc.rpartition("@")[2]
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=[url], name=name, connect_timeout=2, allow_reconnect=False,
                error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
                max_reconnect_attempts=1,  # first connect: one retry
                # nats-py hints an int; it sleeps that many seconds, fractions included
                reconnect_time_wait=0.2,  # type: ignore[arg-type]
            ),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        cause = failures[-1] if failures else exc
        raise NatsUnavailable(f"cannot reach NATS at {where}: {_reason(cause)}") from None
    failures_done.set()
    # now that it is up, keep it up: reconnect without limit
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 1
    return nc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def stream_config() -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=STREAM_MAX_AGE,
        duplicate_window=DUPLICATE_WINDOW,
    )


async def ensure_stream(js: JetStreamContext) -> None:
    """Create `ARGUS_EVENTS` if missing; several services may race to do it."""
    try:
        await js.stream_info(STREAM)
        return
    except nats.js.errors.NotFoundError:
        pass
    try:
        await js.add_stream(stream_config())
    except BadRequestError:
        await js.stream_info(STREAM)  # created by another service meanwhile


def rpc_subject(service: str, method: str) -> str:
    return f"{RPC_PREFIX}.{service}.{method}"


def rpc_audience(service: str, method: str) -> str:
    """A request's token is addressed to one method: it cannot be replayed to another."""
    return f"{service}.{method}"


async def request(
    nc: Client,
    keys: KeyRing,
    *,
    issuer: str,
    service: str,
    method: str,
    payload: Any,
    identity: xut.Identity,
    wait_seconds: float = 2.0,
) -> Any:
    """Call `argus.rpc.<service>.<method>` as `identity`; returns the decoded `result`. The
    token's `rid` is `identity.request_id`, or else the request id of the work under way."""
    identity = with_request_id(identity)
    body = msgspec.json.encode(payload)
    headers = {
        xut.HEADER: xut.sign(keys, identity, issuer=issuer, audience=rpc_audience(service, method),
                             body=body)
    }
    tracing.inject(headers)
    try:
        reply = await nc.request(rpc_subject(service, method), body, timeout=wait_seconds,
                                 headers=headers)
    except NoRespondersError:
        raise RpcError(503, f"no {service} service is answering {method}") from None
    except NatsTimeout:
        raise RpcError(504, f"{service} did not answer {method} in {wait_seconds} s") from None
    answer = msgspec.json.decode(reply.data)
    if "error" in answer:
        error = answer["error"]
        raise RpcError(int(error.get("status", 500)), str(error.get("detail", "")))
    return answer.get("result")


def with_request_id(identity: xut.Identity) -> xut.Identity:
    """`identity`, carrying the current request id when it names none."""
    current = request_id_var.get()
    if identity.request_id or not current:
        return identity
    return dataclasses.replace(identity, request_id=current)


RpcHandler = Callable[[xut.Claims, Any], Awaitable[Any]]


async def serve(
    nc: Client, keys: KeyRing, *, service: str, method: str, handler: RpcHandler
) -> Any:
    """Answer `argus.rpc.<service>.<method>` (queue group per service): the X-User-Token must
    be addressed to `service` and bound to the request body; errors go back as {"error": ...}."""

    # nats-py runs one subscription's callbacks one after another: a slow answer would hold up
    # every other request, so each is answered in its own task (at most RPC_CONCURRENCY at once)
    slots = asyncio.Semaphore(RPC_CONCURRENCY)
    running: set[asyncio.Task[None]] = set()

    async def on_message(msg: Msg) -> None:
        await slots.acquire()
        task = asyncio.create_task(_traced(msg))
        running.add(task)
        task.add_done_callback(_finished)

    def _finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()

    async def _traced(msg: Msg) -> None:
        with tracing.tracer("argus.rpc").start_as_current_span(
            f"rpc {service}.{method}", context=tracing.extract(msg.headers),
            kind=trace.SpanKind.SERVER,
        ):
            await _answer(msg)

    async def _answer(msg: Msg) -> None:
        started = time.perf_counter()
        try:
            claims = _verify(keys, rpc_audience(service, method), msg)
        except RpcError as exc:
            await _reply(msg, _error(exc))
            _log_answer(service, method, None, exc.status, started)
            return
        with request_context(claims.rid):  # the caller's request, for everything it causes
            reply = await _call(handler, claims, msg)
            await _reply(msg, reply)
            _log_answer(service, method, claims, reply.get("error", {}).get("status", 200),
                        started)

    return await nc.subscribe(rpc_subject(service, method), queue=service, cb=on_message)


async def _call(handler: RpcHandler, claims: xut.Claims, msg: Msg) -> dict[str, Any]:
    """The handler's answer as the reply: {"result": ...} or {"error": {status, detail}}."""
    try:
        result = await handler(claims, msgspec.json.decode(msg.data) if msg.data else None)
    except RpcError as exc:
        return _error(exc)
    except msgspec.DecodeError:
        return {"error": {"status": 400, "detail": "malformed request"}}
    except Exception:
        log.exception("rpc handler failed", extra={"subject": msg.subject})
        return {"error": {"status": 500, "detail": "internal error"}}
    return {"result": result}


def _error(exc: RpcError) -> dict[str, Any]:
    return {"error": {"status": exc.status, "detail": exc.detail}}


async def _reply(msg: Msg, reply: dict[str, Any]) -> None:
    if not msg.reply:
        return
    try:
        await msg.respond(msgspec.json.encode(reply))
    except Exception as exc:  # the connection is closing; the caller times out
        log.warning("rpc reply failed", extra={"error": str(exc)[:200]})


def _log_answer(service: str, method: str, claims: xut.Claims | None, status: int,
                started: float) -> None:
    if rpc_log.isEnabledFor(logging.INFO):
        rpc_log.info("rpc answered", extra={
            "rpc": rpc_audience(service, method), "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "caller": claims.iss if claims else None,
        })


def _verify(keys: KeyRing, audience: str, msg: Msg) -> xut.Claims:
    token = (msg.headers or {}).get(xut.HEADER)
    if not token:
        raise RpcError(401, "an X-User-Token is required")
    try:
        return xut.verify(keys, token, audience=audience, body=msg.data)
    except xut.TokenError as exc:
        log.warning("x-user-token refused", extra={"reason": exc.reason, "subject": msg.subject})
        raise RpcError(401, f"X-User-Token refused: {exc.reason}") from None
