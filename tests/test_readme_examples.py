"""The worked examples of docs/examples.md come from a real run, so they cannot drift: this test
starts `argus up`, makes the main calls through its gateway (sign up, verify, log in, an org, a
project, a deposit and its replay, an API key and a read with it, a file up and down, the audit
log, a webhook endpoint), renders each request and answer with what varies from run to run (ids,
tokens, times, hashes) replaced by stable placeholders, and compares the page with the committed
one: a difference fails with a diff.

    ARGUS_UPDATE_EXAMPLES=1 ./argus test tests/test_readme_examples.py   # rewrite the page
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import textwrap
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.argus_up import Answer, Gateway, argus_up
from support.mailbox import tokens_for

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "examples.md"
UPDATE = "ARGUS_UPDATE_EXAMPLES"
DEADLINE = 60.0

EMAIL, PASSWORD = "ada@example.com", "a long enough passphrase"
REQUEST_HEADERS = ("Authorization", "X-API-Key", "Idempotency-Key", "Content-Type")
ANSWER_HEADERS = ("Content-Type", "Location", "Idempotent-Replayed", "Content-Disposition")
# answer fields that differ in every run whatever their value, by name
BY_KEY = {"hash": "<hash>", "prev_hash": "<prev_hash>", "seq": "<seq>",
          "request_id": "<request_id>"}
# what must not be left in the page: a placeholder is missing for it
VOLATILE = {
    "a UUID": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    "a JWT": re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"),
    "a time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d"),
    "a secret": re.compile(r"\b(?:argus_sk|art|whsec)_[\w-]{6,}"),
}

INTRO = """\
# Examples: the main calls, request and answer

Each call below goes through the gateway of `argus up` (`http://127.0.0.1:8080` unless
`--port` says otherwise), in order: each one uses what the ones before it returned. Values
that differ in every run are placeholders: `<org_id>`, `<access_token>`, `<time>` and so on;
a placeholder that is a number (`<seq>`) stands for one.

This page is rendered from a real run by
[`tests/test_readme_examples.py`](../tests/test_readme_examples.py), which fails when the
answers no longer match it; `ARGUS_UPDATE_EXAMPLES=1 ./argus test tests/test_readme_examples.py`
writes it again.
"""


@dataclass
class Call:
    title: str
    note: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # JSON, bytes, or None
    answer: Answer


@dataclass
class Recorder:
    """Makes calls through the gateway and remembers them to render; learns placeholders."""

    gateway: Gateway
    calls: list[Call] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # a value -> its placeholder
    numbers: set[str] = field(default_factory=lambda: {"<seq>"})  # placeholders of numbers

    def name(self, value: object, placeholder: str) -> None:
        assert isinstance(value, str) and value, (placeholder, value)
        self.names.setdefault(value, placeholder)

    async def call(self, title: str, note: str, method: str, path: str, *,
                   token: str | None = None, body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None, expect: int = 200) -> Any:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent["Content-Type"] = "application/json"
        answer = await self.gateway.send(method, path, body=body, data=data, headers=sent)
        assert answer.status == expect, (method, path, answer.status, answer.text)
        self.calls.append(Call(title, note, method, path, sent,
                               body if data is None else data, answer))
        is_json = answer.headers.get("Content-Type", "").startswith("application/json")
        return answer.json if is_json else answer.text

    # rendering

    def page(self) -> str:
        parts = [INTRO]
        for number, call in enumerate(self.calls, start=1):
            note = [textwrap.fill(call.note, 96) + "\n"] if call.note else []
            parts += [f"## {number}. {call.title}\n", *note,
                      self.fenced(self.request(call)), self.fenced(self.response(call))]
        return self.replaced("\n".join(parts))

    @staticmethod
    def fenced(text: str) -> str:
        return f"```http\n{text.rstrip()}\n```\n"

    def request(self, call: Call) -> str:
        lines = [f"{call.method} {call.path} HTTP/1.1"]
        lines += [f"{name}: {call.headers[name]}" for name in REQUEST_HEADERS
                  if name in call.headers]
        return "\n".join(lines) + "\n\n" + self.body(call.body)

    def response(self, call: Call) -> str:
        answer = call.answer
        lines = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}"]
        lines += [f"{name}: {answer.headers[name]}" for name in ANSWER_HEADERS
                  if name in answer.headers]
        is_json = answer.headers.get("Content-Type", "").startswith("application/json")
        return "\n".join(lines) + "\n\n" + self.body(answer.json if is_json else
                                                     answer.text.encode())

    def body(self, body: Any) -> str:
        if body is None:
            return ""
        if isinstance(body, bytes):
            return body.decode()
        text = dumps(self.by_key(body))
        for number in self.numbers:
            text = text.replace(f'"{number}"', number)
        return text + "\n"

    def by_key(self, value: Any, key: str = "") -> Any:
        """`value` with the fields that vary by nature (times, hashes, ...) as placeholders."""
        if isinstance(value, dict):
            return {k: self.by_key(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.by_key(v, key) for v in value]
        if key in BY_KEY:
            return BY_KEY[key]
        if key.endswith("_at") and isinstance(value, str):
            return "<time>"
        return value

    def replaced(self, text: str) -> str:
        for value in sorted(self.names, key=len, reverse=True):
            text = text.replace(value, self.names[value])
        return text


def dumps(value: Any, indent: str = "") -> str:
    """JSON indented by two, but a short list of plain values on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and value:
        flat = json.dumps(value, ensure_ascii=False)
        if not any(isinstance(v, dict | list) for v in value) and len(flat) <= 60:
            return flat
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def assert_stable(page: str) -> None:
    """Nothing that changes from run to run is left without a placeholder."""
    for what, pattern in VOLATILE.items():
        found = [line for line in page.splitlines() if pattern.search(line)]
        assert found == [], f"{what} without a placeholder (add one in the test): {found[0]}"


async def until_stored(gateway: Gateway, org: str, token: str, action: str) -> None:
    """Until audit has stored the org's event of type `action` (it arrives over NATS)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = await gateway.send("GET", f"/audit/orgs/{org}/audit/events?action={action}",
                                    headers={"Authorization": f"Bearer {token}"})
        if answer.status == 200 and answer.json["events"]:
            return
        assert time.monotonic() < deadline, f"no {action} stored within {DEADLINE}s"
        await asyncio.sleep(0.1)


async def run_examples(calls: Recorder, mailbox: Path) -> None:
    credentials = {"email": EMAIL, "password": PASSWORD}
    await calls.call(
        "Sign up", "The answer is the same whether or not the email is known; a mail with a "
        "link (and its token) goes to the address.",
        "POST", "/auth/signup", body=credentials, expect=202)
    mailed = (await tokens_for(mailbox, [EMAIL]))[EMAIL]
    calls.name(mailed, "<verification_token>")
    await calls.call(
        "Verify the email", "With the token from the mail (in development, the `.eml` file "
        "under `.argus/mailbox/`; the link's page sends this same request).",
        "POST", "/auth/verify-email", body={"token": mailed})
    login = await calls.call(
        "Log in", "An access token (15 minutes) and a refresh token; the same two are also "
        "set as cookies.",
        "POST", "/auth/login", body=credentials)
    calls.name(login["access_token"], "<access_token>")
    calls.name(login["refresh_token"], "<refresh_token>")
    calls.name(login["session_id"], "<session_id>")
    me = await calls.call(
        "Who am I", "The user's id also names the user's own namespace of files.",
        "GET", "/auth/me", token=login["access_token"])
    calls.name(me["id"], "<user_id>")
    org = await calls.call(
        "Create an org", "You become its owner; your token does not switch to it.",
        "POST", "/tenant/orgs", token=login["access_token"],
        body={"name": "Acme", "slug": "acme"}, expect=201)
    org_id = org["org_id"]
    calls.name(org_id, "<org_id>")
    switched = await calls.call(
        "Switch to the org", "A token whose active org is this one: every route under "
        "`/orgs/<org_id>` needs it (or an API key of the org).",
        "POST", "/auth/orgs/switch", token=login["access_token"], body={"org_id": org_id})
    token = switched["access_token"]
    calls.name(token, "<org_access_token>")
    project = await calls.call(
        "Create a project", "", "POST", f"/tenant/orgs/{org_id}/projects", token=token,
        body={"name": "Website"}, expect=201)
    calls.name(project["id"], "<project_id>")
    deposit = {"amount_cents": 2500}
    key = {"Idempotency-Key": "deposit-0001"}
    entry = await calls.call(
        "Deposit into the wallet", "An `Idempotency-Key` is required: a retry with the same "
        "key and the same request is not deposited again, it gets the first answer back.",
        "POST", f"/tenant/orgs/{org_id}/wallet/deposits", token=token, body=deposit,
        headers=key, expect=201)
    calls.name(entry["entry"]["id"], "<entry_id>")
    await calls.call(
        "The same deposit again", "The first answer, byte for byte, marked as a replay; "
        "nothing is deposited twice.",
        "POST", f"/tenant/orgs/{org_id}/wallet/deposits", token=token, body=deposit,
        headers=key, expect=201)
    created = await calls.call(
        "Create an API key", "For the project, with the scopes it may use; the key is shown "
        "only in this answer.",
        "POST", f"/auth/orgs/{org_id}/projects/{project['id']}/api-keys", token=token,
        body={"name": "ci", "scopes": ["tenant:read"]}, expect=201)
    calls.name(created["key"], "<api_key>")
    calls.name(created["api_key"]["id"], "<api_key_id>")
    calls.name(created["api_key"]["prefix"], "<api_key_prefix>")
    await calls.call(
        "Read the projects with the API key", "", "GET", f"/tenant/orgs/{org_id}/projects",
        headers={"X-API-Key": created["key"]})
    stored = await calls.call(
        "Upload a file", "Into your own namespace (`<org_id>/<user_id>`), as the raw body "
        "with `?name=` (or `multipart/form-data`); encrypted at rest.",
        "POST", f"/files/objects/{org_id}/{me['id']}?name=hello.txt", token=token,
        data=b"hello, argus\n", headers={"Content-Type": "text/plain"}, expect=201)
    calls.name(stored["id"], "<file_id>")
    await calls.call(
        "Download it", "", "GET", f"/files/objects/{org_id}/{me['id']}/{stored['id']}",
        token=token)
    await until_stored(calls.gateway, org_id, token, "wallet.deposit")
    events = await calls.call(
        "Read the audit log", "The org's hash-chained trail, here only the deposit's event "
        "(`action=`, one of the types of [events.md](events.md)).",
        "GET", f"/audit/orgs/{org_id}/audit/events?action=wallet.deposit", token=token)
    calls.name(events["events"][0]["event_id"], "<event_id>")
    hook = await calls.call(
        "Add a webhook endpoint", "Deliveries are signed with the secret, shown only in this "
        "answer. `argus up` allows loopback receivers like this one; production refuses "
        "them (and plain http).",
        "POST", f"/webhooks/orgs/{org_id}/webhooks/endpoints", token=token,
        body={"url": "http://127.0.0.1:9000/hook", "event_types": ["wallet.deposit"]},
        expect=201)
    calls.name(hook["secret"], "<webhook_secret>")
    calls.name(hook["endpoint"]["id"], "<endpoint_id>")


@pytest.mark.timeout(300)
async def test_the_examples_page_is_what_the_suite_answers(tmp_path: Path) -> None:
    async with argus_up(tmp_path / "up.log", prefix="argus-examples-") as suite:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                         headers={"User-Agent": "example/1"}) as http:
            calls = Recorder(Gateway(http, suite.gateway))
            await run_examples(calls, suite.mailbox)
    page = calls.page()
    assert_stable(page)
    if os.environ.get(UPDATE) == "1":
        PAGE.write_text(page)
        return
    committed = PAGE.read_text() if PAGE.exists() else ""
    if page != committed:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), page.splitlines(keepends=True),
            "docs/examples.md (committed)", "docs/examples.md (this run)"))
        pytest.fail(f"docs/examples.md differs from what the suite answers; if the change is "
                    f"meant, run {UPDATE}=1 ./argus test tests/test_readme_examples.py\n{diff}",
                    pytrace=False)
