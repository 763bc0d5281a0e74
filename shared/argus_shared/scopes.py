"""The API-key scopes, each declared once: its name, the service whose routes it opens and what
it allows. Routes name the scopes that let a key call them (`Route(scopes=...)`, checked at
start-up by `check_declared`); auth issues keys only with these names (an unknown one is a
422); each OpenAPI document describes them in its API-key security scheme; and
`docs/scopes.md` lists them with the routes each one opens (`argus scopes` renders it).

A key's scope opens exactly the routes that name it: `write` does not imply `read`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from argus_shared.gateway_rules import GATEWAY, Service
from argus_shared.routing import Route


@dataclass(frozen=True)
class Scope:
    name: str
    service: str
    description: str


CATALOGUE: dict[str, Scope] = {}


def _declare(name: str, service: str, description: str) -> str:
    CATALOGUE[name] = Scope(name, service, description)
    return name


TENANT_READ = _declare("tenant:read", "tenant-api", "Read the org, its members and its projects")
WALLET_READ = _declare("wallet:read", "tenant-api",
                       "Read the wallet's balance and its ledger entries")
WALLET_WRITE = _declare("wallet:write", "tenant-api",
                        "Deposit into and charge the wallet (each with an `Idempotency-Key`)")
AUDIT_READ = _declare("audit:read", "audit",
                      "Query, export and verify the org's audit log (every view is audited too)")
EVENTS_READ = _declare("events:read", "audit",
                       "Receive the org's live events (`GET /stream`), of the families the "
                       "key's other scopes read")
WEBHOOKS_WRITE = _declare("webhooks:write", "webhooks",
                          "Manage the org's webhook endpoints and their secrets, read their "
                          "deliveries and attempts, deliver again")
FILES_READ = _declare("files:read", "files", "List, read and download every file of the org")
FILES_WRITE = _declare("files:write", "files",
                       "Upload files into the key's own namespace (`<org>/<key id>`) and "
                       "delete files there")

NAMES: tuple[str, ...] = tuple(CATALOGUE)


def unknown(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - set(CATALOGUE))


def check_declared(routes: Sequence[Route]) -> None:
    """At start-up: every scope a route names is a registered one."""
    undeclared = unknown(scope for route in routes for scope in route.scopes)
    if undeclared:
        raise ValueError(f"unknown API-key scopes declared: {', '.join(undeclared)}")


def describe() -> str:
    """The scopes as a Markdown table, for the API-key security scheme of each document."""
    lines = ["An API key of one org's project (`argus_sk_...`), issued with one or more "
             "scopes; a route accepts a key with one of the scopes its operation lists.", "",
             "| scope | service | allows |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.service} | {s.description} |" for s in CATALOGUE.values()]
    return "\n".join(lines)


def render_markdown(tables: Mapping[str, Sequence[Route]],
                    gateway: Sequence[Service] = GATEWAY.services) -> str:
    """`docs/scopes.md`: every scope, what it allows and the routes (through the gateway) that
    accept a key with it. `tables`: service -> its route table."""
    prefixes = {s.name: s.prefix for s in gateway}
    lines = ["# API-key scopes", "",
             "Every scope an API key can be issued with, from `shared/argus_shared/scopes.py` "
             "(rendered by `argus scopes`; do not edit by hand). Keys are issued per project by "
             "the org's owners and admins (auth `POST /orgs/{org_id}/projects/{project_id}/"
             "api-keys`); any other name is refused with a `422`. A key's scope opens exactly "
             "the routes listed under it (`write` does not imply `read`), always within the "
             "key's org; send the key as `X-API-Key: argus_sk_...` or "
             "`Authorization: Bearer argus_sk_...`. What a key does is recorded like a "
             "user's action, with the actor `api_key` (event types: "
             "[events.md](events.md)).", ""]
    for scope in CATALOGUE.values():
        lines += [f"## `{scope.name}`", "", f"{scope.description}.", ""]
        lines += [f"- `{route.method} /{prefixes.get(service, service)}{route.path}`: "
                  f"{route.summary}"
                  for service, routes in tables.items() for route in routes
                  if scope.name in route.scopes]
        lines.append("")
    return "\n".join(lines)
