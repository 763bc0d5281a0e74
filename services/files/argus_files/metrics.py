"""The files service's own Prometheus metrics (on the app's registry)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

FAILURE_REASONS = ("too_large", "type_not_allowed", "malformed", "aborted", "storage", "internal")


@dataclass
class FileMetrics:
    bytes_in: Counter
    bytes_out: Counter
    objects: Gauge
    stored: Counter
    shredded: Counter
    upload_failures: Counter
    integrity_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FileMetrics:
        metrics = cls(
            bytes_in=Counter("argus_files_bytes_in", "Plaintext bytes of objects stored",
                             registry=registry),
            bytes_out=Counter("argus_files_bytes_out", "Plaintext bytes of objects served",
                              registry=registry),
            objects=Gauge("argus_files_objects", "Stored objects (all orgs)", registry=registry),
            stored=Counter("argus_files_objects_stored", "Objects stored", registry=registry),
            shredded=Counter("argus_files_objects_shredded",
                             "Objects whose data key was destroyed", registry=registry),
            upload_failures=Counter("argus_files_upload_failures", "Uploads refused or failed",
                                    ("reason",), registry=registry),
            integrity_failures=Counter(
                "argus_files_integrity_failures",
                "Stored objects that failed to decrypt (tampered or damaged)", registry=registry),
        )
        for reason in FAILURE_REASONS:
            metrics.upload_failures.labels(reason)
        return metrics


FILE_METRICS_KEY = web.AppKey("file_metrics", FileMetrics)
