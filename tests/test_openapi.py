"""Every route of every service is in its /openapi.json, with its body and query schemas."""

from __future__ import annotations

import pytest

from argus_audit.routes import ROUTES as AUDIT
from argus_auth.routes import ROUTES as AUTH
from argus_files.routes import ROUTES as FILES
from argus_shared.gateway_rules import GATEWAY, JWKS_PATH, JWKS_SERVICE
from argus_shared.openapi import build_openapi
from argus_shared.routing import Route
from argus_shared.runner import standard_routes
from argus_shared.web import standard_endpoints
from argus_tenant_api.routes import ROUTES as TENANT
from argus_webhooks.routes import ROUTES as WEBHOOKS

SERVICES = {"auth": AUTH, "tenant-api": TENANT, "audit": AUDIT, "webhooks": WEBHOOKS,
            "files": FILES}


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_is_documented(service: str) -> None:
    routes: list[Route] = [*standard_endpoints(), *SERVICES[service], *standard_routes()]
    spec = build_openapi(service, service, routes)
    schemas = spec["components"]["schemas"]
    for route in routes:
        operation = spec["paths"][route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        if route.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas
        if route.auth != "public":
            assert operation["security"], route.path
            assert "401" in operation["responses"]
        if "{" in route.path:
            assert "404" in operation["responses"]
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), "operation ids must be unique"


@pytest.mark.parametrize("service", SERVICES)
def test_servers_are_the_gateway_prefix_then_the_service_itself(service: str) -> None:
    prefix = next(s.prefix for s in GATEWAY.services if s.name == service)
    spec = build_openapi(service, service, [*standard_endpoints(), *SERVICES[service]])
    assert [s["url"] for s in spec["servers"]] == [f"/{prefix}", "/"]
    assert all(s["description"] for s in spec["servers"])


def test_jwks_also_names_the_gateway_root() -> None:
    spec = build_openapi("auth", JWKS_SERVICE, AUTH)
    assert [s["url"] for s in spec["paths"][JWKS_PATH]["get"]["servers"]] == ["/", "/auth"]
    other = build_openapi("tenant-api", "tenant-api", TENANT)
    assert all("servers" not in op for item in other["paths"].values() for op in item.values())


def test_a_service_outside_the_gateway_is_served_only_directly() -> None:
    assert build_openapi("x", "not-routed", [])["servers"] == [
        {"url": "/", "description": "the service directly"}]
