"""Namespaces attacked: another org's or another user's path is a 404 (never a 403, never
data); roles narrow what a member may do in its own org; API keys read their org and write only
their own namespace; malformed ids are 404s; RLS holds underneath for the runtime role."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from argus_shared import db
from argus_shared.settings import Settings
from support.files_service import Files


async def test_another_users_namespace_is_404_to_a_member(files: Files) -> None:
    suite = files.suite
    owner = await suite.user()
    org = await suite.org(owner)
    alice, bob = await suite.member(org, owner, "member"), await suite.member(org, owner, "member")
    alice_token, bob_token = await suite.switch(alice, org), await suite.switch(bob, org)
    found = await files.uploaded(alice_token, org, alice.id, b"alice's diary")
    path = found["path"]
    for method, suffix in (("GET", ""), ("GET", "/meta"), ("DELETE", "")):
        reply = await files.request(method, f"/objects/{path}{suffix}", bob_token)
        assert reply.status == 404, (method, suffix)
        assert b"diary" not in reply.body and found["id"] not in reply.body.decode()
    assert (await files.request("GET", f"/objects/{org}/{alice.id}", bob_token)).status == 404
    assert (await files.request("DELETE", f"/objects/{org}/{alice.id}", bob_token)).status == 404
    assert (await files.upload(bob_token, org, alice.id, b"planted")).status == 404
    assert (await files.request("GET", f"/objects/{org}", bob_token)).status == 403  # own org
    # alice's file is untouched, and the owner (an org admin) may read it
    owner_token = await suite.switch(owner, org)
    assert (await files.download(alice_token, path)).body == b"alice's diary"
    assert (await files.download(owner_token, path)).body == b"alice's diary"
    reply = await files.request("GET", f"/objects/{org}", owner_token)
    assert [f["id"] for f in reply.json()["files"]] == [found["id"]]
    # even an admin does not upload into someone else's namespace
    reply = await files.upload(owner_token, org, alice.id, b"planted")
    assert reply.status == 403


async def test_another_orgs_paths_are_404_whatever_the_role(files: Files) -> None:
    victim, victim_org, victim_token = await files.member_of_new_org()
    found = await files.uploaded(victim_token, victim_org, victim.id, b"victim data")
    attacker, attacker_org, attacker_token = await files.member_of_new_org("owner")
    paths = [("GET", f"/objects/{found['path']}"), ("GET", f"/objects/{found['path']}/meta"),
             ("DELETE", f"/objects/{found['path']}"), ("GET", f"/objects/{victim_org}"),
             ("DELETE", f"/objects/{victim_org}"),
             ("GET", f"/objects/{victim_org}/{victim.id}"),
             ("DELETE", f"/objects/{victim_org}/{victim.id}"),
             ("POST", f"/objects/{victim_org}/{attacker.id}"),
             ("POST", f"/objects/{victim_org}/{victim.id}")]
    for token in (attacker_token, attacker.token):  # org-scoped, and not scoped at all
        for method, path in paths:
            reply = await files.request(method, path, token, data=b"x")
            assert reply.status == 404, (method, path, reply.status)
            assert victim_org not in reply.body.decode().replace(path, "")
    # the attacker's own org with the victim's user or object id finds nothing either
    for path in (f"/objects/{attacker_org}/{victim.id}/{found['id']}",
                 f"/objects/{attacker_org}/{attacker.id}/{found['id']}"):
        assert (await files.request("GET", path, attacker_token)).status == 404
    assert (await files.download(victim_token, found["path"])).body == b"victim data"


@pytest.mark.parametrize("path", [
    "/objects/not-a-uuid/x", "/objects/{org}/..%2F..%2Fetc", "/objects/{org}/{user}/..%2Fx",
    "/objects/{org}/{user}/%2e%2e", "/objects/{org}/{user}/00000000-0000-0000-0000-000000000000",
])
async def test_malformed_and_unknown_ids_are_404(files: Files, path: str) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.request("GET", path.format(org=org, user=user.id), token)
    assert reply.status == 404


async def test_roles_narrow_what_a_member_may_do(files: Files) -> None:
    viewer, org, viewer_token = await files.member_of_new_org("viewer")
    reply = await files.upload(viewer_token, org, viewer.id, b"hello")
    assert reply.status == 403  # a viewer reads, never writes
    assert (await files.request("GET", f"/objects/{org}/{viewer.id}", viewer_token)).status == 200
    reply = await files.request("DELETE", f"/objects/{org}", viewer_token)
    assert reply.status == 403
    owner = await files.suite.user()
    org2 = await files.suite.org(owner)
    admin = await files.suite.member(org2, owner, "admin")
    admin_token = await files.suite.switch(admin, org2)
    assert (await files.request("DELETE", f"/objects/{org2}", admin_token)).status == 403
    assert (await files.request("GET", f"/objects/{org2}", admin_token)).status == 200


async def test_unauthenticated_and_removed_callers_are_refused(files: Files) -> None:
    suite = files.suite
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    token = await suite.switch(member, org)
    found = await files.uploaded(token, org, member.id, b"private")
    assert (await files.download("", found["path"])).status == 401
    assert (await files.download("not.a.jwt", found["path"])).status == 401
    assert (await files.download(token, found["path"])).status == 200  # the control
    # removing the member revokes its org tokens at once, everywhere
    status, _ = await suite.call("DELETE", f"/orgs/{org}/members/{member.id}", owner.token)
    assert status == 204
    for _ in range(50):
        if (await files.download(token, found["path"])).status == 401:
            break
        await asyncio.sleep(0.1)
    assert (await files.download(token, found["path"])).status == 401


async def test_api_keys_read_the_org_and_write_their_own_namespace(files: Files) -> None:
    suite = files.suite
    owner = await suite.user()
    org = await suite.org(owner)
    project = await suite.project(org, owner)
    member = await suite.member(org, owner, "member")
    member_token = await suite.switch(member, org)
    found = await files.uploaded(member_token, org, member.id, b"shared with the key")
    reader = await suite.api_key(org, owner, project, ["files:read"])
    writer = await suite.api_key(org, owner, project, ["files:write"])
    read_key, write_key = reader["key"], writer["key"]
    key_id = writer["api_key"]["id"]
    reply = await files.download(read_key, found["path"])
    assert reply.status == 200 and reply.body == b"shared with the key"
    assert (await files.upload(read_key, org, reader["api_key"]["id"], b"x")).status == 403
    assert (await files.download(write_key, found["path"])).status == 403  # scope
    assert (await files.upload(write_key, org, member.id, b"x")).status == 403
    reply = await files.upload(write_key, org, key_id, b"from ci")
    assert reply.status == 201 and reply.json()["uploaded_by"] == f"api_key:{key_id}"
    assert (await files.request("DELETE", f"/objects/{found['path']}", write_key)).status == 403
    assert (await files.request("DELETE", f"/objects/{org}", write_key)).status == 401


async def test_the_runtime_role_sees_and_writes_only_the_org_it_set(
    files: Files, settings_for: Callable[..., Settings]
) -> None:
    a, org_a, token_a = await files.member_of_new_org()
    b, org_b, token_b = await files.member_of_new_org()
    await files.uploaded(token_a, org_a, a.id, b"a")
    await files.uploaded(token_b, org_b, b.id, b"b")
    pool = files.store.pool
    async with db.tenant_tx(pool, None) as conn:
        assert await conn.fetchval("select count(*) from objects") == 0
    async with db.tenant_tx(pool, org_a) as conn:
        assert {r[0] for r in await conn.fetch("select distinct org_id from objects")} == {
            uuid.UUID(org_a)}
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant_tx(pool, org_a) as conn:
            await conn.execute(
                "insert into objects (org_id, owner_id, id, name, uploaded_by, segment_size,"
                " key_kid, wrapped_key) values ($1, $2, $3, 'x', 'x', 1, 'k', '\\x00')",
                uuid.UUID(org_b), uuid.UUID(b.id), uuid.uuid4())
    async with db.tenant_tx(pool, org_a) as conn:
        assert await conn.execute("update objects set name = 'x' where org_id = $1",
                                  uuid.UUID(org_b)) == "UPDATE 0"
