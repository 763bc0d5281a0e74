"""What the route-table suites share: every service's routes, an org with one of each
resource (a tenant), and a way to call any route of any service on that org's resources."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

from argus_audit.routes import ROUTES as AUDIT_ROUTES
from argus_auth.routes import ROUTES as AUTH_ROUTES
from argus_files.routes import ROUTES as FILES_ROUTES
from argus_shared.routing import Route
from argus_tenant_api.routes import ROUTES as TENANT_ROUTES
from argus_webhooks.routes import ROUTES as WEBHOOK_ROUTES
from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite, User
from support.webhooks_service import Webhooks

SERVICES: dict[str, list[Route]] = {"auth": AUTH_ROUTES, "tenant-api": TENANT_ROUTES,
                                    "audit": AUDIT_ROUTES, "webhooks": WEBHOOK_ROUTES,
                                    "files": FILES_ROUTES}
PARAM = re.compile(r"\{([^}:]+)")
SAMPLE_BODIES: dict[str, Any] = {
    "OrgChanges": {"name": "renamed"}, "RoleChange": {"role": "viewer"},
    "NewInvitation": {"email": "someone@example.com", "role": "member"},
    "NewProject": {"name": "p"}, "Money": {"amount_cents": 100},
    "NewApiKey": {"name": "k", "scopes": ["files:read"]}, "RotateApiKey": {},
    "NewEndpoint": {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
    "EndpointChanges": {"description": "changed"}, "Rotation": {}, "SsoStart": {},
    "RoleMappings": {"mappings": {"attackers": "admin"}},
    "SsoConnection": {"issuer": "https://attacker.example.com", "client_id": "x",
                      "client_secret": "y"},
    "NewDomain": {"domain": "attacker.example.com"},
}
ID_ROUTES = [(service, route) for service, routes in SERVICES.items() for route in routes
             if route.auth == "user" and PARAM.search(route.path)]


@dataclass
class Tenant:
    owner: User
    org: str
    scoped: str  # the owner's token switched into the org
    project: str
    invitation: str
    member: User
    api_key: dict[str, Any]
    session: str
    endpoint: str = ""
    delivery: str = ""
    file: str = ""  # an object in the member's namespace
    scim_token: str = ""  # the org's SCIM token (shown once) and its id
    scim_token_id: str = ""
    domain: str = ""  # an email domain the org claimed


async def tenant(suite: Suite, webhooks: Webhooks | None = None, files: Files | None = None
                 ) -> Tenant:
    owner = await suite.user()
    org = await suite.org(owner)
    project = await suite.project(org, owner)
    member = await suite.member(org, owner, "member")
    _, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                  {"email": "pending@example.com", "role": "viewer"})
    key = await suite.api_key(org, owner, project,
                              ["tenant:read", "wallet:read", "wallet:write", "files:read",
                               "files:write", "audit:read", "webhooks:write"])
    _, sessions = await suite.auth.call("GET", "/sessions", owner.token)
    found = Tenant(owner, org, await suite.switch(owner, org), project,
                   invited["invitation"]["id"], member, key, sessions[0]["id"])
    _, scim = await suite.call("POST", f"/orgs/{org}/scim-tokens", found.scoped)
    found.scim_token, found.scim_token_id = scim["token"], scim["scim_token"]["id"]
    _, claimed = await suite.call("POST", f"/orgs/{org}/sso/domains", found.scoped,
                                  {"domain": f"v-{org[:8]}.example.com"})
    found.domain = claimed["domain"]
    if webhooks is not None:
        found.endpoint, found.delivery = await webhook_delivery(suite, webhooks, found)
    if files is not None:
        member_token = await suite.switch(member, org)
        stored = await files.uploaded(member_token, org, member.id, b"the victim's file")
        found.file = stored["id"]
    return found


async def webhook_delivery(suite: Suite, webhooks: Webhooks, victim: Tenant) -> tuple[str, str]:
    """An endpoint of the org, and one delivery to it."""
    _, created = await webhooks.call("POST", f"/orgs/{victim.org}/webhooks/endpoints",
                                     victim.scoped, {"url": webhooks.receiver.url,
                                                     "event_types": ["project.created"]})
    endpoint = created["endpoint"]["id"]
    await suite.project(victim.org, victim.owner)
    for _ in range(100):
        _, deliveries = await webhooks.call(
            "GET", f"/orgs/{victim.org}/webhooks/endpoints/{endpoint}/deliveries", victim.scoped)
        if deliveries:
            return endpoint, deliveries[0]["id"]
        await asyncio.sleep(0.1)
    raise AssertionError("no delivery was made")


def path_for(route: Route, victim: Tenant) -> str:
    values = {"org_id": victim.org, "project_id": victim.project, "user_id": victim.member.id,
              "invitation_id": victim.invitation, "key_id": victim.api_key["api_key"]["id"],
              "session_id": victim.session, "endpoint_id": victim.endpoint,
              "delivery_id": victim.delivery, "object_id": victim.file,
              "token_id": victim.scim_token_id, "domain": victim.domain,
              # SSO: no provider is configured in the suite, and the victim has no identity
              # (tests/auth/test_sso.py proves another's identity cannot be unlinked)
              "provider": "acme", "identity_id": str(uuid.uuid4())}
    missing = [p for p in PARAM.findall(route.path) if p not in values]
    assert not missing, f"add an org-B sample for {missing} ({route.method} {route.path})"
    return PARAM.sub(lambda m: "{" + m.group(1), route.path).format(**values)


def body_for(route: Route) -> Any:
    if route.body is None:
        return None
    assert route.body.__name__ in SAMPLE_BODIES, f"add a sample body for {route.body.__name__}"
    return SAMPLE_BODIES[route.body.__name__]


@dataclass
class Services:
    audit: Audit
    webhooks: Webhooks
    files: Files


async def send(suite: Suite, service: str, route: Route, path: str, token: str,
               services: Services) -> tuple[int, Any]:
    headers = {"Idempotency-Key": f"idor-{uuid.uuid4().hex}"}
    if service == "tenant-api":
        return await suite.call(route.method, path, token, body_for(route), headers)
    bases = {"audit": services.audit.base, "webhooks": services.webhooks.base,
             "files": services.files.base}
    base = bases.get(service) or suite.auth.base
    async with suite.auth.http.request(
            route.method, f"{base}{path}", json=body_for(route),
            headers={"Authorization": f"Bearer {token}", **headers}) as response:
        return response.status, await response.text()
