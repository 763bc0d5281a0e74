"""OpenTelemetry: spans for HTTP (server middleware, aiohttp client), asyncpg and NATS, with W3C
`traceparent` carried in HTTP and NATS headers alike. Spans are exported over OTLP/HTTP only when
an endpoint is configured; otherwise they are created (so ids propagate) and dropped."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from aiohttp import web
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from argus_shared.routing import template_of

UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_instrumented = False


def setup_tracing(
    service: str, otlp_endpoint: str | None, *, record: bool = False
) -> TracerProvider | None:
    """With no endpoint (and `record` false) nothing is recorded: spans stay non-recording,
    which still carries an incoming `traceparent` onward, at no cost per request or query."""
    global _instrumented
    if not otlp_endpoint and not record:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"argus-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if not _instrumented:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AioHttpClientInstrumentor().instrument()
        AsyncPGInstrumentor().instrument()
        _instrumented = True
    return provider


def tracing_middleware() -> Any:
    """A SERVER span per request, continuing the caller's `traceparent`, named by the route
    template. (The aiohttp-server instrumentation package's middleware depends on state its
    instrumentor sets while monkey-patching `web.Application`, so it is not used here.)"""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in UNTRACED_PATHS or not _wanted(request):
            return await handler(request)
        name = f"{request.method} {template_of(request)}"
        # the span's status is ours to set: an HTTPException may be a redirect, not an error
        with tracer("argus.http").start_as_current_span(
            name, context=extract(request.headers), kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": request.path},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                _set_status(span, exc.status)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
                raise
            _set_status(span, response.status)
            return response

    return middleware


def _wanted(request: web.Request) -> bool:
    """A span only matters when one is recorded or a caller's trace must be carried on;
    otherwise it would be non-recording with no trace id, and nothing would be propagated."""
    return ("traceparent" in request.headers
            or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider))


def _set_status(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add `traceparent` (and `tracestate`) of the current span to outgoing headers."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> context.Context:
    """The context carried by `traceparent`/`tracestate` in `headers`, whatever their case."""
    return propagate.extract({name.lower(): value for name, value in (headers or {}).items()})


def tracer(name: str = "argus") -> trace.Tracer:
    return trace.get_tracer(name)
