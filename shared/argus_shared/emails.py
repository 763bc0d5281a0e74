"""The one definition of "the same email address", for every service that compares emails
(auth's accounts, lockouts and rate limits; tenant-api's invitations).

The normal form of an address, which is what is stored, looked up, rate-limited and mailed to:

1. Refused outright when it contains any control (Cc), format (Cf: zero-width space, joiners
   and non-joiners, word joiner, BOM, every bidi control), unassigned (Cn), private-use (Co) or
   surrogate (Cs) code point, or any separator (Zs, Zl, Zp: every space, NBSP, line and
   paragraph separators), anywhere, including a trailing newline. Nothing is stripped.
2. NFKC over the whole address: the fullwidth letters and at sign (U+FF41, U+FF20, ...)
   are plain `a`, `@`, ...; `e` + combining acute is the precomposed `é`; ligatures and other
   compatibility forms become their plain letters.
3. The local part (before the last `@`) is case-folded (full Unicode case folding, then NFKC
   again: `A` is `a`, `ß` is `ss`, final sigma is sigma). Providers treat local parts
   case-insensitively in practice, and Argus always lower-cased them.
4. The domain goes through IDNA 2008 with UTS #46 mapping (non-transitional: `ß` stays `ß` in
   a domain) and is kept as its ASCII (A-label) form, so `münchen.de`, `MÜNCHEN.DE` and
   `xn--mnchen-3ya.de` are one domain, stored as `xn--mnchen-3ya.de`.
5. The result must be a valid unquoted address (email-validator's syntax rules: dot-atom
   local part, no quoted local parts, no IP-literal domains, a domain with a dot that ends in
   a letter and is not a special-use name such as `.local`, `.test` or `.invalid`), at most 64
   octets before the `@` and 254 in all (UTF-8).

For a lower-case ASCII address that is valid, every step is the identity: such an address is
already its own normal form. No step looks anything up (no DNS: deliverability is not
checked)."""

from __future__ import annotations

import unicodedata
from typing import Annotated

import msgspec
from email_validator import EmailNotValidError, validate_email

from argus_shared.errors import Problem

MAX_OCTETS = 254
MAX_LOCAL_OCTETS = 64
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp"})
# what a request body's email field must look like before `normalise` judges it: no spaces
# or control characters, at most 254 characters (the rest, Unicode domains included, is for
# `normalise`); `$(?!\n)` because Python's `$` also matches before a final newline
TEXT_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]+$(?!\n)"
EmailText = Annotated[str, msgspec.Meta(
    min_length=3, max_length=MAX_OCTETS, pattern=TEXT_PATTERN,
    description="an email address (Unicode domains welcome), taken in its normal form: NFKC, "
                "local part case-folded, domain IDNA-encoded; zero-width, bidi and other "
                "invisible characters are refused")]
"""A request body's email field: a first check, then `required` gives the normal form."""


class EmailRefused(ValueError):
    """The text is not an address Argus accepts; the message says why (safe to show)."""


def fold_local(local: str) -> str:
    """The local part's caseless form (NFKC, full case folding, NFKC)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", local).casefold())


def normalise(raw: str) -> str:
    """The normal form of `raw`, or EmailRefused."""
    _refuse_unsafe(raw)
    text = unicodedata.normalize("NFKC", raw)
    _refuse_unsafe(text)
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise EmailRefused("an email address needs a part before and after the @")
    try:
        checked = validate_email(
            f"{fold_local(local)}@{domain}", check_deliverability=False, allow_smtputf8=True,
            allow_quoted_local=False, allow_domain_literal=False, allow_display_name=False,
            allow_empty_local=False, globally_deliverable=True, test_environment=False,
        )
    except EmailNotValidError as exc:
        raise EmailRefused(str(exc)) from None
    if len(checked.local_part.encode()) > MAX_LOCAL_OCTETS:
        raise EmailRefused(f"the part before the @ is at most {MAX_LOCAL_OCTETS} octets")
    normal = f"{checked.local_part}@{checked.ascii_domain}"
    if len(normal.encode()) > MAX_OCTETS:
        raise EmailRefused(f"an email address is at most {MAX_OCTETS} octets")
    return normal


def required(raw: str, field: str = "email") -> str:
    """`normalise` for a request body: a refused address is a 422 naming the field."""
    try:
        return normalise(raw)
    except EmailRefused as exc:
        raise Problem(422, f"{exc} - at `$.{field}`", title="Invalid request body") from None


def same(a: str | None, b: str | None) -> bool:
    """Whether two addresses are the same one (an address that is refused is nobody's)."""
    if a is None or b is None:
        return False
    try:
        return normalise(a) == normalise(b)
    except EmailRefused:
        return False


def _refuse_unsafe(text: str) -> None:
    for char in text:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            name = unicodedata.name(char, "") or f"category {unicodedata.category(char)}"
            raise EmailRefused(f"an email address cannot contain U+{ord(char):04X} ({name})")
