"""Prometheus metrics: request counts and durations by method, route template and status.

Each application gets its own registry (so several apps can live in one test process); services
register their own metrics on `app[METRICS_KEY].registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    # label children by (method, route, status): the label look-up is a lock and a dict each
    _children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            labels = (method, route, str(status))
            children = self._children[(method, route, status)] = (
                self.requests.labels(*labels), self.duration.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)


METRICS_KEY = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
