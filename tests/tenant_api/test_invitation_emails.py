"""Invitations compare emails in the one normal form of argus_shared.emails: any spelling of the
invitee's address binds the invitation to that address, and nobody else's account accepts it."""

from __future__ import annotations

from support.suite import Suite


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def test_an_invitation_under_another_spelling_is_the_invitees(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    invitee, stranger = await suite.user(), await suite.user()
    local, domain = invitee.email.split("@")
    spelling = fullwidth(local.upper()) + "@" + domain.upper()
    status, invited = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                       {"email": spelling, "role": "member"})
    assert status == 201, invited
    assert invited["invitation"]["email"] == invitee.email  # stored in the normal form
    token = {"token": invited["token"]}
    assert (await suite.call("POST", "/invitations/accept", stranger.token, token))[0] == 403
    assert (await suite.call("POST", "/invitations/accept", invitee.token, token))[0] == 200


async def test_an_invitation_to_an_address_with_invisible_characters_is_refused(
    suite: Suite
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    for email in ("a\u200b@example.com", "a@example.com\n", "\u202ea@example.com"):
        status, problem = await suite.call("POST", f"/orgs/{org}/invitations", owner.token,
                                           {"email": email, "role": "member"})
        assert status == 422, (email, problem)
    _, listed = await suite.call("GET", f"/orgs/{org}/invitations", owner.token)
    assert listed == []
