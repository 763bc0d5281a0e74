"""W3C traceparent carried from an HTTP request into spans, the outbox, NATS messages and
request-reply, so one trace follows a request across services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from argus_shared import db, events, outbox, tracing, xut
from argus_shared.nats import connect, ensure_stream, request, serve
from argus_shared.outbox import Relay
from argus_shared.routing import Route
from argus_shared.settings import Settings
from support.infra import Infra
from support.web import serve as serve_http

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = tracing.setup_tracing("test", None, record=True)  # process-wide, set once
    assert provider is not None
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def trace_id_of(headers: dict[str, str] | None) -> str:
    context = trace.get_current_span(tracing.extract(headers)).get_span_context()
    return format(context.trace_id, "032x")


async def test_an_http_request_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"trace": trace_id_of(tracing.inject({}))})

    routes = [Route("GET", "/things/{thing_id}", handler, "Read", auth="public")]
    caller = tracing.extract({"traceparent": TRACEPARENT})
    async with serve_http(routes, middlewares=[tracing.tracing_middleware()]) as (base, http):
        # the instrumented aiohttp client sends the caller's trace as `traceparent`
        with tracing.tracer().start_as_current_span("caller", context=caller):
            async with http.get(f"{base}/things/42") as r:
                assert (await r.json())["trace"] == TRACE_ID
            async with http.get(f"{base}/healthz"):
                pass
    server = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER
              and format(s.context.trace_id, "032x") == TRACE_ID]
    assert [s.name for s in server] == ["GET /things/{thing_id}"]  # probes are not traced
    assert server[0].attributes["http.response.status_code"] == 200


async def test_events_and_rpc_carry_the_trace_over_nats(
    spans: InMemorySpanExporter, infra: Infra, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for("files")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema)
    nc = await connect(infra.nats_url, "test-tracing")
    await ensure_stream(nc.jetstream())
    seen: list[str] = []

    async def echo(claims: xut.Claims, payload: object) -> str:
        seen.append(trace_id_of(tracing.inject({})))
        return "ok"

    sub = await serve(nc, settings.xut_keys, service="files", method="trace", handler=echo)
    kind = f"test.trace{uuid.uuid4().hex[:8]}"
    parent = tracing.extract({"traceparent": TRACEPARENT})
    try:
        with tracing.tracer().start_as_current_span("work", context=parent):
            async with pool.acquire() as conn:
                await outbox.emit(conn, "files", events.new_event(
                    kind, actor=events.Actor("user", "u"), resource=events.Resource("f", "1")))
            await request(nc, settings.xut_keys, issuer="auth", service="files", method="trace",
                          payload={}, identity=xut.Identity(sub="service:auth"))
        relay = Relay(pool, nc.jetstream(), service="files", keys=settings.xut_keys)
        while await relay.relay_once():
            pass
        sub_js = await nc.jetstream().pull_subscribe(events.subject_for("files", kind),
                                                     stream=events.STREAM)
        [message] = await sub_js.fetch(1, timeout=5)
    finally:
        await sub.unsubscribe()
        await nc.drain()
        await pool.close()
    assert trace_id_of(message.headers) == TRACE_ID
    assert seen == [TRACE_ID]


@pytest.fixture(autouse=True)
async def _clean(spans: InMemorySpanExporter) -> AsyncIterator[None]:
    spans.clear()
    yield
