"""The service runner as users run it: a real process, started, called and stopped by signal."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from argus_shared import xut
from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.events import eventually
from support.processes import PYTHON, Proc, run_to_exit, service_command, wait_ready

SLOW_SERVICE = str(Path(__file__).parents[1] / "support" / "slow_service.py")


def env_for(stack: Stack, service: str = "auth", **overrides: str) -> dict[str, str]:
    return {**stack.service_environment(service), "ARGUS_PORT": str(free_port()), **overrides}


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.kill()


def assert_one_clear_line(output: str, *needles: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], lines[0]


async def test_sigterm_drains_in_flight_requests_then_exits_cleanly(
    stack: Stack, tmp_path: Path, started: list[Proc]
) -> None:
    env = env_for(stack)
    base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
    proc = Proc.start([PYTHON, SLOW_SERVICE], env, tmp_path / "slow.log")
    started.append(proc)
    await wait_ready(f"{base}/readyz", proc)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(session.get(f"{base}/slow?seconds=1.5"))
        await asyncio.sleep(0.4)
        proc.signal(signal.SIGTERM)
        response = await in_flight
        assert response.status == 200
        assert await response.json() == {"finished": True}
        await asyncio.sleep(0.3)
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{base}/healthz")  # no longer accepting
    assert await asyncio.to_thread(proc.wait, 10) == 0
    assert "Traceback" not in proc.output


async def test_service_routes_need_a_valid_x_user_token_and_never_log_it(
    stack: Stack, tmp_path: Path, started: list[Proc]
) -> None:
    env = env_for(stack, "audit")
    base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
    proc = Proc.start(service_command("audit"), env, tmp_path / "audit.log")
    started.append(proc)
    await wait_ready(f"{base}/readyz", proc)
    keys = stack.secrets.keyring("xut-keys")
    identity = xut.Identity(sub="user:42", org="3f1c1d0e-0000-4000-8000-000000000001",
                            role="admin", request_id="req-abcdef12")
    good = xut.sign(keys, identity, issuer="tenant-api", audience="audit")
    expired = xut.sign(keys, identity, issuer="tenant-api", audience="audit", now=1_000_000)
    wrong_audience = xut.sign(keys, identity, issuer="tenant-api", audience="files")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/internal/whoami", headers={xut.HEADER: good}) as r:
            assert r.status == 200
            assert (await r.json())["sub"] == "user:42"
        for bad in (expired, wrong_audience, forged):
            async with session.get(f"{base}/internal/whoami", headers={xut.HEADER: bad}) as r:
                assert r.status == 401
                assert r.content_type == "application/problem+json"
        async with session.get(f"{base}/internal/whoami") as r:
            assert r.status == 401
    proc.signal(signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 10)
    output = proc.output
    for token in (good, expired, wrong_audience, forged):
        assert token not in output
    for reason in ("expired", "wrong_audience", "bad_signature"):
        assert reason in output


async def test_health_endpoints_of_a_real_service(
    stack: Stack, tmp_path: Path, started: list[Proc]
) -> None:
    env = env_for(stack, "webhooks")
    base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
    proc = Proc.start(service_command("webhooks"), env, tmp_path / "webhooks.log")
    started.append(proc)
    await wait_ready(f"{base}/readyz", proc)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as r:
            assert (await r.json())["checks"] == {"database": "ok", "nats": "ok"}
        async with session.get(f"{base}/openapi.json") as r:
            assert "/internal/whoami" not in (await r.json())["paths"]  # never routed
        async with session.get(f"{base}/metrics") as r:
            assert 'route="/readyz"' in await r.text()


async def test_a_service_prunes_its_outbox_on_schedule_and_exports_its_state(
    stack: Stack, tmp_path: Path, started: list[Proc], admin: asyncpg.Connection
) -> None:
    """The runner's pruner: a row sent longer ago than the retention is deleted by the running
    service, and /metrics carries the outbox's gauges and what was pruned."""
    env = env_for(stack, "webhooks", ARGUS_OUTBOX_PRUNE_SECONDS="1")
    base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
    due = await admin.fetchval(
        "insert into webhooks.outbox (id, subject, payload, created_at, sent_at)"
        " values (gen_random_uuid(), 'argus.events.webhooks.test.runner-prune', '\\x7b7d',"
        " now() - interval '2 hours', now() - interval '2 hours') returning id")
    proc = Proc.start(service_command("webhooks"), env, tmp_path / "webhooks.log")
    started.append(proc)
    await wait_ready(f"{base}/readyz", proc)

    async def gone() -> bool:
        return not await admin.fetchval("select count(*) from webhooks.outbox where id = $1",
                                        due)

    assert await eventually(gone, timeout=30)
    async with aiohttp.ClientSession() as session:
        async def pruned() -> bool:
            async with session.get(f"{base}/metrics") as r:
                values = samples(await r.text())
            return values.get("argus_outbox_pruned_total", 0) >= 1

        assert await eventually(pruned, timeout=10)
        async with session.get(f"{base}/metrics") as r:
            values = samples(await r.text())
    assert {"argus_outbox_pending", "argus_outbox_oldest_pending_seconds",
            "argus_outbox_bytes"} <= set(values)
    assert values["argus_outbox_bytes"] > 0


def samples(text: str) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def test_an_outbox_retention_within_the_dedup_window_is_one_line(stack: Stack) -> None:
    code, output = run_to_exit(service_command("auth"),
                               env_for(stack, ARGUS_OUTBOX_KEEP_SECONDS="60"))
    assert code == 2
    assert_one_clear_line(output, "ARGUS_OUTBOX_KEEP_SECONDS", "duplicate window")


def test_missing_secret_is_one_line_naming_it(stack: Stack) -> None:
    env = env_for(stack)
    del env["ARGUS_XUT_KEYS_FILE"]
    code, output = run_to_exit(service_command("auth"), env)
    assert code == 2
    assert_one_clear_line(output, "ARGUS_XUT_KEYS")


def test_unreadable_secret_file_is_one_line_naming_it(stack: Stack, tmp_path: Path) -> None:
    env = env_for(stack, ARGUS_DB_PASSWORD_FILE=str(tmp_path / "absent"))
    code, output = run_to_exit(service_command("auth"), env)
    assert code == 2
    assert_one_clear_line(output, "ARGUS_DB_PASSWORD_FILE")


def test_malformed_key_ring_is_one_line_and_never_echoes_it(
    stack: Stack, tmp_path: Path
) -> None:
    bad = tmp_path / "xut-keys"
    bad.write_text("k1:c2VjcmV0LXNob3J0\n")  # too short
    code, output = run_to_exit(service_command("auth"),
                               env_for(stack, ARGUS_XUT_KEYS_FILE=str(bad)))
    assert code == 2
    assert_one_clear_line(output, "ARGUS_XUT_KEYS", "shorter than 32 bytes")
    assert "c2VjcmV0LXNob3J0" not in output


def test_unreachable_database_is_one_line(stack: Stack) -> None:
    env = env_for(stack, "tenant-api",
                  ARGUS_DATABASE_URL=f"postgresql://127.0.0.1:{free_port()}/argus")
    code, output = run_to_exit(service_command("tenant-api"), env)
    assert code == 1
    assert_one_clear_line(output, "cannot reach PostgreSQL")


def test_wrong_database_password_is_one_line_without_the_password(
    stack: Stack, tmp_path: Path
) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password-7f3a")
    env = env_for(stack, "files", ARGUS_DB_PASSWORD_FILE=str(wrong),
                  ARGUS_MIGRATE_ON_START="false")
    code, output = run_to_exit(service_command("files"), env)
    assert code == 1
    assert_one_clear_line(output, "cannot reach PostgreSQL", "argus_files")
    assert "not-the-password-7f3a" not in output


def test_unreachable_nats_is_one_line(stack: Stack) -> None:
    env = env_for(stack, "audit", ARGUS_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    code, output = run_to_exit(service_command("audit"), env)
    assert code == 1
    assert_one_clear_line(output, "cannot reach NATS")


def test_port_in_use_is_one_line(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_to_exit(service_command("auth"), env_for(stack, ARGUS_PORT=str(port)))
    assert code == 1
    assert_one_clear_line(output, f"cannot listen on 127.0.0.1:{port}")
