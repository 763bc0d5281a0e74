"""One request id followed through the suite as users run it: `argus up` in its own process,
each service's log in `<data-dir>/logs/<service>.log` (JSON lines). A request sent through the
gateway with a chosen `X-Request-Id` is found in every service's log lines about it: the access
line of the service it reached, the line of the service that answered its RPC (the id carried in
the X-User-Token's `rid`), the lines of the consumers that handled the event it caused (the id
carried in the envelope), and the audit event stored for it. No line about anything else carries
it. The suite runs at DEBUG, where audit and webhooks log each event they store or fan out."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from argus_shared.settings import SERVICES
from support.argus_up import PASSWORD, free_ports, up_command, wait_for_banner
from support.mailbox import tokens_for
from support.processes import Proc

DEADLINE = 60.0
Line = dict[str, Any]
Predicate = Callable[[Line], bool]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's temporary root, which a pytest run starting meanwhile makes private
    again (PostgreSQL, running as its own user under root, would lose its cluster)."""
    directory = Path(tempfile.mkdtemp(prefix="argus-up-rids-"))
    yield directory / "argus"
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Gateway:
    http: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, headers: dict[str, str] | None = None,
                   expect: int = 200) -> tuple[Any, str]:
        """The answer's JSON and its X-Request-Id; AssertionError unless `expect`."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, json=body,
                                     headers=sent) as response:
            text = await response.text()
            assert response.status == expect, (method, path, response.status, text)
            answer = json.loads(text) if text else None
            return answer, response.headers.get("X-Request-Id", "")

    async def logged_in(self, mailbox: Path, emails: list[str]) -> dict[str, str]:
        """Sign up, verify (the mailed token) and log in each email: its access token."""
        for email in emails:
            await self.call("POST", "/auth/signup", body={"email": email, "password": PASSWORD},
                            expect=202)
        tokens: dict[str, str] = {}
        for email, mailed in (await tokens_for(mailbox, emails)).items():
            await self.call("POST", "/auth/verify-email", body={"token": mailed})
            answer, _ = await self.call("POST", "/auth/login",
                                        body={"email": email, "password": PASSWORD})
            tokens[email] = answer["access_token"]
        return tokens


@dataclass
class Traced:
    """A request sent with a chosen id, and the log lines that must carry it: (service, what,
    which line)."""

    rid: str
    expected: list[tuple[str, str, Predicate]] = field(default_factory=list)

    def expect(self, service: str, what: str, matches: Predicate) -> None:
        self.expected.append((service, what, matches))


def access(method: str, path: str) -> Predicate:
    return lambda line: (line.get("logger") == "argus.access" and line.get("method") == method
                         and line.get("path") == path)


def answered(rpc: str) -> Predicate:
    return lambda line: (line.get("logger") == "argus.rpc" and line.get("rpc") == rpc
                         and line.get("status") == 200)


def about_event(logger: str, message: str, event_type: str) -> Predicate:
    return lambda line: (line.get("logger") == logger and line.get("message") == message
                         and line.get("event_type") == event_type)


def read_logs(data_dir: Path, proc: Proc) -> dict[str, list[Line]]:
    """Every JSON line of each service's log, and of `argus up` itself (the gateway's)."""
    texts = {service: (data_dir / "logs" / f"{service}.log").read_text(errors="replace")
             for service in SERVICES}
    texts["gateway"] = proc.output
    return {where: [line for raw in text.splitlines() if (line := _json(raw)) is not None]
            for where, text in texts.items()}


def _json(raw: str) -> Line | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


async def until_logged(data_dir: Path, proc: Proc, traced: list[Traced]) -> dict[str, list[Line]]:
    """The logs once every expected line is there with its request id (polled until the
    deadline; then an AssertionError naming what is missing and what was logged instead)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        logs = read_logs(data_dir, proc)
        missing = [(t.rid, service, what) for t in traced for service, what, matches in t.expected
                   if not any(matches(line) and line.get("request_id") == t.rid
                              for line in logs[service])]
        if not missing:
            return logs
        if time.monotonic() > deadline:
            found = {what: [line.get("request_id") for line in logs[service] if matches(line)]
                     for t in traced for service, what, matches in t.expected}
            raise AssertionError(f"not logged within {DEADLINE}s: {missing}; "
                                 f"request ids of the lines of each kind: {found}")
        await asyncio.sleep(0.2)


async def stored_event(gateway: Gateway, org: str, token: str, action: str) -> dict[str, Any]:
    """The org's audit event of type `action`, once audit has stored it."""
    deadline = time.monotonic() + DEADLINE
    while True:
        page, _ = await gateway.call("GET", f"/audit/orgs/{org}/audit/events?action={action}",
                                     token=token)
        if page["events"]:
            [event] = page["events"]
            return dict(event)
        assert time.monotonic() < deadline, f"no {action} stored within {DEADLINE}s"
        await asyncio.sleep(0.2)


def assert_only_about_its_request(logs: dict[str, list[Line]], traced: Traced) -> None:
    """Every line that carries the id is one of the lines expected for its request: no access
    line of another request, no answer to another call, no line about another event."""
    kinds = [(service, matches) for service, _, matches in traced.expected]
    strays = [(where, line) for where, lines in logs.items() for line in lines
              if line.get("request_id") == traced.rid
              and not any(where == service and matches(line) for service, matches in kinds)]
    assert strays == [], f"lines about something else carry {traced.rid}: {strays}"


def assert_every_line_about_its_events_carries_it(
    logs: dict[str, list[Line]], traced: Traced, event_ids: list[str]
) -> None:
    about = [(where, line) for where, lines in logs.items() for line in lines
             if line.get("event_id") in event_ids]
    assert about, f"no line names the events {event_ids}"
    assert [(where, line) for where, line in about if line.get("request_id") != traced.rid] == []


@pytest.mark.timeout(300)
async def test_one_request_id_is_followed_through_rpc_and_events_into_every_services_logs(
    tmp_path: Path, data_dir: Path
) -> None:
    ports = free_ports()
    proc = Proc.start(up_command(data_dir, ports), {"ARGUS_LOG_LEVEL": "DEBUG"},
                      tmp_path / "up.log")
    try:
        await wait_for_banner(proc)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            gateway = Gateway(http, f"http://127.0.0.1:{ports['gateway']}")
            scenario = await send_traced_requests(gateway, data_dir / "mailbox")
            traced = scenario.traced
            logs = await until_logged(data_dir, proc, list(traced.values()))
            for kind, request in (("org.member.added", "accept"),
                                  ("auth.api_key.created", "api_key")):
                event = await stored_event(gateway, scenario.org, scenario.owner, kind)
                assert event["request_id"] == traced[request].rid, event
                logs = read_logs(data_dir, proc)
                assert_every_line_about_its_events_carries_it(logs, traced[request],
                                                              [event["event_id"]])
        for request in ("accept", "api_key", "introspected"):
            assert_only_about_its_request(logs, traced[request])
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0, proc.output
    finally:
        proc.kill()


@dataclass
class Scenario:
    org: str
    owner: str  # the owner's token, scoped to the org (reads its audit log)
    traced: dict[str, Traced]


async def send_traced_requests(gateway: Gateway, mailbox: Path) -> Scenario:
    """Set up an org (owner, project, invitation) with untraced requests, then send three with
    chosen ids: the invited user accepting (tenant-api asks auth over RPC; the member event
    reaches audit, webhooks and auth's membership consumer), the owner creating an API key
    (auth asks tenant-api over RPC; the key event reaches audit and webhooks), and a request
    with that key (tenant-api has auth introspect it over RPC)."""
    owner_email, member_email = (f"{who}-{uuid.uuid4().hex[:8]}@example.com"
                                 for who in ("owner", "member"))
    logins = await gateway.logged_in(mailbox, [owner_email, member_email])
    slug = f"o-{uuid.uuid4().hex[:10]}"
    org, _ = await gateway.call("POST", "/tenant/orgs", token=logins[owner_email],
                                body={"name": slug, "slug": slug}, expect=201)
    org_id = org["org_id"]
    switched, _ = await gateway.call("POST", "/auth/orgs/switch", token=logins[owner_email],
                                     body={"org_id": org_id})
    owner = switched["access_token"]
    project, _ = await gateway.call("POST", f"/tenant/orgs/{org_id}/projects", token=owner,
                                    body={"name": "p"}, expect=201)
    invited, _ = await gateway.call("POST", f"/tenant/orgs/{org_id}/invitations", token=owner,
                                    body={"email": member_email, "role": "member"}, expect=201)

    accept = Traced(f"trace-accept-{uuid.uuid4().hex}")
    accept.expect("tenant-api", "tenant-api's access line", access("POST", "/invitations/accept"))
    accept.expect("auth", "auth's answer to tenant-api's RPC", answered("auth.user"))
    accept.expect("audit", "audit storing the member event",
                  about_event("argus.audit.ingest", "event stored", "org.member.added"))
    accept.expect("webhooks", "webhooks fanning the member event out",
                  about_event("argus.webhooks.fanout", "event fanned out", "org.member.added"))
    accept.expect("auth", "auth's membership consumer",
                  about_event("argus.auth.membership", "membership change applied",
                              "org.member.added"))
    await send(gateway, accept, "POST", "/tenant/invitations/accept",
               token=logins[member_email], body={"token": invited["token"]})

    keys_path = f"/orgs/{org_id}/projects/{project['id']}/api-keys"
    api_key = Traced(f"trace-api-key-{uuid.uuid4().hex}")
    api_key.expect("auth", "auth's access line", access("POST", keys_path))
    api_key.expect("tenant-api", "tenant-api's answer to auth's RPC",
                   answered("tenant-api.membership"))
    api_key.expect("audit", "audit storing the key event",
                   about_event("argus.audit.ingest", "event stored", "auth.api_key.created"))
    api_key.expect("webhooks", "webhooks fanning the key event out",
                   about_event("argus.webhooks.fanout", "event fanned out",
                               "auth.api_key.created"))
    created = await send(gateway, api_key, "POST", f"/auth{keys_path}", token=owner,
                         body={"name": "k", "scopes": ["tenant:read"]}, expect=201)

    introspected = Traced(f"trace-key-use-{uuid.uuid4().hex}")
    introspected.expect("tenant-api", "tenant-api's access line",
                        access("GET", f"/orgs/{org_id}/projects"))
    introspected.expect("auth", "auth's answer to the introspection",
                        answered("auth.introspect_api_key"))
    await send(gateway, introspected, "GET", f"/tenant/orgs/{org_id}/projects",
               headers={"X-API-Key": created["key"]})
    return Scenario(org_id, owner, {"accept": accept, "api_key": api_key,
                                    "introspected": introspected})


async def send(gateway: Gateway, traced: Traced, method: str, path: str, *,
               token: str | None = None, body: Any = None,
               headers: dict[str, str] | None = None, expect: int = 200) -> Any:
    answer, echoed = await gateway.call(method, path, token=token, body=body, expect=expect,
                                        headers={**(headers or {}), "X-Request-Id": traced.rid})
    assert echoed == traced.rid
    return answer
