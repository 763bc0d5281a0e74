"""Malformed text against the real services (real PostgreSQL and NATS): NUL and other control
characters in every text field that reaches the database, bodies that are not UTF-8, headers
that are not UTF-8, broken webhook URLs and multipart file names. Each is a 4xx problem
document, and the refused request leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest

from support.audit_service import Audit
from support.auth_service import PASSWORD
from support.files_service import Files, stored_files
from support.suite import Suite, User
from support.webhooks_service import INBOUND, Webhooks

PROBLEM = "application/problem+json"
NUL_AND_CONTROLS = ["a\x00b", "a\nb", "trailing\n", "esc\x1b", "\u202eexe.txt"]


async def send(suite: Suite, method: str, url: str, token: str | None, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """`body` as JSON, or as the exact bytes when it is bytes."""
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with suite.http.request(method, url, data=data, headers=sent) as r:
        return r.status, r.content_type, await r.json(content_type=None)


def refused(answer: tuple[int, str, Any], status: int) -> bool:
    got, content_type, problem = answer
    return (got, content_type, problem["status"]) == (status, PROBLEM, status)


async def raw_request(base: str, head: bytes, body: bytes = b"") -> int:
    """Send bytes no client library would (a header that is not UTF-8); the status."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


# tenant-api ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    *({"name": name, "slug": "fine-slug"} for name in NUL_AND_CONTROLS),
    {"name": "fine", "slug": "acme\n"},
])
async def test_org_names_and_slugs_with_controls_are_422_and_create_nothing(
    suite: Suite, body: dict[str, str]
) -> None:
    owner = await suite.user()
    assert refused(await send(suite, "POST", f"{suite.tenant}/orgs", owner.token, body), 422)
    assert (await suite.call("GET", "/orgs", owner.token)) == (200, [])


async def test_a_body_that_is_not_utf8_is_400_on_every_json_route(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    for path, body in [("/orgs", b'{"name": "caf\xe9", "slug": "cafe"}'),
                       (f"/orgs/{org}/projects", b'{"name": "\xc0\xaf"}'),
                       (f"/orgs/{org}/projects", b'\xef\xbb\xbf{"name": "p"}'),
                       (f"/orgs/{org}/projects", b'{"name": "\\ud800"}'),
                       (f"/orgs/{org}/invitations", b'{"email": "\xed\xa0\x80@x.io"}')]:
        answer = await send(suite, "POST", f"{suite.tenant}{path}", owner.token, body)
        assert refused(answer, 400), (path, body, answer)
    _, orgs = await suite.call("GET", "/orgs", owner.token)
    assert [o["org_id"] for o in orgs] == [org]
    assert (await suite.call("GET", f"/orgs/{org}/projects", owner.token)) == (200, [])
    assert (await suite.call("GET", f"/orgs/{org}/invitations", owner.token)) == (200, [])


async def test_renaming_an_org_to_a_name_with_controls_is_422(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner, slug=f"keep-{uuid.uuid4().hex[:6]}")
    before = await suite.call("GET", f"/orgs/{org}", owner.token)
    for name in NUL_AND_CONTROLS:
        answer = await send(suite, "PATCH", f"{suite.tenant}/orgs/{org}", owner.token,
                            {"name": name})
        assert refused(answer, 422), answer
    assert await suite.call("GET", f"/orgs/{org}", owner.token) == before


async def test_project_names_and_invitation_emails_with_controls_are_422(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    for name in NUL_AND_CONTROLS:
        answer = await send(suite, "POST", f"{suite.tenant}/orgs/{org}/projects", owner.token,
                            {"name": name})
        assert refused(answer, 422), answer
    for email in ["a\x00b@example.com", "ab@example.com\n", "a\tb@example.com",
                  "a\u202eb@example.com", "ab@exam\x00ple.com"]:
        answer = await send(suite, "POST", f"{suite.tenant}/orgs/{org}/invitations",
                            owner.token, {"email": email, "role": "member"})
        assert refused(answer, 422), answer
    assert (await suite.call("GET", f"/orgs/{org}/projects", owner.token)) == (200, [])
    assert (await suite.call("GET", f"/orgs/{org}/invitations", owner.token)) == (200, [])


async def entries(suite: Suite, org: str, owner: User) -> list[Any]:
    status, page = await suite.call("GET", f"/orgs/{org}/wallet/entries", owner.token)
    assert status == 200, page
    return list(page["entries"])


async def test_a_deposit_description_with_controls_is_422_and_moves_nothing(
    suite: Suite
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    url = f"{suite.tenant}/orgs/{org}/wallet/deposits"
    for n, description in enumerate(["a\x00b", "bell\x07", "esc\x1b[2J", "c1\x9b"]):
        answer = await send(suite, "POST", url, owner.token,
                            {"amount_cents": 100, "description": description},
                            {"Idempotency-Key": f"k{n}"})
        assert refused(answer, 422), answer
    answer = await send(suite, "POST", url, owner.token, b'{"amount_cents": 1, "description": '
                        b'"\xff"}', {"Idempotency-Key": "k-bytes"})
    assert refused(answer, 400), answer
    assert await entries(suite, org, owner) == []
    multiline = "invoice 42\n\tpaid by card\r\n"
    status, _, moved = await send(suite, "POST", url, owner.token,
                                  {"amount_cents": 100, "description": multiline},
                                  {"Idempotency-Key": "k-ok"})
    assert status == 201, moved
    assert [e["description"] for e in await entries(suite, org, owner)] == [multiline]


async def test_an_idempotency_key_that_is_not_utf8_is_400_and_moves_nothing(
    suite: Suite
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    body = b'{"amount_cents": 100}'
    status = await raw_request(
        suite.tenant, f"POST /orgs/{org}/wallet/deposits HTTP/1.1\r\nHost: a\r\n"
        f"Authorization: Bearer {owner.token}\r\nContent-Type: application/json\r\n".encode()
        + b"Idempotency-Key: k\xff\xfe\r\n", body)
    assert status == 400
    assert await entries(suite, org, owner) == []


# auth ------------------------------------------------------------------------------------------

async def accounts_with(admin: asyncpg.Connection, marker: str) -> int:
    return int(await admin.fetchval(
        "select count(*) from auth.users where strpos(email, $1) > 0", marker))


async def test_a_sign_up_email_with_controls_is_422_and_creates_no_account(
    suite: Suite, admin: asyncpg.Connection
) -> None:
    marker = uuid.uuid4().hex
    for email in [f"a\x00{marker}@example.com", f"{marker}@example.com\n",
                  f"a\x1b{marker}@example.com", f"{marker}\u2028@example.com"]:
        answer = await send(suite, "POST", suite.auth.url("/signup"), None,
                            {"email": email, "password": PASSWORD})
        assert refused(answer, 422), answer
    answer = await send(suite, "POST", suite.auth.url("/signup"), None,
                        f'{{"email": "{marker}\xff@example.com", "password": "{PASSWORD}"}}'
                        .encode("latin-1"))
    assert refused(answer, 400), answer
    assert await accounts_with(admin, marker) == 0


async def test_a_login_whose_user_agent_is_not_utf8_is_400_and_starts_no_session(
    suite: Suite, admin: asyncpg.Connection
) -> None:
    owner = await suite.user()
    sessions = "select count(*) from auth.sessions where user_id = $1"
    before = await admin.fetchval(sessions, uuid.UUID(owner.id))
    body = msgspec.json.encode({"email": owner.email, "password": PASSWORD})
    status = await raw_request(suite.auth.base, b"POST /login HTTP/1.1\r\nHost: a\r\n"
                               b"Content-Type: application/json\r\nUser-Agent: \xff\xfe\r\n",
                               body)
    assert status == 400
    assert await admin.fetchval(sessions, uuid.UUID(owner.id)) == before


async def test_api_key_names_with_controls_are_422_and_issue_nothing(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    project = await suite.project(org, owner)
    token = await suite.switch(owner, org)
    url = suite.auth.url(f"/orgs/{org}/projects/{project}/api-keys")
    for name in NUL_AND_CONTROLS:
        answer = await send(suite, "POST", url, token, {"name": name, "scopes": ["files:read"]})
        assert refused(answer, 422), answer
    assert await suite.auth.call("GET", f"/orgs/{org}/projects/{project}/api-keys",
                                 token) == (200, [])


async def test_an_org_id_with_a_trailing_newline_is_422(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    answer = await send(suite, "POST", suite.auth.url("/orgs/switch"), owner.token,
                        {"org_id": f"{org}\n"})
    assert refused(answer, 422), answer


# audit -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "status"), [
    ("resource_type=%00", 422), ("actor=a%00", 422), ("resource_id=x%0D%0Ay", 422),
    ("action=a.b%0A", 422), ("cursor=1%0A", 422), ("resource_type=%FF", 400),
])
async def test_audit_filters_with_controls_or_not_utf8_are_refused(
    suite: Suite, audit: Audit, query: str, status: int
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    got, problem = await audit.get(f"/orgs/{org}/audit/events?{query}", token)
    assert (got, problem["status"]) == (status, status), problem


# webhooks --------------------------------------------------------------------------------------

BAD_URLS = ["http://[::1", "http://[x]/", "http://a\uff20127.0.0.1/", "http://[::1]:99999/",
            "http://a..b/hook", "http://1.2.3/hook", "http://127.0.0.1:9/hook\r\nX-Evil: 1",
            "http://127.0.0.1:9/ho ok", "http://127.0.0.1:9/hook\n", "http://127.0.0.1:9/\x00",
            "http://127.0.0.1:9/\t", "http://[fe80::1%25eth0]/", "http://exämple.com/"]


async def endpoints_of(webhooks: Webhooks, org: str, token: str) -> list[Any]:
    status, found = await webhooks.call("GET", f"/orgs/{org}/webhooks/endpoints", token)
    assert status == 200, found
    return list(found)


async def test_malformed_webhook_urls_are_422_and_create_no_endpoint(
    webhooks: Webhooks
) -> None:
    suite = webhooks.suite
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    url = f"{webhooks.base}/orgs/{org}/webhooks/endpoints"
    for bad in BAD_URLS:
        answer = await send(suite, "POST", url, token, {"url": bad, "event_types": ["*"]})
        assert refused(answer, 422), (bad, answer)
    assert await endpoints_of(webhooks, org, token) == []


async def test_an_endpoint_keeps_its_url_when_changed_to_a_malformed_one(
    webhooks: Webhooks
) -> None:
    suite = webhooks.suite
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    status, created = await webhooks.call("POST", f"/orgs/{org}/webhooks/endpoints", token,
                                          {"url": webhooks.receiver.url, "event_types": ["*"]})
    assert status == 201, created
    path = f"{webhooks.base}/orgs/{org}/webhooks/endpoints/{created['endpoint']['id']}"
    for bad in BAD_URLS:
        assert refused(await send(suite, "PATCH", path, token, {"url": bad}), 422), bad
    for description in ["a\x00b", "esc\x1b", "del\x7f"]:
        answer = await send(suite, "PATCH", path, token, {"description": description})
        assert refused(answer, 422), answer
    assert await endpoints_of(webhooks, org, token) == [created["endpoint"]]


async def test_webhook_descriptions_with_controls_are_422_but_may_span_lines(
    webhooks: Webhooks
) -> None:
    suite = webhooks.suite
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    url = f"{webhooks.base}/orgs/{org}/webhooks/endpoints"
    for description in ["a\x00b", "bell\x07", "c1\x85"]:
        answer = await send(suite, "POST", url, token, {
            "url": webhooks.receiver.url, "event_types": ["*"], "description": description})
        assert refused(answer, 422), answer
    assert await endpoints_of(webhooks, org, token) == []
    status, _, created = await send(suite, "POST", url, token, {
        "url": webhooks.receiver.url, "event_types": ["*"], "description": "ops\n\tteam"})
    assert status == 201 and created["endpoint"]["description"] == "ops\n\tteam"


def stripe_signed(body: bytes) -> dict[str, str]:
    at = int(time.time())
    secret = INBOUND["stripe"].secret
    signature = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={signature}", "Content-Type": "application/json"}


async def test_signed_inbound_webhooks_with_malformed_text_are_4xx_and_store_nothing(
    webhooks: Webhooks, admin: asyncpg.Connection
) -> None:
    count = "select count(*) from webhooks.inbound_events"
    before = await admin.fetchval(count)
    url = f"{webhooks.base}/webhooks/inbound/stripe"
    for body, status in [(b'{"id": "evt_\xff"}', 400), (b'\xef\xbb\xbf{"id": "evt_1"}', 400),
                         (b'{"id": "evt_\\u0000"}', 400), (b'{"id": "evt_\\ud800"}', 400),
                         (b'["evt_1"]', 422)]:
        async with webhooks.suite.http.post(url, data=body, headers=stripe_signed(body)) as r:
            assert (r.status, r.content_type) == (status, PROBLEM), body
    assert await admin.fetchval(count) == before


# files -----------------------------------------------------------------------------------------

def multipart(disposition: bytes) -> dict[str, Any]:
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; ' + disposition
            + b"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--XyZ--\r\n")
    return {"data": body, "headers": {"Content-Type": "multipart/form-data; boundary=XyZ"}}


# percent-encoded controls in `filename*` are refused as before (422, test_uploads); these are
# raw bytes in the part header, which aiohttp refuses or hands on undecoded
@pytest.mark.parametrize("disposition", [b'filename="a\x00b.txt"', b'filename="a\x1bb.txt"',
                                         b'filename="caf\xe9.txt"'])
async def test_multipart_file_names_with_raw_controls_or_not_utf8_are_400_and_store_nothing(
    files: Files, disposition: bytes
) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.upload(token, org, user.id, **multipart(disposition))
    assert reply.status == 400, reply.body
    assert reply.headers["Content-Type"] == PROBLEM
    listed = await files.request("GET", f"/objects/{org}/{user.id}", token)
    assert listed.json()["files"] == []
    assert stored_files(files.config.directory) == []


async def test_an_upload_name_in_the_query_that_is_not_utf8_is_400(files: Files) -> None:
    user, org, token = await files.member_of_new_org()
    reply = await files.request("POST", f"/objects/{org}/{user.id}?name=caf%E9.txt", token,
                                data=b"hello")  # was stored as "caf\ufffd.txt"
    assert (reply.status, reply.headers["Content-Type"]) == (400, PROBLEM), reply.body
    listed = await files.request("GET", f"/objects/{org}/{user.id}", token)
    assert listed.json()["files"] == []
