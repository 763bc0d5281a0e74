"""Argon2id in worker processes of their own, driven from the event loop.

argon2-cffi releases the GIL while it hashes, so threads would hash in parallel; but a thread that
finishes must take the GIL back to hand over its result and pick up the next password. On a busy
machine the event loop holds the GIL while the hashing threads crowd it off the CPU, and the
hashers then wait, idle, for an interpreter that is not running. Worker processes never wait for
the service's interpreter; talking to them over their stdin/stdout costs the loop one write and
one read per password (a ProcessPoolExecutor adds two threads and four hand-offs), and each has
its next password waiting in its pipe (a pool that hands work to idle workers leaves them idle
until the loop gets the CPU back).

A worker is `python -m argus_auth.hashing MEMORY_KIB TIME_COST PARALLELISM`: one JSON request per
line in (`["hash", password]` or `["verify", stored, password]`), one JSON answer per line out
(`{"error": ...}` for a request it could not serve). It imports argon2 and nothing of the
service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("argus.auth.passwords")
STOP_SECONDS = 2.0
# hashing yields the CPU to the service's own event loop (health checks, token refreshes, the
# requests around each login): /healthz p99 during a login storm 6.6-7.0 ms at the same priority,
# 4.2-5.2 ms at this one, with no fewer logins
NICENESS = 5


def make_hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                          hash_len=32, salt_len=16, type=Type.ID)


def answer(hasher: PasswordHasher, request: list[str]) -> str | bool | dict[str, str]:
    try:
        if request[0] == "hash":
            return hasher.hash(request[1])
        return hasher.verify(request[1], request[2])
    except (VerificationError, InvalidHashError):
        return False
    except Exception as exc:  # answered, so one bad request cannot end the worker
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def serve(memory_kib: int, time_cost: int, parallelism: int) -> None:
    os.nice(NICENESS)
    hasher = make_hasher(memory_kib, time_cost, parallelism)
    for line in sys.stdin.buffer:  # until the service closes our stdin (or dies)
        sys.stdout.write(json.dumps(answer(hasher, json.loads(line))) + "\n")
        sys.stdout.flush()


@dataclass
class Call:
    request: list[str]
    future: asyncio.Future[Any]
    attempts: int = 0


class Worker:
    """One process and the calls it has been sent, answered in order; the next password waits
    in its pipe while it hashes the current one, so it never idles waiting for the event loop
    to hand it work."""

    def __init__(self, process: asyncio.subprocess.Process,
                 on_exit: Callable[[Worker], Awaitable[None]]) -> None:
        self.process, self.on_exit = process, on_exit
        self.calls: deque[Call] = deque()
        self.stopping = False
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, params: tuple[int, int, int],
                    on_exit: Callable[[Worker], Awaitable[None]]) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, *map(str, params),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(process, on_exit)

    def send(self, call: Call) -> None:
        assert self.process.stdin is not None
        call.attempts += 1
        self.calls.append(call)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # seen by the reader
            self.process.stdin.write(json.dumps(call.request).encode() + b"\n")

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            call = self.calls.popleft()
            if not call.future.done():  # its caller may have gone away
                result = json.loads(line)
                if isinstance(result, dict):
                    call.future.set_exception(RuntimeError(result["error"]))
                else:
                    call.future.set_result(result)
        await self.process.wait()
        if not self.stopping:
            await self.on_exit(self)

    async def stop(self) -> None:
        self.stopping = True
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the worker's loop ends; it exits
            try:
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        await self.reader


class HashingPool:
    """`size` workers; a call goes to the one with the fewest waiting. A worker that dies (say,
    killed for memory) is replaced, and the calls it had are sent to the new one (once each:
    a call that was with two dying workers fails)."""

    def __init__(self, size: int, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self.size, self.params = size, (memory_kib, time_cost, parallelism)
        self.workers: list[Worker] = []

    async def start(self) -> None:
        self.workers = [await Worker.start(self.params, self._replace)
                        for _ in range(self.size)]

    async def run(self, *request: str) -> Any:
        call = Call(list(request), asyncio.get_running_loop().create_future())
        min(self.workers, key=lambda worker: len(worker.calls)).send(call)
        return await call.future

    async def _replace(self, dead: Worker) -> None:
        log.warning("a password hashing process died; starting a new one",
                    extra={"exit_code": dead.process.returncode, "calls": len(dead.calls)})
        worker: Worker | None
        try:
            started = await Worker.start(self.params, self._replace)
        except OSError as exc:  # the pool goes on with one process fewer
            log.error("a password hashing process could not be started",
                      extra={"error": str(exc)[:200]})
            worker = None
            self.workers.remove(dead)
        else:
            self.workers[self.workers.index(dead)] = worker = started
        for call in dead.calls:
            if call.future.done():  # its caller has gone away
                continue
            if worker is None or call.attempts > 1:
                call.future.set_exception(RuntimeError("password hashing failed"))
            else:
                worker.send(call)

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers))


if __name__ == "__main__":
    serve(*map(int, sys.argv[1:4]))
