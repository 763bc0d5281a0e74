"""`GET /stream`: the SSE handler. Authentication is the route table's; here the identity
becomes a `Viewer`, the caps are taken (429 past them), missed events are replayed from
`Last-Event-ID` or `?since=`, then live frames are written until the client leaves, falls
behind, is revoked, its token expires or the replica drains. One task per replica (`police`)
judges every open stream against the shared revocation mirror every `TICK` seconds (so a
stream ends within a second of the broadcast) and queues heartbeats to silent ones; a stream's
own task only waits on its queue (no timer per stream) and writes what is queued in one go. A
revoked API key is closed by auth's cache broadcast (see `app.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiohttp import web

from argus_audit import schemas
from argus_audit.stream import BEAT, Connection, Hub, Metrics, control
from argus_audit.stream_caps import CapReached, Caps
from argus_audit.stream_filter import Viewer
from argus_shared.access import ACCESS_CLAIMS, PRINCIPAL, AccessClaims, Revocations
from argus_shared.errors import Problem
from argus_shared.event_types import CATALOGUE
from argus_shared.problem_types import STREAM_CAP
from argus_shared.runner import REVOCATIONS_KEY
from argus_shared.validation import parse_query

TICK = 0.25
RETRY_MS = 2000
CAP_RETRY_SECONDS = 5


@dataclass(frozen=True)
class StreamConfig:
    per_user: int = 5
    per_org: int = 200
    buffer: int = 256  # frames a connection may fall behind before it is dropped
    heartbeat: float = 15.0
    lease: float = 30.0  # TTL of a cap lease in NATS KV


HUB_KEY = web.AppKey("stream_hub", Hub)
CAPS_KEY = web.AppKey("stream_caps", Caps)
STREAM_METRICS_KEY = web.AppKey("stream_metrics", Metrics)
STREAM_CONFIG_KEY = web.AppKey("stream_config", StreamConfig)
HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}


def types_of(query: schemas.StreamQuery) -> tuple[str, ...]:
    prefixes = tuple(p for p in (query.types or "").split(",") if p)
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in CATALOGUE):
            raise Problem(422, f"types: no event type starts with {prefix!r}; the catalogue is "
                          "docs/events.md", title="Unknown event type",
                          type="urn:argus:problem:unknown-event-type")
    return prefixes


def since_of(request: web.Request, query: schemas.StreamQuery) -> int | None:
    given = request.headers.get("Last-Event-ID")
    if given is None:
        return query.since
    if not given.isascii() or not given.isdigit() or len(given) > 18:
        raise Problem(400, "Last-Event-ID is not a stream position (digits)")
    return int(given)


def gone(revocations: Revocations, claims: AccessClaims | None, org: str | None) -> str | None:
    """Why the connection's identity no longer holds, or None."""
    if claims is not None:
        if claims.exp <= time.time():
            return "expired"
        if revocations.revoked(claims):
            return "revoked"
    elif org is not None and org in revocations.orgs:
        return "revoked"
    return None


async def stream(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, schemas.StreamQuery)
    viewer = Viewer.of(request[PRINCIPAL], types_of(query))
    since = since_of(request, query)
    app = request.app
    try:
        lease = await app[CAPS_KEY].acquire(viewer.kind, viewer.id, viewer.org)
    except CapReached as exc:
        app[STREAM_METRICS_KEY].refused.labels(exc.which).inc()
        raise Problem(429, str(exc), title="Too many streams", type=STREAM_CAP,
                      headers={"Retry-After": str(CAP_RETRY_SECONDS)}) from None
    conn = Connection(viewer, app[STREAM_CONFIG_KEY].buffer)
    if viewer.kind == "user":
        conn.claims = request.get(ACCESS_CLAIMS)
    try:
        return await _serve(request, conn, since)
    finally:
        app[HUB_KEY].leave(conn)
        await app[CAPS_KEY].release(lease)


async def _serve(request: web.Request, conn: Connection, since: int | None) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    position = hub.join(conn)
    conn.task = asyncio.current_task()
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    await response.write(b"retry: %d\n\n" % RETRY_MS)
    if since is not None:
        await _replay(response, hub, conn, since, position)
    await _live(request, response, conn, since or 0)
    return response


async def _replay(response: web.StreamResponse, hub: Hub, conn: Connection, since: int,
                  position: int) -> None:
    if since < position and since + 1 < await hub.first_seq():
        await response.write(control("reset", b'{"reason": "the position is no longer kept"}'))
        return
    for _, data in await hub.replay(conn.viewer, since, position):
        await _write(response, conn, data)
        hub.metrics.sent.inc()


async def _write(response: web.StreamResponse, conn: Connection, data: bytes) -> None:
    conn.writing = True
    try:
        await response.write(data)
    finally:
        conn.writing = False


async def _live(request: web.Request, response: web.StreamResponse, conn: Connection,
                floor: int) -> None:
    metrics = request.app[STREAM_METRICS_KEY]
    while True:
        frames = [await conn.queue.get()]
        while not conn.queue.empty():
            frames.append(conn.queue.get_nowait())
        out, sent, last = [], 0, None
        for seq, data in frames:
            if seq == 0:
                last = data
                break
            if seq < 0 or seq > floor:
                out.append(data)
                sent += seq > 0
        if out:
            await _write(response, conn, b"".join(out))
            conn.last_write = time.monotonic()
            if sent:
                metrics.sent.inc(sent)
        if last is not None:
            if last:
                with contextlib.suppress(ConnectionError):
                    await _write(response, conn, last)
            return


async def police(app: web.Application) -> None:
    """Every `TICK`, `police_once` over this replica's streams."""
    hub, heartbeat = app[HUB_KEY], app[STREAM_CONFIG_KEY].heartbeat
    while True:
        await asyncio.sleep(TICK)
        police_once(hub, app[REVOCATIONS_KEY], heartbeat, time.monotonic())


def police_once(hub: Hub, revocations: Revocations, heartbeat: float, now: float) -> None:
    """End the streams whose identity no longer holds; queue a heartbeat to those silent for
    `heartbeat` seconds."""
    for conn in list(hub.connections):
        if conn.closed is not None:
            continue
        why = gone(revocations, conn.claims, conn.viewer.org)
        if why is not None:
            conn.end(why, control(why))
        elif now - conn.last_write >= heartbeat and conn.queue.empty():
            conn.offer(BEAT)
            conn.last_write = now
