"""Every mail auth sends with a token links to `<ARGUS_PUBLIC_URL>/auth/pages/<page>#<token>`, a
page auth serves (HTML, a strict CSP, one same-origin script), and the POST that script makes
with the token does what the mail says; each mail says when its link expires."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from argus_auth import pages, schemas
from support.auth_service import PASSWORD, AuthService
from support.pages import link_in, on_service, open_page

PUBLIC_URL = "http://127.0.0.1:18080"  # a gateway elsewhere: the links must name it


@pytest.fixture
async def service(make_auth_service: Callable[..., Any]) -> AuthService:
    return await make_auth_service(public_url=PUBLIC_URL)


def token_line(body: str) -> str:
    tokens = [line.removeprefix("Token: ") for line in body.splitlines()
              if line.startswith("Token: ")]
    assert len(tokens) == 1, body
    return tokens[0]


def checked_link(body: str, page: str, expires: str) -> str:
    """The mail's link, checked: the public URL, the page, the token in the fragment."""
    link = link_in(body)
    assert link == f"{PUBLIC_URL}/auth/pages/{page}#{token_line(body)}"
    assert f"expires in {expires}" in body
    return link


async def test_the_verification_mail_opens_a_page_that_verifies(service: AuthService) -> None:
    email = f"v{uuid.uuid4().hex[:10]}@example.com"
    assert (await service.post("/signup", {"email": email, "password": PASSWORD}))[0] == 202
    body = service.mail_to(email)[-1]
    link = checked_link(body, "verify-email", "24 hours")
    page = await open_page(service.http, on_service(link, service.base))
    assert page.endpoint == service.url("/verify-email")
    assert "post({token})" in page.script  # the body below
    assert (await service.post("/login", {"email": email, "password": PASSWORD}))[0] == 403
    assert await page.post(service.http, {"token": token_line(body)}) == \
        (200, {"status": "verified"})
    assert (await service.post("/login", {"email": email, "password": PASSWORD}))[0] == 200
    status, problem = await page.post(service.http, {"token": token_line(body)})
    assert status == 400 and "used or expired" in problem["detail"]  # what the page shows


async def test_the_reset_mail_opens_a_form_that_resets(service: AuthService) -> None:
    email = await service.signed_up()
    assert (await service.post("/password/forgot", {"email": email}))[0] == 202
    body = service.mail_to(email)[-1]
    link = checked_link(body, "reset-password", "1 hour")
    page = await open_page(service.http, on_service(link, service.base))
    assert page.endpoint == service.url("/password/reset")
    assert "post({token, new_password: password})" in page.script
    rule = msgspec.inspect.type_info(schemas.Password)
    assert isinstance(rule, msgspec.inspect.StrType)
    inputs = re.findall(r"<input\b[^>]*>", page.html)
    assert len(inputs) == 2  # the new password, twice
    for field in inputs:
        assert f'minlength="{rule.min_length}"' in field and \
            f'maxlength="{rule.max_length}"' in field
        assert "name=" not in field  # without the script, a submit carries no password
    new = "a different long passphrase"
    assert await page.post(service.http, {"token": token_line(body), "new_password": new}) == \
        (200, {"status": "reset"})
    assert (await service.post("/login", {"email": email, "password": PASSWORD}))[0] == 401
    assert (await service.post("/login", {"email": email, "password": new}))[0] == 200


async def test_the_email_change_mail_opens_a_page_that_confirms(service: AuthService) -> None:
    _, tokens = await service.logged_in()
    new_email = f"n{uuid.uuid4().hex[:10]}@example.com"
    status, _, _ = await service.post("/email/change", {"new_email": new_email},
                                      token=tokens["access_token"])
    assert status == 202
    body = service.mail_to(new_email)[-1]
    link = checked_link(body, "confirm-email", "24 hours")
    page = await open_page(service.http, on_service(link, service.base))
    assert page.endpoint == service.url("/email/confirm")
    assert "post({token})" in page.script
    assert await page.post(service.http, {"token": token_line(body)}) == \
        (200, {"status": "changed"})
    status, me = await service.call("GET", "/me", tokens["access_token"])
    assert status == 200 and me["email"] == new_email


async def test_a_mail_tells_the_expiry_its_config_sets(
    make_auth_service: Callable[..., Any]
) -> None:
    service = await make_auth_service(public_url=PUBLIC_URL, reset_ttl=1800)
    email = await service.signed_up()
    await service.post("/password/forgot", {"email": email})
    assert "expires in 30 minutes" in service.mail_to(email)[-1]


@pytest.mark.parametrize(("seconds", "text"), [(24 * 3600, "24 hours"), (3600, "1 hour"),
                                               (1800, "30 minutes"), (60, "1 minute")])
def test_expiry_reads_as_hours_or_minutes(seconds: int, text: str) -> None:
    assert pages.expiry(seconds) == text


async def test_the_openapi_document_says_the_pages_are_html(service: AuthService) -> None:
    async with service.http.get(service.url("/openapi.json")) as response:
        spec = await response.json()
    for page, media_type in (("verify-email", "text/html"), ("token-link.js",
                             "text/javascript"), ("reset-password", "text/html"),
                             ("confirm-email", "text/html")):
        operation = spec["paths"][f"/pages/{page}"]["get"]
        assert list(operation["responses"]["200"]["content"]) == [media_type], page
        assert operation["security"] == [] and operation["tags"] == ["pages"]


async def test_a_page_answers_only_get(service: AuthService) -> None:
    async with service.http.post(service.url("/pages/verify-email"), data=b"x") as response:
        assert response.status == 405
        assert response.content_type == "application/problem+json"
