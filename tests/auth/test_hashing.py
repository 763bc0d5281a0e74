"""Argon2id runs in worker processes of its own: real processes, attacked by killing them."""

from __future__ import annotations

import asyncio
import os
import signal

from argus_auth.passwords import Passwords
from support.web import capture

PASSWORD = "a long enough password"


async def test_hashes_verify_across_the_worker_processes() -> None:
    passwords = Passwords(memory_kib=1024, time_cost=1, parallelism=1)
    try:
        stored = await passwords.hash(PASSWORD)
        assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        results = await asyncio.gather(*(passwords.verify(stored, attempt)
                                         for attempt in [PASSWORD, "wrong", PASSWORD] * 4))
        assert results == [True, False, True] * 4
        # an unknown account is checked against the sentinel (the same work) and never passes
        assert await passwords.verify(None, PASSWORD) is False
        assert passwords.pool.executor._processes  # the work ran in processes of its own
    finally:
        passwords.close()


async def test_a_killed_hashing_process_is_replaced_and_logins_still_answer() -> None:
    passwords = Passwords(memory_kib=1024, time_cost=1, parallelism=1)
    try:
        stored = await passwords.hash(PASSWORD)
        workers = list(passwords.pool.executor._processes)
        for pid in workers:  # as the kernel's OOM killer would
            os.kill(pid, signal.SIGKILL)
        async with capture("argus.auth.passwords") as logged:
            assert await passwords.verify(stored, PASSWORD) is True
            assert await passwords.verify(stored, "wrong") is False
        assert not set(passwords.pool.executor._processes) & set(workers)
        assert any("hashing process died" in record.getMessage() for record in logged.records)
    finally:
        passwords.close()
