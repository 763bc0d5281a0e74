"""Every service's OpenAPI spec, as it serves it, fuzzed: each operation gets bodies drawn from its
own schema (so handlers are reached) and from arbitrary JSON and bytes, path parameters that are
the caller's real ids, random UUIDs or junk, query strings drawn from their schema or junk, and
odd `Idempotency-Key` headers. Whatever arrives, the answer is never a 5xx, and every 4xx is an
`application/problem+json` body that names its status (on SCIM routes, an RFC 7644 error body
in `application/scim+json`).

Then malformed text, to every operation: each JSON body drawn from its schema is sent again with
a byte order mark, and with invalid UTF-8 (overlong forms and encoded surrogates too), a lone
surrogate escape, NUL or another control character inside one of its strings; each path
parameter and query field gets percent-encoded NUL, controls and bytes that are not UTF-8.

CI runs a few examples per operation with a fixed seed; `ARGUS_FULL=1` runs many, randomly.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite
from support.webhooks_service import Webhooks

FULL = bool(os.environ.get("ARGUS_FULL"))
EXAMPLES = 150 if FULL else 8
TEXT_EXAMPLES = 20 if FULL else 2  # valid bodies per operation, each sent once per corruption
SKIPPED_PREFIXES = ("/internal/", "/metrics")
# operations that would end the caller's own session or org mid-run (their refusals are tested
# where they live); everything else is fuzzed with the caller's real ids
ENDS_THE_RUN = {("DELETE", "/orgs/{org_id}"), ("DELETE", "/me"), ("POST", "/logout"),
                ("POST", "/sessions/revoke-others"), ("DELETE", "/sessions/{session_id}"),
                ("DELETE", "/objects/{org_id}"), ("DELETE", "/orgs/{org_id}/members/{user_id}")}
ASCII = st.characters(min_codepoint=33, max_codepoint=126)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=12)
# put inside one string of a valid body: bytes that are not UTF-8 (invalid, overlong, an
# encoded surrogate, truncated), then JSON escapes of lone surrogates and unwanted controls
CORRUPTIONS = [b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xe2\x82",
               b"\\ud800", b"\\udc00", b"\\u0000", b"a\\u0000", b"\\u001b", b"\\u007f",
               b"\\u0085", b"\\n", b"\\r\\n", b"\\t", b"\\u2028", b"\\u202e"]
# path segments and query values, already percent-encoded
ENCODED_TEXT = ["%00", "a%00b", "a%0Ab", "%0D%0A", "%1B", "%7F", "%C2%85", "%E2%80%AE", "%FF",
                "%C0%AF", "%ED%A0%80", "%EF%BB%BFx"]
MARK = "\ue000mark\ue000"  # where a corruption goes (private use: no schema makes it)


@dataclass
class Target:
    base: str
    spec: dict[str, Any]
    token: str
    ids: dict[str, str]


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes


def resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema whose `#/components/...` references resolve against the spec."""
    return {**schema, "components": spec.get("components", {})}


def body_strategy(spec: dict[str, Any], operation: dict[str, Any]) -> st.SearchStrategy[bytes]:
    garbage = JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.just(b"") | garbage
    valid = from_schema(resolved(spec, content["schema"])).map(lambda v: json.dumps(v).encode())
    return valid | valid | garbage


def query_strategy(spec: dict[str, Any], operation: dict[str, Any]
                   ) -> st.SearchStrategy[dict[str, str]]:
    junk = st.dictionaries(st.text(ASCII, min_size=1, max_size=10),
                           st.text(ASCII, max_size=30), max_size=3)
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            drawn: st.SearchStrategy[Any] = from_schema(resolved(spec, parameter["schema"]))
            return drawn.map(query_of) | junk
    return st.just({}) | junk


def query_of(drawn: dict[str, Any] | None) -> dict[str, str]:
    return {name: as_query(value) for name, value in (drawn or {}).items()}


def as_query(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def path_strategy(template: str, ids: dict[str, str]) -> st.SearchStrategy[str]:
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    values = {name: st.sampled_from([ids[name]] * 3 if name in ids else ["x"])
              | st.uuids().map(str) | st.text(ASCII, min_size=1, max_size=40)
              for name in names}
    return st.fixed_dictionaries(values).map(
        lambda chosen: template.format(**{k: quote(v, safe="") for k, v in chosen.items()}))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()
            if not path.startswith(SKIPPED_PREFIXES) and (method.upper(), path) not in ENDS_THE_RUN]


def problems_of(target: Target, method: str, template: str, operation: dict[str, Any],
                send: Callable[..., Reply]) -> list[str]:
    """Fuzz one operation (runs in a worker thread); what went wrong, shrunk by hypothesis."""
    found: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not FULL,
              suppress_health_check=list(HealthCheck))
    @given(path=path_strategy(template, target.ids), body=body_strategy(target.spec, operation),
           query=query_strategy(target.spec, operation),
           key=st.none() | st.text(ASCII, max_size=300))
    def attack(path: str, body: bytes, query: dict[str, str], key: str | None) -> None:
        headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        reply = send(method, f"{target.base}{path}", body, query, headers)
        what = f"{method} {path} {query} {body[:200]!r} -> {reply.status} {reply.body[:300]!r}"
        assert reply.status < 500, what
        if reply.status >= 400:
            assert is_error_document(reply, path), what

    try:
        attack()
    except AssertionError as exc:
        found.append(str(exc).splitlines()[0])
    return found


def judged(reply: Reply, what: str) -> list[str]:
    """What is wrong with one answer: a 5xx, or a 4xx that is not a problem document."""
    what = f"{what} -> {reply.status} {reply.body[:300]!r}"
    if reply.status >= 500:
        return [what]
    if reply.status >= 400 and not is_error_document(reply, what.split(" ", 2)[1]):
        return [f"not a problem document: {what}"]
    return []


SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def is_error_document(reply: Reply, path: str) -> bool:
    """A problem document naming the status; on SCIM routes (`/scim/v2/...`) the handler's
    refusals are RFC 7644 section 3.12 errors in `application/scim+json` (the status a
    string), as SCIM clients expect (what the shared middleware refuses first stays a
    problem)."""
    if "/scim/v2/" in path.split("?", 1)[0] + "/" and \
            reply.content_type == "application/scim+json":
        body = json.loads(reply.body)
        return body.get("schemas") == [SCIM_ERROR] and body.get("status") == str(reply.status)
    return reply.content_type == "application/problem+json" and \
        json.loads(reply.body)["status"] == reply.status


def string_leaves(value: Any) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return sum(string_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(string_leaves(v) for v in value)
    return 0


def marked(value: Any, index: int) -> tuple[Any, int]:
    """`value` with MARK appended to its `index`-th string; and how many strings were passed."""
    if isinstance(value, str):
        return (value + MARK if index == 0 else value), 1
    if not isinstance(value, dict | list):
        return value, 0
    items = value.items() if isinstance(value, dict) else enumerate(value)
    out: dict[Any, Any] = {}
    seen = 0
    for key, item in items:
        out[key], passed = marked(item, index - seen)
        seen += passed
    return (out if isinstance(value, dict) else list(out.values())), seen


def corrupted_bodies(value: Any, leaf: int) -> list[bytes]:
    """The body with a BOM, then with each corruption inside one of its strings (a new member
    when it has none)."""
    count = string_leaves(value)
    if count:
        value, _ = marked(value, leaf % count)
    elif isinstance(value, dict):
        value = {**value, "note": MARK}
    else:
        value = [value, MARK]
    text = json.dumps(value, ensure_ascii=False).encode()
    return [codecs.BOM_UTF8 + text.replace(MARK.encode(), b"")] + [
        text.replace(MARK.encode(), corruption) for corruption in CORRUPTIONS]


def query_fields(spec: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            schema = parameter["schema"]
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            return list(schema.get("properties", {}))
    return []


def text_problems_of(target: Target, method: str, template: str, operation: dict[str, Any],
                     send: Callable[..., Reply]) -> list[str]:
    """Malformed text to one operation (runs in a worker thread): every answer is judged."""
    found: list[str] = []
    headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json",
               "Idempotency-Key": "fuzz-text"}
    real = {name: quote(target.ids.get(name, "x"), safe="")
            for name in (part[1:-1] for part in template.split("/") if part.startswith("{"))}

    def attempt(path: str, body: bytes, raw_query: str = "") -> None:
        url = f"{target.base}{path}" + (f"?{raw_query}" if raw_query else "")
        found.extend(judged(send(method, url, body, {}, headers),
                            f"{method} {url} {body[:200]!r}"))

    for name in real:
        for encoded in ENCODED_TEXT:
            attempt(template.format(**{**real, name: encoded}), b"")
    for field in query_fields(target.spec, operation):
        for encoded in ENCODED_TEXT:
            attempt(template.format(**real), b"", f"{field}={encoded}")
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        bodies = from_schema(resolved(target.spec, content["schema"]))

        @settings(max_examples=TEXT_EXAMPLES, deadline=None, database=None,
                  derandomize=not FULL, suppress_health_check=list(HealthCheck))
        @given(value=bodies, leaf=st.integers(min_value=0, max_value=20))
        def corrupt(value: Any, leaf: int) -> None:
            for body in corrupted_bodies(value, leaf):
                attempt(template.format(**real), body)

        corrupt()
    return found


async def fuzz(target: Target, http: Any, statuses: Counter[int],
               runner: Callable[..., list[str]] | None = None) -> list[str]:
    loop = asyncio.get_running_loop()

    async def request(method: str, url: str, body: bytes, query: dict[str, str],
                      headers: dict[str, str]) -> Reply:
        if query:
            url = f"{url}?{urlencode(query, quote_via=quote)}"
        async with http.request(method, yarl.URL(url, encoded=True), data=body,
                                headers=headers) as response:
            statuses[response.status] += 1
            if response.content_type == "text/event-stream" and response.status == 200:
                return Reply(response.status, response.content_type, b"")  # live: never ends
            return Reply(response.status, response.content_type, await response.read())

    def send(*args: Any) -> Reply:
        work: Coroutine[Any, Any, Reply] = request(*args)
        return asyncio.run_coroutine_threadsafe(work, loop).result(60)

    problems: list[str] = []
    for method, template, operation in operations(target.spec):
        problems += await asyncio.to_thread(runner or problems_of, target, method, template,
                                            operation, send)
    return problems


async def spec_of(suite: Suite, base: str) -> dict[str, Any]:
    async with suite.http.get(f"{base}/openapi.json") as response:
        assert response.status == 200
        spec: dict[str, Any] = await response.json()
        return spec


# hypothesis draws in a worker thread while the services run on the event loop in the main
# thread; their own use of `random` (nats-py inbox ids, retry jitter) is what it warns about
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("service", ["auth", "tenant-api", "audit", "webhooks", "files"])
async def test_no_input_gets_a_5xx_and_every_4xx_is_a_problem(
    suite: Suite, audit: Audit, webhooks: Webhooks, files: Files, service: str
) -> None:
    target = await target_of(service, suite, audit, webhooks, files)
    statuses: Counter[int] = Counter()
    problems = await fuzz(target, suite.http, statuses)
    print(f"{service}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    assert not problems, "\n".join(problems)
    assert any(200 <= status < 300 for status in statuses), "nothing got past validation"


@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("service", ["auth", "tenant-api", "audit", "webhooks", "files"])
async def test_malformed_text_never_gets_a_5xx(
    suite: Suite, audit: Audit, webhooks: Webhooks, files: Files, service: str
) -> None:
    target = await target_of(service, suite, audit, webhooks, files)
    statuses: Counter[int] = Counter()
    problems = await fuzz(target, suite.http, statuses, text_problems_of)
    print(f"{service}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    assert not problems, "\n".join(problems[:40])
    assert statuses[400] and statuses[422], "the corruptions never reached the checks"


async def target_of(service: str, suite: Suite, audit: Audit, webhooks: Webhooks,
                    files: Files) -> Target:
    """A fresh org with one of everything, and the service's spec and caller."""
    owner = await suite.user()
    org = await suite.org(owner)
    member = await suite.member(org, owner, "member")
    scoped = await suite.switch(owner, org)
    project = await suite.project(org, owner)
    stored = await files.uploaded(scoped, org, owner.id, b"a file to fuzz around")
    _, created = await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", scoped,
                                     {"url": webhooks.receiver.url, "event_types": ["*"]})
    key = await suite.api_key(org, owner, project, ["files:read"])
    ids = {"org_id": org, "user_id": member.id, "project_id": project,
           "object_id": stored["id"], "endpoint_id": created["endpoint"]["id"],
           "key_id": key["api_key"]["id"]}
    bases = {"auth": suite.auth.base, "tenant-api": suite.tenant, "audit": audit.base,
             "webhooks": webhooks.base, "files": files.base}
    token = owner.token if service == "tenant-api" else scoped
    return Target(bases[service], await spec_of(suite, bases[service]), token, ids)
