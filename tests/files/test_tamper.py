"""Stored objects attacked at rest (the bytes in the backend, the wrapped keys in the database):
each fails to decrypt with a clear error and is never served."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import asyncpg

from argus_files.segments import HEADER_SIZE, SEGMENT_SIZE, TAG
from support.files_service import Files

SEALED = SEGMENT_SIZE + TAG


def text(size: int) -> bytes:
    line = b"confidential line of text, numbered for the test....\n"
    return (line * (size // len(line) + 1))[:size]


def stored_path(files: Files, found: dict) -> Path:
    return files.config.directory.resolve() / found["path"]


async def assert_integrity_failure(files: Files, token: str, found: dict,
                                   headers: dict[str, str] | None = None) -> None:
    reply = await files.download(token, found["path"], headers)
    assert reply.status == 500, reply.status
    problem = reply.json()
    assert problem["type"] == "urn:argus:problem:integrity"
    assert "integrity" in problem["detail"]
    assert b"confidential" not in reply.body


async def test_a_flipped_byte_fails_clearly_and_is_not_served(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, text(150_000))
    path = stored_path(files, found)
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + SEALED + 100] ^= 0x40  # inside the second segment
    path.write_bytes(bytes(raw))
    await assert_integrity_failure(files, token, found)
    # a range that needs only authentic segments is served; one that needs the damaged one
    # is refused
    ok = await files.download(token, found["path"], {"Range": "bytes=0-99"})
    assert ok.status == 206 and ok.body == text(100)
    await assert_integrity_failure(files, token, found, {"Range": "bytes=70000-70010"})
    metrics = (await files.request("GET", "/metrics")).body.decode()
    assert "argus_files_integrity_failures_total 2.0" in metrics


async def test_truncated_extended_and_edited_headers_fail(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    data = text(3 * SEGMENT_SIZE)
    for damage in (lambda b: b[:-SEALED],  # the last segment dropped
                   lambda b: b[:-1],
                   lambda b: b + b[-SEALED:],  # a segment appended
                   lambda b: b[:9] + bytes([b[9] ^ 1]) + b[10:]):  # the nonce prefix edited
        found = await files.uploaded(token, org, user.id, data)
        path = stored_path(files, found)
        path.write_bytes(damage(path.read_bytes()))
        await assert_integrity_failure(files, token, found)


async def test_reordered_segments_fail(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, text(3 * SEGMENT_SIZE + 10))
    path = stored_path(files, found)
    raw = path.read_bytes()
    head, body = raw[:HEADER_SIZE], raw[HEADER_SIZE:]
    segments = [body[i:i + SEALED] for i in range(0, len(body), SEALED)]
    path.write_bytes(head + segments[1] + segments[0] + b"".join(segments[2:]))
    await assert_integrity_failure(files, token, found)


async def test_another_objects_bytes_or_key_fail(files: Files, admin: asyncpg.Connection) -> None:
    user, org, token = await files.member_of_new_org()
    one = await files.uploaded(token, org, user.id, text(1000))
    two = await files.uploaded(token, org, user.id, text(1000))
    stored_path(files, one).write_bytes(stored_path(files, two).read_bytes())
    await assert_integrity_failure(files, token, one)  # same size, same owner: still refused
    three = await files.uploaded(token, org, user.id, text(1000))
    four = await files.uploaded(token, org, user.id, text(1000))
    await admin.execute(
        "update files.objects set wrapped_key = (select wrapped_key from files.objects"
        " where id = $2) where id = $1", uuid.UUID(three["id"]), uuid.UUID(four["id"]))
    await assert_integrity_failure(files, token, three)  # a key is bound to its object
    assert (await files.download(token, four["path"])).body == text(1000)


async def test_damage_past_what_is_checked_up_front_cuts_the_response_short(
    files: Files
) -> None:
    user, org, token = await files.member_of_new_org()
    data = text(40 * SEGMENT_SIZE)
    found = await files.uploaded(token, org, user.id, data)
    path = stored_path(files, found)
    raw = bytearray(path.read_bytes())
    damaged = 35
    raw[HEADER_SIZE + damaged * SEALED + 5] ^= 0x01
    path.write_bytes(bytes(raw))
    received = bytearray()
    async with files.suite.http.get(f"{files.base}/objects/{found['path']}",
                                    headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200  # the first segments were authentic when the status went out
        try:
            async for chunk in r.content.iter_any():
                received += chunk
            raise AssertionError("the whole body arrived")
        except aiohttp.ClientPayloadError:
            pass
    assert len(received) <= damaged * SEGMENT_SIZE  # nothing of the damaged segment
    assert bytes(received) == data[:len(received)]
    # a range starting in the damaged segment is refused before any byte
    await assert_integrity_failure(
        files, token, found, {"Range": f"bytes={damaged * SEGMENT_SIZE}-"})


async def test_missing_bytes_are_a_clear_error(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, text(10))
    stored_path(files, found).unlink()
    await assert_integrity_failure(files, token, found)
