"""Members are listed (and exported) with their email as it is now: the org's creator too, and
a member who changed their address shows the new one."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid

from support.suite import Suite


async def emails_listed(suite: Suite, org: str, token: str) -> dict[str, str | None]:
    status, members = await suite.call("GET", f"/orgs/{org}/members", token)
    assert status == 200, members
    return {m["user_id"]: m["email"] for m in members}


async def test_the_creator_is_listed_and_exported_with_their_email(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    assert (await emails_listed(suite, org, owner.token)) == {owner.id: owner.email}
    status, text = await suite.call("GET", f"/orgs/{org}/exports/members.csv", owner.token)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["user_id"], r["email"]) for r in rows] == [(owner.id, owner.email)]


async def test_a_changed_email_reaches_every_membership(suite: Suite) -> None:
    owner = await suite.user()
    first = await suite.org(owner)
    member = await suite.member(first, owner, "member")
    second = await suite.org(owner)
    new_email = f"moved{uuid.uuid4().hex[:8]}@example.com"
    status, _, _ = await suite.auth.post("/email/change", {"new_email": new_email},
                                         token=owner.plain)
    assert status == 202
    await suite.auth.settled()
    status, _, _ = await suite.auth.post("/email/confirm",
                                         {"token": suite.auth.token_from_mail(new_email)})
    assert status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = [(await emails_listed(suite, org, await suite.switch(owner, org)))[owner.id]
                  for org in (first, second)]
        if listed == [new_email, new_email]:
            break
        await asyncio.sleep(0.1)
    assert listed == [new_email, new_email]
    assert (await emails_listed(suite, first, member.token))[member.id] == member.email
