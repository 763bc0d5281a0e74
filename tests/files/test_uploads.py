"""Uploads and downloads over the local backend: streamed, encrypted at rest, typed from the
bytes, served as sandboxed attachments with ranges; every kind of bad input is a clear 4xx that
leaves nothing behind (no stored bytes, no partial upload, no metadata row)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from argus_files.downloads import BATCH_SEGMENTS
from argus_files.segments import SEGMENT_SIZE, stored_size
from support.files_service import MAX_BYTES, Files, stored_files

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


async def rows_of(admin: asyncpg.Connection, org: str) -> list[asyncpg.Record]:
    return await admin.fetch("select * from files.objects where org_id = $1", uuid.UUID(org))


async def assert_nothing_left(files: Files, admin: asyncpg.Connection, org: str) -> None:
    assert await rows_of(admin, org) == []
    assert stored_files(files.config.directory) == []


async def test_a_raw_upload_is_stored_encrypted_with_its_metadata(
    files: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files.member_of_new_org()
    data = b"The quick brown fox jumps over the lazy dog.\n" * 5000  # 4 segments
    before = datetime.now().astimezone()
    reply = await files.upload(token, org, user.id, data, "fox.txt",
                               headers={"Content-Type": "image/png"})  # declared type ignored
    assert reply.status == 201, reply.body
    found = reply.json()
    assert found["name"] == "fox.txt" and found["size"] == len(data)
    assert found["content_type"] == "text/plain"
    assert found["sha256"] == hashlib.sha256(data).hexdigest()
    assert found["uploaded_by"] == f"user:{user.id}"
    assert datetime.fromisoformat(found["created_at"]) >= before.replace(microsecond=0)
    assert found["path"] == f"{org}/{user.id}/{found['id']}"
    assert reply.headers["Location"] == f"/objects/{found['path']}"
    # at rest: the path is built from ids only, the bytes are sealed, the key is wrapped
    [stored] = stored_files(files.config.directory)
    assert stored == files.config.directory.resolve() / org / user.id / found["id"]
    raw = stored.read_bytes()
    assert len(raw) == stored_size(len(data)) and b"quick brown fox" not in raw
    [row] = await rows_of(admin, org)
    assert row["status"] == "stored" and row["key_kid"] == files.store.master.current
    assert len(bytes(row["wrapped_key"])) > 32 and row["owner_id"] == uuid.UUID(user.id)
    got = await files.download(token, found["path"])
    assert got.status == 200 and got.body == data


async def test_a_multipart_upload_is_stored_from_its_one_file_part(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    form = aiohttp.FormData(quote_fields=False)  # as browsers send it
    form.add_field("file", PNG, filename="C:\\Users\\me\\photo.png",
                   content_type="application/octet-stream")
    reply = await files.upload(token, org, user.id, form)
    assert reply.status == 201, reply.body
    found = reply.json()
    assert (found["name"], found["content_type"], found["size"]) == ("photo.png", "image/png",
                                                                     len(PNG))
    assert (await files.download(token, found["path"])).body == PNG


async def test_names_are_only_metadata(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"x", "../../../etc/passwd")
    assert found["name"] == "passwd"
    assert found["path"] == f"{org}/{user.id}/{found['id']}"
    reply = await files.upload(token, org, user.id, b"x", "bad\nname.txt")
    assert reply.status == 422
    reply = await files.upload(token, org, user.id, b"x", "n" * 256)
    assert reply.status == 422


async def test_downloads_are_sandboxed_attachments(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"not <b>html</b> at all", 'a"b ✓.html')
    got = await files.download(token, found["path"])
    assert got.status == 200
    assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=\"a_b _.html\"; filename*=UTF-8''a%22b%20%E2%9C%93.html")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    csp = got.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert got.headers["ETag"] == f'"{found["sha256"]}"'
    assert got.headers["Accept-Ranges"] == "bytes"
    meta = await files.request("GET", f"/objects/{found['path']}/meta", token)
    assert meta.status == 200 and meta.json() == found


@pytest.mark.parametrize(("header", "status", "span"), [
    ("bytes=0-9", 206, (0, 9)), ("bytes=65530-65545", 206, (65530, 65545)),
    ("bytes=131072-", 206, (131072, 200000 - 1)), ("bytes=-100", 206, (199900, 199999)),
    ("bytes=199999-999999", 206, (199999, 199999)), ("bytes=0-", 206, (0, 199999)),
])
async def test_range_requests(files: Files, header: str, status: int,
                              span: tuple[int, int]) -> None:
    user, org, token = await files.member_of_new_org()
    data = b"".join(f"{i:07d}\n".encode() for i in range(25000))  # 200000 bytes, 4 segments
    found = await files.uploaded(token, org, user.id, data)
    got = await files.download(token, found["path"], {"Range": header})
    assert got.status == status
    assert got.body == data[span[0]:span[1] + 1]
    assert got.headers["Content-Range"] == f"bytes {span[0]}-{span[1]}/{len(data)}"


async def test_ranges_across_the_batches_a_download_decrypts_together(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    data = b"".join(f"{i:09d}\n".encode() for i in range(260_000))  # 2.6 MB, 40 segments
    found = await files.uploaded(token, org, user.id, data)
    assert (await files.download(token, found["path"])).body == data
    batch = BATCH_SEGMENTS * SEGMENT_SIZE
    for start, end in ((batch - 1, batch), (batch - 70_000, 2 * batch + 5), (2 * batch, 2 * batch),
                       (3, len(data) - 4)):
        got = await files.download(token, found["path"], {"Range": f"bytes={start}-{end}"})
        assert (got.status, got.body) == (206, data[start:end + 1]), (start, end)


async def test_ranges_out_of_bounds_and_stale_if_range(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"0123456789")
    for header in ("bytes=10-", "bytes=20-30", "bytes=-0", "bytes=5-2", "bytes=x-y"):
        got = await files.download(token, found["path"], {"Range": header})
        assert got.status == 416, header
        assert got.headers["Content-Range"] == "bytes */10"
        assert got.headers["Content-Type"] == "application/problem+json"
    got = await files.download(token, found["path"], {"Range": "bytes=2-3",
                                                      "If-Range": '"stale"'})
    assert got.status == 200 and got.body == b"0123456789"
    got = await files.download(token, found["path"], {"Range": "bytes=2-3",
                                                      "If-Range": f'"{found["sha256"]}"'})
    assert got.status == 206 and got.body == b"23"


async def test_an_empty_file(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"", "empty.txt")
    got = await files.download(token, found["path"])
    assert (got.status, got.body, found["size"]) == (200, b"", 0)
    assert (await files.download(token, found["path"], {"Range": "bytes=0-"})).status == 416


async def test_a_declared_oversized_body_is_413_before_anything_is_written(
    files: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.upload(token, org, user.id, b"a" * (MAX_BYTES + 1))
    assert reply.status == 413 and reply.json()["limit"] == MAX_BYTES
    await assert_nothing_left(files, admin, org)


async def _chunks(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = b"streamed text\n" * (chunk // 14)
        sent += len(piece)
        yield piece


async def test_a_streamed_oversized_body_is_413_and_leaves_nothing(
    files: Files, admin: asyncpg.Connection
) -> None:
    """No Content-Length (chunked): the limit is crossed mid-stream, after segments were
    already written; the partial object and its pending row are removed."""
    user, org, token = await files.member_of_new_org()
    try:
        reply = await files.upload(token, org, user.id, _chunks(MAX_BYTES + 512 * 1024))
        assert reply.status == 413
    except aiohttp.ClientError:  # the server may close before the client has sent it all
        pass
    await assert_nothing_left(files, admin, org)
    text = (await files.request("GET", "/metrics")).body.decode()
    assert 'argus_files_upload_failures_total{reason="too_large"} 1.0' in text
    # exactly the limit is accepted
    found = await files.uploaded(token, org, user.id, b"a" * MAX_BYTES)
    assert found["size"] == MAX_BYTES


async def test_an_oversized_multipart_file_is_413_and_leaves_nothing(
    files: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files.member_of_new_org()
    form = aiohttp.FormData()
    form.add_field("file", b"b" * (MAX_BYTES + 1), filename="big.txt")
    reply = await files.upload(token, org, user.id, form)
    assert reply.status == 413
    await assert_nothing_left(files, admin, org)


@pytest.mark.parametrize(("content", "detected"), [
    (b"<!doctype html><script>alert(document.cookie)</script>", "text/html"),
    (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "image/svg+xml"),
    (b"\x7fELF\x02\x01\x01" + bytes(200), "application/x-executable"),
    (bytes(range(256)) * 20, "application/octet-stream"),
])
async def test_disallowed_types_are_415_and_leave_nothing(
    files: Files, admin: asyncpg.Connection, content: bytes, detected: str
) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.upload(token, org, user.id, content, "innocent.png",
                               headers={"Content-Type": "image/png"})
    assert reply.status == 415, reply.body
    assert reply.json()["detected"] == detected
    await assert_nothing_left(files, admin, org)


def multipart(body: bytes, boundary: str = "XyZ") -> dict[str, Any]:
    return {"data": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


FILE_PART = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
             b"Content-Type: text/plain\r\n\r\nhello there\r\n")
MALFORMED = {
    "no closing boundary": FILE_PART[:-2],
    "truncated after the part": FILE_PART,
    "a second part": FILE_PART + b'--XyZ\r\nContent-Disposition: form-data; name="x"\r\n\r\n'
                                 b"1\r\n--XyZ--\r\n",
    "wrong field name": FILE_PART.replace(b'name="file"', b'name="doc"') + b"--XyZ--\r\n",
    "no filename": FILE_PART.replace(b'; filename="a.txt"', b"") + b"--XyZ--\r\n",
    "no parts": b"--XyZ--\r\n",
    "garbage": b"this is not multipart at all",
    "wrong boundary": FILE_PART.replace(b"--XyZ", b"--Other") + b"--Other--\r\n",
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_multipart_is_400_and_leaves_nothing(
    files: Files, admin: asyncpg.Connection, case: str
) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.upload(token, org, user.id, **multipart(MALFORMED[case]))
    assert reply.status == 400, (case, reply.status, reply.body)
    assert reply.headers["Content-Type"] == "application/problem+json"
    await assert_nothing_left(files, admin, org)
    ok = await files.upload(token, org, user.id, **multipart(FILE_PART + b"--XyZ--\r\n"))
    assert ok.status == 201 and ok.json()["name"] == "a.txt"  # the control


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    files: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files.member_of_new_org()
    host, port = files.base.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST /objects/{org}/{user.id}?name=cut.txt HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Length: 2000000\r\n\r\n").encode())
    writer.write(b"partial text\n" * 50000)  # 650 kB of the 2 MB promised, then gone
    await writer.drain()
    for _ in range(50):
        if await rows_of(admin, org):
            break
        await asyncio.sleep(0.05)
    assert await rows_of(admin, org), "the upload should have started"
    writer.close()
    for _ in range(100):
        if not await rows_of(admin, org) and not stored_files(files.config.directory):
            break
        await asyncio.sleep(0.05)
    await assert_nothing_left(files, admin, org)
    text = (await files.request("GET", "/metrics")).body.decode()
    assert 'argus_files_upload_failures_total{reason="aborted"} 1.0' in text
