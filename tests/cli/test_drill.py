"""`argus drill` with real processes, beside a live suite under `argus up --archive` that keeps
running: on a good backup the drill restores it, starts a whole second suite on other ports,
verifies every audit chain (and its signed checkpoints), downloads and hashes files through the
files API, reconciles wallets, sees every outbox event arrive, and passes; on a backup holding
a forged audit row and a corrupted file object it FAILS and names both. An org deleted after a
base is deleted (its files shredded) and purged again by a restore to before the deletion; a
tampered deletions journal is refused."""

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
from typing import Any

import aiohttp
import asyncpg
import pytest

from argus_shared.embedded import EmbeddedPostgres, free_port
from support.argus_up import ARGUS, Gateway, free_ports, up_command, wait_for_banner
from support.processes import Proc, run_to_exit


@dataclass
class Drilled:
    root: Path
    data_dir: Path
    archive: Path
    kept: str  # org id
    doomed: str  # org id, deleted after the first base
    passed: tuple[int, str, dict[str, Any]]
    live_after_drill: int  # the live gateway's answer after the first drill
    failed: tuple[int, str, dict[str, Any]]
    before_deletion: dict[str, Any]


def _argus(data_dir: Path, *args: str) -> tuple[int, str]:
    return run_to_exit([ARGUS, "--data-dir", str(data_dir), *args], {}, timeout=600)


def _admin(data_dir: Path, port: int) -> str:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/argus"


async def _write(gateway: Gateway, mailbox: Path, email: str) -> tuple[str, str]:
    """An owner, an org (audit events), a file and a deposit: (org id, token)."""
    org_id, token = await gateway.org_owner(mailbox, email, email.split("@")[0])
    me = await gateway.call("GET", "/auth/me", token=token)
    stored = await gateway.send("POST", f"/files/objects/{org_id}/{me['id']}?name=a.txt",
                                token=token, data=f"the file of {email}\n".encode() * 200,
                                headers={"Content-Type": "text/plain"})
    assert stored.status == 201, stored.text
    await gateway.call("POST", f"/tenant/orgs/{org_id}/wallet/deposits", token=token,
                       body={"amount_cents": 250}, headers={"Idempotency-Key": email},
                       expect=201)
    return org_id, token


async def _settle(data_dir: Path, port: int) -> None:
    """The last WAL archived and sealed, the deletions journaled."""
    conn = await asyncpg.connect(_admin(data_dir, port).replace("/argus", "/postgres"))
    try:
        await conn.execute("select pg_switch_wal()")
    finally:
        await conn.close()
    await asyncio.sleep(5)


async def _past_grace(data_dir: Path, port: int, org_id: str) -> None:
    """The org's deletion backdated past the 7-day grace, so tenant-api's job purges it now."""
    conn = await asyncpg.connect(_admin(data_dir, port))
    try:
        await conn.execute("update tenant_api.orgs set deleted_at = now() - interval '8 days'"
                           " where org_id = $1", org_id)
    finally:
        await conn.close()


async def _tamper(data_dir: Path, port: int, org_id: str) -> None:
    """Forge one audit event of the org (past the append-only trigger, as a superuser could) and
    flip a byte of one of its stored file objects."""
    conn = await asyncpg.connect(_admin(data_dir, port))
    try:
        async with conn.transaction():
            await conn.execute("set local session_replication_role = replica")
            done = await conn.execute(
                "update audit.audit_events set resource_id = 'forged' where org_id = $1"
                " and seq = 1", org_id)
            assert done == "UPDATE 1", done
    finally:
        await conn.close()
    blob = next(p for p in (data_dir / "files" / org_id).rglob("*") if p.is_file())
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def _report(archive: Path) -> dict[str, Any]:
    return dict(json.loads((archive / "drills" / "latest.json").read_text()))


async def _doomed_rows(data_dir: Path, org_id: str) -> dict[str, Any]:
    password = (data_dir / "secrets" / "pg-superuser-password").read_text().strip()
    pg = EmbeddedPostgres(data_dir / "pg", free_port(), password)
    await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(pg.admin_url.rsplit("/", 1)[0] + "/argus")
        try:
            return {
                "deleted": await conn.fetchval("select deleted_at is not null from"
                                               " tenant_api.orgs where org_id = $1", org_id),
                "files": await conn.fetchval("select count(*) from files.objects"
                                             " where org_id = $1", org_id),
                "keys": await conn.fetchval("select count(*) from auth.api_keys"
                                            " where org_id = $1", org_id),
                "queued": await conn.fetchval(
                    "select count(*) from tenant_api.outbox where org_id = $1"
                    " and subject like '%.org.deleted'", org_id),
                "live_orgs": await conn.fetchval("select count(*) from tenant_api.orgs"
                                                 " where deleted_at is null"),
                "purged": await conn.fetchval("select purged_at is not null and slug like"
                                              " 'deleted-%' from tenant_api.orgs"
                                              " where org_id = $1", org_id),
                "members": await conn.fetchval("select count(*) from tenant_api.memberships"
                                               " where org_id = $1", org_id),
                "bytes": (data_dir / "files" / org_id).exists(),
            }
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)


async def _drill(data_dir: Path, archive: Path) -> tuple[int, str, dict[str, Any]]:
    code, output = await asyncio.to_thread(_argus, data_dir, "drill", "--from", str(archive))
    return code, output, _report(archive)


@pytest.fixture(scope="module")
async def drilled(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Drilled]:
    root = Path(tempfile.mkdtemp(prefix="argus-dt-"))
    data_dir, archive, ports = root / "argus", root / "archive", free_ports()
    log = tmp_path_factory.mktemp("drill") / "up.log"
    proc = Proc.start([*up_command(data_dir, ports), "--archive", str(archive)],
                      {"ARGUS_AUDIT_CHECKPOINT_SECONDS": "1", "ARGUS_RECONCILE_SECONDS": "1"},
                      log)
    try:
        await wait_for_banner(proc)
        async with aiohttp.ClientSession() as http:
            gateway = Gateway(http, f"http://127.0.0.1:{ports['gateway']}")
            mailbox = data_dir / "mailbox"
            kept, _ = await _write(gateway, mailbox, "kept@example.com")
            doomed, doomed_token = await _write(gateway, mailbox, "doomed@example.com")
            await asyncio.sleep(3)  # the chains checkpointed and signed
            code, output = await asyncio.to_thread(_argus, data_dir, "backup", "--to",
                                                   str(archive))
            assert code == 0, output
            await asyncio.sleep(1.5)
            before = datetime.now(UTC).isoformat()
            await asyncio.sleep(1.5)
            await gateway.call("DELETE", f"/tenant/orgs/{doomed}", token=doomed_token,
                               expect=204)
            await _past_grace(data_dir, ports["pg"], doomed)
            await asyncio.sleep(3)  # files shreds it on org.deleted; tenant-api purges it
            await _settle(data_dir, ports["pg"])
            passed = await _drill(data_dir, archive)
            live = await gateway.send("GET", "/.well-known/jwks.json")
            code, output = await asyncio.to_thread(
                _argus, data_dir, "restore", "--from", str(archive), "--target-time", before,
                "--data-dir", str(root / "before"))
            assert code == 0, output
            before_deletion = await _doomed_rows(root / "before", doomed)
            await _tamper(data_dir, ports["pg"], kept)
            code, output = await asyncio.to_thread(_argus, data_dir, "backup", "--to",
                                                   str(archive))
            assert code == 0, output
            failed = await _drill(data_dir, archive)
        proc.signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 20)
        yield Drilled(root, data_dir, archive, kept, doomed, passed, live.status, failed,
                      before_deletion)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_a_drill_on_a_good_backup_passes_every_check(drilled: Drilled) -> None:
    code, output, report = drilled.passed
    assert code == 0 and "drill passed" in output, output
    assert report["ok"] and report["failures"] == [], report
    checks = report["checks"]
    assert all(checks["migrations_at_head"].values()), checks
    audit = checks["audit"]
    assert audit["chains"] >= 2 and audit["broken"] == {} and audit["api_refused"] == {}, audit
    assert audit["signed_checkpoints"] >= 2 and audit["events_checked"] > 0, audit
    assert checks["files"] == {"sampled": 1, "failed": {}}, checks["files"]
    assert checks["wallets_unbalanced"] == 0, checks
    outbox = checks["outbox"]
    assert outbox["events"] > 0 and outbox["lost"] == [] and outbox["unsent"] == 0, outbox


def test_the_live_suite_is_untouched_by_a_drill(drilled: Drilled) -> None:
    assert drilled.live_after_drill == 200
    assert not list(Path(tempfile.gettempdir()).glob("argus-drill-*/argus"))  # removed


def test_a_drill_on_a_forged_backup_fails_and_names_what(drilled: Drilled) -> None:
    code, output, report = drilled.failed
    assert code == 1 and "drill FAILED" in output, output
    assert not report["ok"], report
    failures = " | ".join(report["failures"])
    assert f"audit chain of org {drilled.kept} broken at seq 1" in failures, failures
    assert "content was changed" in failures, failures
    assert "file " in failures, failures  # the corrupted object does not hash to its SHA-256
    assert report["checks"]["wallets_unbalanced"] == 0, report
    passed = json.loads((drilled.archive / "drills" / "latest-passed.json").read_text())
    assert passed["started_at"] == drilled.passed[2]["started_at"]  # still the good drill's


def test_an_org_deleted_after_the_base_is_deleted_again_on_restore(drilled: Drilled) -> None:
    rows = drilled.before_deletion
    assert rows["deleted"] is True, rows  # in the base it was live; the journal deleted it
    assert rows["files"] == 0 and rows["bytes"] is False, rows  # crypto-shredded, bytes gone
    assert rows["keys"] == 0 and rows["queued"] == 1, rows  # org.deleted queued again
    assert rows["live_orgs"] == 1, rows  # the kept org only
    assert rows["purged"] is True and rows["members"] == 0, rows  # and purged, as it had been
    journal = [json.loads(line) for line in
               (drilled.archive / "deletions.jsonl").read_text().splitlines()]
    assert {(e["kind"], e["org_id"]) for e in journal} == {("org", drilled.doomed)}, journal
    assert journal[-1]["purged_at"], journal


def test_a_tampered_deletions_journal_is_refused(drilled: Drilled) -> None:
    copy = drilled.root / "tampered"
    shutil.copytree(drilled.archive, copy, ignore=shutil.ignore_patterns("incoming"))
    journal = copy / "deletions.jsonl"
    entry = json.loads(journal.read_text().splitlines()[0])
    entry["org_id"] = drilled.kept  # an attacker has the wrong org purged on restore
    journal.write_text(json.dumps(entry) + "\n")
    code, output = _argus(drilled.data_dir, "restore", "--from", str(copy),
                          "--data-dir", str(drilled.root / "never"))
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    assert "deletions.jsonl line 1 fails authentication" in last, output
    assert not (drilled.root / "never").exists()
    unsigned = {k: v for k, v in entry.items() if k not in ("kid", "mac")}
    journal.write_text(json.dumps(unsigned) + "\n")  # a line written without the key
    code, output = _argus(drilled.data_dir, "restore", "--from", str(copy),
                          "--data-dir", str(drilled.root / "never"))
    assert code == 1 and "line 1 is not authenticated" in output, output
