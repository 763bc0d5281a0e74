"""Reliability with real processes: a receiver process, and the webhooks service killed with
SIGKILL mid-delivery several times; every delivery still completes at least once, and the
duplicates (which receivers drop by `webhook-id`) are counted and reported."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from argus_shared import crypto, events, xut
from argus_shared.embedded import free_port
from argus_shared.nats import connect, ensure_stream
from argus_webhooks.delivery import secret_context
from support.infra import Infra, start_own_infra
from support.processes import PYTHON, Proc, service_command, wait_ready

FULL = bool(os.environ.get("ARGUS_FULL"))
EVENTS = 600 if FULL else 120
RECEIVER = str(Path(__file__).parents[1] / "support" / "receiver.py")


@pytest.fixture
async def own_infra() -> AsyncIterator[Infra]:
    infra = start_own_infra(Path(tempfile.mkdtemp(prefix="argus-webhooks-chaos-")))
    yield infra
    infra.close()


async def seed_endpoint(infra: Infra, database: str, url: str, org: uuid.UUID) -> None:
    admin = await asyncpg.connect(infra.url_for(database, with_admin=True))
    try:
        endpoint = uuid.uuid4()
        await admin.execute("insert into webhooks.endpoints (org_id, id, url, event_types)"
                            " values ($1, $2, $3, '{*}')", org, endpoint, url)
        sealed = crypto.seal(infra.secrets.keyring("master-keys"), b"whsec_" + b"A" * 44,
                             secret_context(org, endpoint))
        await admin.execute("insert into webhooks.endpoint_secrets (org_id, endpoint_id, id,"
                            " sealed) values ($1, $2, $3, $4)", org, endpoint, uuid.uuid4(),
                            sealed)
    finally:
        await admin.close()


async def publish(infra: Infra, org: uuid.UUID) -> None:
    keys = infra.secrets.keyring("xut-keys")
    nc = await connect(infra.nats_url, "chaos")
    await ensure_stream(nc.jetstream())
    for index in range(EVENTS):
        event = events.new_event("chaos.tick", actor=events.Actor("system", "chaos"),
                                 resource=events.Resource("tick", str(index)), org_id=org)
        body = events.encode(event)
        token = xut.sign(keys, xut.Identity(sub="system:chaos", org=str(org)), issuer="chaos",
                         audience=events.EVENTS_AUDIENCE, lifetime=3600, body=body)
        await nc.jetstream().publish("argus.events.chaos.chaos.tick", body,
                                     headers={xut.HEADER: token, "Nats-Msg-Id": event.id})
    await nc.close()


@pytest.mark.timeout(300)
async def test_killed_workers_still_deliver_everything_at_least_once(
    own_infra: Infra, tmp_path: Path
) -> None:
    url = await own_infra.create_database(("webhooks",))
    database = url.rsplit("/", 1)[1]
    port, log = free_port(), tmp_path / "received.log"
    receiver = Proc.start([PYTHON, RECEIVER, str(port), str(log), "0.3"], {},
                          tmp_path / "receiver.out")
    stack = own_infra.stack(url)
    env = {**stack.service_environment("webhooks"), "ARGUS_WEBHOOKS_ALLOW_NETS": "127.0.0.0/8",
           "ARGUS_WEBHOOKS_LEASE_SECONDS": "4", "ARGUS_WEBHOOKS_ATTEMPT_TIMEOUT": "2",
           "ARGUS_WEBHOOKS_WORKERS": "16", "ARGUS_LOG_LEVEL": "WARNING"}
    org = uuid.uuid4()
    runs = iter(range(100))

    def start() -> Proc:
        return Proc.start(service_command("webhooks"), env, tmp_path / f"wh-{next(runs)}.log")

    proc = start()
    try:
        await wait_ready(f"http://127.0.0.1:{port}/healthz", receiver)
        await seed_endpoint(own_infra, database, f"http://127.0.0.1:{port}/hook", org)
        await wait_ready(f"{stack.service_url('webhooks')}/readyz", proc)
        await publish(own_infra, org)
        for _ in range(3):
            await asyncio.sleep(1.5)  # deliveries are in flight: the receiver takes 0.3 s each
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait(10)
            proc = start()
            await wait_ready(f"{stack.service_url('webhooks')}/healthz", proc)
        admin = await asyncpg.connect(own_infra.url_for(database, with_admin=True))
        try:
            for _ in range(600):
                done = await admin.fetchval("select count(*) from webhooks.deliveries"
                                            " where status = 'succeeded'")
                if done == EVENTS:
                    break
                await asyncio.sleep(0.2)
            rows = await admin.fetch("select id from webhooks.deliveries")
            ids = {f"msg_{row['id']}" for row in rows}
        finally:
            await admin.close()
    finally:
        proc.kill()
        receiver.kill()
    received = Counter(line for line in log.read_text().splitlines() if line)
    assert len(ids) == EVENTS and done == EVENTS
    assert set(received) == ids, f"{len(ids - set(received))} deliveries never arrived"
    duplicates = sum(count - 1 for count in received.values())
    print(f"\n{EVENTS} deliveries, {duplicates} duplicates after 3 SIGKILLs"
          " (receivers drop them by webhook-id)")
