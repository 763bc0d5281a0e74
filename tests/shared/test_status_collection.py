"""The check behind the status collection (tests/support/statuses.py): a status, or a problem
type, that a route's document does not list is reported; a test's own routes are not judged;
the standard endpoints are judged on the service that answered."""

from __future__ import annotations

from typing import Any

from argus_shared.cli.documents import route_table, service_document
from argus_shared.problem_types import ORG_NOT_ACTIVE, STEP_UP_REQUIRED
from argus_shared.routing import Route
from argus_shared.settings import SERVICES
from argus_shared.web import standard_endpoints
from support.statuses import Recorder, Seen, verdict


async def handler(request: Any) -> Any:
    raise AssertionError("never called")


def documents() -> dict[str, dict[str, Any]]:
    return {name: service_document(name, internal=True) for name in SERVICES}


def test_an_undocumented_status_or_problem_type_is_reported() -> None:
    docs = documents()
    org = "/orgs/{org_id}"
    assert verdict(docs, Seen("tenant-api", "GET", org, 404, ORG_NOT_ACTIVE)) is None
    assert verdict(docs, Seen("tenant-api", "GET", org, 200, None)) is None
    assert verdict(docs, Seen("tenant-api", "GET", org, 418, None)) == "status not documented"
    assert verdict(docs, Seen("tenant-api", "GET", org, 404, STEP_UP_REQUIRED)) == \
        "problem type not listed"
    assert verdict(docs, Seen("tenant-api", "PUT", org, 200, None)) == "no operation"
    assert verdict(docs, Seen("auth", "GET", "/internal/whoami", 401, None)) is None


def test_only_the_real_route_tables_are_judged() -> None:
    recorder = Recorder()
    real = next(r for r in route_table("webhooks") if r.path.endswith("/resend"))
    own = Route("GET", "/orgs/{org_id}", handler, "a test's own route", auth="public")
    healthz = next(r for r in standard_endpoints() if r.path == "/healthz")
    recorder.routes = {("test", id(real), 409, "about:blank"): real,
                       ("tenant-api", id(own), 418, None): own,
                       ("files", id(healthz), 200, None): healthz}
    assert recorder.seen() == [
        Seen("files", "GET", "/healthz", 200, None),
        Seen("webhooks", "POST", real.path, 409, "about:blank")]
