"""Objects as files under one directory: `<dir>/<org>/<owner>/<object>`. An upload is written
to `<dir>/.uploads/` and renamed into place once whole (after fsync), so a reader never sees a
partial object and a failed upload leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from argus_files.storage.base import READ_CHUNK, StorageError, check_key

FLUSH_BYTES = 1024 * 1024
UPLOADS = ".uploads"


class LocalWriter:
    def __init__(self, storage: LocalStorage, key: str) -> None:
        self.storage, self.key = storage, key
        self.temp = storage.root / UPLOADS / f"{uuid.uuid4()}.part"
        self.file: BinaryIO | None = None
        self.buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self.file is None:
            self.file = await asyncio.to_thread(self.temp.open, "xb")
        chunk, self.buffer = self.buffer, bytearray()
        await _io(self.file.write, chunk)

    async def commit(self) -> None:
        await self._flush()
        assert self.file is not None
        await _io(_sync_and_close, self.file)
        self.file = None
        target = self.storage.path(self.key)
        await _io(_place, self.temp, target)

    async def abort(self) -> None:
        file, self.file, self.buffer = self.file, None, bytearray()
        if file is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(file.close)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.temp.unlink, missing_ok=True)


def _sync_and_close(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()


def _place(temp: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _io(function: object, *args: object) -> object:
    try:
        return await asyncio.to_thread(function, *args)  # type: ignore[arg-type]
    except OSError as exc:
        raise StorageError(f"local storage: {exc.strerror or exc}") from None


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    async def start(self) -> None:
        await _io(lambda: (self.root / UPLOADS).mkdir(parents=True, exist_ok=True))

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise StorageError(f"local storage: {self.root} is not writable")

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError("key outside the storage directory")
        return path

    def writer(self, key: str) -> LocalWriter:
        self.path(key)
        return LocalWriter(self, key)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"local storage: {exc.strerror}") from None

    async def read(self, key: str, start: int, length: int) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise StorageError(f"local storage: {exc.strerror}") from None
        try:
            await asyncio.to_thread(file.seek, start)
            while length > 0:
                chunk = await asyncio.to_thread(file.read, min(READ_CHUNK, length))
                if not chunk:
                    raise StorageError("local storage: the object is shorter than expected")
                length -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await _io(path.unlink, True)

    async def delete_prefix(self, prefix: str) -> int:
        path = self.path(prefix)

        def remove() -> int:
            if not path.exists():
                return 0
            count = sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path)
            return count

        return int(await _io(remove))  # type: ignore[call-overload]

    async def sweep_partials(self, older_than: datetime) -> int:
        cutoff = older_than.timestamp()

        def remove() -> int:
            count = 0
            for path in (self.root / UPLOADS).glob("*.part"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        count += 1
            return count

        return int(await _io(remove))  # type: ignore[call-overload]
