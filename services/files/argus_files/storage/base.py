"""What a storage backend offers: write an object in a stream (all or nothing), read a byte
range of it in a stream, learn its size, delete it or everything under a prefix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol
from uuid import UUID

READ_CHUNK = 256 * 1024
_KEY = re.compile(r"^[0-9a-f-]{36}(/[0-9a-f-]{36}){0,2}/?$")


class StorageError(Exception):
    """The backend failed (unreachable, refused, out of space); the message is one line."""


def object_key(org_id: UUID, owner_id: UUID, object_id: UUID | None = None) -> str:
    """`<org>/<owner>/<object>` (or the prefix of an owner): built from UUIDs only, so a key
    can never leave its namespace."""
    parts = [org_id, owner_id] + ([object_id] if object_id is not None else [])
    return "/".join(str(UUID(str(p))) for p in parts)


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"not an object key: {key[:100]!r}")
    return key


class Writer(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the object visible, whole; before this nothing of it can be read."""

    async def abort(self) -> None:
        """Remove whatever was written so far (safe to call after a failed commit)."""


class Storage(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise unless the backend answers (readiness)."""

    def writer(self, key: str) -> Writer: ...

    async def size(self, key: str) -> int | None:
        """The stored size, or None when there is no such object."""

    def read(self, key: str, start: int, length: int) -> AsyncIterator[bytes]:
        """`length` bytes from `start`, in chunks; StorageError if fewer are there."""

    async def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object (and unfinished upload) under `prefix/`; how many objects."""

    async def sweep_partials(self, older_than: datetime) -> int:
        """Remove unfinished uploads begun before `older_than` (a crashed process's)."""
