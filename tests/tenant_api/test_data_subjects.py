"""Data-subject requests: export my data, delete my account."""

from __future__ import annotations

import time
import uuid
from typing import Any

from support.suite import Suite

PASSWORD = "correct horse battery staple"


async def test_export_gathers_what_each_service_holds(suite: Suite) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    status, bundle = await suite.call("POST", "/me/export", owner.token)
    assert status == 200
    assert bundle["services"]["tenant-api"]["memberships"] == [
        {"org_id": org, "org": bundle["services"]["tenant-api"]["memberships"][0]["org"],
         "role": "owner"}]
    account = bundle["services"]["auth"]
    assert account["email"] == owner.email and account["sessions"]
    assert "password_hash" not in str(account) and "refresh" not in str(account)
    # services not built yet say so instead of being silently left out
    assert {m["service"] for m in bundle["missing"]} == {"audit", "webhooks", "files"}
    assert bundle["complete"] is False


async def test_deleting_an_account_needs_step_up(suite: Suite) -> None:
    suite.auth.clock.now = time.time() - 6 * 60
    user = await suite.user()
    suite.auth.clock.now = time.time()
    status, problem = await suite.call("DELETE", "/me", user.token)
    assert status == 401 and problem["title"] == "Step-up required"
    assert (await suite.auth.call("GET", "/me", user.token))[0] == 200


async def test_the_last_owner_must_hand_over_first(suite: Suite) -> None:
    owner = await suite.user()
    await suite.org(owner)
    status, problem = await suite.call("DELETE", "/me", owner.token)
    assert status == 409 and problem["title"] == "Last owner"
    assert (await suite.auth.call("GET", "/me", owner.token))[0] == 200


async def test_a_deleted_account_stops_at_once_and_is_purged_with_confirmations(
    suite: Suite
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    leaving = await suite.member(org, owner, "admin")
    status, state = await suite.call("DELETE", "/me", leaving.token)
    assert status == 202 and state["confirmed"] == ["tenant-api"]
    # deactivated at once: no token, no refresh, no login, no membership
    assert (await suite.auth.call("GET", "/me", leaving.token))[0] == 401
    status, _, _ = await suite.auth.post("/token/refresh", {"refresh_token": leaving.refresh})
    assert status == 401
    status, _, _ = await suite.auth.post("/login", {"email": leaving.email,
                                                    "password": PASSWORD})
    assert status == 401
    _, members = await suite.call("GET", f"/orgs/{org}/members", owner.token)
    assert leaving.id not in {m["user_id"] for m in members}
    # the purge job: auth confirms (the account row is gone); unbuilt services stay pending
    dsr = suite.tenant_app_dsr()
    assert await dsr.purge_pending() >= 1
    status, state = await suite.call("GET", "/me/deletion", owner.token)
    assert status == 404  # the owner has asked for no deletion of their own
    found = await dsr.status(uuid.UUID(leaving.id))
    assert found is not None and "auth" in found["confirmed"]
    assert set(found["pending"]) == {"audit", "webhooks", "files"}
    assert found["completed_at"] is None
    async with suite.auth.auth.pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from users where email = $1",
                                   leaving.email) == 0


async def test_running_services_answer_export_and_purge(suite: Suite, audit: Any,
                                                        webhooks: Any) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    leaving = await suite.member(org, owner, "viewer")
    token = await suite.switch(owner, org)
    await audit.events_until(org, token, lambda evs: any(
        e["type"] == "org.member.added" and e["actor"]["id"] == leaving.id for e in evs))
    status, bundle = await suite.call("POST", "/me/export", leaving.token)
    assert status == 200
    assert [m["service"] for m in bundle["missing"]] == ["files"]
    assert any(e["type"] == "org.member.added" for e in bundle["services"]["audit"]["events"])
    status, _ = await suite.call("DELETE", "/me", leaving.token)
    assert status == 202
    await suite.tenant_app_dsr().purge_pending()
    found = await suite.tenant_app_dsr().status(uuid.UUID(leaving.id))
    assert found["pending"] == ["files"]
    assert "kept" in found["answers"]["audit"]  # audit says what it keeps, and why
