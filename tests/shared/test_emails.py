"""The one normal form of an email address (argus_shared.emails): which spellings are one address,
which are refused, and that deciding it looks nothing up."""

from __future__ import annotations

import socket
import unicodedata
from typing import Any

import pytest

from argus_shared import emails
from argus_shared.emails import EmailRefused, fold_local, normalise

SAME = [
    # (spelling, normal form)
    ("A@X.COM", "a@x.com"),
    ("Alice.Smith@Example.COM", "alice.smith@example.com"),
    ("\uff41@x.com", "a@x.com"),  # fullwidth a
    ("\uff41\uff20\uff58.com", "a@x.com"),  # fullwidth a, @ and x
    ("e\u0301@x.com", "\u00e9@x.com"),  # e + combining acute = precomposed e-acute
    ("\u00c9@x.com", "\u00e9@x.com"),  # capital E-acute
    ("E\u0301@x.com", "\u00e9@x.com"),
    ("\ufb01@x.com", "fi@x.com"),  # the fi ligature
    ("stra\u00dfe@x.com", "strasse@x.com"),  # full case folding: sharp s is ss
    ("a@m\u00fcnchen.de", "a@xn--mnchen-3ya.de"),  # IDNA: the domain's A-label
    ("a@M\u00dcNCHEN.DE", "a@xn--mnchen-3ya.de"),
    ("a@xn--mnchen-3ya.de", "a@xn--mnchen-3ya.de"),
    ("a@XN--MNCHEN-3YA.DE", "a@xn--mnchen-3ya.de"),
    ("a@stra\u00dfe.de", "a@xn--strae-oqa.de"),  # non-transitional: sharp s kept in a domain
    ("a@x\u3002com", "a@x.com"),  # ideographic full stop separates labels
    ("user+tag@example.com", "user+tag@example.com"),
]

REFUSED = [
    "a@x.com\n",  # trailing newline
    "a@x.com\r\n",
    " a@x.com",
    "a@x.com ",
    "a\u00a0b@x.com",  # no-break space
    "a\u200b@x.com",  # zero-width space
    "a\u200c@x.com",  # zero-width non-joiner
    "a\u200d@x.com",  # zero-width joiner
    "a\u2060@x.com",  # word joiner
    "\ufeffa@x.com",  # byte order mark
    "\u202ea@x.com",  # right-to-left override
    "a\u2066b@x.com",  # left-to-right isolate
    "a\u200e@x.com",  # left-to-right mark
    "a@x\u200b.com",  # zero-width space in the domain
    "a\x00@x.com",
    "a\x1b@x.com",
    "a\u2028@x.com",  # line separator
    "a\ue000@x.com",  # private use
    "a@b",  # no dot in the domain
    "a..b@x.com",
    ".a@x.com",
    '"a b"@x.com',
    "a@[127.0.0.1]",
    "a@foo.local",
    "a@foo.test",
    "@x.com",
    "a@",
    "a",
    "x" * 65 + "@x.com",
    "a@" + "b" * 64 + ".com",  # a label longer than 63
]


@pytest.mark.parametrize(("spelling", "normal"), SAME)
def test_spellings_of_one_address_have_one_normal_form(spelling: str, normal: str) -> None:
    assert normalise(spelling) == normal
    assert normalise(normal) == normal  # the normal form is its own normal form


@pytest.mark.parametrize("spelling", REFUSED)
def test_invisible_control_and_malformed_addresses_are_refused(spelling: str) -> None:
    with pytest.raises(EmailRefused):
        normalise(spelling)


def test_a_refusal_names_the_character() -> None:
    with pytest.raises(EmailRefused, match="U\\+200B"):
        normalise("a\u200b@x.com")


def test_lower_case_ascii_addresses_are_already_normal() -> None:
    """What sign-up stored before (lower-cased ASCII) needs no migration."""
    for stored in ("a@x.com", "first.last+tag@mail.example.org", "o'brien@x.co.uk",
                   "x_y-z@sub.domain.example", "xn--ls8h@xn--mnchen-3ya.de"):
        assert normalise(stored) == stored


def test_the_local_part_fold_is_idempotent_for_every_code_point() -> None:
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in emails.REFUSED_CATEGORIES:
            continue
        folded = fold_local(char)
        assert fold_local(folded) == folded, hex(code)


def test_the_normal_form_is_at_most_254_octets() -> None:
    local = "\u00e9" * 32  # 64 octets
    domain = ".".join(["a" * 60] * 3) + ".com"  # 187
    assert len(normalise(f"{local}@{domain}").encode()) <= 254
    with pytest.raises(EmailRefused):
        normalise(f"{local}@{'b' * 50}.{domain}")


def test_normalising_looks_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an email normalisation went to the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "gethostbyname", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    import dns.resolver

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", no_network)
    assert normalise("someone@m\u00fcnchen.de") == "someone@xn--mnchen-3ya.de"
    assert normalise("someone@gmail.com") == "someone@gmail.com"


def test_same_compares_normal_forms_and_a_refused_address_is_nobody() -> None:
    assert emails.same("A@X.COM", "a@x.com")
    assert emails.same("a@m\u00fcnchen.de", "a@xn--mnchen-3ya.de")
    assert not emails.same("a@x.com", "b@x.com")
    assert not emails.same("a\u200b@x.com", "a\u200b@x.com")
    assert not emails.same(None, "a@x.com")
