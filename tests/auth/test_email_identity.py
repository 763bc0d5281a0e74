"""One address, one account: every spelling of an email that argus_shared.emails calls the same
(case, fullwidth forms, decomposed accents, a Unicode or an A-label domain) is one account for
sign-up, login, lockout, reset, email change and the rate limits; invisible and control
characters are refused (422) and write nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from argus_auth import accounts
from support.auth_service import PASSWORD, AuthService


def tag() -> str:
    return uuid.uuid4().hex[:10]


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def users_with(service: AuthService, email: str) -> list[Any]:
    async with service.auth.pool.acquire() as conn:
        return await conn.fetch("select id from users where email = $1", email)


def spellings() -> list[tuple[str, list[str]]]:
    """(normal form, other spellings of it)."""
    t = tag()
    return [
        (f"a{t}@example.com", [f"A{t.upper()}@EXAMPLE.COM", fullwidth(f"a{t}") + "@example.com",
                               fullwidth(f"A{t}@example.com")]),
        (f"\u00e9{t}@example.com", [f"e\u0301{t}@example.com", f"E\u0301{t.upper()}@Example.com"]),
        (f"m{t}@xn--mnchen-3ya.de", [f"m{t}@m\u00fcnchen.de", f"M{t}@M\u00dcNCHEN.DE"]),
    ]


@pytest.mark.parametrize("case", range(3))
async def test_every_spelling_of_an_address_is_one_account(service: AuthService,
                                                           case: int) -> None:
    normal, others = spellings()[case]
    first, *rest = others
    assert (await service.post("/signup", {"email": first, "password": PASSWORD}))[0] == 202
    token = service.token_from_mail(normal)  # mail goes to the normal form
    assert (await service.post("/verify-email", {"token": token}))[0] == 200
    for spelling in [normal, *rest]:
        status, _, _ = await service.post("/signup", {"email": spelling, "password": PASSWORD})
        assert status == 202
    assert len(await users_with(service, normal)) == 1
    assert sum("already has an account" in m for m in service.mail_to(normal)) == len(rest) + 1
    ids = set()
    for spelling in [normal, *others]:
        status, tokens, _ = await service.post("/login", {"email": spelling,
                                                          "password": PASSWORD})
        assert status == 200, (spelling, tokens)
        ids.add((await service.call("GET", "/me", tokens["access_token"]))[1]["id"])
    assert len(ids) == 1


async def test_a_reset_asked_under_another_spelling_reaches_the_account(
    service: AuthService
) -> None:
    t = tag()
    email = await service.signed_up(f"r{t}@example.com")
    assert (await service.post("/password/forgot", {"email": fullwidth(f"R{t}") +
                                                    "@EXAMPLE.com"}))[0] == 202
    token = service.token_from_mail(email)
    status, _, _ = await service.post("/password/reset", {"token": token,
                                                          "new_password": "a new password 1"})
    assert status == 200
    assert (await service.post("/login", {"email": email,
                                          "password": "a new password 1"}))[0] == 200


@pytest.mark.parametrize("spelling", [
    "a{t}@example.com\n", " a{t}@example.com", "a{t}\u200b@example.com", "a\u200d{t}@example.com",
    "a{t}\u2060@example.com", "\ufeffa{t}@example.com", "\u202ea{t}@example.com",
    "a{t}@exam\u200bple.com", "a{t}\x07@example.com",
])
async def test_invisible_and_control_characters_are_refused_everywhere(
    service: AuthService, spelling: str
) -> None:
    address = spelling.format(t=tag())
    before = await users_with(service, address)
    for path, body in (("/signup", {"password": PASSWORD}), ("/login", {"password": PASSWORD}),
                       ("/password/forgot", {})):
        status, problem, response = await service.post(path, {"email": address, **body})
        assert status == 422, (path, problem)
        assert response.content_type == "application/problem+json"
    assert await users_with(service, address) == before
    assert not list(service.mailbox.glob("*.eml"))  # nothing queued, nothing sent


async def test_an_email_change_takes_the_normal_form_and_spots_a_taken_address(
    service: AuthService
) -> None:
    t = tag()
    taken = await service.signed_up(f"taken{t}@example.com")
    _, tokens = await service.logged_in()
    bearer = tokens["access_token"]
    status, _, _ = await service.post("/email/change", {"new_email": f"TAKEN{t}@Example.COM"},
                                      token=bearer)
    assert status == 202
    assert not any("Confirm" in m for m in service.mail_to(taken))  # already an account's
    new = f"n\u00e9{t}@m\u00fcnchen.de"
    status, _, _ = await service.post("/email/change", {"new_email": new.upper()}, token=bearer)
    assert status == 202
    normal = f"n\u00e9{t}@xn--mnchen-3ya.de"
    token = service.token_from_mail(normal)
    assert (await service.post("/email/confirm", {"token": token}))[0] == 200
    assert (await service.post("/login", {"email": f"N\u00c9{t}@M\u00dcNCHEN.DE",
                                          "password": PASSWORD}))[0] == 200


async def test_lockout_counts_every_spelling_as_one_email(service: AuthService) -> None:
    t = tag()
    email = await service.signed_up(f"l{t}@example.com")
    variants = [email, email.upper(), fullwidth(f"l{t}") + "@example.com",
                f"L{t}@EXAMPLE.COM", email]
    for spelling in variants:
        assert (await service.post("/login", {"email": spelling, "password": "wrong-1"}))[0] == 401
    status, problem, _ = await service.post("/login", {"email": email, "password": PASSWORD})
    assert status == 429 and problem["title"] == "Locked"


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot"])
async def test_no_spelling_of_an_email_gets_past_its_rate_limit(
    make_auth_service: Callable[..., Any], path: str
) -> None:
    """The per-account limit (3 a minute here) is keyed on the normal form: once it is spent,
    no spelling of the same address gets through (a trailing newline used to)."""
    service = await make_auth_service(account_limit_per_minute=3, ip_limit_per_minute=1000)
    t = tag()
    email = f"k{t}@example.com"
    body = {"password": "wrong password"} if path != "/password/forgot" else {}
    for _ in range(3):
        assert (await service.post(path, {"email": email, **body}))[0] in (202, 401)
    for spelling in [email.upper(), f"{email}\n", f"{email}\r\n", f" {email}",
                     fullwidth(f"k{t}") + "@example.com", f"K{t}@EXAMPLE.COM",
                     f"k{t}@EXAMPLE.com", fullwidth(email)]:
        status, problem, _ = await service.post(path, {"email": spelling, **body})
        assert status in (422, 429), (spelling, status, problem)
        if status == 429:
            assert problem["title"] != "Locked"  # the rate limit, not the login lockout


async def test_stored_emails_are_rewritten_in_their_normal_form(service: AuthService) -> None:
    t = tag()
    rows = {  # stored text -> expected afterwards (None: left, and listed for a person)
        f"stra\u00dfe{t}@example.com": f"strasse{t}@example.com",
        f"e\u0301{t}@example.com": f"\u00e9{t}@example.com",
        f"ok{t}@example.com": f"ok{t}@example.com",
        f"a..b{t}@example.com": None,
        f"\uff43{t}@example.com": None,  # fullwidth c, but plain c{t} is another account
        f"c{t}@example.com": f"c{t}@example.com",
    }
    async with service.auth.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            ids = {}
            for stored in rows:
                ids[stored] = uuid.uuid4()
                await conn.execute("insert into users (id, email, password_hash) values"
                                   " ($1, $2, 'x')", ids[stored], stored)
            rewritten, problems = await accounts.normalise_stored_emails(conn)
            for stored, expected in rows.items():
                now = await conn.fetchval("select email from users where id = $1", ids[stored])
                assert now == (expected or stored)
                assert any(str(ids[stored]) in p for p in problems) == (expected is None)
            assert rewritten >= 2
            assert not any(stored in p for p in problems for stored in rows)  # ids only
        finally:
            await transaction.rollback()
