"""The pages auth's mail links open (the machinery is `argus_shared.pages`): plain HTML and one
small same-origin script each, under `/pages/` (behind the gateway, `/auth/pages/`).

A link is `<ARGUS_PUBLIC_URL>/auth/pages/<page>#<token>`: the token rides in the fragment, which
a browser never sends to a server (so it reaches no access log and no `Referer`); the page's
script reads it, takes it out of the address bar and POSTs it to the API route beside it."""

from __future__ import annotations

from argus_auth import SERVICE
from argus_shared import pages
from argus_shared.pages import expiry as expiry  # what auth's mails say of their links
from argus_shared.routing import Route

VERIFY_PAGE = "verify-email"
RESET_PAGE = "reset-password"
CONFIRM_PAGE = "confirm-email"

# the script each page loads (relative to itself): the two token links share one, told by
# the page's <main data-endpoint data-done data-failed> where to send the token and what to say
SCRIPTS = {VERIFY_PAGE: "token-link", CONFIRM_PAGE: "token-link", RESET_PAGE: RESET_PAGE}
SUMMARIES = {
    VERIFY_PAGE: "Page (HTML) the verification mail links to: verifies its token",
    RESET_PAGE: "Page (HTML) the reset mail links to: a new-password form",
    CONFIRM_PAGE: "Page (HTML) the email-change mail links to: confirms its token",
}


def link(public_url: str, page: str, token: str) -> str:
    """What a mail links to: the page through the gateway, the token in the fragment."""
    return pages.link(public_url, SERVICE, page, token)


def page_routes() -> list[Route]:
    return pages.page_routes("argus_auth", SUMMARIES, SCRIPTS)
