"""Argon2id in worker processes of their own.

argon2-cffi releases the GIL while it hashes, so threads would hash in parallel; but a thread that
finishes must take the GIL back to hand over its result and pick up the next password. On a busy
machine the event loop holds the GIL while the hashing threads crowd it off the CPU, and the
hashers then wait, idle, for an interpreter that is not running. In processes they never wait for
the service's interpreter (bench/auth_login.py: 0.76-0.79 of the raw Argon2id rate with threads,
0.84-0.88 with processes, same machine and run).

This module is all a worker imports: argon2 and nothing of the service."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("argus.auth.passwords")
T = TypeVar("T")
_hasher: PasswordHasher | None = None  # in a worker: made once by `_start`


def make_hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                          hash_len=32, salt_len=16, type=Type.ID)


def _start(memory_kib: int, time_cost: int, parallelism: int) -> None:
    global _hasher
    _hasher = make_hasher(memory_kib, time_cost, parallelism)


def hash_password(password: str) -> str:
    assert _hasher is not None
    return _hasher.hash(password)


def verify(stored: str, password: str, real: bool) -> bool:
    assert _hasher is not None
    try:
        return _hasher.verify(stored, password) and real
    except (VerificationError, InvalidHashError):
        return False


class HashingPool:
    """Worker processes, started on first use (forked from a server that has imported only this
    module); one that dies (say, killed for memory) is replaced with a new pool and its call
    retried once."""

    def __init__(self, workers: int, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self.workers, self.params = workers, (memory_kib, time_cost, parallelism)
        self.executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods
                                              else "spawn")
        if "forkserver" in methods:
            context.set_forkserver_preload([__name__])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start,
                                   initargs=self.params)

    async def run(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        executor = self.executor
        try:
            return await loop.run_in_executor(executor, function, *args)
        except BrokenProcessPool:
            if self.executor is executor:  # the first caller to notice replaces it
                log.warning("a password hashing process died; starting new ones")
                executor.shutdown(wait=False, cancel_futures=True)
                self.executor = self._new_executor()
            return await loop.run_in_executor(self.executor, function, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
