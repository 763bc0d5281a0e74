"""The shared HTTP stack every service runs on, attacked over a real socket: problem+json errors,
strict validation, body limits, security headers, CORS, request ids, the access log, X-User-Token
routes, metrics, rate limits and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import msgspec
import pytest
from aiohttp import web

from argus_shared import xut
from argus_shared.errors import Problem
from argus_shared.openapi import is_internal
from argus_shared.request import XUT_CLAIMS
from argus_shared.routing import Route
from argus_shared.validation import Strict, parse_json
from support.web import capture, keys, offline_settings, serve

writes: list[object] = []


class NewThing(Strict):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    count: int


class Thing(msgspec.Struct):
    id: str
    name: str


async def get_thing(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["thing_id"]})


async def create_thing(request: web.Request) -> web.Response:
    body = await parse_json(request, NewThing)
    writes.append(body)
    return web.json_response({"name": body.name}, status=201)


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("internal detail 5ec7e7")


async def conflict(request: web.Request) -> web.Response:
    raise Problem(409, "that name is taken", title="Conflict", field="name")


async def whoami(request: web.Request) -> web.Response:
    claims = request[XUT_CLAIMS]
    return web.json_response({"sub": claims.sub, "org": claims.org})


ROUTES = [
    Route("GET", "/things/{thing_id}", get_thing, "Read a thing", auth="public",
          response=Thing),
    Route("POST", "/things", create_thing, "Create a thing", auth="public", body=NewThing,
          status=201),
    Route("GET", "/boom", boom, "Fails", auth="public"),
    Route("GET", "/conflict", conflict, "Refuses", auth="public"),
    Route("GET", "/internal/whoami", whoami, "Identity", auth="service"),
]


@pytest.fixture(autouse=True)
def no_writes() -> None:
    writes.clear()


async def test_problem_raised_by_a_handler_is_problem_json() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}/conflict") as r:
            assert r.status == 409
            assert r.content_type == "application/problem+json"
            body = await r.json()
    assert body["title"] == "Conflict" and body["detail"] == "that name is taken"
    assert body["status"] == 409 and body["field"] == "name" and body["request_id"]


async def test_unknown_route_and_wrong_method_are_problem_json() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}/nowhere") as r:
            assert (r.status, r.content_type) == (404, "application/problem+json")
        async with http.delete(f"{base}/things") as r:
            assert (r.status, r.content_type) == (405, "application/problem+json")
            assert "POST" in r.headers["Allow"]


async def test_unexpected_errors_are_logged_but_never_shown() -> None:
    async with capture("argus.errors") as logged, serve(ROUTES) as (base, http):
        async with http.get(f"{base}/boom") as r:
            assert r.status == 500
            assert r.content_type == "application/problem+json"
            assert "5ec7e7" not in await r.text()
    assert any(rec.exc_info and "5ec7e7" in str(rec.exc_info[1]) for rec in logged.records)


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({"name": "a", "count": 1, "admin": True}, 422, "admin"),
        ({"name": "a", "count": "1"}, 422, "count"),
        ({"name": "a", "count": 1.5}, 422, "count"),
        ({"name": "x" * 21, "count": 1}, 422, "name"),
        ({"name": "", "count": 1}, 422, "name"),
        ({"count": 1}, 422, "name"),
    ],
)
async def test_invalid_bodies_are_refused_naming_the_field(
    body: dict[str, object], status: int, mentions: str
) -> None:
    async with serve(ROUTES) as (base, http):
        async with http.post(f"{base}/things", json=body) as r:
            assert r.status == status
            assert mentions in (await r.json())["detail"]
    assert writes == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [(b"{not json", "application/json", 400), (b"", "application/json", 400),
     (b'{"name": "a", "count": 1}', "text/plain", 415), (b"[1, 2]", "application/json", 422)],
)
async def test_malformed_bodies_are_refused(data: bytes, content_type: str, status: int) -> None:
    async with serve(ROUTES) as (base, http):
        async with http.post(f"{base}/things", data=data,
                             headers={"Content-Type": content_type}) as r:
            assert r.status == status
            assert r.content_type == "application/problem+json"
    assert writes == []


async def test_a_valid_body_is_accepted() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.post(f"{base}/things", json={"name": "a", "count": 2}) as r:
            assert r.status == 201
    assert writes == [NewThing(name="a", count=2)]


async def test_declared_oversized_body_is_413() -> None:
    settings = offline_settings(ARGUS_MAX_BODY_BYTES="2048")
    async with serve(ROUTES, settings) as (base, http):
        payload = json.dumps({"name": "a", "count": 1, "pad": "x" * 5000})
        async with http.post(f"{base}/things", data=payload,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
            assert (await r.json())["limit"] == 2048
    assert writes == []


async def test_streamed_oversized_body_is_refused_without_reading_it_all() -> None:
    """A chunked body with no length: the server must answer 413 once past the limit, long
    before a 64 MiB body would have been sent."""
    settings = offline_settings(ARGUS_MAX_BODY_BYTES="4096")
    chunk = b"x" * 16384
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    async with serve(ROUTES, settings) as (base, _):
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = 0
        status_line = b""
        while sent < 64 * 1024 * 1024:
            try:
                writer.write(frame)
                await writer.drain()
            except ConnectionError:
                break
            sent += len(chunk)
            try:
                status_line = await asyncio.wait_for(reader.readline(), 0.01)
            except TimeoutError:
                continue
            if status_line:
                break
        if not status_line:
            status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert sent < 4 * 1024 * 1024
    assert writes == []


async def test_security_headers_on_success_and_on_errors() -> None:
    async with serve(ROUTES) as (base, http):
        for path in ("/things/1", "/nowhere", "/boom", "/healthz"):
            async with http.get(f"{base}{path}") as r:
                h = r.headers
                assert h["Strict-Transport-Security"].startswith("max-age=")
                assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
                assert "default-src 'none'" in h["Content-Security-Policy"]
                assert h["X-Content-Type-Options"] == "nosniff"
                assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"


async def test_cors_allows_only_the_configured_origin() -> None:
    settings = offline_settings(ARGUS_CORS_ORIGIN="https://app.example")
    async with serve(ROUTES, settings) as (base, http):
        async with http.get(f"{base}/things/1", headers={"Origin": "https://app.example"}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.options(f"{base}/things", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 204
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        async with http.get(f"{base}/things/1", headers={"Origin": "https://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.options(f"{base}/things", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_no_cors_headers_without_the_setting() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}/things/1", headers={"Origin": "https://app.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_request_id_is_echoed_or_generated() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}/things/1", headers={"X-Request-Id": "req-1234abcd"}) as r:
            assert r.headers["X-Request-Id"] == "req-1234abcd"
        for bad in ("short", "x" * 200, "has space inside", "new\\nline-12345"):
            async with http.get(f"{base}/things/1", headers={"X-Request-Id": bad}) as r:
                generated = r.headers["X-Request-Id"]
                assert generated != bad and len(generated) == 32
        async with http.get(f"{base}/conflict", headers={"X-Request-Id": "req-5678efgh"}) as r:
            assert (await r.json())["request_id"] == "req-5678efgh"


async def test_access_log_has_one_line_per_request_but_none_for_probes() -> None:
    async with capture("argus.access") as logged, serve(ROUTES) as (base, http):
        for path in ("/healthz", "/readyz", "/things/7", "/healthz"):
            async with http.get(f"{base}{path}", headers={"X-Request-Id": "req-access01"}):
                pass
    assert [rec.path for rec in logged.records] == ["/things/7"]  # type: ignore[attr-defined]
    record = logged.records[0]
    assert (record.method, record.status) == ("GET", 200)  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]


def sign(**kwargs: object) -> str:
    identity = xut.Identity(sub="user:7", org="org-1", request_id="req-xut0001")
    options: dict[str, object] = {"issuer": "tenant-api", "audience": "auth", **kwargs}
    return xut.sign(kwargs.pop("ring", keys()), identity, **options)  # type: ignore[arg-type]


async def test_service_routes_accept_only_a_valid_x_user_token() -> None:
    good = sign()
    other_ring = xut.KeyRing({"k1": b"o" * 32}, "k1")
    claims_tampered = good.split(".")
    claims_tampered[2] = claims_tampered[2][:-2] + ("AA" if claims_tampered[2][-2:] != "AA"
                                                     else "BB")
    attacks = {
        "expired": sign(now=time.time() - 3600),
        "wrong_audience": sign(audience="files"),
        "bad_signature": xut.sign(other_ring, xut.Identity(sub="user:7"), issuer="x",
                                  audience="auth"),
        "unknown_kid": good.replace(".k1.", ".k9.", 1),
        "tampered": ".".join(claims_tampered),
        "garbage": "not-a-token",
    }
    async with capture("argus.web") as logged, serve(ROUTES) as (base, http):
        async with http.get(f"{base}/internal/whoami", headers={xut.HEADER: good}) as r:
            assert r.status == 200
            assert await r.json() == {"sub": "user:7", "org": "org-1"}
        async with http.get(f"{base}/internal/whoami") as r:
            assert r.status == 401
        for name, token in attacks.items():
            async with http.get(f"{base}/internal/whoami", headers={xut.HEADER: token}) as r:
                assert r.status == 401, name
                assert r.content_type == "application/problem+json"
    reasons = [rec.reason for rec in logged.records]  # type: ignore[attr-defined]
    assert {"expired", "wrong_audience", "bad_signature", "unknown_kid", "malformed"} <= set(
        reasons
    )
    text = "\n".join(str(vars(rec)) for rec in logged.records)
    for token in attacks.values():
        assert token not in text


async def test_metrics_are_labelled_by_route_template() -> None:
    async with serve(ROUTES) as (base, http):
        for thing in ("a1", "b2", "c3"):
            async with http.get(f"{base}/things/{thing}"):
                pass
        async with http.get(f"{base}/no/such/path"):
            pass
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    assert 'argus_http_requests_total{method="GET",route="/things/{thing_id}",status="200"} 3.0' \
        in text
    assert 'route="unmatched",status="404"' in text
    assert "a1" not in text and "no/such" not in text
    assert 'argus_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text


async def test_rate_limit_per_ip_answers_429_with_retry_after() -> None:
    settings = offline_settings(ARGUS_RATE_LIMIT_IP_PER_MINUTE="5")
    async with serve(ROUTES, settings) as (base, http):
        statuses = []
        for _ in range(6):
            async with http.get(f"{base}/things/1") as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200  # probes are never limited
    assert statuses == [200] * 5 + [429]
    assert retry_after is not None and int(retry_after) >= 1


async def test_openapi_describes_every_route() -> None:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}/openapi.json") as r:
            spec = await r.json()
    assert spec["openapi"].startswith("3.1")
    for route in ROUTES:
        if not is_internal(route):
            assert route.method.lower() in spec["paths"][route.path]
    create = spec["paths"]["/things"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"name", "count"}
    assert spec["paths"]["/things/{thing_id}"]["get"]["parameters"][0]["name"] == "thing_id"
    # what the gateway never routes is left out of the public document
    assert "/internal/whoami" not in spec["paths"] and "/metrics" not in spec["paths"]
    assert {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/assets/{name}"} \
        <= set(spec["paths"])


async def test_readyz_names_the_failing_check() -> None:
    async def fine() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("down")

    async with serve(ROUTES, ready_checks={"database": fine, "nats": broken}) as (base, http):
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 503
            body = await r.json()
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
    assert body["checks"] == {"database": "ok", "nats": "failed: ConnectionError"}
