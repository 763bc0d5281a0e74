"""Objects in an S3-compatible bucket under `<org>/<owner>/<object>`, through aiobotocore. An
upload buffers one part (`part_size`, 8 MiB by default) at a time: a small object is one PUT, a
larger one a multipart upload that is completed only when whole and aborted on any failure, so
nothing partial is ever visible."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from argus_files.config import S3Config
from argus_files.storage.base import READ_CHUNK, StorageError, check_key

DELETE_BATCH = 1000


def _failure(exc: Exception) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return StorageError(f"s3: {error.get('Code', 'error')}: {error.get('Message', '')}"[:300])
    return StorageError(f"s3: {str(exc).splitlines()[0][:300] if str(exc) else type(exc)}")


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3Writer:
    def __init__(self, storage: S3Storage, key: str) -> None:
        self.storage, self.key = storage, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.storage.config.part_size:
            await self._part()

    async def _part(self) -> None:
        client, bucket = self.storage.client, self.storage.config.bucket
        try:
            if self.upload_id is None:
                created = await client.create_multipart_upload(Bucket=bucket, Key=self.key)
                self.upload_id = created["UploadId"]
            body, self.buffer = bytes(self.buffer), bytearray()
            number = len(self.parts) + 1
            answer = await client.upload_part(Bucket=bucket, Key=self.key, PartNumber=number,
                                              UploadId=self.upload_id, Body=body)
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def commit(self) -> None:
        client, bucket = self.storage.client, self.storage.config.bucket
        try:
            if self.upload_id is None:
                body, self.buffer = bytes(self.buffer), bytearray()
                await client.put_object(Bucket=bucket, Key=self.key, Body=body)
                return
            if self.buffer:
                await self._part()
            await client.complete_multipart_upload(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts})
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None
        self.upload_id = None

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        with contextlib.suppress(BotoCoreError, ClientError):
            await self.storage.client.abort_multipart_upload(
                Bucket=self.storage.config.bucket, Key=self.key, UploadId=upload_id)


class S3Storage:
    name = "s3"

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self.client: Any = None

    async def start(self) -> None:
        session = get_session()
        self.client = await self._stack.enter_async_context(session.create_client(
            "s3", endpoint_url=self.config.endpoint_url, region_name=self.config.region,
            aws_access_key_id=self.config.access_key_id,
            aws_secret_access_key=self.config.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=5, read_timeout=60,
                          max_pool_connections=50)))
        try:
            await self.client.head_bucket(Bucket=self.config.bucket)
        except ClientError as exc:
            if not _missing(exc):
                raise _failure(exc) from None
            try:
                await self.client.create_bucket(Bucket=self.config.bucket)
            except (BotoCoreError, ClientError) as created:
                raise _failure(created) from None
        except BotoCoreError as exc:
            raise _failure(exc) from None

    async def close(self) -> None:
        await self._stack.aclose()

    async def check(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.config.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, check_key(key))

    async def size(self, key: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.config.bucket, Key=check_key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise _failure(exc) from None
        except BotoCoreError as exc:
            raise _failure(exc) from None
        return int(head["ContentLength"])

    async def read(self, key: str, start: int, length: int) -> AsyncIterator[bytes]:
        try:
            answer = await self.client.get_object(
                Bucket=self.config.bucket, Key=check_key(key),
                Range=f"bytes={start}-{start + length - 1}")
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                length -= len(chunk)
                yield chunk
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _failure(exc) from None
        finally:
            body.close()
        if length > 0:
            raise StorageError("s3: the object is shorter than expected")

    async def delete(self, key: str) -> None:
        try:
            await self.client.delete_object(Bucket=self.config.bucket, Key=check_key(key))
        except ClientError as exc:
            if not _missing(exc):
                raise _failure(exc) from None
        except BotoCoreError as exc:
            raise _failure(exc) from None

    async def delete_prefix(self, prefix: str) -> int:
        bucket, prefix = self.config.bucket, check_key(prefix).rstrip("/") + "/"
        removed = 0
        try:
            await self._abort_uploads(prefix)
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for first in range(0, len(keys), DELETE_BATCH):
                    batch = keys[first:first + DELETE_BATCH]
                    await self.client.delete_objects(Bucket=bucket,
                                                     Delete={"Objects": batch, "Quiet": True})
                    removed += len(batch)
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None
        return removed

    async def sweep_partials(self, older_than: datetime) -> int:
        try:
            return await self._abort_uploads("", older_than)
        except (BotoCoreError, ClientError) as exc:
            raise _failure(exc) from None

    async def _abort_uploads(self, prefix: str, older_than: datetime | None = None) -> int:
        listed = await self.client.list_multipart_uploads(Bucket=self.config.bucket,
                                                          Prefix=prefix)
        count = 0
        for upload in listed.get("Uploads", []):
            if older_than is not None and upload["Initiated"] >= older_than:
                continue
            count += 1
            with contextlib.suppress(ClientError):
                await self.client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return count
