"""What auth mails (the sender, SMTP or the development mailbox, is `argus_shared.mail`), each
link opening a page of `argus_auth.pages` through the gateway at `ARGUS_PUBLIC_URL`."""

from __future__ import annotations

import textwrap

from argus_auth import pages
from argus_shared.mail import Letter

# what auth mails ---------------------------------------------------------------------------------
# Each token mail says what its link does and when it expires, and keeps a `Token:` line for
# clients of the API.

def _token_mail(lead: str, link: str, ttl: int, otherwise: str, route: str, token: str) -> str:
    expires = f"The link works once and expires in {pages.expiry(ttl)}. {otherwise}"
    return (f"{textwrap.fill(lead, 72)}\n\n{link}\n\n{textwrap.fill(expires, 72)}\n\n"
            f"Or send this token to {route}:\nToken: {token}\n")


def verification(public_url: str, token: str, ttl: int) -> Letter:
    return "Verify your email", _token_mail(
        "Open this link to verify your email address and finish signing up for Argus:",
        pages.link(public_url, pages.VERIFY_PAGE, token), ttl,
        "If you did not sign up, ignore this mail: no account is activated without it.",
        "POST /auth/verify-email", token)


def password_reset(public_url: str, token: str, ttl: int) -> Letter:
    return "Reset your password", _token_mail(
        "Reset your password: open this link to choose a new one (every session of the account "
        "then ends):", pages.link(public_url, pages.RESET_PAGE, token), ttl,
        "If you did not ask for it, ignore this mail: your password stays as it is.",
        "POST /auth/password/reset (with new_password)", token)


def email_change(public_url: str, token: str, ttl: int) -> Letter:
    return "Confirm your new email", _token_mail(
        "Confirm your new email address: open this link to make it your Argus account's "
        "address:", pages.link(public_url, pages.CONFIRM_PAGE, token), ttl,
        "If you did not ask for it, ignore this mail: the account keeps its address.",
        "POST /auth/email/confirm", token)


def sign_up_attempt() -> Letter:
    return "Sign-up attempt", textwrap.fill(
        "Someone tried to sign up with this email, which already has an account. If it was "
        "you, log in or reset your password; if not, ignore this mail.", 72) + "\n"
