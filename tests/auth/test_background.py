"""The queue of account-dependent work done after the answer (argus_auth.background): a full
queue drops the job with a metric and a log line and the request answers the same; a failing
job is counted and the worker goes on; stopping finishes what is queued."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from argus_auth.background import Background
from argus_shared.logs import JsonFormatter, request_context, request_id_var
from support.auth_service import PASSWORD, AuthService
from support.web import capture


async def metric(service: AuthService, name: str) -> float:
    async with service.http.get(service.url("/metrics")) as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


async def test_a_full_queue_drops_the_job_and_answers_the_same(
    make_auth_service: Callable[..., Any]
) -> None:
    service = await make_auth_service(background_queue=1, background_workers=1)
    known = await service.signed_up()
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold() -> None:
        started.set()
        await release.wait()

    assert service.auth.background.submit("hold", hold)
    await started.wait()  # the only worker is busy
    assert service.auth.background.submit("fill", hold)  # the only slot is taken
    answers = []
    async with capture("argus.auth.background") as logged:
        for email in (known, f"n{uuid.uuid4().hex[:8]}@example.com"):
            async with service.http.post(service.url("/password/forgot"),
                                         json={"email": email}) as response:
                answers.append((response.status, await response.json()))
            async with service.http.post(service.url("/signup"),
                                         json={"email": email, "password": PASSWORD}) as r:
                answers.append((r.status, await r.json()))
    assert {status for status, _ in answers} == {202}
    assert len({str(body) for _, body in answers}) == 1
    assert any("dropped" in rec.getMessage() for rec in logged.records)
    assert not any(known in rec.getMessage() for rec in logged.records)
    release.set()
    await service.settled()
    assert await metric(service, "argus_auth_background_dropped_total") == 4
    assert not any("Reset" in m for m in service.mail_to(known))  # dropped: no mail


async def test_a_failing_job_is_counted_and_the_worker_goes_on() -> None:
    background = Background(10, 1, 0.0, CollectorRegistry())
    background.start()
    done: list[str] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    async def work() -> None:
        done.append("work")

    async with capture("argus.auth.background") as logged:
        background.submit("fail", fail)
        background.submit("work", work)
        await background.join()
    assert done == ["work"]
    assert background.failed.labels("fail")._value.get() == 1
    assert any(rec.levelname == "ERROR" for rec in logged.records)
    await background.stop()


async def test_stopping_finishes_what_is_queued() -> None:
    background = Background(10, 2, 0.01, CollectorRegistry())
    background.start()
    done: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    for n in range(5):
        background.submit("work", functools.partial(work, n))
    await background.stop()
    assert sorted(done) == list(range(5))
    assert all(task.done() for task in background.tasks) and not background.tasks


async def test_a_job_runs_in_the_request_that_queued_it() -> None:
    """Its log lines carry that request's id, and a job queued outside any request none."""
    background = Background(10, 1, 0.0, CollectorRegistry())
    background.start()
    seen: list[str | None] = []

    async def fail() -> None:
        seen.append(request_id_var.get())
        raise RuntimeError("boom")

    async with capture("argus.auth.background", JsonFormatter("auth")) as logged:
        with request_context("req-signup-0001"):
            background.submit("fail", fail)
        background.submit("fail", fail)
        await background.join()
    await background.stop()
    assert seen == ["req-signup-0001", None]
    assert [json.loads(line).get("request_id") for line in logged.lines] == [
        "req-signup-0001", None]
