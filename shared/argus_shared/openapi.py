"""`/openapi.json` from the route table: paths, parameters, bodies, every response, security.

What a route's declaration implies is derived here, once for every service (`derived`):

- every route: 400 (a header, or the path once percent-decoded, that is not UTF-8 text);
- `auth="user"`: 401 (no valid access token, or API key where scopes are listed);
  `auth="service"`: 401 (no valid X-User-Token);
- `roles`: 403 (`urn:argus:problem:role-not-allowed`); `scopes`: 403 (a key without one of
  them) and 503 (keys cannot be checked right now);
- a path parameter: 404; a user route under `{org_id}`: 404 also as
  `urn:argus:problem:org-not-active`;
- a `body`: 400, 413, 415 and 422; a `query`: 400 and 422;
- a rate-limited route (all but operations): 429 with `Retry-After`.

What only the handler knows (a 409, a 416, a second success status, a problem type raised deep
in the domain) is declared on the route (`Route.responses`, `Route.headers`). Every error
response is a `Problem` (RFC 9457) whose `type` is `about:blank` or one the response lists.

The public document leaves out what the gateway never routes: `/internal/*`, `/metrics` and
the service-to-service `auth="service"` routes (`internal=True` documents them too, marked
`x-internal`). `combine` merges the services' documents into the gateway's `/openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec

from argus_shared import problem_types, scopes
from argus_shared.access import ACCESS_COOKIE, API_KEY_PREFIX
from argus_shared.gateway_rules import (
    BLOCKED_SEGMENTS,
    GATEWAY,
    HEALTH_PATH,
    JWKS_PATH,
    JWKS_SERVICE,
    OPENAPI_PATH,
    UNAVAILABLE,
    Service,
)
from argus_shared.problem_types import ORG_NOT_ACTIVE, ROLE_NOT_ALLOWED
from argus_shared.routing import Answer, Route

PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
ORG_PARAM = "{org_id}"
REF = "#/components/schemas/"
PROBLEM_REF = {"$ref": REF + "Problem"}
PROBLEM_MEDIA_TYPE = "application/problem+json"
VERSION = "0.1.0"
DIRECT_SERVER = {"url": "/", "description": "the service directly"}
ROOT_SERVER = {"url": "/", "description": "through the Argus gateway at its root, or the "
                                          "service directly"}
GATEWAY_SERVER = {"url": "/", "description": "the Argus gateway"}
CATALOGUES = ("API-key scopes: `docs/scopes.md`; event types (the audit `action=` filter, "
              "webhook `event_types`): `docs/events.md`, both in the Argus repository.")


def _problem_schema() -> dict[str, Any]:
    types = "\n".join(f"- `{t.uri}` ({t.status}, {t.title}): {t.description}"
                      for t in problem_types.CATALOGUE.values())
    return {
        "type": "object",
        "description": "An error, as RFC 9457 problem details (`application/problem+json`). "
                       "`type` is `about:blank` unless the response lists one of these:\n\n"
                       + types,
        "properties": {
            "type": {"type": "string", "description": "`about:blank`, or a problem type the "
                                                      "response lists"},
            "title": {"type": "string", "description": "what went wrong, in short"},
            "status": {"type": "integer", "description": "the HTTP status"},
            "detail": {"type": "string", "description": "what went wrong here, and what to do"},
            "instance": {"type": "string", "description": "this occurrence, where it has one"},
            "request_id": {"type": "string", "description": "the `X-Request-Id` of the request"},
        },
        "required": ["type", "title", "status"],
    }


def security_schemes(internal: bool = False) -> dict[str, Any]:
    schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "An access token from auth (`POST /auth/login`, "
                                  "`/auth/token/refresh`, `/auth/orgs/switch`): an EdDSA JWT "
                                  "that lives 15 minutes. Org routes need one whose active "
                                  "org is the path's."},
        "accessCookie": {"type": "apiKey", "in": "cookie", "name": ACCESS_COOKIE,
                         "description": "The same access token, in the cookie auth sets "
                                        "when it issues one"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": scopes.describe()},
        "apiKeyBearer": {"type": "http", "scheme": "bearer",
                         "bearerFormat": f"{API_KEY_PREFIX}...",
                         "description": f"An API key as `Authorization: Bearer "
                                        f"{API_KEY_PREFIX}...`, with the scopes of `apiKey`"},
    }
    if internal:
        schemes["userToken"] = {"type": "apiKey", "in": "header", "name": "X-User-Token",
                                "description": "Service to service only: an HMAC token minted "
                                               "by another Argus service"}
    return schemes


def is_internal(route: Route) -> bool:
    """What the gateway never routes (`/internal...`, `/metrics`) and service-to-service
    routes: not part of the public document."""
    first = route.path.strip("/").split("/", 1)[0].lower()
    return route.auth == "service" or first in BLOCKED_SEGMENTS


def build_openapi(title: str, service: str, routes: Sequence[Route], *,
                  internal: bool = False) -> dict[str, Any]:
    documented = [r for r in routes
                  if r.method != "HEAD" and (internal or not is_internal(r))]
    schemas, components = _schemas(_types(documented))
    problem_types.check_known([p for r in documented for _, a in answers(r) for p in a.problems])
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        path = PARAM_RE.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, schemas)
    components["Problem"] = _problem_schema()
    _add_root_routes(paths, service)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": VERSION, "x-service": service,
                 "description": _description(title)},
        "servers": servers(service),
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_schemes(internal)},
    }


def _description(title: str) -> str:
    return "\n\n".join((
        f"{title}. Every error is `application/problem+json` (RFC 9457: the `Problem` schema, "
        "with the problem types each response lists); every answer carries `X-Request-Id`.",
        "Authentication: an access token (`bearer`, or the `accessCookie`), or where an "
        "operation lists scopes an API key with one of them (`apiKey`, `apiKeyBearer`).",
        CATALOGUES,
        "Behind the gateway, its `/openapi.json` documents every service at once.",
    ))


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


def _types(routes: Sequence[Route]) -> list[type[Any]]:
    found: list[type[Any]] = []
    for route in routes:
        found += [t for t in (route.body, route.query) if t is not None]
        found += _response_types(route.response)
        found += [a.body for _, a in answers(route) if a.body is not None]
    return found


def _response_types(response: type[Any] | tuple[type[Any], ...] | None) -> list[type[Any]]:
    if response is None:
        return []
    return list(response) if isinstance(response, tuple) else [response]


def _schemas(types: list[type[Any]]) -> tuple[dict[type[Any], Any], dict[str, Any]]:
    unique = list(dict.fromkeys(types))
    if not unique:
        return {}, {}
    refs, components = msgspec.json.schema_components(unique, ref_template=REF + "{name}")
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
    operation["parameters"] += [
        {"name": h.name, "in": "header", "required": h.required, "description": h.description,
         "schema": dict(h.schema)} for h in route.headers]
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
    if is_internal(route):
        operation["x-internal"] = True
    return operation


# what a declaration implies ---------------------------------------------------------------------

def derived(route: Route) -> list[tuple[int, Answer]]:
    """The answers a route's declaration implies, whatever its handler does."""
    return [*_malformed(route), *_identity(route), *_lookup(route), *_input(route),
            *_limits(route)]


def _malformed(route: Route) -> list[tuple[int, Answer]]:
    what = ["a header, or the path once percent-decoded, that is not UTF-8 text"]
    if route.body is not None:
        what.append("a body that is not UTF-8 JSON (or starts with a byte order mark), or none")
    if route.query is not None:
        what.append("a query string that is not UTF-8 once percent-decoded")
    return [(400, Answer("Malformed request: " + "; ".join(what)))]


def _identity(route: Route) -> list[tuple[int, Answer]]:
    found: list[tuple[int, Answer]] = []
    if route.auth == "user":
        credential = "access token or API key" if route.scopes else "access token"
        found.append((401, Answer(
            f"Unauthenticated: no valid, unrevoked {credential}"
            + ("" if route.scopes else " (this route does not accept API keys)"),
            headers={"WWW-Authenticate": 'Bearer realm="argus"'})))
    elif route.auth == "service":
        found.append((401, Answer("Unauthenticated: no valid X-User-Token for this service")))
    if route.roles:
        found.append((403, Answer("Your role in the org is not one of `x-roles`",
                                  problems=(ROLE_NOT_ALLOWED,))))
    if route.scopes:
        found.append((403, Answer("The API key has none of the scopes `x-scopes` lists")))
        found.append((503, Answer("API keys cannot be checked right now (auth is not "
                                  "answering); try again")))
    return found


def _lookup(route: Route) -> list[tuple[int, Answer]]:
    found: list[tuple[int, Answer]] = []
    if route.takes_id:
        found.append((404, Answer("Not found, or not your org's (never a 403 for another "
                                  "org's resource)")))
    if route.auth == "user" and ORG_PARAM in route.path:
        found.append((404, Answer("The path's org is not the access token's active org",
                                  problems=(ORG_NOT_ACTIVE,))))
    return found


def _input(route: Route) -> list[tuple[int, Answer]]:
    found: list[tuple[int, Answer]] = []
    if route.body is not None:
        found += [
            (413, Answer("The body is larger than the service's limit")),
            (415, Answer("The body is not `application/json`")),
            (422, Answer("The body does not fit its schema (an unknown field, a wrong type, "
                         "a value out of range or with control characters)")),
        ]
    if route.query is not None:
        found.append((422, Answer("A query parameter does not fit its schema, or is repeated")))
    return found


def _limits(route: Route) -> list[tuple[int, Answer]]:
    if not route.rate_limited:
        return []
    return [(429, Answer("Rate limited (per client IP, and per user, org and API key once "
                         "known)", headers={"Retry-After": "seconds until a retry is counted"}))]


def answers(route: Route) -> list[tuple[int, Answer]]:
    """Derived, then declared (`Route.responses`)."""
    declared = [(status, Answer(a) if isinstance(a, str) else a)
                for status, a in route.responses.items()]
    return [*derived(route), *declared]


def merged(found: Iterable[tuple[int, Answer]]) -> dict[int, Answer]:
    """One answer per status: descriptions joined, problem types and headers put together."""
    by_status: dict[int, Answer] = {}
    for status, answer in found:
        before = by_status.get(status)
        if before is None:
            by_status[status] = answer
            continue
        by_status[status] = Answer(
            f"{before.description}; or {answer.description[:1].lower()}"
            f"{answer.description[1:]}",
            tuple(dict.fromkeys([*before.problems, *answer.problems])),
            {**before.headers, **answer.headers}, before.body or answer.body)
    return dict(sorted(by_status.items()))


# the document's parts ----------------------------------------------------------------------------

def _responses(route: Route, schemas: dict[type[Any], Any]) -> dict[str, Any]:
    by_status = merged(answers(route))
    by_status.setdefault(route.status, Answer(HTTPStatus(route.status).phrase))
    return {str(status): (_problem(answer) if status >= 400 and answer.body is None
                          else _success(route, schemas, status, answer))
            for status, answer in by_status.items()}


def _success(route: Route, schemas: dict[type[Any], Any], status: int,
             answer: Answer) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    schema = _body_schema(route, schemas, answer, status == route.status)
    if schema is not None:
        described["content"] = {route.media_type: {"schema": schema}}
    if answer.headers:
        described["headers"] = _headers(answer.headers)
    return described


def _body_schema(route: Route, schemas: dict[type[Any], Any], answer: Answer,
                 main: bool) -> dict[str, Any] | None:
    if answer.body is not None:
        return schemas[answer.body]
    if not main:
        return None
    types = _response_types(route.response)
    if len(types) > 1:
        return {"oneOf": [schemas[t] for t in types]}
    if types:
        return schemas[types[0]]
    if route.media_type != "application/json" and route.status != 204:
        return {"type": "string"}
    return None


def _problem(answer: Answer) -> dict[str, Any]:
    schema: dict[str, Any] = PROBLEM_REF
    if answer.problems:
        listed = ["about:blank", *answer.problems]
        schema = {"allOf": [PROBLEM_REF, {"properties": {"type": {"enum": listed}}}]}
    described: dict[str, Any] = {"description": answer.description,
                                 "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}}
    if answer.headers:
        described["headers"] = _headers(answer.headers)
    return described


def _headers(headers: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"description": meaning, "schema": {"type": "string"}}
            for name, meaning in headers.items()}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    # one object parameter, exploded as a form: each of its fields is a query parameter
    return [{"name": "query", "in": "query", "required": False, "schema": schema,
             "style": "form", "explode": True}]


def _security(route: Route) -> list[dict[str, list[str]]]:
    if route.auth == "public":
        return []
    if route.auth == "service":
        return [{"userToken": []}]
    accepted: list[dict[str, list[str]]] = [{"bearer": []}, {"accessCookie": []}]
    if route.scopes:
        accepted += [{"apiKey": list(route.scopes)}, {"apiKeyBearer": list(route.scopes)}]
    return accepted


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", PARAM_RE.sub(r"\1", path).lower()).strip("_") or "root"


# the gateway's document --------------------------------------------------------------------------

def combine(documents: Mapping[str, dict[str, Any]],
            gateway: Sequence[Service] = GATEWAY.services) -> dict[str, Any]:
    """One document for the whole gateway from the services' own (`documents`: service ->
    its `/openapi.json`): each path under its service's prefix (auth's JWKS also at the root),
    operation ids and tags qualified by the service, components merged (a name two services
    define differently is qualified by each), servers `/`."""
    prefixes = {s.name: s.prefix for s in gateway}
    renames = _renames(documents)
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    schemes: dict[str, Any] = {}
    for service, document in documents.items():
        document = _renamed(document, renames[service])
        components = document.get("components", {})
        for name, schema in components.get("schemas", {}).items():
            schemas[renames[service].get(name, name)] = schema
        schemes |= components.get("securitySchemes", {})
        for path, item in document["paths"].items():
            for method, operation in item.items():
                qualified = _qualified(service, operation)
                paths.setdefault(f"/{prefixes[service]}{path}", {})[method] = qualified
                if service == JWKS_SERVICE and path == JWKS_PATH:
                    paths.setdefault(path, {})[method] = {
                        **qualified, "operationId": qualified["operationId"] + "_at_root"}
    paths = {**_gateway_paths(), **paths}
    schemas.setdefault("Problem", _problem_schema())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Argus", "version": VERSION, "x-service": "gateway",
                 "description": _gateway_description(prefixes)},
        "servers": [GATEWAY_SERVER],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": schemes},
    }


def _gateway_description(prefixes: Mapping[str, str]) -> str:
    served = ", ".join(f"{service} at `/{prefix}`" for service, prefix in prefixes.items())
    return "\n\n".join((
        f"Every Argus service behind its gateway: {served}; auth's JWKS also at "
        f"`{JWKS_PATH}`. Each service documents itself at `/<prefix>/openapi.json` too.",
        "Every error is `application/problem+json` (RFC 9457: the `Problem` schema); the "
        "gateway answers 502 for a service that does not answer.",
        CATALOGUES,
    ))


def _qualified(service: str, operation: dict[str, Any]) -> dict[str, Any]:
    qualified = {**operation, "operationId": f"{_slug(service)}_{operation['operationId']}",
                 "tags": [f"{service}: {tag}" for tag in operation.get("tags", [])] or [service]}
    qualified.pop("servers", None)
    qualified["responses"] = {**operation["responses"], str(UNAVAILABLE[0]): {
        "description": f"The gateway's own answer: {service} is not answering",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}}}
    return qualified


def _gateway_paths() -> dict[str, dict[str, Any]]:
    def own(summary: str, operation_id: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "operationId": operation_id, "tags": ["gateway"],
                        "parameters": [], "security": [],
                        "responses": {"200": {"description": "OK", "content": {
                            "application/json": {"schema": {"type": "object"}}}}}}}

    return {HEALTH_PATH: own("The gateway's own liveness", "gateway_healthz"),
            OPENAPI_PATH: own("This document", "gateway_openapi")}


def _renames(documents: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Component names two services define differently: service -> {name: qualified name}."""
    seen: dict[str, list[tuple[str, Any]]] = {}
    for service, document in documents.items():
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            seen.setdefault(name, []).append((service, schema))
    renames: dict[str, dict[str, str]] = {service: {} for service in documents}
    for name, definitions in seen.items():
        if len({json.dumps(schema, sort_keys=True) for _, schema in definitions}) > 1:
            for service, _ in definitions:
                renames[service][name] = f"{service}.{name}"
    return renames


def _renamed(value: Any, renames: Mapping[str, str]) -> Any:
    """`value` with every `$ref` to a renamed component pointing at its new name."""
    if not renames:
        return value
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF):] in renames:
            return {**value, "$ref": REF + renames[ref[len(REF):]]}
        return {key: _renamed(item, renames) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, renames) for item in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    """A document as committed (`deploy/openapi.json`) and as the gateway serves it."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"
