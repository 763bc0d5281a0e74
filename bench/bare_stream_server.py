"""The baseline for bench/stream_fanout.py: the same NATS subscription as audit's live streams
(an ordered consumer of `ARGUS_EVENTS` from its end), each event written as the same SSE frame
to the sockets of its org (`GET /stream?org=<id>`) through a bounded per-socket queue, with no
authentication, no verification, no filter, no caps: what a fan-out costs with nothing else.

    python bench/bare_stream_server.py <nats-url> <port>
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import nats
from aiohttp import web
from nats.js.api import ConsumerConfig, DeliverPolicy

from argus_shared.events import STREAM, SUBJECT_PREFIX
from argus_shared.runner import event_loop

BUFFER = 256
SOCKETS = web.AppKey("sockets", dict)


async def stream(request: web.Request) -> web.StreamResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue(BUFFER)
    group = request.app[SOCKETS].setdefault(request.query["org"], set())
    group.add(queue)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    try:
        while True:
            await response.write(await queue.get())
    finally:
        group.discard(queue)


async def subscribe(app: web.Application) -> Any:
    nc = await nats.connect(app["nats_url"])
    js = nc.jetstream()
    start = (await js.stream_info(STREAM)).state.last_seq + 1

    async def on_message(msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        envelope = json.loads(msg.data)
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, envelope["type"].encode(), msg.data)
        for queue in list(app[SOCKETS].get(envelope.get("org_id"), ())):
            if queue.full():
                continue
            queue.put_nowait(frame)

    await js.subscribe(SUBJECT_PREFIX + ".>", cb=on_message, ordered_consumer=True,
                       config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                             opt_start_seq=start))
    return nc


def make_app(nats_url: str) -> web.Application:
    app = web.Application()
    app[SOCKETS] = {}
    app["nats_url"] = nats_url
    app.router.add_get("/stream", stream)

    async def lifecycle(app: web.Application) -> Any:
        nc = await subscribe(app)
        yield
        await nc.close()

    app.cleanup_ctx.append(lifecycle)
    return app


if __name__ == "__main__":
    url, port = sys.argv[1], int(sys.argv[2])
    web.run_app(make_app(url), host="127.0.0.1", port=port, print=None, access_log=None,
                loop=event_loop())
