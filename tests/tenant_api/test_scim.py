"""SCIM 2.0 provisioning as Okta and Entra ID drive it (RFC 7644 request forms): an org's SCIM
token provisions users into the org (an existing member is linked, anyone else invited), groups
give roles, and deprovisioning (PATCH active=false, either client's form, or DELETE) removes the
membership so that a token minted before is refused by every service at once. Tokens are shown
once, rotate and revoke; errors are RFC 7644 error bodies; every change reaches the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import msgspec

from argus_shared import db
from argus_shared.settings import Settings
from argus_tenant_api.org_purge import purge_deleted_orgs
from support.audit_service import Audit
from support.mailbox import tokens_for
from support.suite import Suite, User

SCIM = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


async def scim(suite: Suite, token: str, method: str, path: str,
               body: Any = None) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}", "Accept": SCIM}
    if body is not None:
        headers["Content-Type"] = SCIM
    data = None if body is None else msgspec.json.encode(body)
    async with suite.http.request(method, f"{suite.tenant}/scim/v2{path}", data=data,
                                  headers=headers) as response:
        text = await response.text()
        parsed = msgspec.json.decode(text) if text else None
        return response.status, parsed, response.content_type


async def scim_token(suite: Suite, org: str, owner: User) -> str:
    status, body = await suite.call("POST", f"/orgs/{org}/scim-tokens", owner.token)
    assert status == 201, body
    assert body["token"].startswith("argus_scim_")
    return str(body["token"])


def okta_user(email: str) -> dict[str, Any]:
    """Okta's create request (its SCIM 2.0 guide; RFC 7643 section 8.1 shape)."""
    return {"schemas": [USER], "userName": email,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"primary": True, "value": email, "type": "work"}],
            "displayName": "Ada Lovelace", "locale": "en-US", "externalId": "00u1okta",
            "groups": [], "password": "never-stored-1!", "active": True}


def entra_user(email: str) -> dict[str, Any]:
    """Entra ID's create request (its SCIM provisioning reference)."""
    return {"schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": email,
            "active": True, "displayName": "Grace Hopper",
            "emails": [{"primary": True, "type": "work", "value": email}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Grace Hopper", "familyName": "Hopper",
                     "givenName": "Grace"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "Navy"}}


async def refused_by_other_services(suite: Suite, audit: Audit, org: str, token: str) -> None:
    status, _ = await audit.get(f"/orgs/{org}/audit/events", token)
    assert status == 401
    assert (await suite.call("GET", f"/orgs/{org}/projects", token))[0] in (401, 404)
    async with suite.http.get(f"{suite.auth.base}/me",
                              headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 401


async def test_okta_links_a_member_and_deactivation_cuts_access_everywhere(
    suite: Suite, audit: Audit
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    admin = await suite.member(org, owner, "admin")
    token = await scim_token(suite, org, owner)
    held = await suite.switch(admin, org)  # minted before the deprovisioning
    assert (await audit.get(f"/orgs/{org}/audit/events", held))[0] == 200

    status, created, kind = await scim(suite, token, "POST", "/Users", okta_user(admin.email))
    assert (status, kind) == (201, SCIM), created
    assert created["active"] is True and created["name"]["givenName"] == "Ada"
    assert "password" not in created and created["externalId"] == "00u1okta"
    # Okta looks the user up before it creates, by userName
    status, found, _ = await scim(suite, token, "GET",
                                  f'/Users?filter=userName%20eq%20%22{admin.email}%22')
    assert status == 200 and found["totalResults"] == 1
    assert found["Resources"][0]["id"] == created["id"]
    # linked, not invited: no group maps to a role, so the default role is member
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[admin.id] == "member"

    status, patched, _ = await scim(suite, token, "PATCH", f"/Users/{created['id']}", {
        "schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert status == 200 and patched["active"] is False, patched
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert admin.id not in {m["user_id"] for m in members}
    await refused_by_other_services(suite, audit, org, held)
    assert (await suite.auth.post("/orgs/switch", {"org_id": org}, token=admin.plain))[0] == 404

    # reactivation brings the membership back for the account already linked
    status, back, _ = await scim(suite, token, "PATCH", f"/Users/{created['id']}", {
        "schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": True}]})
    assert status == 200 and back["active"] is True
    again = await suite.switch(admin, org)
    assert jwt.decode(again, options={"verify_signature": False})["role"] == "member"

    events = await audit.events_until(org, owner.token, lambda found: {
        "scim.user.created", "scim.user.updated", "org.member.removed", "scim.token.created",
    } <= {e["type"] for e in found})
    assert {"scim.user.created", "scim.user.updated", "org.member.removed",
            "org.member.added"} <= {e["type"] for e in events}


async def test_entra_invites_groups_give_roles_and_deactivation_removes(
    suite: Suite, audit: Audit
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await scim_token(suite, org, owner)
    newcomer = await suite.user()

    status, created, _ = await scim(suite, token, "POST", "/Users", entra_user(newcomer.email))
    assert status == 201, created
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    assert created[enterprise]["department"] == "Navy" and enterprise in created["schemas"]
    status, group, _ = await scim(suite, token, "POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins",
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "members": [{"value": created["id"]}]})
    assert status == 201 and group["members"][0]["value"] == created["id"], group
    # not a member yet: an invitation was mailed, with the role the group gives
    assert suite.mailbox is not None
    invited = (await tokens_for(suite.mailbox, [newcomer.email]))[newcomer.email]
    status, accepted = await suite.call("POST", "/invitations/accept", newcomer.token,
                                        {"token": invited})
    assert (status, accepted["role"]) == (200, "admin"), accepted
    as_admin = await suite.switch(newcomer, org)
    assert jwt.decode(as_admin, options={"verify_signature": False})["role"] == "admin"

    # Entra removes a member with a value list; the role falls back to member
    status, _, _ = await scim(suite, token, "PATCH", f"/Groups/{group['id']}", {
        "schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": "members", "value": [{"value": created["id"]}]}]})
    assert status == 200
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[newcomer.id] == "member"
    assert (await audit.get(f"/orgs/{org}/audit/events", as_admin))[0] == 401  # stale role
    # and adds one back the Okta way, then removes it by filter path
    for op in ({"op": "add", "path": "members", "value": [{"value": created["id"]}]},
               {"op": "remove", "path": f'members[value eq "{created["id"]}"]'}):
        status, after, _ = await scim(suite, token, "PATCH", f"/Groups/{group['id']}",
                                      {"schemas": [PATCH], "Operations": [op]})
        assert status == 200, after
    assert after["members"] == []

    held = await suite.switch(newcomer, org)
    status, off, _ = await scim(suite, token, "PATCH", f"/Users/{created['id']}", {
        "schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": 'emails[type eq "work"].value',
             "value": newcomer.email},
            {"op": "Add", "path": "name.givenName", "value": "Amazing Grace"}]})
    assert status == 200 and off["active"] is False and \
        off["name"]["givenName"] == "Amazing Grace", off
    await refused_by_other_services(suite, audit, org, held)

    # DELETE: gone, and 404 after
    assert (await scim(suite, token, "DELETE", f"/Users/{created['id']}"))[0] == 204
    status, gone, kind = await scim(suite, token, "GET", f"/Users/{created['id']}")
    assert (status, kind, gone["schemas"], gone["status"]) == (404, SCIM, [ERROR], "404")
    events = await audit.events_until(org, owner.token, lambda found: {
        "scim.group.created", "scim.group.updated", "scim.user.deleted",
        "org.member.role_changed"} <= {e["type"] for e in found})
    assert {"scim.group.created", "scim.user.deleted", "org.invitation.created",
            "org.member.role_changed"} <= {e["type"] for e in events}


async def test_deprovisioning_a_pending_user_revokes_its_invitation(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await scim_token(suite, org, owner)
    later = await suite.user()
    _, created, _ = await scim(suite, token, "POST", "/Users", okta_user(later.email))
    assert suite.mailbox is not None
    invited = (await tokens_for(suite.mailbox, [later.email]))[later.email]
    assert (await scim(suite, token, "DELETE", f"/Users/{created['id']}"))[0] == 204
    status, _ = await suite.call("POST", "/invitations/accept", later.token, {"token": invited})
    assert status == 400  # the invitation went with the user


async def test_lists_page_filter_and_errors_are_scim(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await scim_token(suite, org, owner)
    ids = []
    for n in range(3):
        status, created, _ = await scim(suite, token, "POST", "/Users",
                                        okta_user(f"page{n}-{org[:8]}@example.com"))
        assert status == 201
        ids.append(created["id"])
    status, page, _ = await scim(suite, token, "GET", "/Users?startIndex=2&count=1")
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 2, 1)
    assert [r["id"] for r in page["Resources"]] == [ids[1]]
    assert page["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    status, none, _ = await scim(suite, token, "GET",
                                 '/Users?filter=userName%20eq%20%22nobody@example.com%22')
    assert (status, none["totalResults"], none["Resources"]) == (200, 0, [])

    status, taken, kind = await scim(suite, token, "POST", "/Users",
                                     okta_user(f"PAGE0-{org[:8]}@example.com"))
    assert (status, kind, taken["scimType"], taken["schemas"]) == (409, SCIM, "uniqueness",
                                                                   [ERROR])
    status, bad, _ = await scim(suite, token, "GET", '/Users?filter=userName%20sw%20%22a%22')
    assert (status, bad["scimType"]) == (400, "invalidFilter")
    status, bad, _ = await scim(suite, token, "PATCH", f"/Users/{ids[0]}",
                                {"schemas": [PATCH], "Operations": [{"op": "move"}]})
    assert (status, bad["scimType"]) == (400, "invalidSyntax")
    status, bad, _ = await scim(suite, token, "POST", "/Users", {"userName": "no email here"})
    assert (status, bad["scimType"]) == (400, "invalidValue")
    status, bad, _ = await scim(suite, token, "POST", "/Groups",
                                {"displayName": "x", "members": [{"value": org}]})
    assert (status, bad["scimType"]) == (400, "invalidValue")  # not a user here

    for path in ("/ServiceProviderConfig", "/Schemas", "/ResourceTypes"):
        status, document, kind = await scim(suite, token, "GET", path)
        assert (status, kind) == (200, SCIM), document
    _, config, _ = await scim(suite, token, "GET", "/ServiceProviderConfig")
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False
    _, types, _ = await scim(suite, token, "GET", "/ResourceTypes")
    assert {t["endpoint"] for t in types["Resources"]} == {"/Users", "/Groups"}


async def test_tokens_are_shown_once_rotate_revoke_and_need_an_admin(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    assert (await suite.call("POST", f"/orgs/{org}/scim-tokens", member.token))[0] == 403
    status, issued = await suite.call("POST", f"/orgs/{org}/scim-tokens", owner.token)
    first = issued["token"]
    _, listed = await suite.call("GET", f"/orgs/{org}/scim-tokens", owner.token)
    assert first not in str(listed) and listed[0]["prefix"] == first[:16]
    assert (await scim(suite, first, "GET", "/Users"))[0] == 200

    status, rotated = await suite.call(
        "POST", f"/orgs/{org}/scim-tokens/{issued['scim_token']['id']}/rotate", owner.token)
    assert status == 201
    status, body, kind = await scim(suite, first, "GET", "/Users")
    assert (status, kind, body["schemas"]) == (401, SCIM, [ERROR])
    second = rotated["token"]
    assert (await scim(suite, second, "GET", "/Users"))[0] == 200
    assert (await suite.call("DELETE",
                             f"/orgs/{org}/scim-tokens/{rotated['scim_token']['id']}",
                             owner.token))[0] == 204
    assert (await scim(suite, second, "GET", "/ServiceProviderConfig"))[0] == 401
    for forged in ("argus_scim_" + "A" * 43, owner.token, ""):
        assert (await scim(suite, forged, "GET", "/Users"))[0] == 401


async def test_custom_group_names_map_to_roles(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    viewer = await suite.member(org, owner, "viewer")
    token = await scim_token(suite, org, owner)
    status, body = await suite.call("PUT", f"/orgs/{org}/scim-role-mappings", owner.token,
                                    {"mappings": {"Engineering Leads": "admin"}})
    assert status == 200 and body["mappings"] == {"engineering leads": "admin"}
    _, created, _ = await scim(suite, token, "POST", "/Users", okta_user(viewer.email))
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[viewer.id] == "member"
    status, group, _ = await scim(suite, token, "POST", "/Groups", {
        "displayName": "engineering LEADS", "members": [{"value": created["id"]}]})
    assert status == 201
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[viewer.id] == "admin"
    # "Admins" maps to nothing once the org has its own mappings; deleting the group demotes
    assert (await scim(suite, token, "DELETE", f"/Groups/{group['id']}"))[0] == 204
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[viewer.id] == "member"
    # the owner is never demoted or removed by SCIM when last
    _, mine, _ = await scim(suite, token, "POST", "/Users", okta_user(owner.email))
    status, body, _ = await scim(suite, token, "DELETE", f"/Users/{mine['id']}")
    assert status == 409, body
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert {m["user_id"]: m["role"] for m in members}[owner.id] == "owner"


async def test_hostile_scim_input_is_a_scim_error_and_changes_nothing(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await scim_token(suite, org, owner)
    _, created, _ = await scim(suite, token, "POST", "/Users",
                               okta_user(f"steady-{org[:8]}@example.com"))
    user = f"/Users/{created['id']}"
    deep: Any = "x"
    for _ in range(20):
        deep = {"a": deep}
    attempts: list[tuple[str, str, Any]] = [
        ("POST", "/Users", {"userName": "nul\u0000@example.com"}),
        ("POST", "/Users", {"userName": f"a-{org[:8]}@example.com", "name": deep}),
        ("POST", "/Users", ["not", "an", "object"]),
        ("POST", "/Users", {"userName": 42}),
        ("POST", "/Users", {"userName": f"b-{org[:8]}@example.com", "active": "maybe"}),
        ("PATCH", user, {"Operations": "replace"}),
        ("PATCH", user, {"schemas": ["urn:wrong"], "Operations": [{"op": "replace"}]}),
        ("PATCH", user, {"Operations": [{"op": "remove", "path": "userName"}]}),
        ("PATCH", user, {"Operations": [{"op": "replace", "path": 7, "value": 1}]}),
        ("PATCH", user, {"Operations": [{"op": "replace", "path": "name.givenName.x",
                                         "value": 1}]}),
        ("PUT", user, {"userName": ""}),
        ("GET", "/Users?startIndex=abc", None), ("GET", "/Users?count=1e9", None),
        ("GET", '/Users?filter=userName eq "x" or userName eq "y"', None),
        ("GET", "/Users/not-a-uuid", None), ("GET", "/Groups/00000000-0000-0000-0000-0000", None),
        ("POST", "/Groups", {"displayName": "g", "members": [{"value": "junk"}]}),
        ("PATCH", "/Groups/7", {"Operations": []}),
    ]
    for method, path, body in attempts:
        status, answer, kind = await scim(suite, token, method, path, body)
        assert 400 <= status < 500 and kind == SCIM, (method, path, status, answer)
        assert answer["schemas"] == [ERROR] and answer["status"] == str(status), answer
    async with suite.http.post(f"{suite.tenant}/scim/v2/Users", data=b"{not json",
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": SCIM}) as response:
        assert response.status == 400
    async with suite.http.post(f"{suite.tenant}/scim/v2/Users", data=b"userName=x",
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "text/plain"}) as response:
        assert response.status == 415
    status, listed, _ = await scim(suite, token, "GET", "/Users")
    assert listed["totalResults"] == 1 and listed["Resources"][0] == {
        **created, "meta": listed["Resources"][0]["meta"]}


SCIM_SSO_TABLES = ("scim_tokens", "scim_users", "scim_groups", "scim_group_members",
                   "scim_role_mappings", "sso_connections", "sso_domains")


async def test_a_purged_org_leaves_no_scim_or_sso_rows(
    suite: Suite, settings_for: Callable[..., Settings], admin: asyncpg.Connection
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await scim_token(suite, org, owner)
    _, user, _ = await scim(suite, token, "POST", "/Users",
                            okta_user(f"gone-{org[:8]}@example.com"))
    await scim(suite, token, "POST", "/Groups",
               {"displayName": "Admins", "members": [{"value": user["id"]}]})
    await suite.call("PUT", f"/orgs/{org}/scim-role-mappings", owner.token,
                     {"mappings": {"admins": "admin"}})
    await suite.call("PUT", f"/orgs/{org}/sso/connection", owner.token, {
        "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"})
    await suite.call("POST", f"/orgs/{org}/sso/domains", owner.token,
                     {"domain": f"gone-{org[:8]}.example.com"})

    async def rows() -> dict[str, int]:
        return {t: await admin.fetchval(f"select count(*) from tenant_api.{t} where org_id = $1",
                                        uuid.UUID(org)) for t in SCIM_SSO_TABLES}

    assert all(await rows()), await rows()  # one of each, so the purge has work to do
    assert (await suite.call("DELETE", f"/orgs/{org}", owner.token))[0] == 204
    assert (await scim(suite, token, "GET", "/Users"))[0] == 401  # at once: the org is gone
    settings = settings_for("tenant-api")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema)
    try:
        later = datetime.now(UTC) + timedelta(days=7, minutes=1)
        assert uuid.UUID(org) in await purge_deleted_orgs(pool, later)
    finally:
        await pool.close()
    assert not any((await rows()).values()), await rows()
