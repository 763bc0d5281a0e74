"""The documents rendered from every service's route table, which the shared library cannot
import at its top (services depend on it, not the other way round): each service's OpenAPI
document as it serves it, the gateway's combined one (`deploy/openapi.json`) and the scopes
page (`docs/scopes.md`). Each service package is imported by name when asked for."""

from __future__ import annotations

import importlib
from typing import Any

from argus_shared import scopes
from argus_shared.gateway_rules import GATEWAY
from argus_shared.openapi import build_openapi, combine
from argus_shared.routing import Route
from argus_shared.runner import standard_routes
from argus_shared.settings import SERVICES
from argus_shared.web import standard_endpoints


def route_table(service: str) -> list[Route]:
    """`ROUTES` of `argus_<service>.routes`."""
    module = importlib.import_module(f"argus_{service.replace('-', '_')}.routes")
    routes: list[Route] = module.ROUTES
    return routes


def service_routes(service: str) -> list[Route]:
    """Every route the service's application has, in build_app's order."""
    return [*standard_endpoints(), *route_table(service), *standard_routes()]


def service_document(service: str, *, internal: bool = False) -> dict[str, Any]:
    """The service's `/openapi.json` (its app is titled `Argus <service>`)."""
    return build_openapi(f"Argus {service}", service, service_routes(service),
                         internal=internal)


def gateway_document() -> dict[str, Any]:
    """The gateway's `/openapi.json`: every routed service's document in one."""
    routed = [s.name for s in GATEWAY.services if s.name in SERVICES]
    return combine({name: service_document(name) for name in routed})


def scopes_markdown() -> str:
    """`docs/scopes.md`."""
    return scopes.render_markdown({name: route_table(name) for name in SERVICES})
