"""Work that depends on whether an account exists, done after the answer has gone.

`POST /signup`, `POST /password/forgot` and `POST /email/change` answer 202 after only the work
that is the same for every email (parse, normalise, rate-limit, the breached-password check,
`submit`); the look-up, the Argon2id hash, the rows and the mail run here, on a few worker
tasks fed by a bounded queue. The answer's timing therefore cannot depend on the account.

A job starts after a random delay (up to `jitter` seconds) so that its work does not land
predictably on the request that follows the one that queued it.

When the queue is full, `submit` drops the job: counted in `argus_auth_background_dropped_total`
(by job) and logged, and the request still answers the same 202. The choice is made before any
account-dependent work, so a full queue treats a known and an unknown email alike; dropping
keeps the answer's latency flat under a flood (back-pressure would hold every connection
instead). The sender of a dropped request gets no mail and can ask again.

A job runs with the request id of the request that queued it, so its log lines carry that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from argus_shared.logs import request_context, request_id_var

log = logging.getLogger("argus.auth.background")
Job = Callable[[], Awaitable[None]]


class Background:
    def __init__(self, size: int, workers: int, jitter: float,
                 registry: CollectorRegistry | None = None) -> None:
        self.queue: asyncio.Queue[tuple[str, Job, str | None]] = asyncio.Queue(size)
        self.workers, self.jitter = workers, jitter
        self.tasks: list[asyncio.Task[None]] = []
        self.random = random.SystemRandom()
        self.dropped = Counter("argus_auth_background_dropped", "Account jobs dropped because "
                               "the background queue was full", ("job",), registry=registry)
        self.failed = Counter("argus_auth_background_failed", "Account jobs that raised",
                              ("job",), registry=registry)
        depth = Gauge("argus_auth_background_queued", "Account jobs waiting",
                      registry=registry)
        depth.set_function(self.queue.qsize)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._work(), name=f"auth-background-{n}")
                      for n in range(self.workers)]

    def submit(self, name: str, job: Job) -> bool:
        """Queue `job` (never waits); False when the queue was full and it was dropped."""
        try:
            self.queue.put_nowait((name, job, request_id_var.get()))
        except asyncio.QueueFull:
            self.dropped.labels(name).inc()
            log.warning("background queue full; job dropped", extra={"job": name})
            return False
        return True

    async def join(self) -> None:
        """Wait until every job queued so far has finished (tests, shutdown)."""
        await self.queue.join()

    async def stop(self, grace: float = 3.0) -> None:
        """Finish what is queued (for up to `grace` seconds), then end the workers."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.join(), grace)
        if self.queue.qsize():
            log.warning("background jobs left undone at shutdown",
                        extra={"jobs": self.queue.qsize()})
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def _work(self) -> None:
        while True:
            name, job, request_id = await self.queue.get()
            try:
                with request_context(request_id):
                    await self._run(name, job)
            finally:
                self.queue.task_done()

    async def _run(self, name: str, job: Job) -> None:
        try:
            if self.jitter:
                await asyncio.sleep(self.random.uniform(0, self.jitter))
            await job()
        except Exception:
            self.failed.labels(name).inc()
            log.exception("background job failed", extra={"job": name})
