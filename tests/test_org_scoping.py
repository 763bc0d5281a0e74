"""One rule for org routes in every service (argus_shared.scoping), generated from the route
tables: a token with no active org, or another one, gets the same `org-not-active` 404 whether
or not its user belongs to the org; then a role outside what the route declares (the same
declaration the OpenAPI document shows) is a 403, and a role inside it never is."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from argus_shared.routing import Route
from argus_shared.scoping import ROLES, check_declarations, is_org_route
from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite
from support.tenants import ID_ROUTES, SERVICES, Services, Tenant, path_for, send, tenant
from support.webhooks_service import Webhooks

ORG_ROUTES = [(service, route) for service, route in ID_ROUTES if is_org_route(route)]
NOT_ACTIVE = "urn:argus:problem:org-not-active"


@pytest.fixture
def services(audit: Audit, webhooks: Webhooks, files: Files) -> Services:
    return Services(audit, webhooks, files)


def problem(body: Any) -> dict[str, Any]:
    import json

    return body if isinstance(body, dict) else json.loads(body)


def without_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("instance", "request_id")}


async def handler(request: web.Request) -> web.StreamResponse:
    raise AssertionError("never called")


def test_every_org_route_declares_its_roles() -> None:
    for routes in SERVICES.values():
        check_declarations(routes)  # what build_app runs at start-up
    assert ORG_ROUTES and all(route.roles for _, route in ORG_ROUTES)
    undeclared = Route("GET", "/orgs/{org_id}/things", handler, "x")
    with pytest.raises(ValueError, match="without declared roles"):
        check_declarations([undeclared])


async def test_a_token_without_this_org_active_gets_one_answer_everywhere(
    suite: Suite, services: Services
) -> None:
    victim = await tenant(suite, services.webhooks, services.files)
    other_org = await suite.org(victim.member)  # the member's own second org, now active
    stranger = await suite.user()
    assert other_org != victim.org
    for service, route in ORG_ROUTES:
        path = path_for(route, victim)
        answers = []
        for token in (victim.owner.plain, victim.member.token, stranger.plain):
            status, body = await send(suite, service, route, path, token, services)
            assert status == 404, (service, route.method, route.path, status, body)
            found = problem(body)
            assert found["type"] == NOT_ACTIVE, (service, route.path, found)
            answers.append(without_instance(found))
        # a member's "no active org" and a stranger's are indistinguishable
        assert answers[0] == answers[2], (service, route.path)


async def role_tokens(suite: Suite, victim: Tenant) -> dict[str, str]:
    tokens = {"owner": victim.scoped}
    for role in ROLES[1:]:
        tokens[role] = (await suite.member(victim.org, victim.owner, role)).token
    return tokens


async def test_roles_are_enforced_exactly_as_declared(suite: Suite, services: Services) -> None:
    victim = await tenant(suite, services.webhooks, services.files)
    tokens = await role_tokens(suite, victim)
    for service, route in ORG_ROUTES:
        path = path_for(route, victim)
        for role in ROLES:
            if role in route.roles and route.method != "GET":
                continue  # an allowed write would change the org the next checks look at
            status, body = await send(suite, service, route, path, tokens[role], services)
            where = (service, route.method, route.path, role, status, body)
            if role in route.roles:
                assert status != 403, where
            else:
                assert status == 403, where
                assert problem(body)["type"] == "urn:argus:problem:role-not-allowed", where
