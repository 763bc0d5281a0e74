"""What every files operation works with: the database pool, the storage backend, the master
keys, the segment codec, the settings and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from argus_files.config import FilesConfig
from argus_files.metrics import FileMetrics
from argus_files.segments import Codec
from argus_files.storage import Storage
from argus_shared.settings import KeyRing


@dataclass
class Store:
    pool: asyncpg.Pool
    storage: Storage
    master: KeyRing
    codec: Codec
    config: FilesConfig
    metrics: FileMetrics


def view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "org_id": str(row["org_id"]), "owner_id": str(row["owner_id"]),
        "path": f"{row['org_id']}/{row['owner_id']}/{row['id']}", "name": row["name"],
        "content_type": row["content_type"], "size": row["size"],
        "sha256": bytes(row["sha256"]).hex(), "uploaded_by": row["uploaded_by"],
        "created_at": row["created_at"].isoformat(),
    }


STORE_KEY = web.AppKey("files_store", Store)
