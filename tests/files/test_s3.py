"""The S3-compatible backend against a real server process (SeaweedFS `weed server -s3`):
single-PUT and multipart objects, ranges, nothing partial left by a refused upload, tampering
caught, deletion and purges remove the objects from the bucket."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
from aiobotocore.session import get_session

from argus_files.segments import HEADER_SIZE, stored_size
from support.files_service import Files
from support.s3_server import ACCESS_KEY, SECRET_KEY

BUCKET = "argus-files"


async def bucket_state(files: Files, prefix: str) -> tuple[dict[str, bytes], list[str]]:
    """The objects (key -> bytes) and unfinished multipart uploads under `prefix`."""
    assert files.config.s3 is not None
    async with get_session().create_client(
            "s3", endpoint_url=files.config.s3.endpoint_url, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY) as client:
        listed = await client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        found = {}
        for item in listed.get("Contents", []):
            got = await client.get_object(Bucket=BUCKET, Key=item["Key"])
            async with got["Body"] as body:
                found[item["Key"]] = await body.read()
        uploads = await client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        return found, [u["Key"] for u in uploads.get("Uploads", [])]


async def put_raw(files: Files, key: str, data: bytes) -> None:
    assert files.config.s3 is not None
    async with get_session().create_client(
            "s3", endpoint_url=files.config.s3.endpoint_url, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY) as client:
        await client.put_object(Bucket=BUCKET, Key=key, Body=data)


async def test_small_and_multipart_objects_round_trip_encrypted(files_s3: Files) -> None:
    user, org, token = await files_s3.member_of_new_org()
    small = b"a small note\n" * 10
    large = b"%PDF-1.7\n" + os.urandom(11 * 1024 * 1024)  # three 5 MiB parts
    one = await files_s3.uploaded(token, org, user.id, small, "note.txt")
    two = await files_s3.uploaded(token, org, user.id, large, "big.pdf")
    assert two["content_type"] == "application/pdf"
    stored, uploads = await bucket_state(files_s3, org)
    assert set(stored) == {one["path"], two["path"]} and uploads == []
    assert len(stored[two["path"]]) == stored_size(len(large))
    assert b"small note" not in stored[one["path"]]
    assert large[1000:1100] not in stored[two["path"]]
    assert (await files_s3.download(token, one["path"])).body == small
    got = await files_s3.download(token, two["path"])
    assert got.status == 200 and got.body == large
    span = (5 * 1024 * 1024 - 10, 5 * 1024 * 1024 + 70_000)
    got = await files_s3.download(token, two["path"], {"Range": f"bytes={span[0]}-{span[1]}"})
    assert got.status == 206 and got.body == large[span[0]:span[1] + 1]


async def _stream(total: int) -> AsyncIterator[bytes]:
    chunk = b"plain text line\n" * 4096
    sent = 0
    while sent < total:
        sent += len(chunk)
        yield chunk


async def test_a_refused_upload_leaves_no_object_and_no_multipart_upload(
    files_s3: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files_s3.member_of_new_org()
    limit = files_s3.config.max_bytes
    try:  # past two uploaded parts, then over the limit
        reply = await files_s3.upload(token, org, user.id, _stream(limit + 1024 * 1024))
        assert reply.status == 413
    except aiohttp.ClientError:
        pass
    reply = await files_s3.upload(token, org, user.id, b"<script>x</script>" * 1000)
    assert reply.status == 415
    stored, uploads = await bucket_state(files_s3, org)
    assert stored == {} and uploads == []
    assert await admin.fetchval("select count(*) from files.objects where org_id = $1",
                                uuid.UUID(org)) == 0


async def test_tampering_in_the_bucket_is_caught(files_s3: Files) -> None:
    user, org, token = await files_s3.member_of_new_org()
    found = await files_s3.uploaded(token, org, user.id, b"bucket secret " * 1000)
    stored, _ = await bucket_state(files_s3, found["path"])
    raw = bytearray(stored[found["path"]])
    raw[HEADER_SIZE + 3] ^= 0x80
    await put_raw(files_s3, found["path"], bytes(raw))
    reply = await files_s3.download(token, found["path"])
    assert reply.status == 500 and b"bucket secret" not in reply.body
    assert reply.json()["type"] == "urn:argus:problem:integrity"


async def test_deletion_and_purges_empty_the_bucket(files_s3: Files) -> None:
    suite = files_s3.suite
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    owner_token, member_token = await suite.switch(owner, org), await suite.switch(member, org)
    found: list[dict[str, Any]] = [
        await files_s3.uploaded(member_token, org, member.id, f"m{n}".encode())
        for n in range(3)]
    found.append(await files_s3.uploaded(owner_token, org, owner.id, b"owner's"))
    reply = await files_s3.request("DELETE", f"/objects/{found[0]['path']}", member_token)
    assert reply.status == 204
    stored, _ = await bucket_state(files_s3, org)
    assert found[0]["path"] not in stored and len(stored) == 3
    reply = await files_s3.request("DELETE", f"/objects/{org}/{member.id}", member_token)
    assert reply.json() == {"shredded": 2}
    stored, _ = await bucket_state(files_s3, org)
    assert list(stored) == [found[3]["path"]]
    reply = await files_s3.request("DELETE", f"/objects/{org}", owner_token)
    assert reply.json() == {"shredded": 1}
    assert await bucket_state(files_s3, org) == ({}, [])
