"""`argus backup --to s3://…` and `argus restore --from s3://…` against a real S3 server
(SeaweedFS, support.s3_server) and a real suite under `argus up --archive`: only sealed files
reach the bucket; the WAL after the base follows with `argus backups seal-wal --to`; a restore
from the bucket holds what came before and after the base; an object changed in the bucket is
refused; an empty prefix is one clear line."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiobotocore.session import get_session

from argus_shared.embedded import EmbeddedPostgres, free_port
from support.argus_up import ARGUS, Gateway, free_ports, up_command, wait_for_banner
from support.processes import Proc, run_to_exit
from support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET, PREFIX = "argus-backups", "nightly"
URL = f"s3://{BUCKET}/{PREFIX}"


@dataclass
class Bucketed:
    root: Path
    data_dir: Path
    env: dict[str, str]
    server: S3Server
    keys: dict[str, bytes]  # bucket key -> object
    backup_output: str
    restored_orgs: list[str]


def _env(server: S3Server, archive: Path) -> dict[str, str]:
    return {"ARGUS_BACKUP_S3_ENDPOINT": server.endpoint, "ARGUS_BACKUP_S3_ACCESS_KEY_ID":
            ACCESS_KEY, "ARGUS_BACKUP_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "ARGUS_BACKUP_DIR": str(archive)}


def _client(server: S3Server) -> Any:
    return get_session().create_client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


async def _objects(server: S3Server) -> dict[str, bytes]:
    async with _client(server) as client:
        listed = await client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")
        found = {}
        for item in listed.get("Contents", []):
            answer = await client.get_object(Bucket=BUCKET, Key=item["Key"])
            async with answer["Body"] as body:
                found[item["Key"]] = await body.read()
        return found


async def _orgs(data_dir: Path) -> list[str]:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    pg = EmbeddedPostgres(data_dir / "pg", free_port(), password)
    await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(pg.admin_url.rsplit("/", 1)[0] + "/argus")
        try:
            return [r["slug"] for r in await conn.fetch(
                "select slug from tenant_api.orgs order by slug")]
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)


def _argus(data_dir: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    return run_to_exit([ARGUS, "--data-dir", str(data_dir), *args], env, timeout=300)


async def _switch_wal(data_dir: Path, port: int) -> None:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    conn = await asyncpg.connect(f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres")
    try:
        await conn.execute("select pg_switch_wal()")
    finally:
        await conn.close()
    await asyncio.sleep(4)  # archive_command, then the 2-second sealer


@pytest.fixture(scope="module")
async def bucketed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bucketed]:
    root = Path(tempfile.mkdtemp(prefix="argus-s3b-"))
    server = S3Server.start(root / "s3")
    try:
        await server.wait_ready()  # SeaweedFS binds more ports as it boots: pick ours after
    except BaseException:
        server.stop()
        raise
    data_dir, archive, ports = root / "argus", root / "archive", free_ports()
    proc = Proc.start([*up_command(data_dir, ports), "--archive", str(archive)], {},
                      tmp_path_factory.mktemp("s3b") / "up.log")
    try:
        async with _client(server) as client:
            await client.create_bucket(Bucket=BUCKET)
        env = _env(server, archive)
        await wait_for_banner(proc)
        async with aiohttp.ClientSession() as http:
            gateway = Gateway(http, f"http://127.0.0.1:{ports['gateway']}")
            await gateway.org_owner(data_dir / "mailbox", "based@example.com", "based")
            code, output = await asyncio.to_thread(_argus, data_dir, env, "backup", "--to", URL)
            assert code == 0, output
            await gateway.org_owner(data_dir / "mailbox", "later@example.com", "later")
        await _switch_wal(data_dir, ports["pg"])
        code, sealed = await asyncio.to_thread(_argus, data_dir, env, "backups", "seal-wal",
                                               "--from", str(archive), "--to", URL)
        assert code == 0, sealed
        proc.signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 20)
        code, restored = await asyncio.to_thread(_argus, data_dir, env, "restore", "--from",
                                                 URL, "--data-dir", str(root / "restored"))
        assert code == 0, restored
        yield Bucketed(root, data_dir, env, server, await _objects(server), output,
                       await _orgs(root / "restored"))
    finally:
        proc.kill()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_only_sealed_files_reach_the_bucket(bucketed: Bucketed) -> None:
    names = sorted(k.removeprefix(PREFIX + "/") for k in bucketed.keys)
    bases = [n for n in names if n.startswith("base/")]
    assert sorted(n.rsplit("/", 1)[1] for n in bases) == [
        "manifest.json", "objects.tar.sealed", "postgresql.tar.sealed"], names
    assert any(n.startswith("wal/") and n.endswith(".sealed") for n in names), names
    assert "sealed files uploaded to s3://" in bucketed.backup_output
    for key, data in bucketed.keys.items():
        assert b"based@example.com" not in data and b"PG_VERSION" not in data, key


def test_a_restore_from_the_bucket_holds_the_base_and_the_wal_after_it(
        bucketed: Bucketed) -> None:
    assert bucketed.restored_orgs == ["based", "later"]


def test_an_object_changed_in_the_bucket_is_refused(bucketed: Bucketed) -> None:
    [manifest] = [k for k in bucketed.keys if k.endswith("manifest.json")]
    edited = bucketed.keys[manifest].replace(b'"end_lsn": "', b'"end_lsn": "1')

    async def put() -> None:
        async with _client(bucketed.server) as client:
            await client.put_object(Bucket=BUCKET, Key=manifest, Body=edited)

    asyncio.run(put())
    code, output = _argus(bucketed.data_dir, bucketed.env, "restore", "--from", URL,
                          "--data-dir", str(bucketed.root / "never"))
    assert code == 1 and "manifest.json fails authentication" in output, output
    assert not (bucketed.root / "never").exists()


def test_an_empty_prefix_is_one_clear_line(bucketed: Bucketed) -> None:
    code, output = _argus(bucketed.data_dir, bucketed.env, "restore", "--from",
                          f"s3://{BUCKET}/nothing-here", "--data-dir", str(bucketed.root / "n"))
    assert code == 1, output
    assert output.strip().splitlines()[-1] == (
        f"argus: s3://{BUCKET}/nothing-here: no backup under this prefix"), output
