"""Outbound webhooks end to end: endpoints, signed deliveries that the official Stripe and
Standard Webhooks verifiers accept, secret rotation, retries, disabling, SSRF, inbound."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import standardwebhooks
import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer

from argus_shared.logs import JsonFormatter
from argus_webhooks import ssrf
from argus_webhooks.app import create_app
from support.suite import Suite, User
from support.web import capture
from support.webhooks_service import INBOUND, Webhooks, webhooks_config


async def endpoint(webhooks: Webhooks, event_types: list[str] | None = None
                   ) -> tuple[User, str, str, dict[str, Any], str]:
    suite = webhooks.suite
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    status, created = await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", token, {
        "url": webhooks.receiver.url, "event_types": event_types or ["project.created"]})
    assert status == 201, created
    return owner, org, token, created["endpoint"], created["secret"]


def stripe_accepts(headers: dict[str, str], body: bytes, secret: str) -> bool:
    try:
        stripe.Webhook.construct_event(body.decode(), headers["Argus-Signature"], secret,
                                       tolerance=300)
    except stripe.SignatureVerificationError:
        return False
    return True


def standard_accepts(headers: dict[str, str], body: bytes, secret: str) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


async def test_secrets_are_shown_once_and_sealed_at_rest(webhooks: Webhooks) -> None:
    _, org, token, _created, secret = await endpoint(webhooks)
    assert secret.startswith("whsec_") and len(secret) == 6 + 44
    status, listed = await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints", token)
    assert status == 200 and secret not in json.dumps(listed)
    async with webhooks.pool.acquire() as conn:
        await conn.execute("select set_config('app.org_id', $1, false)", org)
        sealed = await conn.fetchval("select sealed from endpoint_secrets")
        await conn.execute("select set_config('app.org_id', '', false)")
    assert secret.encode() not in sealed


async def test_deliveries_pass_the_official_stripe_and_standard_webhooks_verifiers(
    webhooks: Webhooks
) -> None:
    owner, org, _, _, secret = await endpoint(webhooks)
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    headers, body = webhooks.receiver.received[0]
    assert json.loads(body)["type"] == "project.created"
    assert stripe_accepts(headers, body, secret)
    assert standard_accepts(headers, body, secret)
    assert not stripe_accepts(headers, body + b" ", secret)  # the control
    assert not standard_accepts(headers, body, "whsec_" + "A" * 44)


async def test_a_rotated_secret_overlaps_with_the_old_one(webhooks: Webhooks) -> None:
    owner, org, token, created, old = await endpoint(webhooks)
    status, rotated = await webhooks.call(
        "POST", f"/orgs/{org}/webhooks/endpoints/{created['id']}/rotate-secret", token,
        {"overlap_hours": 24})
    assert status == 201 and rotated["secret"] != old
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    headers, body = webhooks.receiver.received[0]
    assert headers["Argus-Signature"].count("v1=") == 2
    for secret in (old, rotated["secret"]):
        assert stripe_accepts(headers, body, secret) and standard_accepts(headers, body, secret)
    status, _ = await webhooks.call(
        "POST", f"/orgs/{org}/webhooks/endpoints/{created['id']}/rotate-secret", token,
        {"overlap_hours": 0})
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(2)
    headers, body = webhooks.receiver.received[1]
    assert headers["Argus-Signature"].count("v1=") == 1
    assert not stripe_accepts(headers, body, old)


async def attempts(webhooks: Webhooks, org: str, token: str, endpoint_id: str,
                   want: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        _, deliveries = await webhooks.call(
            "GET", f"/orgs/{org}/webhooks/endpoints/{endpoint_id}/deliveries", token)
        if deliveries:
            _, log = await webhooks.call(
                "GET", f"/orgs/{org}/webhooks/deliveries/{deliveries[0]['id']}/attempts", token)
            if len(log) >= want or time.monotonic() > deadline:
                return [deliveries[0], *log]
        elif time.monotonic() > deadline:
            return []
        await asyncio.sleep(0.2)


async def test_failures_are_retried_with_a_logged_attempt_each(webhooks: Webhooks) -> None:
    owner, org, token, created, _ = await endpoint(webhooks)
    webhooks.receiver.answers += [(500, {}), (429, {"Retry-After": "2"})]
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(3, timeout=30)
    _delivery, *log = await attempts(webhooks, org, token, created["id"], 3)
    assert [a["status_code"] for a in log] == [500, 429, 200]
    gap = (datetime.fromisoformat(log[2]["started_at"]) -
           datetime.fromisoformat(log[1]["started_at"])).total_seconds()
    assert gap >= 1.8  # Retry-After: 2 was honoured over the 1 s schedule step
    _, deliveries = await webhooks.call(
        "GET", f"/orgs/{org}/webhooks/endpoints/{created['id']}/deliveries", token)
    assert deliveries[0]["status"] == "succeeded" and deliveries[0]["attempts"] == 3
    ids = {h["webhook-id"] for h, _ in webhooks.receiver.received}
    assert len(ids) == 1  # the same message id on every attempt: receivers dedup on it


async def test_an_exhausted_delivery_can_be_resent_by_hand(webhooks: Webhooks) -> None:
    owner, org, token, created, _ = await endpoint(webhooks)
    webhooks.receiver.answers += [(500, {})] * 4
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(4, timeout=30)
    delivery, *_ = await attempts(webhooks, org, token, created["id"], 4)
    for _ in range(50):
        _, deliveries = await webhooks.call(
            "GET", f"/orgs/{org}/webhooks/endpoints/{created['id']}/deliveries", token)
        if deliveries[0]["status"] == "exhausted":
            break
        await asyncio.sleep(0.1)
    assert deliveries[0]["status"] == "exhausted"
    status, _ = await webhooks.call(
        "POST", f"/orgs/{org}/webhooks/deliveries/{delivery['id']}/resend", token)
    assert status == 202
    await webhooks.receiver.wait_for(5)


async def test_410_gone_disables_the_endpoint(webhooks: Webhooks) -> None:
    owner, org, token, created, _ = await endpoint(webhooks)
    webhooks.receiver.answers.append((410, {}))
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    for _ in range(50):
        _, found = await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints/{created['id']}",
                                       token)
        if not found["enabled"]:
            break
        await asyncio.sleep(0.1)
    assert found["enabled"] is False and "410" in found["disabled_reason"]


async def test_a_delivery_attempt_is_logged_with_the_request_id_of_its_event(
    webhooks: Webhooks
) -> None:
    """The request that caused the event, carried in the stored envelope to the worker that
    attempts the delivery, long after the request and its consumer are done."""
    owner, org, _, created, _ = await endpoint(webhooks)
    webhooks.receiver.answers.append((410, {}))
    rid = f"req-delivery-{uuid.uuid4().hex[:12]}"

    def attempts(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # this endpoint's only: an earlier test's retry may be logged meanwhile
        return [line for line in lines if line["message"] == "delivery attempted"
                and line.get("endpoint") == created["id"]]

    async with capture("argus.webhooks.delivery", JsonFormatter("webhooks")) as logged:
        status, _ = await webhooks.suite.call("POST", f"/orgs/{org}/projects", owner.token,
                                              {"name": "p"}, {"X-Request-Id": rid})
        assert status == 201
        await webhooks.receiver.wait_for(1)
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in logged.lines]
            if attempts(lines) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    [attempted] = attempts(lines)
    assert (attempted["result"], attempted["request_id"]) == ("gone", rid)


@pytest.mark.parametrize(("url", "reason"), [
    ("https://127.0.0.1:9/hook", "loopback"), ("https://10.1.2.3/x", "private"),
    ("https://169.254.169.254/latest/meta-data", "metadata"), ("https://[::1]/x", "loopback"),
    ("https://localhost/x", "loopback"), ("http://example.com/x", "https"),
    ("not-a-url", "not an http"), ("https://user:pw@example.com/x", "credentials"),
    ("https://[::ffff:10.0.0.1]/x", "private"), ("https://0.0.0.0/x", "unspecified"),
])
async def test_endpoints_that_reach_inside_are_refused(suite: Suite, settings_for: Any,
                                                       url: str, reason: str) -> None:
    from aiohttp.test_utils import TestServer

    app = create_app(settings_for("webhooks"), webhooks_config(https_only=True, allow_nets=()),
                     auth_url=suite.auth.base)
    server = TestServer(app)
    await server.start_server()
    try:
        owner = await suite.user()
        org = await suite.org(owner)
        token = await suite.switch(owner, org)
        async with suite.http.post(server.make_url(f"/orgs/{org}/webhooks/endpoints"),
                                   json={"url": url, "event_types": ["*"]},
                                   headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 422, await r.text()
            assert reason in (await r.json())["detail"]
    finally:
        await server.close()


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    resolver = ssrf.PinnedResolver("example.com", ["93.184.215.14"])
    assert [r["host"] for r in await resolver.resolve("example.com", 443)] == ["93.184.215.14"]
    with pytest.raises(OSError):
        await resolver.resolve("evil.example", 443)


def stripe_header(secret: str, body: bytes, at: int) -> str:
    signature = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={signature}"


async def inbound_count(admin: asyncpg.Connection) -> int:
    # as the superuser: the service only ever inserts inbound ids (its role may not read them)
    return await admin.fetchval("select count(*) from webhooks.inbound_events")


async def test_inbound_stripe_style_verified_once(webhooks: Webhooks,
                                                  admin: asyncpg.Connection) -> None:
    secret = INBOUND["stripe"].secret
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "charge.succeeded"}).encode()
    url = f"{webhooks.base}/webhooks/inbound/stripe"
    http = webhooks.suite.http
    before = await inbound_count(admin)
    for header, want in ((stripe_header("whsec_wrong", body, int(time.time())), 401),
                         (stripe_header(secret, body, int(time.time()) - 600), 401),
                         ("t=1,v1=zz", 401), (None, 401)):
        async with http.post(url, data=body, headers={"Stripe-Signature": header} if header
                             else {}) as r:
            assert r.status == want
    assert await inbound_count(admin) == before  # forged and stale write nothing
    good = {"Stripe-Signature": stripe_header(secret, body, int(time.time()))}
    async with http.post(url, data=body, headers=good) as r:
        assert r.status == 200
    async with http.post(url, data=body, headers=good) as r:
        assert r.status == 409  # a replay
    assert await inbound_count(admin) == before + 1


async def test_inbound_standard_webhooks_verified_with_the_official_signer(
    webhooks: Webhooks
) -> None:
    signer = standardwebhooks.Webhook(INBOUND["std"].secret)
    message_id = f"msg_{uuid.uuid4().hex}"
    body = b'{"type":"invoice.paid"}'
    now = datetime.now(UTC)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signer.sign(message_id, now, body.decode())}
    url = f"{webhooks.base}/webhooks/inbound/std"
    async with webhooks.suite.http.post(url, data=body, headers=headers) as r:
        assert r.status == 200
    async with webhooks.suite.http.post(url, data=body, headers=headers) as r:
        assert r.status == 409
    tampered = {**headers, "webhook-id": f"msg_{uuid.uuid4().hex}"}
    async with webhooks.suite.http.post(url, data=body, headers=tampered) as r:
        assert r.status == 401
    async with webhooks.suite.http.post(f"{webhooks.base}/webhooks/inbound/nobody", data=body,
                                        headers=headers) as r:
        assert r.status == 404


async def test_an_endpoint_failing_for_five_days_is_disabled_with_an_event(
    webhooks: Webhooks, admin: Any
) -> None:
    owner, org, token, created, _ = await endpoint(webhooks)
    await admin.execute("update webhooks.endpoints set failing_since = now() - interval '6 days'"
                        " where id = $1", uuid.UUID(created["id"]))
    webhooks.receiver.answers.append((500, {}))
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    for _ in range(50):
        _, found = await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints/{created['id']}",
                                       token)
        if not found["enabled"]:
            break
        await asyncio.sleep(0.1)
    assert found["enabled"] is False and found["disabled_reason"] == "failing for 5 days"
    subjects = await admin.fetch("select subject from webhooks.outbox where org_id = $1",
                                 uuid.UUID(org))
    assert "argus.events.webhooks.webhooks.endpoint.disabled" in {r["subject"] for r in subjects}


async def test_a_redelivered_event_adds_no_second_delivery(webhooks: Webhooks,
                                                          admin: Any) -> None:
    from argus_shared import events as envelope
    from argus_shared.consumer import Received
    from argus_webhooks.fanout import FanOut

    owner, org, _token, created, _ = await endpoint(webhooks)
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    row = await admin.fetchrow("select event_id, payload from webhooks.deliveries"
                               " where endpoint_id = $1", uuid.UUID(created["id"]))

    class Redelivered:  # the same message, as JetStream hands it over a second time
        data, subject, headers = bytes(row["payload"]), "argus.events.x", None

    event = envelope.decode(bytes(row["payload"]))
    redelivered = Received(Redelivered(), event, None, None)  # type: ignore[arg-type]
    await FanOut(webhooks.pool)([redelivered])
    count = await admin.fetchval(
        "select count(*) from webhooks.deliveries where endpoint_id = $1", uuid.UUID(created["id"]))
    assert count == 1


async def test_delivery_metrics_are_exported(webhooks: Webhooks) -> None:
    owner, org, _, _, _ = await endpoint(webhooks)
    await webhooks.suite.project(org, owner)
    await webhooks.receiver.wait_for(1)
    await webhooks.deliverer.refresh_metrics()
    for _ in range(50):  # the result is counted once the attempt is recorded
        async with webhooks.suite.http.get(f"{webhooks.base}/metrics") as response:
            text = await response.text()
        if 'argus_webhook_deliveries_total{result="succeeded"}' in text:
            break
        await asyncio.sleep(0.1)
    assert 'argus_webhook_deliveries_total{result="succeeded"}' in text
    for name in ("argus_webhook_attempt_seconds_bucket", "argus_webhook_queue_depth",
                 "argus_webhook_oldest_pending_seconds", "argus_webhook_endpoints_disabled"):
        assert name in text


async def test_a_slow_endpoint_does_not_hold_up_other_deliveries(webhooks: Webhooks) -> None:
    slow_started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        slow_started.set()
        await asyncio.sleep(4)  # under the 5 s attempt timeout: it succeeds, slowly
        return web.Response(text="ok")

    target = web.Application()
    target.router.add_post("/slow", slow)
    slow_server = TestServer(target, host="127.0.0.1")
    await slow_server.start_server()
    try:
        owner, org, token, _, _ = await endpoint(webhooks)
        status, _ = await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", token, {
            "url": str(slow_server.make_url("/slow")), "event_types": ["project.created"]})
        assert status == 201
        await webhooks.suite.project(org, owner)
        await webhooks.receiver.wait_for(1)
        await asyncio.wait_for(slow_started.wait(), 10)
        started = time.monotonic()
        await webhooks.suite.project(org, owner)  # claimed while the slow POST still hangs
        await webhooks.receiver.wait_for(2, timeout=10)
        assert time.monotonic() - started < 3, "the fast endpoint waited for the slow one"
    finally:
        await slow_server.close()


async def test_successes_settle_only_deliveries_still_in_flight(webhooks: Webhooks,
                                                                admin: Any) -> None:
    """Workers record successes in groups; one whose delivery was meanwhile deleted (its endpoint
    removed), settled by another worker, or never leased must neither fail the group nor change
    that delivery."""
    from datetime import UTC, datetime

    from argus_webhooks import queries

    _owner, org, _token, created, _ = await endpoint(webhooks)
    org_id, endpoint_id = uuid.UUID(org), uuid.UUID(created["id"])
    await admin.execute("update webhooks.endpoints set failing_since = now() where id = $1",
                        endpoint_id)
    ids = {name: uuid.uuid4() for name in ("leased", "deleted", "settled", "pending")}
    for name, status in (("leased", "in_flight"), ("deleted", "in_flight"),
                         ("settled", "succeeded"), ("pending", "pending")):
        await admin.execute(
            "insert into webhooks.deliveries (org_id, id, endpoint_id, event_id, event_type,"
            " payload, status, attempts, lease_until, next_attempt_at) values ($1, $2, $3,"
            " gen_random_uuid(), 'x.y', '\\x7b7d', $4, 1, now() + interval '1 hour',"
            " now() + interval '1 hour')", org_id, ids[name], endpoint_id, status)
    await admin.execute("delete from webhooks.deliveries where id = $1", ids["deleted"])
    now = datetime.now(UTC)
    attempts = [{"org_id": org_id, "delivery_id": ids[name], "n": 1, "started_at": now,
                 "status_code": 200, "latency_ms": 3, "response_body": "ok"} for name in ids]
    async with webhooks.pool.acquire() as conn:
        await queries.succeeded(conn, attempts)
    rows = await admin.fetch(
        "select id, status, delivered_at is not null as delivered,"
        " (select count(*) from webhooks.attempts a where a.delivery_id = d.id) as logged"
        " from webhooks.deliveries d where endpoint_id = $1 and id = any($2::uuid[])",
        endpoint_id, list(ids.values()))
    found = {r["id"]: (r["status"], r["delivered"], r["logged"]) for r in rows}
    assert found == {ids["leased"]: ("succeeded", True, 1),
                     ids["settled"]: ("succeeded", False, 0),
                     ids["pending"]: ("pending", False, 0)}
    assert await admin.fetchval("select failing_since from webhooks.endpoints where id = $1",
                                endpoint_id) is None
