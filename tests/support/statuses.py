"""Every status a route answered during the run must be in its OpenAPI document.

While the tests run, every response an in-process service prepares (any application built by
`argus_shared.web.build_app`, through its `RESPONSE_OBSERVERS`: nothing is added in
production) is recorded as (route, status, problem type). At the end of the session each one
of a real route table's routes (the five services' and the standard endpoints', not a test's
own) is looked up in its service's document (`internal=True`, so `/internal/*` too): its
status must be a documented response, and a problem `type` other than `about:blank` one the
response lists. Not checked: answers of no route (the router's 404 and 405) and 500s (which
the fuzz tests require to be none).

What was seen is written to `<pytest basetemp>/statuses.txt`, one line per (service, method,
route, status, type) with `ok` or `UNDOCUMENTED`; any undocumented one fails the session
with a summary naming them. `-p no:support.statuses` turns the check off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from argus_shared import web as shared_web
from argus_shared.cli.documents import route_table, service_document
from argus_shared.routing import Route, route_of
from argus_shared.runner import standard_routes
from argus_shared.settings import SERVICES
from argus_shared.web import SETTINGS_KEY, standard_endpoints

PROBLEM = "application/problem+json"
NOT_CHECKED = frozenset({500})
REPORT = "statuses.txt"


@dataclass(frozen=True)
class Seen:
    service: str
    method: str
    path: str
    status: int
    problem: str | None

    def line(self, verdict: str) -> str:
        return (f"{self.service} {self.method} {self.path} {self.status} "
                f"{self.problem or '-'} {verdict}")


@dataclass
class Recorder:
    routes: dict[tuple[str, int, int, str | None], Route] = field(default_factory=dict)
    directory: Path | None = None
    undocumented: list[str] = field(default_factory=list)

    async def observe(self, request: web.Request, response: web.StreamResponse) -> None:
        route = route_of(request)
        if route is None or response.status in NOT_CHECKED:
            return
        service = request.app[SETTINGS_KEY].service
        key = (service, id(route), response.status, problem_type(response))
        self.routes.setdefault(key, route)  # the route kept alive, so its id stays its own

    def seen(self) -> list[Seen]:
        owners = {id(r): name for name in SERVICES for r in route_table(name)}
        standard = {(r.method, r.path, r.summary) for r in [*standard_endpoints(),
                                                            *standard_routes()]}
        found = []
        for (app_service, route_id, status, problem), route in self.routes.items():
            service = owners.get(route_id)
            if service is None and (route.method, route.path, route.summary) in standard:
                service = app_service if app_service in SERVICES else SERVICES[0]
            if service is not None:
                found.append(Seen(service, route.method, route.path, status, problem))
        return sorted(set(found), key=lambda s: (s.service, s.path, s.method, s.status,
                                                 s.problem or ""))


def problem_type(response: web.StreamResponse) -> str | None:
    body = getattr(response, "body", None)
    if response.content_type != PROBLEM or not isinstance(body, bytes):
        return None
    try:
        found = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def verdict(documents: dict[str, dict[str, Any]], seen: Seen) -> str | None:
    """None when `seen` is documented, else what is missing."""
    operation = documents[seen.service]["paths"].get(seen.path, {}).get(seen.method.lower())
    if operation is None:
        return "no operation"
    response = operation["responses"].get(str(seen.status))
    if response is None:
        return "status not documented"
    if seen.problem in (None, "about:blank"):
        return None
    schema = response.get("content", {}).get(PROBLEM, {}).get("schema", {})
    listed = [t for part in schema.get("allOf", [])
              for t in part.get("properties", {}).get("type", {}).get("enum", [])]
    return None if seen.problem in listed else "problem type not listed"


RECORDER = Recorder()


def pytest_configure(config: pytest.Config) -> None:
    shared_web.RESPONSE_OBSERVERS.append(RECORDER.observe)


def pytest_unconfigure(config: pytest.Config) -> None:
    if RECORDER.observe in shared_web.RESPONSE_OBSERVERS:
        shared_web.RESPONSE_OBSERVERS.remove(RECORDER.observe)


@pytest.fixture(scope="session", autouse=True)
def _statuses_report_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    RECORDER.directory = tmp_path_factory.getbasetemp()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not RECORDER.routes:
        return
    seen = RECORDER.seen()
    documents = {name: service_document(name, internal=True) for name in SERVICES}
    lines = []
    for one in seen:
        missing = verdict(documents, one)
        lines.append(one.line("ok" if missing is None else f"UNDOCUMENTED ({missing})"))
        if missing is not None:
            RECORDER.undocumented.append(one.line(missing))
    if RECORDER.directory is not None:
        (RECORDER.directory / REPORT).write_text("\n".join(lines) + "\n")
    if RECORDER.undocumented and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECORDER.routes:
        return
    where = RECORDER.directory / REPORT if RECORDER.directory else REPORT
    if not RECORDER.undocumented:
        terminalreporter.write_line(f"every status a route answered is in its OpenAPI "
                                    f"document ({len(RECORDER.seen())} seen; {where})")
        return
    terminalreporter.section("statuses not in the OpenAPI documents", red=True)
    for line in RECORDER.undocumented:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(every status seen: {where})")
