"""Every service's OpenAPI spec, as it serves it, fuzzed: each operation gets bodies drawn from its
own schema (so handlers are reached) and from arbitrary JSON and bytes, path parameters that are
the caller's real ids, random UUIDs or junk, query strings drawn from their schema or junk, and
odd `Idempotency-Key` headers. Whatever arrives, the answer is never a 5xx, and every 4xx is an
`application/problem+json` body that names its status.

CI runs a few examples per operation with a fixed seed; `ARGUS_FULL=1` runs many, randomly.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from support.audit_service import Audit
from support.files_service import Files
from support.suite import Suite
from support.webhooks_service import Webhooks

FULL = bool(os.environ.get("ARGUS_FULL"))
EXAMPLES = 150 if FULL else 8
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
            drawn = from_schema(resolved(spec, parameter["schema"]))
            return drawn.map(lambda v: {k: as_query(x) for k, x in (v or {}).items()}) | junk
    return st.just({}) | junk


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
            assert reply.content_type == "application/problem+json", what
            assert json.loads(reply.body)["status"] == reply.status, what

    try:
        attack()
    except AssertionError as exc:
        found.append(str(exc).splitlines()[0])
    return found


async def fuzz(target: Target, http: Any, statuses: Counter[int]) -> list[str]:
    loop = asyncio.get_running_loop()

    async def request(method: str, url: str, body: bytes, query: dict[str, str],
                      headers: dict[str, str]) -> Reply:
        async with http.request(method, url, data=body, params=query,
                                headers=headers) as response:
            statuses[response.status] += 1
            return Reply(response.status, response.content_type, await response.read())

    def send(*args: Any) -> Reply:
        work: Coroutine[Any, Any, Reply] = request(*args)
        return asyncio.run_coroutine_threadsafe(work, loop).result(60)

    problems: list[str] = []
    for method, template, operation in operations(target.spec):
        problems += await asyncio.to_thread(problems_of, target, method, template, operation,
                                            send)
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
    target = Target(bases[service], await spec_of(suite, bases[service]), token, ids)
    statuses: Counter[int] = Counter()
    problems = await fuzz(target, suite.http, statuses)
    print(f"{service}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    assert not problems, "\n".join(problems)
    assert any(200 <= status < 300 for status in statuses), "nothing got past validation"
