"""Prometheus metrics: request counts and durations by method, route template and status.

Each application gets its own registry (so several apps can live in one test process); services
register their own metrics on `app[METRICS_KEY].registry`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from argus_shared.routing import template_of

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram

    @classmethod
    def create(cls, service: str) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        return cls(
            registry=registry,
            requests=Counter(
                "argus_http_requests", "HTTP requests handled", labels, registry=registry
            ),
            duration=Histogram(
                "argus_http_request_duration_seconds", "HTTP request duration", labels,
                registry=registry, buckets=BUCKETS,
            ),
        )


METRICS_KEY = web.AppKey("metrics", Metrics)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS_KEY]
        labels = (request.method, template_of(request), str(status))
        metrics.requests.labels(*labels).inc()
        metrics.duration.labels(*labels).observe(time.perf_counter() - started)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
