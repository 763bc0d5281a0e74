"""`argus backup` and `argus restore` with real processes: a suite under `argus up --archive`,
users and orgs written through the gateway before the base, after it, and after a time T; a
restore to T holds exactly what came before T, a restore to the end holds everything; a flipped
byte, a changed manifest field or a missing master key ring makes a restore refuse; an account
deleted after T is absent from the restore to T too (the deletions journal).

One base and two restores serve every assertion, so the file stays quick."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from argus_shared.embedded import EmbeddedPostgres, free_port
from support.argus_up import ARGUS, PASSWORD, Gateway, free_ports, up_command, wait_for_banner
from support.processes import Proc, run_to_exit

BEFORE_BASE, AFTER_BASE, AFTER_T = "first@example.com", "second@example.com", "third@example.com"
LEAVER = "leaver@example.com"  # in the base, deletes the account after T


@dataclass
class Restored:
    root: Path
    data_dir: Path
    archive: Path
    to_t: dict[str, list[str]]
    latest: dict[str, list[str]]
    backup_output: str


async def _rows(data_dir: Path) -> dict[str, list[str]]:
    """Emails and org slugs in a restored cluster (started on its own, then stopped)."""
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    pg = EmbeddedPostgres(data_dir / "pg", free_port(), password)
    await asyncio.to_thread(pg.start)
    try:
        url = pg.admin_url.rsplit("/", 1)[0] + "/argus"
        conn = await asyncpg.connect(url)
        try:
            users = await conn.fetch("select email from auth.users where deactivated_at is null"
                                     " order by email")
            everyone = await conn.fetch("select email from auth.users order by email")
            orgs = await conn.fetch("select slug from tenant_api.orgs order by slug")
            deletions = await conn.fetchval("select count(*) from tenant_api.user_deletions")
            ledger = await conn.fetchval("select coalesce(sum(amount_cents), 0)"
                                         " from tenant_api.ledger_entries")
            sent = await conn.fetchval("select count(*) from auth.outbox where sent_at is not null")
            unsent = await conn.fetchval("select count(*) from auth.outbox where sent_at is null")
            role = await conn.fetchrow(
                "select rolsuper, rolreplication, rolcreaterole, rolbypassrls,"
                " has_database_privilege(oid, 'argus', 'CONNECT') as connect"
                " from pg_roles where rolname = 'argus_replication'")
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)
    return {"users": [r["email"] for r in users], "all": [r["email"] for r in everyone],
            "orgs": [r["slug"] for r in orgs],
            "outbox": [f"sent {sent}", f"unsent {unsent}"], "deletions": [str(deletions)],
            "ledger": [str(ledger)],
            "replication": [f"{k}={v}" for k, v in (dict(role) if role else {}).items()]}


async def _write(gateway: Gateway, mailbox: Path, email: str, upload: bool = False) -> None:
    """A user, an org (their audit events), a deposit into its wallet, perhaps a file."""
    org_id, token = await gateway.org_owner(mailbox, email, email.split("@")[0])
    if upload:
        me = await gateway.call("GET", "/auth/me", token=token)
        stored = await gateway.send("POST", f"/files/objects/{org_id}/{me['id']}?name=a.txt",
                                    token=token, data=b"kept in the base\n",
                                    headers={"Content-Type": "text/plain"})
        assert stored.status == 201, stored.text
    await gateway.call("POST", f"/tenant/orgs/{org_id}/wallet/deposits", token=token,
                       body={"amount_cents": 100}, headers={"Idempotency-Key": email},
                       expect=201)


async def _delete_account(gateway: Gateway, token: str) -> None:
    again = await gateway.call("POST", "/auth/reauth", token=token, body={"password": PASSWORD})
    await gateway.call("DELETE", "/tenant/me", token=again["access_token"], expect=202)


async def _switch_wal(data_dir: Path, port: int) -> None:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    conn = await asyncpg.connect(f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres")
    try:
        await conn.execute("select pg_switch_wal()")
    finally:
        await conn.close()
    await asyncio.sleep(4)  # archive_command, then the 2-second sealer


def _argus(data_dir: Path, *args: str) -> tuple[int, str]:
    return run_to_exit([ARGUS, "--data-dir", str(data_dir), *args], {}, timeout=300)


@pytest.fixture(scope="module")
async def restored(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Restored]:
    root = Path(tempfile.mkdtemp(prefix="argus-backup-"))
    data_dir, archive, ports = root / "argus", root / "archive", free_ports()
    log = tmp_path_factory.mktemp("backup") / "up.log"
    proc = Proc.start([*up_command(data_dir, ports), "--archive", str(archive)], {}, log)
    try:
        await wait_for_banner(proc)
        async with aiohttp.ClientSession() as http:
            gateway = Gateway(http, f"http://127.0.0.1:{ports['gateway']}")
            await _write(gateway, data_dir / "mailbox", BEFORE_BASE, upload=True)
            leaver = await gateway.logged_in(data_dir / "mailbox", LEAVER)
            code, backup_output = await asyncio.to_thread(
                _argus, data_dir, "backup", "--to", str(archive))
            assert code == 0, backup_output
            await _write(gateway, data_dir / "mailbox", AFTER_BASE)
            await asyncio.sleep(1.5)
            target = datetime.now(UTC).isoformat()
            await asyncio.sleep(1.5)
            await _write(gateway, data_dir / "mailbox", AFTER_T)
            await _delete_account(gateway, leaver)
        await _switch_wal(data_dir, ports["pg"])
        proc.signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 20)
        for name, extra in (("to-t", ["--target-time", target]), ("latest", [])):
            code, output = await asyncio.to_thread(
                _argus, data_dir, "restore", "--from", str(archive), *extra,
                "--data-dir", str(root / name))
            assert code == 0, output
        yield Restored(root, data_dir, archive, await _rows(root / "to-t"),
                       await _rows(root / "latest"), backup_output)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_a_restore_to_t_holds_exactly_what_came_before_t(restored: Restored) -> None:
    assert restored.to_t["users"] == sorted([BEFORE_BASE, AFTER_BASE])
    assert restored.to_t["orgs"] == ["first", "second"]
    assert restored.to_t["ledger"] == ["200"]


def test_a_restore_to_the_end_holds_everything(restored: Restored) -> None:
    assert restored.latest["users"] == sorted([BEFORE_BASE, AFTER_BASE, AFTER_T])
    assert restored.latest["orgs"] == ["first", "second", "third"]
    assert restored.latest["ledger"] == ["300"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_object_store_comes_back_byte_for_byte(restored: Restored) -> None:
    original = _tree(restored.data_dir / "files")
    assert original and _tree(restored.root / "latest" / "files") == original
    assert all(b"kept in the base" not in data for data in original.values())  # encrypted


def test_a_restore_publishes_every_kept_outbox_event_again(restored: Restored) -> None:
    sent, unsent = restored.latest["outbox"]
    assert sent == "sent 0" and unsent != "unsent 0", restored.latest


def test_an_account_deleted_after_t_is_deleted_again_on_restore(restored: Restored) -> None:
    assert LEAVER not in restored.to_t["all"]  # its row is gone, sessions and factors with it
    assert LEAVER not in restored.latest["users"]  # deactivated, as it was; the purge follows
    assert restored.to_t["deletions"] == ["1"], restored.to_t  # the purge job finishes it
    journal = (restored.archive / "deletions.jsonl").read_text()
    assert len(journal.splitlines()) == 1 and LEAVER not in journal  # ids, never emails


def test_the_backup_says_the_keys_are_not_in_it(restored: Restored) -> None:
    assert "MASTER KEYS ARE NOT IN THIS BACKUP" in restored.backup_output
    sealed = next((restored.archive / "base").glob("*/postgresql.tar.sealed")).read_bytes()
    assert b"PG_VERSION" not in sealed and b"first@example.com" not in sealed
    assert not list((restored.archive / "incoming").iterdir())


def _copy(restored: Restored, name: str) -> tuple[Path, Path]:
    copy = restored.root / name
    shutil.copytree(restored.archive / "base", copy / "base")
    (copy / "wal").mkdir()
    return copy, next((copy / "base").iterdir())


def test_a_flipped_byte_is_refused(restored: Restored) -> None:
    copy, base = _copy(restored, "flipped")
    sealed = base / "postgresql.tar.sealed"
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    code, output = _argus(restored.data_dir, "restore", "--from", str(copy),
                          "--data-dir", str(restored.root / "never1"))
    assert code == 1, output
    assert "fails authentication" in output and len(output.strip().splitlines()) <= 2, output
    assert not (restored.root / "never1").exists()


def test_a_changed_manifest_field_is_refused(restored: Restored) -> None:
    copy, base = _copy(restored, "edited")
    manifest = base / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"end_lsn": "', '"end_lsn": "1'))
    code, output = _argus(restored.data_dir, "restore", "--from", str(copy),
                          "--data-dir", str(restored.root / "never2"))
    assert code == 1, output
    assert "manifest.json fails authentication" in output, output


def test_without_the_master_keys_a_backup_cannot_be_read(restored: Restored) -> None:
    stranger = restored.root / "stranger"  # its own, new key ring
    code, output = _argus(stranger, "restore", "--from", str(restored.archive),
                          "--data-dir", str(restored.root / "never3"))
    assert code == 1, output
    assert "is not in the key ring" in output, output


def test_a_drill_restores_the_latest_and_reports(restored: Restored) -> None:
    code, output = _argus(restored.data_dir, "drill", "--from", str(restored.archive))
    assert code == 0 and "drill passed" in output, output
    report = json.loads((restored.archive / "drills" / "latest.json").read_text())
    assert report["ok"] and all(report["checks"]["migrations_at_head"].values()), report
    assert report["checks"]["wallets_unbalanced"] == 0 and report["failures"] == [], report


def test_a_restore_never_goes_into_an_existing_directory(restored: Restored) -> None:
    code, output = _argus(restored.data_dir, "restore", "--from", str(restored.archive),
                          "--data-dir", str(restored.data_dir))
    assert code == 1 and "exists" in output, output


def test_the_base_is_taken_by_a_replication_only_role(restored: Restored) -> None:
    assert "base backup" in restored.backup_output
    assert " of argus_replication@127.0.0.1:" in restored.backup_output, restored.backup_output
    assert restored.latest["replication"] == [
        "rolsuper=False", "rolreplication=True", "rolcreaterole=False", "rolbypassrls=False",
        "connect=False"], restored.latest  # no superuser, no table, not even the database


def test_a_mounted_key_ring_reads_the_backup_and_goes_with_the_restore(
        restored: Restored) -> None:
    ring = restored.root / "mounted-master-keys"  # as ARGUS_MASTER_KEYS_FILE in k8s/compose
    shutil.copyfile(restored.data_dir / "secrets" / "master-keys", ring)
    stranger = restored.root / "operator"  # the deployment's secrets, but another dev ring
    shutil.copytree(restored.data_dir / "secrets", stranger / "secrets")
    (stranger / "secrets" / "master-keys").unlink()
    code, output = run_to_exit(
        [ARGUS, "--data-dir", str(stranger), "restore", "--from", str(restored.archive),
         "--data-dir", str(restored.root / "mounted")],
        {"ARGUS_MASTER_KEYS_FILE": str(ring)}, timeout=300)
    assert code == 0, output
    assert (restored.root / "mounted" / "secrets" / "master-keys").read_bytes() == \
        ring.read_bytes()
    assert (stranger / "secrets" / "master-keys").read_bytes() != ring.read_bytes()
