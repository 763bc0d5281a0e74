"""Argon2id runs in worker processes of its own: real processes, attacked by killing them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from argus_auth import hashing
from argus_auth.config import AuthConfig
from argus_auth.passwords import Passwords
from argus_shared.settings import ConfigError
from support.web import capture

PASSWORD = "a long enough password"


@pytest.fixture
async def passwords() -> AsyncIterator[Passwords]:
    started = Passwords(memory_kib=1024, time_cost=1, parallelism=1)
    await started.start()
    yield started
    await started.stop()


async def test_hashes_verify_across_the_worker_processes() -> None:
    passwords = Passwords(memory_kib=1024, time_cost=1, parallelism=1)
    await passwords.start()
    try:
        stored = await passwords.hash(PASSWORD)
        assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        results = await asyncio.gather(*(passwords.verify(stored, attempt)
                                         for attempt in [PASSWORD, "wrong", PASSWORD] * 4))
        assert results == [True, False, True] * 4
        # an unknown account is checked against the sentinel (the same work) and never passes
        assert await passwords.verify(None, PASSWORD) is False
        # in processes of their own, behind the service's event loop for the CPU
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, worker.process.pid)
                for worker in passwords.pool.workers} == {min(ours + hashing.NICENESS, 19)}
    finally:
        await passwords.stop()
    assert all(worker.process.returncode == 0 for worker in passwords.pool.workers)


async def test_a_killed_hashing_process_is_replaced_and_logins_still_answer(
    passwords: Passwords,
) -> None:
    stored = await passwords.hash(PASSWORD)
    killed = [worker.process.pid for worker in passwords.pool.workers]
    for pid in killed:  # as the kernel's OOM killer would
        os.kill(pid, signal.SIGKILL)
    async with capture("argus.auth.passwords") as logged:
        results = await asyncio.gather(*(passwords.verify(stored, attempt)
                                         for attempt in [PASSWORD, "wrong"] * 3))
    assert results == [True, False] * 3
    assert not {worker.process.pid for worker in passwords.pool.workers} & set(killed)
    assert sum("hashing process died" in r.getMessage() for r in logged.records) == 2


async def test_a_caller_that_goes_away_does_not_leave_its_answer_to_the_next(
    passwords: Passwords,
) -> None:
    stored = await passwords.hash(PASSWORD)
    abandoned = [asyncio.ensure_future(passwords.verify(stored, PASSWORD)) for _ in range(4)]
    await asyncio.sleep(0)
    for call in abandoned:
        call.cancel()
    # every worker that had a cancelled caller's password answers it first; what follows
    # must get its own answers
    results = await asyncio.gather(*(passwords.verify(stored, attempt)
                                     for attempt in ["wrong", PASSWORD] * 3))
    assert results == [False, True] * 3


async def test_a_request_a_worker_cannot_serve_fails_alone(passwords: Passwords) -> None:
    workers = [worker.process.pid for worker in passwords.pool.workers]
    with pytest.raises(RuntimeError, match="AttributeError"):
        await passwords.pool.run("verify", None, PASSWORD)  # type: ignore[arg-type]
    stored = await passwords.hash(PASSWORD)
    assert await passwords.verify(stored, PASSWORD) is True
    assert [worker.process.pid for worker in passwords.pool.workers] == workers


def test_the_number_of_hashing_processes_is_set_or_follows_the_usable_cores() -> None:
    base = {"ARGUS_MAILBOX_DIR": "/tmp/argus-mailbox"}
    assert AuthConfig.from_env(base).argon2_workers == min(len(os.sched_getaffinity(0)), 4)
    assert AuthConfig.from_env({**base, "ARGUS_ARGON2_WORKERS": "3"}).argon2_workers == 3
    for bad in ("0", "many"):
        with pytest.raises(ConfigError, match="ARGUS_ARGON2_WORKERS"):
            AuthConfig.from_env({**base, "ARGUS_ARGON2_WORKERS": bad})


async def test_a_password_whose_worker_dies_twice_fails_and_the_pool_goes_on() -> None:
    pool = hashing.HashingPool(1, memory_kib=65536, time_cost=3, parallelism=1)  # a slow hash
    await pool.start()
    try:
        stored = hashing.make_hasher(65536, 3, 1).hash(PASSWORD)
        call = asyncio.ensure_future(pool.run("verify", stored, PASSWORD))
        for _ in range(2):  # each worker that has the password is killed before it answers
            worker = pool.workers[0]
            await asyncio.sleep(0.01)  # the password is in its pipe; its hash takes far longer
            os.kill(worker.process.pid, signal.SIGKILL)
            while pool.workers[0] is worker:
                await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="password hashing failed"):
            await call
        assert await pool.run("verify", stored, PASSWORD) is True
    finally:
        await pool.stop()
