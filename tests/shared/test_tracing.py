"""W3C traceparent carried from an HTTP request into spans, the outbox, NATS messages and
request-reply, so one trace follows a request across services. Spans are recorded by an
in-memory exporter on the process-wide tracer provider (which can be set only once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import asyncpg
import pytest
from aiohttp import web
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from yarl import URL

from argus_shared import events, outbox, tracing, xut
from argus_shared.consumer import Received
from argus_shared.nats import request, serve
from argus_shared.outbox import Relay
from argus_shared.routing import Route
from argus_shared.settings import Settings
from support.events import eventually, open_nats, open_pool, relay_all, running_consumer
from support.infra import Infra
from support.web import serve as serve_http

SERVICE = "audit"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    tracing.setup_tracing("test", None, record=True)  # sets the process-wide provider, once
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later modules' spans are not kept


@pytest.fixture(autouse=True)
def _clean(spans: InMemorySpanExporter) -> None:
    spans.clear()


def hex_trace(span_context: trace.SpanContext) -> str:
    return format(span_context.trace_id, "032x")


def trace_id_of(headers: dict[str, str] | None) -> str:
    return hex_trace(trace.get_current_span(tracing.extract(headers)).get_span_context())


def server_spans(spans: InMemorySpanExporter, trace_id: str = TRACE_ID) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER
            and s.context is not None and hex_trace(s.context) == trace_id]


# --- HTTP ---------------------------------------------------------------------------------------


async def read_thing(request: web.Request) -> web.Response:
    return web.json_response({"trace": trace_id_of(dict(tracing.inject({})))})


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/things/1")


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


ROUTES = [
    Route("GET", "/things/{thing_id}", read_thing, "Read", auth="public"),
    Route("GET", "/old/{thing_id}", moved, "Moved", auth="public"),
    Route("GET", "/broken", broken, "Broken", auth="public"),
]


async def get(path: str, headers: dict[str, str]) -> int:
    """GET over a bare socket: the aiohttp client is instrumented (it would put its own
    traceparent in), and this way the header names go out exactly as written."""
    async with serve_http(ROUTES, middlewares=[tracing.tracing_middleware()]) as (base, _):
        url = URL(base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {url.host}", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        writer.close()
        await writer.wait_closed()
        return status


async def test_a_request_with_a_traceparent_gets_a_server_span_in_that_trace(
    spans: InMemorySpanExporter,
) -> None:
    assert await get("/things/42", {"traceparent": TRACEPARENT}) == 200
    [span] = server_spans(spans)
    assert span.name == "GET /things/{thing_id}"  # the route template, not the path
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.parent.is_remote
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["url.path"] == "/things/42"
    assert span.status.status_code == trace.StatusCode.UNSET


async def test_the_traceparent_header_is_found_whatever_its_case(
    spans: InMemorySpanExporter,
) -> None:
    assert await get("/things/42", {"TraceParent": TRACEPARENT}) == 200
    assert [s.name for s in server_spans(spans)] == ["GET /things/{thing_id}"]


def test_extract_reads_trace_headers_whatever_their_case() -> None:
    for name in ("traceparent", "Traceparent", "TRACEPARENT"):  # e.g. NATS headers from Go
        assert trace_id_of({name: TRACEPARENT}) == TRACE_ID


async def test_without_a_traceparent_a_new_trace_starts(spans: InMemorySpanExporter) -> None:
    assert await get("/things/42", {}) == 200
    [span] = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert span.parent is None and span.context is not None and span.context.trace_id != 0


async def test_probes_are_not_traced(spans: InMemorySpanExporter) -> None:
    assert await get("/healthz", {"traceparent": TRACEPARENT}) == 200
    assert server_spans(spans) == []


async def test_a_redirect_is_not_an_error_but_a_crash_is(spans: InMemorySpanExporter) -> None:
    assert await get("/old/1", {"traceparent": TRACEPARENT}) == 302
    assert await get("/broken", {"traceparent": TRACEPARENT}) == 500
    redirect, crash = server_spans(spans)
    assert redirect.name == "GET /old/{thing_id}"
    assert redirect.attributes is not None and crash.attributes is not None
    assert redirect.attributes["http.response.status_code"] == 302
    assert redirect.status.status_code == trace.StatusCode.UNSET
    assert crash.attributes["http.response.status_code"] == 500
    assert crash.status.status_code == trace.StatusCode.ERROR


async def test_the_instrumented_client_sends_the_current_trace(
    spans: InMemorySpanExporter,
) -> None:
    caller = tracing.extract({"traceparent": TRACEPARENT})
    async with serve_http(ROUTES, middlewares=[tracing.tracing_middleware()]) as (base, http):
        with tracing.tracer().start_as_current_span("caller", context=caller):
            async with http.get(f"{base}/things/42") as r:
                assert (await r.json())["trace"] == TRACE_ID
    assert [s.name for s in server_spans(spans)] == ["GET /things/{thing_id}"]


# --- the outbox, NATS and request-reply -------------------------------------------------------


@pytest.fixture(scope="module")
async def nc(infra: Infra) -> AsyncIterator[Client]:
    async with open_nats(infra.nats_url, "test-tracing") as client:
        yield client


@pytest.fixture(scope="module")
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(SERVICE)


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(settings) as created:
        yield created


async def test_an_event_carries_the_trace_from_emit_through_the_relay_to_the_consumer(
    spans: InMemorySpanExporter, nc: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    kind = f"test.trace{uuid.uuid4().hex[:12]}"
    event = events.new_event(kind, actor=events.Actor("user", "u"),
                             resource=events.Resource("f", "1"), org_id=uuid.uuid4())
    with tracing.tracer().start_as_current_span(
        "work", context=tracing.extract({"traceparent": TRACEPARENT})
    ):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.emit(conn, SERVICE, event)
    async with pool.acquire() as conn:
        stored = await conn.fetchval("select headers from outbox where id = $1", event.id)
    assert TRACE_ID in stored["traceparent"]

    await relay_all(Relay(pool, nc.jetstream(), service=SERVICE, keys=settings.xut_keys))
    seen: list[Received] = []

    async def handler(batch: Sequence[Received]) -> None:
        seen.extend(batch)

    async with running_consumer(nc, settings.xut_keys, handler=handler,
                                subject=events.subject_for(SERVICE, kind)):
        assert await eventually(lambda: bool(seen))
    [received] = seen
    assert received.event == event
    assert trace_id_of(received.msg.headers) == TRACE_ID


async def test_request_reply_continues_the_callers_trace(
    spans: InMemorySpanExporter, nc: Client, settings: Settings
) -> None:
    seen: list[str] = []

    async def echo(claims: xut.Claims, payload: object) -> str:
        seen.append(trace_id_of(dict(tracing.inject({}))))
        return "ok"

    method = f"trace{uuid.uuid4().hex[:8]}"
    sub = await serve(nc, settings.xut_keys, service=SERVICE, method=method, handler=echo)
    try:
        with tracing.tracer().start_as_current_span(
            "work", context=tracing.extract({"traceparent": TRACEPARENT})
        ):
            assert await request(nc, settings.xut_keys, issuer="auth", service=SERVICE,
                                 method=method, payload={},
                                 identity=xut.Identity(sub="service:auth")) == "ok"
    finally:
        await sub.unsubscribe()
    assert seen == [TRACE_ID]
    await asyncio.sleep(0)
    assert [s.name for s in server_spans(spans)] == [f"rpc {SERVICE}.{method}"]
