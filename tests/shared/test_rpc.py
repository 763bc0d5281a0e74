"""Request-reply over the session's real NATS: `nats.request` signs an X-User-Token addressed to
the service and bound to the body; `nats.serve` answers only verified callers. Every test
serves its own method name, so no other subscriber answers it."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from argus_shared import xut
from argus_shared.logs import JsonFormatter, request_context, request_id_var
from argus_shared.nats import RpcError, request, rpc_audience, rpc_subject, serve
from argus_shared.outbox import Ctx
from argus_shared.settings import KeyRing, Settings, format_keyring
from support.events import open_nats
from support.infra import Infra
from support.web import capture

SERVICE = "tenant-api"
CALLER = xut.Identity(sub="user:u-42", org=str(uuid.uuid4()), role="admin",
                      request_id="req-rpc-0001")


@pytest.fixture(scope="module")
def keys(settings_for: Callable[..., Settings]) -> KeyRing:
    return settings_for(SERVICE).xut_keys


@pytest.fixture(scope="module")
async def nc(infra: Infra) -> AsyncIterator[Client]:
    async with open_nats(infra.nats_url, "test-rpc") as client:
        yield client


class Served:
    """A handler served on a fresh method name, recording every call that reaches it."""

    def __init__(self, answer: Callable[[xut.Claims, Any], Any] | None = None) -> None:
        self.method = f"m{uuid.uuid4().hex[:12]}"
        self.calls: list[tuple[xut.Claims, Any]] = []
        self.answer = answer

    async def __call__(self, claims: xut.Claims, payload: Any) -> Any:
        self.calls.append((claims, payload))
        if self.answer is None:
            return {"sub": claims.sub, "org": claims.org, "role": claims.role,
                    "rid": claims.rid, "iss": claims.iss, "echo": payload}
        result = self.answer(claims, payload)
        return await result if asyncio.iscoroutine(result) else result


@pytest.fixture
async def served(nc: Client, keys: KeyRing) -> AsyncIterator[Callable[..., Any]]:
    """`await served(handler)` subscribes `handler`; all are unsubscribed after the test."""
    subs: list[Any] = []

    async def start(handler: Served) -> Served:
        subs.append(await serve(nc, keys, service=SERVICE, method=handler.method,
                                handler=handler))
        return handler

    yield start
    for sub in subs:
        await sub.unsubscribe()


async def call(nc: Client, keys: KeyRing, method: str, payload: Any,
               identity: xut.Identity = CALLER, **kwargs: Any) -> Any:
    return await request(nc, keys, issuer="auth", service=SERVICE, method=method,
                         payload=payload, identity=identity, **kwargs)


async def test_a_request_reaches_the_handler_with_the_callers_identity(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    handler = await served(Served())
    answer = await call(nc, keys, handler.method, {"user": "u-5", "n": [1, 2]})
    assert answer == {"sub": "user:u-42", "org": CALLER.org, "role": "admin",
                      "rid": "req-rpc-0001", "iss": "auth", "echo": {"user": "u-5", "n": [1, 2]}}
    [(claims, _)] = handler.calls
    assert claims.aud == rpc_audience(SERVICE, handler.method)


async def raw_request(nc: Client, method: str, body: bytes, token: str | None) -> dict[str, Any]:
    headers = {} if token is None else {xut.HEADER: token}
    reply = await nc.request(rpc_subject(SERVICE, method), body, timeout=2, headers=headers)
    return msgspec.json.decode(reply.data)


@pytest.mark.parametrize(
    "attack", ["no_token", "wrong_audience", "other_method", "other_body", "unbound",
               "foreign_key", "expired", "garbage"],
)
async def test_an_unverified_request_gets_401_and_never_reaches_the_handler(
    nc: Client, keys: KeyRing, served: Callable[..., Any], attack: str
) -> None:
    handler = await served(Served())
    body = msgspec.json.encode({"user": "u-5"})
    signer, audience, now = keys, rpc_audience(SERVICE, handler.method), None
    bound: bytes | None = body
    if attack == "wrong_audience":
        audience = rpc_audience("files", handler.method)
    elif attack == "other_method":  # a token captured for one method, replayed to another
        audience = rpc_audience(SERVICE, "some_other_method")
    elif attack == "other_body":
        bound = msgspec.json.encode({"user": "admin"})
    elif attack == "unbound":
        bound = None
    elif attack == "foreign_key":
        signer = KeyRing.parse(format_keyring({keys.current: os.urandom(32)}), "foreign")
    elif attack == "expired":
        now = 1_000_000_000.0
    signed = xut.sign(signer, CALLER, issuer="auth", audience=audience, body=bound, now=now)
    token = {"no_token": None, "garbage": "v1.x.y.z"}.get(attack, signed)
    answer = await raw_request(nc, handler.method, body, token)
    assert answer["error"]["status"] == 401, answer
    assert "result" not in answer
    assert handler.calls == []


async def test_the_same_raw_request_with_a_proper_token_is_answered(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    handler = await served(Served())  # the control for the 401 cases above
    body = msgspec.json.encode({"user": "u-5"})
    token = xut.sign(keys, CALLER, issuer="auth", audience=rpc_audience(SERVICE, handler.method),
                     body=body)
    answer = await raw_request(nc, handler.method, body, token)
    assert answer["result"]["echo"] == {"user": "u-5"}


async def test_a_method_nobody_serves_gives_503(nc: Client, keys: KeyRing) -> None:
    with pytest.raises(RpcError) as raised:
        await call(nc, keys, f"m{uuid.uuid4().hex}", {})
    assert raised.value.status == 503


async def test_a_handler_raising_rpc_error_gives_the_caller_that_status(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    def missing(claims: xut.Claims, payload: Any) -> Any:
        raise RpcError(404, "no such member")

    handler = await served(Served(missing))
    with pytest.raises(RpcError) as raised:
        await call(nc, keys, handler.method, {"user": "u-9"})
    assert (raised.value.status, raised.value.detail) == (404, "no such member")


async def test_a_crashing_handler_gives_500_without_leaking_the_error(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    def crash(claims: xut.Claims, payload: Any) -> Any:
        raise RuntimeError("secret stack detail 81c2")

    handler = await served(Served(crash))
    async with capture("argus.nats") as logged:
        with pytest.raises(RpcError) as raised:
            await call(nc, keys, handler.method, {})
    assert raised.value.status == 500
    assert "81c2" not in raised.value.detail and "RuntimeError" not in raised.value.detail
    assert any(r.exc_info and "81c2" in str(r.exc_info[1]) for r in logged.records)


async def test_a_body_that_is_not_json_gives_400(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    handler = await served(Served())
    body = b"{not json"
    token = xut.sign(keys, CALLER, issuer="auth", audience=rpc_audience(SERVICE, handler.method),
                     body=body)
    answer = await raw_request(nc, handler.method, body, token)
    assert answer["error"]["status"] == 400 and handler.calls == []


async def test_a_handler_slower_than_the_wait_gives_504(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    async def slow(claims: xut.Claims, payload: Any) -> Any:
        await asyncio.sleep(1.0)

    handler = await served(Served(slow))
    with pytest.raises(RpcError) as raised:
        await call(nc, keys, handler.method, {}, wait_seconds=0.2)
    assert raised.value.status == 504


async def test_requests_are_handled_concurrently_not_one_at_a_time(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    inside = 0
    all_in = asyncio.Event()

    async def rendezvous(claims: xut.Claims, payload: Any) -> Any:
        nonlocal inside
        inside += 1
        if inside == 3:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 1.5)  # returns only once 3 calls are inside
        return payload["n"]

    handler = await served(Served(rendezvous))
    answers = await asyncio.gather(*(call(nc, keys, handler.method, {"n": n}) for n in range(3)))
    assert sorted(answers) == [0, 1, 2]


def anonymous(request_id: str = "") -> xut.Identity:
    return xut.Identity(sub="service:auth", request_id=request_id)


async def test_a_call_carries_the_request_id_of_the_work_under_way(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    """No call site can forget it: `request` signs the current request id as `rid` when the
    caller names none, and one the caller names wins."""
    handler = await served(Served())
    with request_context("req-ambient-0001"):
        ambient = await call(nc, keys, handler.method, {}, identity=anonymous())
        named = await call(nc, keys, handler.method, {}, identity=anonymous("req-named-0002"))
    outside = await call(nc, keys, handler.method, {}, identity=anonymous())
    assert [ambient["rid"], named["rid"], outside["rid"]] == [
        "req-ambient-0001", "req-named-0002", ""]


async def test_a_handler_runs_in_its_callers_request_and_one_line_says_it_answered(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    """The handler's log lines and the events it records carry the caller's request id, and
    only for that call: the next call, from no request, finds none."""
    inside: list[tuple[str | None, str | None]] = []

    def look(claims: xut.Claims, payload: Any) -> Any:
        logging.getLogger("argus.test.handler").warning("handling")
        inside.append((request_id_var.get(), Ctx().request_id))
        return {}

    handler = await served(Served(look))
    formatter = JsonFormatter(SERVICE)
    async with capture("argus.rpc", formatter) as answered, \
            capture("argus.test.handler", formatter) as handled:
        await call(nc, keys, handler.method, {}, identity=anonymous("req-caller-0003"))
        await call(nc, keys, handler.method, {}, identity=anonymous())
    assert inside == [("req-caller-0003", "req-caller-0003"), (None, None)]
    lines = [msgspec.json.decode(line) for line in handled.lines]
    assert [line.get("request_id") for line in lines] == ["req-caller-0003", None]
    mine = [msgspec.json.decode(line) for line in answered.lines]
    mine = [line for line in mine if line["rpc"] == rpc_audience(SERVICE, handler.method)]
    assert [(line["message"], line["status"], line["caller"], line.get("request_id"))
            for line in mine] == [("rpc answered", 200, "auth", "req-caller-0003"),
                                  ("rpc answered", 200, "auth", None)]
    assert request_id_var.get() is None


async def test_a_refused_call_is_answered_in_no_request(
    nc: Client, keys: KeyRing, served: Callable[..., Any]
) -> None:
    """An unverified token's `rid` is never believed: its line carries no request id."""
    handler = await served(Served())
    body = msgspec.json.encode({})
    token = xut.sign(keys, anonymous("req-forged-0004"), issuer="auth",
                     audience=rpc_audience("files", handler.method), body=body)
    async with capture("argus.rpc", JsonFormatter(SERVICE)) as answered:
        answer = await raw_request(nc, handler.method, body, token)
    assert answer["error"]["status"] == 401
    [line] = [msgspec.json.decode(line) for line in answered.lines
              if handler.method in line]
    assert line["status"] == 401 and "request_id" not in line and line["caller"] is None


@pytest.fixture(autouse=True)
def _quiet_rpc_log() -> None:
    logging.getLogger("argus.nats").setLevel(logging.INFO)
