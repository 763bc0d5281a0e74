"""`/openapi.json` from the route table: paths, parameters, bodies, responses, security."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from argus_shared.gateway_rules import GATEWAY, JWKS_PATH, JWKS_SERVICE, Service
from argus_shared.routing import Route

PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
DIRECT_SERVER = {"url": "/", "description": "the service directly"}
ROOT_SERVER = {"url": "/", "description": "through the Argus gateway at its root, or the "
                                          "service directly"}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "userToken": {"type": "apiKey", "in": "header", "name": "X-User-Token"},
}


def build_openapi(title: str, service: str, routes: Sequence[Route]) -> dict[str, Any]:
    types = [t for r in routes for t in (r.body, r.query, r.response) if t is not None]
    schemas, components = _schemas(types)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.method == "HEAD":
            continue
        path = PARAM_RE.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, schemas)
    components["Problem"] = PROBLEM_SCHEMA
    _add_root_routes(paths, service)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "0.1.0", "x-service": service},
        "servers": servers(service),
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def servers(service: str, gateway: Sequence[Service] = GATEWAY.services) -> list[dict[str, str]]:
    """Where the paths are: behind the gateway under the service's prefix, or on its own port."""
    return [*_gateway_servers(service, gateway), DIRECT_SERVER]


def _gateway_servers(service: str, gateway: Sequence[Service]) -> list[dict[str, str]]:
    return [{"url": f"/{s.prefix}", "description": "through the Argus gateway"}
            for s in gateway if s.name == service]


def _add_root_routes(paths: dict[str, dict[str, Any]], service: str) -> None:
    """The gateway also routes auth's JWKS at its own root, unchanged: its operations say so."""
    if service != JWKS_SERVICE:
        return
    for operation in paths.get(JWKS_PATH, {}).values():
        operation["servers"] = [ROOT_SERVER, *_gateway_servers(service, GATEWAY.services)]


def _schemas(types: list[type[Any]]) -> tuple[dict[type[Any], Any], dict[str, Any]]:
    unique = list(dict.fromkeys(types))
    if not unique:
        return {}, {}
    refs, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}"
    )
    return dict(zip(unique, refs, strict=True)), dict(components)


def _operation(route: Route, schemas: dict[type[Any], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{_slug(route.path)}",
        "tags": list(route.tags),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in PARAM_RE.findall(route.path)
        ],
        "responses": _responses(route, schemas),
    }
    if route.query is not None:
        operation["parameters"] += _query_parameters(schemas[route.query])
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[route.body]}},
        }
    operation["security"] = _security(route)
    if route.roles:
        operation["x-roles"] = list(route.roles)
    if route.scopes:
        operation["x-scopes"] = list(route.scopes)
    return operation


def _responses(route: Route, schemas: dict[type[Any], Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        ok["content"] = {route.media_type: {"schema": schemas[route.response]}}
    elif route.media_type != "application/json":
        ok["content"] = {route.media_type: {"schema": {"type": "string"}}}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses: dict[str, Any] = {str(route.status): ok}
    if route.auth != "public":
        responses["401"] = {"description": "Unauthenticated", "content": problem}
    if route.takes_id:
        responses["404"] = {"description": "Not found (or another tenant's)", "content": problem}
    if route.body is not None or route.query is not None:
        responses["422"] = {"description": "Invalid input", "content": problem}
    responses["429"] = {"description": "Rate limited", "content": problem}
    return responses


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    # msgspec gives a $ref for structs; parameters are listed by name for documentation
    return [{"name": "query", "in": "query", "required": False, "schema": schema,
             "style": "form", "explode": True}]


def _security(route: Route) -> list[dict[str, list[str]]]:
    if route.auth == "public":
        return []
    if route.auth == "service":
        return [{"userToken": []}]
    return [{"bearer": []}, {"apiKey": []}]


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", PARAM_RE.sub(r"\1", path).lower()).strip("_") or "root"
