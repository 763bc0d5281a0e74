"""`GET /stream` over real HTTP and NATS: each connection gets exactly what the rules allow
(computed here, independently, from every published event), revocation ends streams, a
reconnect resumes from `Last-Event-ID`, and the caps answer 429."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nats
import pytest

from argus_audit.stream_http import CAPS_KEY
from argus_shared.settings import Settings
from support.audit_service import Audit
from support.suite import Suite

PUBLIC = {"org.updated", "org.deleted", "project.created", "project.deleted"}
FAMILIES = {"org.": "tenant:read", "project.": "tenant:read", "wallet.": "wallet:read",
            "audit.": "audit:read", "webhooks.": "webhooks:write", "file.": "files:read"}


@dataclass
class Listener:
    """One open stream, read in the background into `events` (id, type, envelope)."""

    response: aiohttp.ClientResponse
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\n")
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if "id" in fields:
                    self.events.append((int(fields["id"]), fields["event"],
                                        json.loads(fields["data"])))
                elif "event" in fields:
                    self.controls.append(fields["event"])
                fields = {}
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()

    def has(self, resource_id: str) -> bool:
        return any(e["resource"]["id"] == resource_id for _, _, e in self.events)


async def listen(audit: Audit, credential: str, query: str = "",
                 headers: dict[str, str] | None = None) -> Listener:
    sent = {"Authorization": f"Bearer {credential}", **(headers or {})}
    response = await audit.suite.http.get(f"{audit.base}/stream{query}", headers=sent,
                                          timeout=aiohttp.ClientTimeout(total=None))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    listener = Listener(response)
    listener.task = asyncio.create_task(listener.read())
    return listener


async def until(check: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.fixture
async def published(settings_for: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """Every envelope published to ARGUS_EVENTS while the test runs (a plain subscription)."""
    settings: Settings = settings_for("audit")
    seen: list[dict[str, Any]] = []
    nc = await nats.connect(settings.nats_url)

    async def take(msg: Any) -> None:
        seen.append(json.loads(msg.data))

    await nc.subscribe("argus.events.>", cb=take)
    yield seen
    await nc.close()


def user_may(user: str, org: str, role: str, event: dict[str, Any]) -> bool:
    me = {"type": "user", "id": user}
    mine = event["actor"] == me or event["resource"] == me
    if mine and (event["org_id"] is None or event["type"].startswith("auth.")):
        return True
    if event["org_id"] != org:
        return False
    return mine or role in ("owner", "admin") or event["type"] in PUBLIC


def key_may(key: str, org: str, scopes: list[str], event: dict[str, Any]) -> bool:
    if event["org_id"] != org:
        return False
    if event["actor"] == {"type": "api_key", "id": key}:
        return True
    return any(event["type"].startswith(p) and s in scopes for p, s in FAMILIES.items())


def assert_exactly(stream: Listener, published: list[dict[str, Any]], start: int,
                   may: Any) -> None:
    """The stream got every allowed event from its first one on, in order, and nothing else;
    its first one is no later than the first allowed event of the test's flow (`start`): the
    events of the set-up before it may have been published before it connected."""
    got = [e["id"] for _, _, e in stream.events]
    want = [e["id"] for e in published if may(e)]
    flow = [e["id"] for e in published[start:] if may(e)]
    assert got and got[0] in want
    assert got == want[want.index(got[0]):]
    assert set(flow) <= set(got)


async def close_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.response.close()
        if listener.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await listener.task


async def test_each_stream_gets_exactly_what_its_viewer_may_see(
        suite: Suite, audit: Audit, published: list[dict[str, Any]]) -> None:
    owner_a, owner_b = await suite.user(), await suite.user()
    org_a, org_b = await suite.org(owner_a), await suite.org(owner_b)
    member = await suite.member(org_a, owner_a, "member")
    viewer = await suite.member(org_a, owner_a, "viewer")
    member_b = await suite.member(org_b, owner_b, "member")
    project_a = await suite.project(org_a, owner_a)
    scopes = ["events:read", "tenant:read"]
    key = await suite.api_key(org_a, owner_a, project_a, scopes)
    key_id = str(key.get("id") or key.get("key_id") or key["api_key"]["id"])
    who = [(owner_a, org_a, "owner"), (member, org_a, "member"), (viewer, org_a, "viewer"),
           (owner_b, org_b, "owner"), (member_b, org_b, "member")]
    streams = [await listen(audit, user.token) for user, _, _ in who]
    keyed = await listen(audit, key["key"])
    start = len(published)
    # the flow: org changes, projects, members joining, sessions of their own
    for org, owner in ((org_a, owner_a), (org_b, owner_b)):
        status, _ = await suite.call("PATCH", f"/orgs/{org}", owner.token, {"name": "renamed"})
        assert status == 200
        await suite.project(org, owner)
    await suite.member(org_a, owner_a, "member")
    await suite.member(org_b, owner_b, "viewer")
    await suite.auth.post("/orgs/switch", {"org_id": org_a}, token=member.plain)
    end_a, end_b = await suite.project(org_a, owner_a), await suite.project(org_b, owner_b)
    await until(lambda: all(s.has(end_a) for s in streams[:3]) and streams[3].has(end_b)
                and streams[4].has(end_b) and keyed.has(end_a))
    await until(lambda: any(e["resource"]["id"] == end_b for e in published))
    for stream, (user, org, role) in zip(streams, who, strict=True):
        assert_exactly(stream, published, start, lambda e, u=user.id, o=org, r=role:
                       user_may(u, o, r, e))
        assert all(e["org_id"] in (org, None) or e["type"].startswith("auth.")
                   for _, _, e in stream.events)
    assert_exactly(keyed, published, start, lambda e: key_may(key_id, org_a, scopes, e))
    ids = [i for i, _, _ in streams[0].events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(t == e["type"] for _, t, e in streams[0].events)
    await close_all([*streams, keyed])


async def test_revoked_session_and_removed_member_streams_close(
        suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    gone = await suite.user()
    mine, theirs = await listen(audit, gone.token), await listen(audit, member.token)
    status, _, _ = await suite.auth.post("/logout", token=gone.token)
    assert status == 204
    await until(mine.ended.is_set, timeout=1.0)
    assert mine.controls[-1] == "revoked"
    status, _ = await suite.call("DELETE", f"/orgs/{org}/members/{member.id}", owner.token)
    assert status == 204
    await until(theirs.ended.is_set, timeout=1.0)
    assert "revoked" in theirs.controls
    await close_all([mine, theirs])


async def test_last_event_id_resumes_with_exactly_the_missed_events(
        suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    first = await listen(audit, owner.token)
    marker = await suite.project(org, owner)
    await until(lambda: first.has(marker))
    last = first.events[-1][0]
    first.response.close()
    missed = [await suite.project(org, owner) for _ in range(3)]
    watcher = await listen(audit, owner.token)
    end = await suite.project(org, owner)
    await until(lambda: watcher.has(end))
    resumed = await listen(audit, owner.token, headers={"Last-Event-ID": str(last)})
    await until(lambda: resumed.has(end))
    got = [e["resource"]["id"] for _, t, e in resumed.events if t == "project.created"]
    assert got == [*missed, end]
    assert [i for i, _, _ in resumed.events] == [i for i, _, _ in watcher.events
                                                 if i > last] or resumed.events[0][0] > last
    again = await listen(audit, owner.token, query=f"?since={last}&types=project.")
    await until(lambda: again.has(end))
    assert [e["resource"]["id"] for _, _, e in again.events] == [*missed, end]
    await close_all([first, watcher, resumed, again])


async def test_caps_refuse_with_429_and_free_slots_on_close(
        suite: Suite, audit: Audit) -> None:
    audit.app[CAPS_KEY].per_user = 2
    owner = await suite.user()
    await suite.org(owner)
    held = [await listen(audit, owner.token) for _ in range(2)]
    async with suite.http.get(f"{audit.base}/stream",
                              headers={"Authorization": f"Bearer {owner.token}"}) as refused:
        assert refused.status == 429
        assert refused.headers["Retry-After"].isdigit()
        problem = await refused.json(content_type=None)
        assert problem["type"] == "urn:argus:problem:stream-cap"
    await close_all(held[:1])
    await until(lambda: not audit.app[CAPS_KEY].held or len(audit.app[CAPS_KEY].held) < 2)
    again = await listen(audit, owner.token)
    await close_all([held[1], again])


async def test_bad_last_event_id_and_types_are_4xx(suite: Suite, audit: Audit) -> None:
    owner = await suite.user()
    for headers, query, status in (({"Last-Event-ID": "x1"}, "", 400),
                                   ({}, "?types=nothing.such", 422),
                                   ({}, "?since=-1", 422)):
        async with suite.http.get(f"{audit.base}/stream{query}", headers={
                "Authorization": f"Bearer {owner.token}", **headers}) as response:
            assert response.status == status
            assert response.content_type == "application/problem+json"


@pytest.fixture
async def replica(suite: Suite, settings_for: Any) -> AsyncIterator[Audit]:
    """A second audit replica on the same NATS and PostgreSQL, with a cap of 2 per user."""
    from aiohttp.test_utils import TestServer

    from argus_audit.app import create_app

    settings = settings_for("audit", ARGUS_STREAM_MAX_PER_USER="2")
    app = create_app(settings, checkpoint_seconds=3600, auth_url=suite.auth.base)
    server = TestServer(app)
    await server.start_server()
    yield Audit(str(server.make_url("")).rstrip("/"), suite, app)
    await server.close()


async def test_the_user_cap_holds_across_two_replicas(
        suite: Suite, audit: Audit, replica: Audit) -> None:
    audit.app[CAPS_KEY].per_user = 2
    owner = await suite.user()
    await suite.org(owner)
    held = [await listen(audit, owner.token), await listen(replica, owner.token)]
    for service in (audit, replica):
        async with suite.http.get(f"{service.base}/stream",
                                  headers={"Authorization": f"Bearer {owner.token}"}) as r:
            assert r.status == 429
    await close_all(held)


async def test_shutdown_drains_streams_with_a_retry_hint(suite: Suite, replica: Audit) -> None:
    """What SIGTERM runs (aiohttp's shutdown): every stream gets `event: drain` and ends."""
    owner = await suite.user()
    await suite.org(owner)
    stream = await listen(replica, owner.token)
    await replica.app.shutdown()
    await until(stream.ended.is_set, timeout=5)
    assert stream.controls[-1] == "drain"
    await close_all([stream])
