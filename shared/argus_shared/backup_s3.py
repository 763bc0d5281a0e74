"""Backups in an S3-compatible bucket, through aiobotocore (the client the files service uses).

`argus backup --to s3://bucket/prefix` takes the base into the local archive as ever
(ARGUS_BACKUP_DIR, or `<data-dir>/backups`: where the WAL is archived and sealed), then uploads
what the bucket lacks under the prefix: the base's sealed files and its manifest, every sealed
WAL segment, and the deletions journal (always, it grows). Only sealed bytes leave the machine.
`argus restore --from s3://bucket/prefix` downloads the prefix into a private temporary
directory and restores from it, authenticating everything as from a directory.

Settings: ARGUS_BACKUP_S3_ENDPOINT (unset: AWS), ARGUS_BACKUP_S3_REGION (us-east-1),
ARGUS_BACKUP_S3_ACCESS_KEY_ID and ARGUS_BACKUP_S3_SECRET_ACCESS_KEY (or their _FILE).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from argus_shared.backup_seal import BackupSealError
from argus_shared.settings import ConfigError, Env

SCHEME = "s3://"
KEPT = ("base/", "wal/", "deletions.jsonl")


class S3BackupError(BackupSealError):
    """The bucket could not be read or written; the message is one line (`argus` exits 1)."""


def is_s3(target: str | Path | None) -> bool:
    return isinstance(target, str) and target.startswith(SCHEME)


def bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{url!r} is not s3://bucket/prefix")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[Any]:
    from aiobotocore.session import get_session
    from botocore.config import Config

    env = Env()
    endpoint = env.str("ARGUS_BACKUP_S3_ENDPOINT")
    async with get_session().create_client(
            "s3", endpoint_url=endpoint, region_name=env.str("ARGUS_BACKUP_S3_REGION",
                                                             "us-east-1"),
            aws_access_key_id=env.secret("ARGUS_BACKUP_S3_ACCESS_KEY_ID", required=False),
            aws_secret_access_key=env.secret("ARGUS_BACKUP_S3_SECRET_ACCESS_KEY",
                                             required=False),
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=5, read_timeout=120)) as client:
        yield client


def _failure(exc: Exception) -> S3BackupError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return S3BackupError(f"s3: {error.get('Code', 'error')}: {error.get('Message', '')}"
                             [:300])
    return S3BackupError(f"s3: {str(exc).splitlines()[0][:300] if str(exc) else type(exc)}")


async def _keys(client: Any, bucket: str, prefix: str) -> set[str]:
    found: set[str] = set()
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        found.update(item["Key"] for item in page.get("Contents", []))
    return found


def _local_files(archive: Path) -> Iterator[tuple[str, Path]]:
    for directory in ("base", "wal"):
        for path in sorted((archive / directory).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield str(path.relative_to(archive)), path
    journal = archive / "deletions.jsonl"
    if journal.exists():
        yield journal.name, journal


async def _upload(archive: Path, url: str) -> int:
    bucket, prefix = bucket_and_prefix(url)
    sent = 0
    async with _client() as client:
        present = await _keys(client, bucket, prefix)
        for name, path in _local_files(archive):
            if prefix + name in present and name != "deletions.jsonl":
                continue  # sealed files never change; the journal only grows
            await client.put_object(Bucket=bucket, Key=prefix + name,
                                    Body=await asyncio.to_thread(path.read_bytes))
            sent += 1
    return sent


async def _download(url: str, into: Path) -> int:
    bucket, prefix = bucket_and_prefix(url)
    got = 0
    async with _client() as client:
        for key in sorted(await _keys(client, bucket, prefix)):
            name = key[len(prefix):]
            if not name.startswith(KEPT) or ".." in Path(name).parts:
                continue
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            answer = await client.get_object(Bucket=bucket, Key=key)
            async with answer["Body"] as body:
                target.write_bytes(await body.read())
            got += 1
    return got


def upload(archive: Path, url: str) -> int:
    """Upload what the bucket lacks of `archive`: how many files."""
    try:
        return asyncio.run(_upload(archive, url))
    except Exception as exc:
        if isinstance(exc, ConfigError):
            raise
        raise _failure(exc) from None


@contextlib.contextmanager
def downloaded(url: str) -> Iterator[Path]:
    """The prefix, in a private temporary directory, for as long as the block runs."""
    directory = Path(tempfile.mkdtemp(prefix="argus-s3-backup-"))
    try:
        try:
            count = asyncio.run(_download(url, directory))
        except Exception as exc:
            if isinstance(exc, ConfigError):
                raise
            raise _failure(exc) from None
        if not count:
            raise S3BackupError(f"{url}: no backup under this prefix")
        print(f"argus: {count} backup files downloaded from {url}", flush=True)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
