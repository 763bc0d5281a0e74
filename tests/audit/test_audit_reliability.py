"""Reliability with real processes: while events flow, the audit service is killed with SIGKILL
several times and NATS and PostgreSQL are restarted; at the end every published event is stored
exactly once and every chain verifies. CI runs a short form; ARGUS_FULL=1 a longer one."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from argus_audit.chain import PLATFORM
from argus_audit.verify import verify_chain
from argus_shared import db, events, xut
from argus_shared.nats import connect, ensure_stream
from argus_shared.settings import OWNER_ROLE
from support.infra import Infra, start_own_infra
from support.processes import Proc, service_command, wait_ready

FULL = bool(os.environ.get("ARGUS_FULL"))
EVENTS = 3000 if FULL else 400
RATE = 200 if FULL else 100  # events per second offered
ORGS = [uuid.uuid4() for _ in range(3)]


@pytest.fixture
async def own_infra() -> AsyncIterator[Infra]:
    """PostgreSQL and NATS of this test alone, so it may restart them."""
    infra = start_own_infra(Path(tempfile.mkdtemp(prefix="argus-chaos-")))
    yield infra
    infra.close()


async def publish_all(infra: Infra, keys: xut.KeyRing, sent: list[str]) -> None:
    nc = await connect(infra.nats_url, "chaos-publisher")
    await ensure_stream(nc.jetstream())
    try:
        for index in range(EVENTS):
            org = ORGS[index % len(ORGS)] if index % 7 else None
            event = events.new_event("chaos.tick", actor=events.Actor("system", "chaos"),
                                     resource=events.Resource("tick", str(index)),
                                     org_id=org, data={"n": index})
            body = events.encode(event)
            token = xut.sign(keys, xut.Identity(sub="system:chaos",
                                                org=None if org is None else str(org)),
                             issuer="chaos", audience=events.EVENTS_AUDIENCE, lifetime=3600,
                             body=body)
            while True:  # at-least-once publishing: retried until the stream has it
                try:
                    await nc.jetstream().publish(
                        events.subject_for("chaos", "chaos.tick"), body, timeout=2,
                        headers={xut.HEADER: token, "Nats-Msg-Id": event.id})
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            sent.append(event.id)
            await asyncio.sleep(1 / RATE)
    finally:
        await nc.close()


@pytest.mark.timeout(300)
async def test_kills_and_restarts_lose_nothing_and_duplicate_nothing(
    own_infra: Infra, tmp_path: Path
) -> None:
    url = await own_infra.create_database(("audit",))
    pg, nats = own_infra.pg, own_infra.nats
    assert pg is not None and nats is not None  # this test's own, so it may restart them
    stack = own_infra.stack(url)
    env = {**stack.service_environment("audit"), "ARGUS_LOG_LEVEL": "WARNING"}
    base = stack.service_url("audit")
    keys = own_infra.secrets.keyring("xut-keys")
    logs = iter(range(100))

    def start() -> Proc:
        return Proc.start(service_command("audit"), env, tmp_path / f"audit-{next(logs)}.log")

    proc = start()
    await wait_ready(f"{base}/readyz", proc)
    sent: list[str] = []
    publishing = asyncio.create_task(publish_all(own_infra, keys, sent))
    try:
        for step in range(8 if FULL else 4):
            await asyncio.sleep(1.0)
            proc.popen.send_signal(signal.SIGKILL)  # mid-batch, no goodbye
            proc.popen.wait(10)
            if step == 1:
                nats.stop()
                await asyncio.sleep(0.5)
                nats.start()
            if step == 2:
                pg.stop()
                await asyncio.sleep(0.5)
                pg.start()
            proc = start()
            await wait_ready(f"{base}/healthz", proc, timeout=60)
        await publishing
        owner = await db.connect(url, OWNER_ROLE, own_infra.secrets.read("db-owner-password"))
        try:
            for _ in range(300):
                stored = await owner.fetchval("select count(*) from audit.audit_events")
                if stored >= len(sent):
                    break
                await asyncio.sleep(0.2)
            rows = await owner.fetch("select event_id::text from audit.audit_events")
        finally:
            await owner.close()
    finally:
        publishing.cancel()
        proc.kill()
    stored_ids = [row["event_id"] for row in rows]
    assert len(sent) == EVENTS
    assert len(stored_ids) == len(set(stored_ids)), "an event was stored twice"
    assert set(stored_ids) == set(sent), f"{len(set(sent) - set(stored_ids))} events lost"
    pool = await db.create_pool(url, "argus_audit", own_infra.secrets.read("db-audit-password"),
                                schema="audit")
    try:
        for org in [*ORGS, PLATFORM]:
            result = await verify_chain(pool, own_infra.secrets.keyring("master-keys"), org)
            assert result["ok"] and result["checked"] > 0, (org, result)
    finally:
        await pool.close()
