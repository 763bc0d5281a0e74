"""Orgs, members, roles and invitations over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from support.suite import Suite


async def test_the_creator_owns_a_new_org(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner, slug=f"acme-{uuid.uuid4().hex[:6]}")
    status, orgs = await suite.call("GET", "/orgs", owner.token)
    assert status == 200 and [(o["org_id"], o["role"]) for o in orgs] == [(org, "owner")]
    status, body = await suite.call("GET", f"/orgs/{org}", owner.token)
    assert status == 200 and body["plan"] == "free"
    status, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert [(m["user_id"], m["role"]) for m in members] == [(owner.id, "owner")]


async def test_slugs_are_unique(suite: Suite) -> None:
    owner = await suite.user()
    slug = f"dup-{uuid.uuid4().hex[:6]}"
    await suite.org(owner, slug)
    status, _ = await suite.call("POST", "/orgs", owner.token, {"name": "x", "slug": slug})
    assert status == 409


@pytest.mark.parametrize("body", [
    {"name": "x", "slug": "Has Spaces"}, {"name": "", "slug": "ok-slug"},
    {"name": "x", "slug": "ok-slug", "plan": "enterprise"}, {"name": "x"},
])
async def test_bad_orgs_are_refused_and_write_nothing(suite: Suite, body: dict[str, Any]) -> None:
    owner = await suite.user()
    status, _ = await suite.call("POST", "/orgs", owner.token, body)
    assert status == 422
    _, orgs = await suite.call("GET", "/orgs", owner.token)
    assert orgs == []


async def test_roles_narrow_what_members_may_do(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    viewer = await suite.member(org, owner, "viewer")
    admin = await suite.member(org, owner, "admin")
    assert (await suite.call("GET", f"/orgs/{org}/members", viewer.token))[0] == 200
    assert (await suite.call("PATCH", f"/orgs/{org}", viewer.token, {"name": "n"}))[0] == 403
    assert (await suite.call("PATCH", f"/orgs/{org}", admin.token, {"name": "n"}))[0] == 200
    assert (await suite.call("PATCH", f"/orgs/{org}", admin.token, {"plan": "pro"}))[0] == 403
    assert (await suite.call("PATCH", f"/orgs/{org}", owner.token, {"plan": "pro"}))[0] == 200
    status, _ = await suite.call("PATCH", f"/orgs/{org}/members/{viewer.id}", admin.token,
                                 {"role": "owner"})
    assert status == 403  # only owners make owners
    assert (await suite.call("DELETE", f"/orgs/{org}", admin.token))[0] == 403


async def test_the_last_owner_cannot_leave_or_be_demoted(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    status, problem = await suite.call("DELETE", f"/orgs/{org}/members/{owner.id}", owner.token)
    assert status == 409 and problem["title"] == "Last owner"
    status, _ = await suite.call("PATCH", f"/orgs/{org}/members/{owner.id}", owner.token,
                                 {"role": "admin"})
    assert status == 409
    second = await suite.member(org, owner, "admin")
    await suite.call("PATCH", f"/orgs/{org}/members/{second.id}", owner.token, {"role": "owner"})
    assert (await suite.call("DELETE", f"/orgs/{org}/members/{owner.id}", owner.token))[0] == 204


async def test_removing_a_member_takes_effect_everywhere_at_once(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    scoped = await suite.switch(member, org)
    assert (await suite.auth.call("GET", "/me", scoped))[0] == 200
    assert (await suite.call("DELETE", f"/orgs/{org}/members/{member.id}", owner.token))[0] == 204
    await asyncio.sleep(0.3)  # the revocation travels through NATS KV
    assert (await suite.auth.call("GET", "/me", scoped))[0] == 401  # another service
    # revoked, or already gone
    assert (await suite.call("GET", f"/orgs/{org}", member.token))[0] in (401, 404)
    assert (await suite.call("GET", f"/orgs/{org}", member.plain))[0] == 404  # no active org
    assert (await suite.auth.call("GET", "/me", member.plain))[0] == 200  # other tokens unaffected


async def test_invitations_are_single_use_and_bound_to_the_email(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    invitee, stranger = await suite.user(), await suite.user()
    status, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                       {"email": invitee.email, "role": "member"})
    assert status == 201 and len(invited["token"]) >= 43
    token = {"token": invited["token"]}
    assert (await suite.call("POST", "/invitations/accept", stranger.token, token))[0] == 403
    assert (await suite.call("POST", "/invitations/accept", invitee.token, token))[0] == 200
    assert (await suite.call("POST", "/invitations/accept", invitee.token, token))[0] == 400
    status, listed = await suite.call("GET", f"/orgs/{org}/invitations", owner.token)
    assert listed[0]["accepted_at"] is not None and "token" not in listed[0]


async def test_a_revoked_invitation_cannot_be_accepted(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    invitee = await suite.user()
    _, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                  {"email": invitee.email, "role": "viewer"})
    status, _ = await suite.call(
        "DELETE", f"/orgs/{org}/invitations/{invited['invitation']['id']}", owner.token)
    assert status == 204
    status, _ = await suite.call("POST", "/invitations/accept", invitee.token,
                                 {"token": invited["token"]})
    assert status == 400


async def test_org_switching_in_auth_uses_the_membership(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    scoped = await suite.switch(owner, org)
    _, me = await suite.auth.call("GET", "/me", scoped)
    assert (me["org"], me["role"]) == (org, "owner")
    outsider = await suite.user()
    status, _, _ = await suite.auth.post("/orgs/switch", {"org_id": org}, token=outsider.token)
    assert status == 404


async def test_deleting_an_org_schedules_its_purge(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    assert (await suite.call("DELETE", f"/orgs/{org}", owner.token))[0] == 204
    # the org is gone (404) at once, and its tokens are revoked (401) once the KV write lands
    assert (await suite.call("GET", f"/orgs/{org}", owner.token))[0] in (401, 404)
    async with suite.reconciler.pool.acquire() as conn:
        payload = await conn.fetchval(
            "select payload from outbox where subject = 'argus.events.tenant-api.org.deleted'"
            " and org_id = $1", uuid.UUID(org))
    assert b"purge_by" in payload


async def test_a_demotion_by_another_replica_is_honoured_at_once(suite: Suite, admin: Any) -> None:
    """Roles are cached briefly; a change published by another replica clears the entry, so
    the member's new token (minted with the new role) gets exactly the new role's access."""
    from argus_shared.access import revoke_membership
    from argus_shared.nats import connect

    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "admin")
    path = f"/orgs/{org}/invitations"
    assert (await suite.call("GET", path, member.token))[0] == 200  # the admin role is cached
    await admin.execute("update tenant_api.memberships set role = 'viewer' where org_id = $1"
                        " and user_id = $2", uuid.UUID(org), uuid.UUID(member.id))
    url = suite.auth.auth.nc.connected_url
    assert url is not None
    nc = await connect(url.geturl(), "other-replica")
    await revoke_membership(nc.jetstream(), org, member.id, "viewer")  # as the other replica did
    await nc.close()
    viewer = await suite.switch(member, org)
    for _ in range(50):
        status, _ = await suite.call("GET", path, viewer)
        if status == 403:
            break
        await asyncio.sleep(0.05)
    assert status == 403
