"""Every route of every service is in its /openapi.json, with its body and query schemas, every
response its declaration implies (and the problem types of each), the request headers it
reads, the credentials it accepts; internal routes are left out. The gateway's combined
document is the committed `deploy/openapi.json`. (That every status a route answered during
the test run is documented is checked at the end of the run: tests/support/statuses.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from argus_shared import problem_types, scopes
from argus_shared.cli.documents import gateway_document, service_document, service_routes
from argus_shared.gateway_rules import GATEWAY, JWKS_PATH, JWKS_SERVICE, OPENAPI_FILE
from argus_shared.openapi import build_openapi, combine, dumps, is_internal
from argus_shared.problem_types import ORG_NOT_ACTIVE, ROLE_NOT_ALLOWED
from argus_shared.routing import Answer, Route
from argus_shared.settings import SERVICES
from argus_shared.web import standard_endpoints
from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite
from support.webhooks_service import Webhooks

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
PROBLEM_URI = re.compile(r"urn:argus:problem:[a-z0-9-]+")


async def handler(request: Any) -> Any:
    raise AssertionError("never called")


def operation_of(spec: dict[str, Any], route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = spec["paths"][route.path][route.method.lower()]
    return operation


def public_routes(service: str) -> list[Route]:
    return [r for r in service_routes(service) if not is_internal(r)]


def listed_types(response: dict[str, Any]) -> list[str]:
    schema = response["content"][PROBLEM]["schema"]
    return [t for part in schema.get("allOf", [])
            for t in part.get("properties", {}).get("type", {}).get("enum", [])]


def refers_to_problem(response: dict[str, Any]) -> bool:
    schema = response["content"][PROBLEM]["schema"]
    return schema.get("$ref") == PROBLEM_REF or {"$ref": PROBLEM_REF} in schema.get("allOf", [])


@pytest.mark.parametrize("service", SERVICES)
def test_every_public_route_is_documented_and_internal_ones_are_not(service: str) -> None:
    spec = service_document(service)
    schemas = spec["components"]["schemas"]
    for route in service_routes(service):
        if is_internal(route):
            assert route.method.lower() not in spec["paths"].get(route.path, {}), route.path
            continue
        operation = operation_of(spec, route)
        assert operation["summary"] == route.summary
        if route.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas
        if route.auth != "public":
            assert operation["security"], route.path
    assert not [p for p in spec["paths"] if p.startswith(("/internal", "/metrics"))]
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), "operation ids must be unique"


@pytest.mark.parametrize("service", SERVICES)
def test_the_internal_document_has_the_internal_routes_marked(service: str) -> None:
    spec = service_document(service, internal=True)
    internal = [r for r in service_routes(service) if is_internal(r)]
    assert {(r.method, r.path) for r in internal} >= {("GET", "/internal/whoami"),
                                                      ("GET", "/metrics")}
    for route in internal:
        assert operation_of(spec, route)["x-internal"] is True
    assert "userToken" in spec["components"]["securitySchemes"]
    assert "userToken" not in service_document(service)["components"]["securitySchemes"]


@pytest.mark.parametrize("service", SERVICES)
def test_what_a_declaration_implies_is_documented(service: str) -> None:
    spec = service_document(service)
    for route in public_routes(service):
        responses = operation_of(spec, route)["responses"]
        expected = {str(route.status), "400"}
        if route.auth != "public":
            expected.add("401")
        if route.roles or route.scopes:
            expected.add("403")
        if route.scopes:
            expected.add("503")
        if "{" in route.path:
            expected.add("404")
        if route.body is not None:
            expected |= {"413", "415", "422"}
        if route.query is not None:
            expected.add("422")
        if route.tags != ("operations",):
            expected.add("429")
            assert "Retry-After" in responses["429"]["headers"]
        assert expected <= set(responses), (route.method, route.path, sorted(responses))
        if route.roles:
            assert ROLE_NOT_ALLOWED in listed_types(responses["403"]), route.path
        if route.auth == "user" and "{org_id}" in route.path:
            assert ORG_NOT_ACTIVE in listed_types(responses["404"]), route.path


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_response_is_a_problem(service: str) -> None:
    spec = service_document(service)
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["properties"])
    for uri in problem_types.CATALOGUE:
        assert uri in problem["description"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or "application/json" in response.get("content", {}):
                    continue  # /readyz's 503 is its JSON report
                assert refers_to_problem(response), (method, path, status)
                assert set(listed_types(response)) <= {"about:blank",
                                                       *problem_types.CATALOGUE}


def test_every_problem_type_the_code_raises_is_registered_and_documented() -> None:
    sources = [*ROOT.glob("shared/argus_shared/**/*.py"), *ROOT.glob("services/*/argus_*/*.py")]
    used = {uri for path in sources for uri in PROBLEM_URI.findall(path.read_text())}
    assert used - {problem_types.PREFIX} <= set(problem_types.CATALOGUE)
    documented = {t for service in SERVICES
                  for item in service_document(service)["paths"].values()
                  for operation in item.values()
                  for response in operation["responses"].values()
                  if PROBLEM in response.get("content", {})
                  for t in listed_types(response)}
    assert set(problem_types.CATALOGUE) <= documented


def test_an_unregistered_problem_type_is_refused() -> None:
    route = Route("GET", "/x", handler, "x", auth="public",
                  responses={409: Answer("x", problems=("urn:argus:problem:nope",))})
    with pytest.raises(ValueError, match="urn:argus:problem:nope"):
        build_openapi("x", "x", [route])


def test_login_answers_tokens_or_an_mfa_challenge() -> None:
    operation = service_document("auth")["paths"]["/login"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"oneOf": [{"$ref": "#/components/schemas/Tokens"},
                                {"$ref": "#/components/schemas/MfaRequired"}]}
    challenge = service_document("auth")["components"]["schemas"]["MfaRequired"]
    assert set(challenge["required"]) == {"mfa_required", "mfa_token"}
    assert {"401", "403", "429"} <= set(operation["responses"])


def test_declared_answers_are_merged_with_the_derived_ones() -> None:
    paths = service_document("tenant-api")["paths"]
    charge = paths["/orgs/{org_id}/wallet/charges"]["post"]
    header = next(p for p in charge["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and header["required"] is True
    assert "urn:argus:problem:step-up-required" in listed_types(charge["responses"]["401"])
    assert "Unauthenticated" in charge["responses"]["401"]["description"]
    assert {"409", "422"} <= set(charge["responses"])
    assert "Idempotent-Replayed" in charge["responses"]["201"]["headers"]
    download = service_document("files")["paths"]["/objects/{org_id}/{user_id}/{object_id}"]
    responses = download["get"]["responses"]
    assert {"200", "206", "416"} <= set(responses)
    assert "Content-Range" in responses["416"]["headers"]
    assert "Range" in {p["name"] for p in download["get"]["parameters"] if p["in"] == "header"}


@pytest.mark.parametrize("service", SERVICES)
def test_each_operation_lists_the_credentials_it_accepts(service: str) -> None:
    spec = service_document(service)
    schemes = spec["components"]["securitySchemes"]
    for name in scopes.CATALOGUE:
        assert f"`{name}`" in schemes["apiKey"]["description"]
    assert schemes["accessCookie"] == {**schemes["accessCookie"], "in": "cookie",
                                       "name": "__Host-argus_access"}
    for route in public_routes(service):
        security = operation_of(spec, route)["security"]
        if route.auth == "public":
            assert security == []
            continue
        assert {"bearer": []} in security and {"accessCookie": []} in security
        keys = [s for s in security if {"apiKey", "apiKeyBearer"} & set(s)]
        assert keys == ([{"apiKey": list(route.scopes)}, {"apiKeyBearer": list(route.scopes)}]
                        if route.scopes else []), route.path


@pytest.mark.parametrize("service", SERVICES)
def test_the_description_names_the_catalogues(service: str) -> None:
    description = service_document(service)["info"]["description"]
    assert "docs/scopes.md" in description and "docs/events.md" in description


@pytest.mark.parametrize("service", SERVICES)
def test_servers_are_the_gateway_prefix_then_the_service_itself(service: str) -> None:
    prefix = next(s.prefix for s in GATEWAY.services if s.name == service)
    spec = build_openapi(service, service, [*standard_endpoints(), *service_routes(service)])
    assert [s["url"] for s in spec["servers"]] == [f"/{prefix}", "/"]
    assert all(s["description"] for s in spec["servers"])


def test_jwks_also_names_the_gateway_root() -> None:
    spec = service_document(JWKS_SERVICE)
    assert [s["url"] for s in spec["paths"][JWKS_PATH]["get"]["servers"]] == ["/", "/auth"]
    other = service_document("tenant-api")
    assert all("servers" not in op for item in other["paths"].values() for op in item.values())


def test_a_service_outside_the_gateway_is_served_only_directly() -> None:
    assert build_openapi("x", "not-routed", [])["servers"] == [
        {"url": "/", "description": "the service directly"}]


async def test_each_service_serves_the_document_of_its_route_table(
    suite: Suite, audit: Audit, webhooks: Webhooks, files: Files
) -> None:
    """What `deploy/openapi.json` is merged from is what the services serve."""
    bases = {"auth": suite.auth.base, "tenant-api": suite.tenant, "audit": audit.base,
             "webhooks": webhooks.base, "files": files.base}
    for service, base in bases.items():
        async with suite.http.get(f"{base}/openapi.json") as response:
            assert response.status == 200
            assert await response.json() == service_document(service), service


# the gateway's document --------------------------------------------------------------------------

def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*([value["$ref"]] if isinstance(value.get("$ref"), str) else []),
                *(r for item in value.values() for r in refs(item))]
    if isinstance(value, list):
        return [r for item in value for r in refs(item)]
    return []


def test_the_committed_gateway_document_is_current() -> None:
    assert (ROOT / OPENAPI_FILE).read_text() == dumps(gateway_document()), (
        f"re-render it: argus gateway render openapi > {OPENAPI_FILE}")


def test_the_gateway_document_has_every_service_under_its_prefix() -> None:
    combined = gateway_document()
    assert combined["servers"] == [{"url": "/", "description": "the Argus gateway"}]
    for service in GATEWAY.services:
        own = service_document(service.name)
        for path, item in own["paths"].items():
            for method in item:
                operation = combined["paths"][f"/{service.prefix}{path}"][method]
                assert operation["summary"] == item[method]["summary"]
                assert "502" in operation["responses"]
    assert "get" in combined["paths"][JWKS_PATH]
    assert {"/healthz", "/openapi.json"} <= set(combined["paths"])
    ids = [op["operationId"] for item in combined["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    schemas = combined["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs(combined))


def test_components_two_services_define_differently_are_qualified() -> None:
    def document(thing: dict[str, Any]) -> dict[str, Any]:
        ok = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}
        return {"paths": {"/x": {"get": {"operationId": "get_x", "tags": ["t"],
                                         "responses": {"200": ok}}}},
                "components": {"schemas": {"Thing": thing, "Same": {"type": "string"}},
                               "securitySchemes": {}}}

    combined = combine({"auth": document({"type": "integer"}),
                        "files": document({"type": "boolean"})})
    schemas = combined["components"]["schemas"]
    assert schemas["auth.Thing"] == {"type": "integer"}
    assert schemas["files.Thing"] == {"type": "boolean"}
    assert "Thing" not in schemas and schemas["Same"] == {"type": "string"}
    answer = combined["paths"]["/files/x"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/files.Thing")
    assert combined["paths"]["/auth/x"]["get"]["operationId"] == "auth_get_x"
