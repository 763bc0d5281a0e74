"""Deletion and purge (object, namespace, org, deleted org, deleted account): the data key is
destroyed first, so bytes that could not be removed (or were copied away) are unreadable from
that moment; then the bytes go; events go through the outbox. Plus the sweeper, the metrics,
and the data-subject requests that tenant-api's job sends."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from argus_files import deletion, keys
from argus_files.segments import HEADER_SIZE, Header, IntegrityError, Opener
from argus_shared import xut
from argus_shared.db import one
from argus_shared.nats import RpcError, request
from argus_shared.web import NATS_KEY, SETTINGS_KEY
from support.files_service import Files, stored_files


async def events_of(admin: asyncpg.Connection, org: str) -> list[dict[str, Any]]:
    rows = await admin.fetch("select payload from files.outbox where org_id = $1 order by seq",
                             uuid.UUID(org))
    return [json.loads(r["payload"]) for r in rows]


async def test_deleting_a_file_shreds_its_key_then_removes_its_bytes(
    files: Files, admin: asyncpg.Connection
) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"to be forgotten")
    keep = await files.uploaded(token, org, user.id, b"to be kept")
    reply = await files.request("DELETE", f"/objects/{found['path']}", token)
    assert reply.status == 204
    assert (await files.download(token, found["path"])).status == 404
    assert (await files.request("DELETE", f"/objects/{found['path']}", token)).status == 404
    assert await admin.fetchval("select count(*) from files.objects where id = $1",
                                uuid.UUID(found["id"])) == 0
    assert [p.name for p in stored_files(files.config.directory)] == [keep["id"]]
    types = [(e["type"], e["resource"]["id"], e["actor"]["id"])
             for e in await events_of(admin, org)]
    assert types == [("file.uploaded", found["id"], user.id),
                     ("file.uploaded", keep["id"], user.id),
                     ("file.deleted", found["id"], user.id)]
    assert "to be" not in json.dumps(await events_of(admin, org))


async def test_bytes_that_survive_deletion_are_unreadable(
    files: Files, admin: asyncpg.Connection
) -> None:
    """The backend refuses to delete (here: the object's path has become a directory), as a
    backup copy would survive: the key is already gone, so neither can ever be decrypted."""
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"secret survives?")
    row = one(await admin.fetchrow("select * from files.objects where id = $1",
                                   uuid.UUID(found["id"])))
    data_key = keys.unwrap(files.store.master, row["org_id"], row["id"],
                           bytes(row["wrapped_key"]))
    path = files.config.directory.resolve() / found["path"]
    backup = path.read_bytes()
    header = Header.decode(backup[:HEADER_SIZE], row["org_id"], row["id"])
    assert Opener(data_key, header, 16).open(0, backup[HEADER_SIZE:]) == b"secret survives?"
    path.unlink()
    path.mkdir()
    (path / "stuck").write_bytes(backup)
    assert (await files.request("DELETE", f"/objects/{found['path']}", token)).status == 204
    row = one(await admin.fetchrow("select * from files.objects where id = $1",
                                   uuid.UUID(found["id"])))
    assert row["status"] == "shredded" and row["wrapped_key"] is None and row["key_kid"] is None
    assert (await files.download(token, found["path"])).status == 404
    # nothing in the database can open the surviving copy any more
    others = await admin.fetch("select org_id, id, wrapped_key from files.objects"
                               " where wrapped_key is not null")
    for other in others:
        other_key = keys.unwrap(files.store.master, other["org_id"], other["id"],
                                bytes(other["wrapped_key"]))
        try:
            Opener(other_key, header, 16).open(0, backup[HEADER_SIZE:])
            raise AssertionError("another key opened the shredded object")
        except IntegrityError:
            pass
    # once the backend works again, the sweeper removes the bytes and the row
    shutil.rmtree(path)
    path.write_bytes(backup)
    assert await deletion.sweep(files.store) >= 1
    assert not path.exists()
    assert await admin.fetchval("select count(*) from files.objects where id = $1",
                                uuid.UUID(found["id"])) == 0


async def test_purging_a_namespace_and_an_org(files: Files, admin: asyncpg.Connection) -> None:
    suite = files.suite
    owner = await suite.user()
    org = await suite.org(owner)
    alice, bob = await suite.member(org, owner, "member"), await suite.member(org, owner, "admin")
    alice_token, bob_token = await suite.switch(alice, org), await suite.switch(bob, org)
    for n in range(3):
        await files.uploaded(alice_token, org, alice.id, f"alice {n}".encode())
    bobs = await files.uploaded(bob_token, org, bob.id, b"bob's")
    other_user, other_org, other_token = await files.member_of_new_org()
    others = await files.uploaded(other_token, other_org, other_user.id, b"elsewhere")
    reply = await files.request("DELETE", f"/objects/{org}/{alice.id}", alice_token)
    assert reply.status == 200 and reply.json() == {"shredded": 3}
    assert (await files.request("GET", f"/objects/{org}/{alice.id}", alice_token)).json()[
        "files"] == []
    assert not (files.config.directory.resolve() / org / alice.id).exists()
    assert (await files.download(bob_token, bobs["path"])).status == 200
    owner_token = await suite.switch(owner, org)
    reply = await files.request("DELETE", f"/objects/{org}", owner_token)
    assert reply.status == 200 and reply.json() == {"shredded": 1}
    assert not (files.config.directory.resolve() / org).exists()
    assert await admin.fetchval("select count(*) from files.objects where org_id = $1",
                                uuid.UUID(org)) == 0
    assert (await files.download(other_token, others["path"])).body == b"elsewhere"
    types = [e["type"] for e in await events_of(admin, org)]
    assert types.count("file.user_purged") == 1 and types.count("file.org_purged") == 1
    purge = next(e for e in await events_of(admin, org) if e["type"] == "file.user_purged")
    assert purge["data"] == {"shredded": 3, "bytes": 21, "owner_id": alice.id}


async def test_a_deleted_org_is_shredded(files: Files, admin: asyncpg.Connection) -> None:
    owner, org, token = await files.member_of_new_org("owner")
    found = await files.uploaded(token, org, owner.id, b"org data")
    status, _ = await files.suite.call("DELETE", f"/orgs/{org}", token)
    assert status == 204
    for _ in range(100):
        if not await admin.fetchval("select count(*) from files.objects where org_id = $1",
                                    uuid.UUID(org)):
            break
        await asyncio.sleep(0.1)
    assert await admin.fetchval("select count(*) from files.objects where org_id = $1",
                                uuid.UUID(org)) == 0
    assert not (files.config.directory.resolve() / found["path"]).exists()
    [purged] = [e for e in await events_of(admin, org) if e["type"] == "file.org_purged"]
    assert purged["actor"] == {"type": "service", "id": "tenant-api"}


async def test_the_sweeper_finishes_crashed_uploads(files: Files, admin: asyncpg.Connection
                                                    ) -> None:
    user, org, token = await files.member_of_new_org()
    kept = await files.uploaded(token, org, user.id, b"complete")
    crashed = uuid.uuid4()
    await admin.execute(
        "insert into files.objects (org_id, owner_id, id, name, uploaded_by, segment_size,"
        " key_kid, wrapped_key, created_at) values ($1, $2, $3, 'x', 'user:x', 65536, 'k',"
        " '\\x01', now() - interval '2 days')", uuid.UUID(org), uuid.UUID(user.id), crashed)
    root = files.config.directory.resolve()
    (root / org / user.id / str(crashed)).write_bytes(b"sealed bytes of a crashed upload")
    partial = root / ".uploads" / f"{uuid.uuid4()}.part"
    partial.write_bytes(b"half an upload")
    fresh = root / ".uploads" / f"{uuid.uuid4()}.part"
    fresh.write_bytes(b"an upload in progress")
    old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(partial, (old, old))
    assert await deletion.sweep(files.store) >= 1
    assert not (root / org / user.id / str(crashed)).exists() and not partial.exists()
    assert fresh.exists()  # not stale yet
    assert await admin.fetchval("select count(*) from files.objects where id = $1", crashed) == 0
    assert (await files.download(token, kept["path"])).body == b"complete"
    metrics = (await files.request("GET", "/metrics")).body.decode()
    assert "argus_files_objects " in metrics


async def test_transfer_metrics(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    found = await files.uploaded(token, org, user.id, b"x" * 1000)
    await files.download(token, found["path"])
    await files.download(token, found["path"], {"Range": "bytes=0-9"})
    await files.upload(token, org, user.id, b"<html>")
    metrics = (await files.request("GET", "/metrics")).body.decode()
    assert "argus_files_bytes_in_total 1000.0" in metrics
    assert "argus_files_bytes_out_total 1010.0" in metrics
    assert "argus_files_objects_stored_total 1.0" in metrics
    assert 'argus_files_upload_failures_total{reason="type_not_allowed"} 1.0' in metrics


async def rpc(files: Files, method: str, sub: str, user_id: str) -> Any:
    return await request(files.app[NATS_KEY], files.app[SETTINGS_KEY].xut_keys,
                         issuer="tenant-api", service="files", method=method,
                         payload={"user_id": user_id}, identity=xut.Identity(sub=sub),
                         wait_seconds=5)


async def test_data_subject_export_and_purge(files: Files, admin: asyncpg.Connection) -> None:
    suite = files.suite
    user, org, token = await files.member_of_new_org()
    owner2 = await suite.user()
    org2 = await suite.org(owner2)
    await suite.member(org2, owner2, "member")
    mine = [await files.uploaded(token, org, user.id, b"one", "one.txt")]
    stranger, org3, stranger_token = await files.member_of_new_org()
    theirs = await files.uploaded(stranger_token, org3, stranger.id, b"not mine")
    exported = await rpc(files, "export_user", f"user:{user.id}", user.id)
    assert [f["id"] for f in exported["files"]] == [m["id"] for m in mine]
    assert exported["files"][0]["name"] == "one.txt"
    for method, sub in (("export_user", f"user:{stranger.id}"), ("purge_user", f"user:{user.id}"),
                        ("purge_user", "service:webhooks")):
        try:
            await rpc(files, method, sub, user.id)
            raise AssertionError(f"{method} as {sub} was answered")
        except RpcError as exc:
            assert exc.status == 403
    answer = await rpc(files, "purge_user", "service:tenant-api", user.id)
    assert answer == {"purged": True, "shredded": 1}
    assert await admin.fetchval("select count(*) from files.objects where owner_id = $1",
                                uuid.UUID(user.id)) == 0
    assert (await files.download(stranger_token, theirs["path"])).body == b"not mine"
    assert await rpc(files, "purge_user", "service:tenant-api", user.id) == {
        "purged": True, "shredded": 0}  # idempotent


async def test_account_deletion_end_to_end(files: Files, audit: Any, webhooks: Any,
                                           admin: asyncpg.Connection) -> None:
    suite = files.suite
    owner = await suite.user()
    org = await suite.org(owner)
    leaving = await suite.member(org, owner, "member")
    token = await suite.switch(leaving, org)
    found = await files.uploaded(token, org, leaving.id, b"my photo", "me.txt")
    owner_token = await suite.switch(owner, org)
    events = await audit.events_until(org, owner_token, lambda evs: any(
        e["type"] == "file.uploaded" for e in evs))
    assert any(e["type"] == "file.uploaded" and e["resource"]["id"] == found["id"]
               for e in events)  # through the outbox, NATS and into the audit chain
    status, bundle = await suite.call("POST", "/me/export", leaving.token)
    assert status == 200 and bundle["complete"] is True, bundle["missing"]
    assert [f["name"] for f in bundle["services"]["files"]["files"]] == ["me.txt"]
    status, _ = await suite.call("DELETE", "/me", leaving.token)
    assert status == 202
    await suite.tenant_app_dsr().purge_pending()
    state = await suite.tenant_app_dsr().status(uuid.UUID(leaving.id))
    assert "files" in state["confirmed"] and state["completed_at"] is not None
    assert await admin.fetchval("select count(*) from files.objects where owner_id = $1",
                                uuid.UUID(leaving.id)) == 0
