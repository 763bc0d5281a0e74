"""Master-key rotation: `python -m argus_files rewrap-keys` (a real process) re-wraps every data
key under the new current key without touching the stored content; afterwards the old key can
be retired. Before it, a service without the old key cannot open the objects."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from argus_shared.settings import KeyRing, Settings, format_keyring
from support.files_service import Files, files_config, start_files
from support.processes import run_to_exit, service_command


def keyring_file(path: Path, ring: dict[str, bytes]) -> str:
    path.write_text(format_keyring(ring))
    path.chmod(0o600)
    return str(path)


def rewrap(stack: Any, keys_file: str) -> tuple[int, str]:
    env = {**stack.service_environment("files"), "ARGUS_MASTER_KEYS_FILE": keys_file}
    return run_to_exit([*service_command("files"), "rewrap-keys"], env, timeout=120)


async def test_rotation_rewraps_data_keys_and_leaves_content_alone(
    files: Files, admin: asyncpg.Connection, stack: Any, tmp_path: Path,
    settings_for: Callable[..., Settings]
) -> None:
    user, org, token = await files.member_of_new_org()
    data = os.urandom(100_000)
    png = b"\x89PNG\r\n\x1a\n" + data
    found = [await files.uploaded(token, org, user.id, png, f"{n}.png") for n in range(2)]
    stored = [files.config.directory.resolve() / f["path"] for f in found]
    before = [hashlib.sha256(p.read_bytes()).digest() for p in stored]
    old: KeyRing = files.store.master
    new_kid = f"rot-{uuid.uuid4().hex[:8]}"
    both = keyring_file(tmp_path / "both", {new_kid: os.urandom(32), **old.keys})
    only_new = keyring_file(tmp_path / "only-new",
                            {new_kid: KeyRing.parse(Path(both).read_text(), "x").keys[new_kid]})
    config = files_config(files.suite, files.config.directory)
    # a replica that already dropped the old key cannot open them yet
    early, server = await start_files(files.suite, settings_for(
        "files", ARGUS_MASTER_KEYS_FILE=only_new), config)
    try:
        assert (await early.download(token, found[0]["path"])).status == 500
    finally:
        await server.close()
    code, output = rewrap(stack, both)
    assert code == 0, output
    assert f"under master key {new_kid}" in output
    rows = await admin.fetch("select key_kid from files.objects where org_id = $1",
                             uuid.UUID(org))
    assert {r["key_kid"] for r in rows} == {new_kid}
    assert [hashlib.sha256(p.read_bytes()).digest() for p in stored] == before
    later, server = await start_files(files.suite, settings_for(
        "files", ARGUS_MASTER_KEYS_FILE=only_new), config)
    try:
        for f in found:
            assert (await later.download(token, f["path"])).body == png
        code, output = rewrap(stack, only_new)  # nothing left to do
        assert code == 0 and output.startswith("re-wrapped 0 data keys"), output
    finally:
        await server.close()
        # leave the shared database under the session's master key again
        code, output = rewrap(stack, keyring_file(
            tmp_path / "back", {**old.keys, new_kid: KeyRing.parse(
                Path(both).read_text(), "x").keys[new_kid]}))
        assert code == 0, output


async def test_a_key_that_cannot_be_unwrapped_fails_the_command(
    files: Files, admin: asyncpg.Connection, stack: Any, tmp_path: Path
) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"x")
    saved = await admin.fetchval("select wrapped_key from files.objects where id = $1",
                                 uuid.UUID(found["id"]))
    broken = bytearray(saved)
    broken[-1] ^= 1
    await admin.execute("update files.objects set wrapped_key = $2 where id = $1",
                        uuid.UUID(found["id"]), bytes(broken))
    try:
        ring = {"rot-fail": os.urandom(32), **files.store.master.keys}
        code, output = rewrap(stack, keyring_file(tmp_path / "k", ring))
        assert code == 1 and "1 could not be unwrapped" in output, output
    finally:
        await admin.execute("update files.objects set wrapped_key = $2 where id = $1",
                            uuid.UUID(found["id"]), saved)
        code, output = rewrap(stack, keyring_file(tmp_path / "back", {
            **files.store.master.keys, "rot-fail": ring["rot-fail"]}))
        assert code == 0, output
