"""`GET /stream`'s controls over real HTTP, NATS and the other services: a reader that does not
read is dropped at its buffer bound, an expired token / role change / deleted org / revoked API
key ends the stream, the per-org cap, `event: reset` for a position the stream no longer keeps,
heartbeat comments."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any

import nats

from argus_audit.stream_http import HUB_KEY
from argus_shared import events
from argus_shared.events import STREAM
from argus_shared.metrics import METRICS_KEY
from support.audit_service import Audit
from support.events import publish_as_relay
from support.streams import Listener, close_all, listen, until
from support.suite import Suite, User

ACCESS_TTL = 900  # auth's access-token lifetime in the tests' configuration


def value(audit: Audit, name: str, **labels: str) -> float:
    found = audit.app[METRICS_KEY].registry.get_sample_value(name, labels)
    return float(found or 0.0)


async def open_as(audit: Audit, user: User | str, query: str = "",
                  headers: dict[str, str] | None = None) -> Listener:
    token = user if isinstance(user, str) else user.token
    return await listen(audit.suite.http, f"{audit.base}/stream{query}", token, headers)


async def test_a_reader_that_does_not_read_is_dropped_at_its_bound(
        suite: Suite, make_audit: Callable[..., Any]) -> None:
    audit: Audit = await make_audit(stream_buffer_events=8)
    owner = await suite.user()
    org = await suite.org(owner)
    reader = await open_as(audit, owner, "?types=project.")
    # a raw client with a tiny receive window that sends its request and never reads
    host, port = audit.base.removeprefix("http://").split(":")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((host, int(port)))
    stuck.sendall(f"GET /stream?types=project. HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {owner.token}\r\n\r\n".encode())
    hub = audit.app[HUB_KEY]
    await until(lambda: len(hub.connections) == 2)
    before = value(audit, "argus_stream_slow_drops_total")
    settings = audit.settings
    nc = await nats.connect(settings.nats_url)
    actor = events.Actor("user", owner.id)
    try:
        pad = "x" * 8192
        for number in range(2000):
            event = events.new_event("project.created", actor=actor,
                                     resource=events.Resource("project", str(uuid.uuid4())),
                                     org_id=org, request_id=f"req-slow-{number:06d}",
                                     data={"pad": pad})
            await publish_as_relay(nc.jetstream(), settings.xut_keys, "tenant-api", event,
                                   {"sub": f"user:{owner.id}"})
            if value(audit, "argus_stream_slow_drops_total") > before:
                break
        await until(lambda: value(audit, "argus_stream_slow_drops_total") == before + 1)
        await until(lambda: len(hub.connections) == 1)  # the stuck one is gone ...
        assert not reader.ended.is_set()  # ... the one that reads is not
        assert [c.viewer.id for c in hub.connections] == [owner.id]
    finally:
        stuck.close()
        await nc.close()
        await close_all([reader])


async def test_an_expired_access_token_ends_its_stream(suite: Suite, audit: Audit) -> None:
    suite.auth.clock.advance(-(ACCESS_TTL - 2))  # tokens minted now expire in two seconds
    try:
        user = await suite.user()
    finally:
        suite.auth.clock.advance(ACCESS_TTL - 2)
    other = await suite.user()
    expiring, lasting = await open_as(audit, user), await open_as(audit, other)
    await until(expiring.ended.is_set, timeout=10)
    assert expiring.controls[-1] == "expired" and expiring.clean
    assert not lasting.ended.is_set()
    await close_all([expiring, lasting])


async def test_a_role_change_ends_the_stream_and_a_new_token_is_filtered_anew(
        suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    as_member = await open_as(audit, member, "?types=org.")
    invited = await suite.member(org, owner, "viewer")  # someone else's: not a member's to see
    status, _ = await suite.call("PATCH", f"/orgs/{org}/members/{member.id}", owner.token,
                                 {"role": "admin"})
    assert status == 200
    await until(as_member.ended.is_set, timeout=1.0)
    assert as_member.controls[-1] == "revoked"
    assert not as_member.has(invited.id)
    member.token = await suite.switch(member, org)
    as_admin = await open_as(audit, member, "?types=org.")
    joined = await suite.member(org, owner, "viewer")
    await until(lambda: as_admin.has(joined.id))  # an admin sees the org's membership events
    status, _ = await suite.call("PATCH", f"/orgs/{org}/members/{member.id}", owner.token,
                                 {"role": "member"})
    assert status == 200
    await until(as_admin.ended.is_set, timeout=1.0)
    member.token = await suite.switch(member, org)
    demoted = await open_as(audit, member, "?types=org.,project.")
    later = await suite.member(org, owner, "viewer")
    project = await suite.project(org, owner)
    await until(lambda: demoted.has(project))  # a public notice still comes ...
    assert not demoted.has(later.id)  # ... another member's joining no longer does
    await close_all([as_member, as_admin, demoted])


async def test_deleting_an_org_ends_its_streams(suite: Suite, audit: Audit) -> None:
    owner, outsider = await suite.user(), await suite.user()
    org = await suite.org(owner)
    await suite.org(outsider)
    member = await suite.member(org, owner, "member")
    project = await suite.project(org, owner)
    key = await suite.api_key(org, owner, project, ["events:read", "tenant:read"])
    streams = [await open_as(audit, owner), await open_as(audit, member),
               await open_as(audit, key["key"])]
    elsewhere = await open_as(audit, outsider)
    status, _ = await suite.call("DELETE", f"/orgs/{org}", owner.token)
    assert status in (200, 202, 204)
    await until(lambda: all(s.ended.is_set() for s in streams), timeout=2.0)
    assert all(s.controls[-1] == "revoked" for s in streams)
    assert not elsewhere.ended.is_set()
    await close_all([*streams, elsewhere])


async def test_revoking_an_api_key_ends_its_stream(suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    project = await suite.project(org, owner)
    keys = [await suite.api_key(org, owner, project, ["events:read"]) for _ in range(2)]
    revoked, kept = [await open_as(audit, k["key"]) for k in keys]
    key_id = str(keys[0].get("id") or keys[0]["api_key"]["id"])
    async with suite.http.delete(
            f"{suite.auth.base}/orgs/{org}/projects/{project}/api-keys/{key_id}",
            headers={"Authorization": f"Bearer {owner.token}"}) as response:
        assert response.status == 204, await response.text()
    await until(revoked.ended.is_set, timeout=1.0)
    assert revoked.controls[-1] == "revoked"
    assert not kept.ended.is_set()
    async with suite.http.get(f"{audit.base}/stream",
                              headers={"Authorization": f"Bearer {keys[0]['key']}"}) as again:
        assert again.status == 401
    await close_all([revoked, kept])


async def test_the_org_cap_refuses_the_next_stream_of_any_member(
        suite: Suite, make_audit: Callable[..., Any]) -> None:
    audit: Audit = await make_audit(stream_max_per_org=3)
    owner, outsider = await suite.user(), await suite.user()
    org = await suite.org(owner)
    await suite.org(outsider)
    members = [await suite.member(org, owner, role) for role in ("member", "viewer", "member")]
    held = [await open_as(audit, m) for m in members]
    before = value(audit, "argus_stream_cap_refusals_total", cap="org")
    async with suite.http.get(f"{audit.base}/stream",
                              headers={"Authorization": f"Bearer {owner.token}"}) as refused:
        assert refused.status == 429
        assert refused.headers["Retry-After"].isdigit()
        problem = await refused.json(content_type=None)
        assert problem["type"] == "urn:argus:problem:stream-cap" and "org" in problem["detail"]
    assert value(audit, "argus_stream_cap_refusals_total", cap="org") == before + 1
    other = await open_as(audit, outsider)  # another org's slots are its own
    await close_all(held[:1])
    await until(lambda: len(audit.app[HUB_KEY].connections) == 3)
    again = await open_as(audit, owner)  # a slot came back
    await close_all([*held[1:], other, again])


async def test_a_position_older_than_the_stream_keeps_gets_reset(
        suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    await suite.project(org, owner)
    nc = await nats.connect(audit.settings.nats_url)
    try:
        js = nc.jetstream()
        first = (await js.stream_info(STREAM)).state.first_seq
        # the stream no longer keeps its first message (as after max-age or a limit)
        await js.delete_msg(STREAM, first)
        kept = (await js.stream_info(STREAM)).state.first_seq
    finally:
        await nc.close()
    assert kept > first
    old = await open_as(audit, owner, headers={"Last-Event-ID": str(first - 1)})
    held = await open_as(audit, owner, f"?since={kept - 1}&types=project.")
    project = await suite.project(org, owner)
    await until(lambda: "reset" in old.controls and held.has(project))
    assert "reset" not in held.controls
    await until(lambda: old.has(project))  # after the reset, live events still come
    await close_all([old, held])


async def test_a_silent_stream_gets_heartbeat_comments(
        suite: Suite, make_audit: Callable[..., Any]) -> None:
    audit: Audit = await make_audit(stream_heartbeat_seconds=0.5)
    user = await suite.user()
    stream = await open_as(audit, user, "?types=wallet.")
    await until(lambda: stream.comments.count("heartbeat") >= 2)
    assert not stream.events and not stream.ended.is_set()
    await close_all([stream])
