"""Sign-up, verification, login, lockout and enumeration resistance, over HTTP."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from support.auth_service import PASSWORD, AuthService
from support.web import capture


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


async def count_users(service: AuthService) -> int:
    async with service.auth.pool.acquire() as conn:
        return await conn.fetchval("select count(*) from users")


async def test_sign_up_verify_and_log_in(service: AuthService) -> None:
    email = f"new{uuid.uuid4().hex[:8]}@example.com"
    status, body, _ = await service.post("/signup", {"email": email, "password": PASSWORD})
    assert (status, body) == (202, {"status": "accepted"})
    status, body, _ = await service.post("/login", {"email": email, "password": PASSWORD})
    assert status == 403  # not verified yet
    token = service.token_from_mail(email)
    assert (await service.post("/verify-email", {"token": token}))[0] == 200
    assert (await service.post("/verify-email", {"token": token}))[0] == 400  # single use
    status, tokens, response = await service.post("/login", {"email": email,
                                                            "password": PASSWORD})
    assert status == 200
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("art_")
    cookies = response.headers.getall("Set-Cookie")
    assert any(c.startswith("__Host-argus_access=") and "HttpOnly" in c and "SameSite=Lax" in c
               and "Path=/" in c for c in cookies)
    status, me = await service.call("GET", "/me", tokens["access_token"])
    assert status == 200 and me["email"] == email


async def test_verification_tokens_expire_after_a_day(service: AuthService) -> None:
    email = f"late{uuid.uuid4().hex[:8]}@example.com"
    await service.post("/signup", {"email": email, "password": PASSWORD})
    service.clock.advance(24 * 3600 + 1)
    status, _, _ = await service.post("/verify-email", {"token": service.token_from_mail(email)})
    assert status == 400


async def test_unknown_email_and_wrong_password_look_the_same(service: AuthService) -> None:
    email = await service.signed_up()
    wrong = await service.post("/login", {"email": email, "password": "not the password"})
    unknown = await service.post("/login", {"email": f"x{email}", "password": "not the password"})
    assert wrong[0] == unknown[0] == 401
    assert without_request_id(wrong[1]) == without_request_id(unknown[1])
    assert set(wrong[2].headers) - {"Date", "X-Request-Id", "Content-Length"} == \
        set(unknown[2].headers) - {"Date", "X-Request-Id", "Content-Length"}


async def test_sign_up_and_reset_answer_the_same_for_known_and_unknown_emails(
    service: AuthService
) -> None:
    known = await service.signed_up()
    unknown = f"nobody{uuid.uuid4().hex[:8]}@example.com"
    for path, body in (("/signup", {"password": PASSWORD}), ("/password/forgot", {})):
        a = await service.post(path, {"email": known, **body})
        b = await service.post(path, {"email": unknown, **body})
        assert (a[0], without_request_id(a[1])) == (b[0], without_request_id(b[1])), path
    # the owner of the known address is told someone tried; no account is created twice
    assert any("already has an account" in m for m in service.mail_to(known))


async def test_lockout_backs_off_from_10_seconds_to_a_5_minute_cap(service: AuthService) -> None:
    email = await service.signed_up()
    for _ in range(4):
        assert (await service.post("/login", {"email": email, "password": "wrong-1"}))[0] == 401
    expected = [10, 20, 40, 80, 160, 300, 300]
    for delay in expected:
        status, _, _ = await service.post("/login", {"email": email, "password": "wrong-1"})
        assert status == 401  # this failure sets the lock
        status, _, response = await service.post("/login", {"email": email,
                                                             "password": PASSWORD})
        assert status == 429  # even the right password waits
        assert int(response.headers["Retry-After"]) == delay
        service.clock.advance(delay)
    status, _, _ = await service.post("/login", {"email": email, "password": PASSWORD})
    assert status == 200
    # success reset the count: four new failures do not lock
    for _ in range(4):
        await service.post("/login", {"email": email, "password": "wrong-1"})
    assert (await service.post("/login", {"email": email, "password": PASSWORD}))[0] == 200


async def test_unknown_emails_lock_out_the_same_way(service: AuthService) -> None:
    ghost = f"ghost{uuid.uuid4().hex[:8]}@example.com"
    for _ in range(5):
        await service.post("/login", {"email": ghost, "password": "whatever-1"})
    status, _, response = await service.post("/login", {"email": ghost, "password": "x" * 9})
    assert status == 429 and response.headers["Retry-After"] == "10"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@b", "password": PASSWORD},
        {"email": "ok@example.com", "password": "short"},
        {"email": "ok@example.com", "password": "x" * 129},
        {"email": "ok@example.com", "password": PASSWORD, "is_admin": True},
        {"email": "ok@example.com"},
        {"email": ["ok@example.com"], "password": PASSWORD},
    ],
)
async def test_bad_sign_ups_are_refused_and_write_nothing(
    service: AuthService, body: dict[str, Any]
) -> None:
    before = await count_users(service)
    status, _, response = await service.post("/signup", body)
    assert status == 422
    assert response.content_type == "application/problem+json"
    assert await count_users(service) == before


async def test_a_login_attempt_is_an_event_with_its_reason(service: AuthService) -> None:
    email = await service.signed_up()
    await service.post("/login", {"email": email, "password": "wrong-password"})
    async with service.auth.pool.acquire() as conn:
        rows = await conn.fetch(
            "select subject, payload from outbox where subject like 'argus.events.auth.auth.login%'"
            " order by seq desc limit 1")
    assert rows[0]["subject"] == "argus.events.auth.auth.login.failed"
    assert b'"reason":"bad_password"' in rows[0]["payload"]


async def test_hashes_are_argon2id_and_rehashed_when_parameters_change(
    make_auth_service: Callable[..., Any]
) -> None:
    cheap = await make_auth_service()
    email = await cheap.signed_up()
    async with cheap.auth.pool.acquire() as conn:
        before = await conn.fetchval("select password_hash from users where email = $1", email)
    assert before.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    stronger = await make_auth_service(argon2_memory_kib=2048, argon2_time_cost=2)
    status, _, _ = await stronger.post("/login", {"email": email, "password": PASSWORD})
    assert status == 200
    async with stronger.auth.pool.acquire() as conn:
        after = await conn.fetchval("select password_hash from users where email = $1", email)
    assert after.startswith("$argon2id$v=19$m=2048,t=2,p=1$")


def range_server(breached: str, seen: list[str]) -> web.Application:
    digest = hashlib.sha1(breached.encode(), usedforsecurity=False).hexdigest().upper()
    async def handler(request: web.Request) -> web.Response:
        seen.append(request.match_info["prefix"])
        lines = ["0" * 35 + ":0"]  # padding rows carry a zero count
        if request.match_info["prefix"] == digest[:5]:
            lines.append(f"{digest[5:]}:4242")
        return web.Response(text="\r\n".join(lines))

    app = web.Application()
    app.router.add_get("/range/{prefix}", handler)
    return app


async def test_breached_passwords_are_refused_via_k_anonymity(
    make_auth_service: Callable[..., Any]
) -> None:
    seen: list[str] = []
    fake = TestServer(range_server("password1234", seen))
    await fake.start_server()
    try:
        service = await make_auth_service(hibp_url=str(fake.make_url("/range/")))
        email = f"b{uuid.uuid4().hex[:8]}@example.com"
        status, problem, _ = await service.post("/signup", {"email": email,
                                                            "password": "password1234"})
        assert status == 422 and "breach" in problem["detail"]
        assert seen and all(len(prefix) == 5 for prefix in seen)  # only 5 hex chars leave
        status, _, _ = await service.post("/signup", {"email": email, "password": PASSWORD})
        assert status == 202
    finally:
        await fake.close()


async def test_an_unreachable_breach_check_fails_open_with_a_warning(
    make_auth_service: Callable[..., Any]
) -> None:
    service = await make_auth_service(hibp_url="http://127.0.0.1:9/range/", hibp_timeout=1.0)
    async with capture("argus.auth.passwords") as logged:
        status, _, _ = await service.post(
            "/signup", {"email": f"o{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD})
    assert status == 202
    assert any(rec.levelname == "WARNING" for rec in logged.records)
