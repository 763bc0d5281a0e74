"""The one registry of event types: every emitter names a registered constant of its own
service (a literal, an unknown type or another service's type is refused), the committed
catalogue page is the registry rendered, and the audit filter and webhook subscriptions refuse
names that are not event types, suggesting the one meant."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from argus_shared import event_types
from argus_shared.errors import Problem
from argus_shared.event_types import CATALOGUE, ORG_CREATED, emitted_by, render_markdown
from argus_shared.outbox import Ctx, record
from support.audit_service import Audit
from support.suite import Suite
from support.webhooks_service import Webhooks

ROOT = Path(__file__).resolve().parents[2]
EMITTERS = {"record": 3, "emit": 2, "prepare": 1}  # call name -> index of the type argument


def test_the_committed_catalogue_is_the_registry() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render_markdown(), \
        "run: argus events > docs/events.md"
    assert len(CATALOGUE) >= 50 and all(t.summary and t.resource for t in CATALOGUE.values())


def literal_types() -> list[str]:
    """Emission calls in the services' code whose event type is written as a string."""
    found = []
    for path in sorted((ROOT / "services").glob("*/argus_*/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            index = EMITTERS.get(name)
            if index is not None and len(node.args) > index and \
                    isinstance(node.args[index], ast.Constant | ast.JoinedStr):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_emitters_name_registered_constants() -> None:
    assert literal_types() == []


def test_an_unknown_or_foreign_type_is_refused_before_it_is_queued() -> None:
    with pytest.raises(ValueError, match="not a registered event type"):
        emitted_by("org.renamed", "tenant-api")
    with pytest.raises(ValueError, match="emitted by tenant-api, not files"):
        emitted_by(ORG_CREATED, "files")


async def test_record_refuses_an_unregistered_type(admin: Any) -> None:
    with pytest.raises(ValueError, match="not a registered"):
        await record(admin, "tenant-api", Ctx(), "org.renamed",  # type: ignore[arg-type]
                     actor=("user", "u"), resource=("org", "o"))


def test_a_mistyped_name_gets_a_suggestion() -> None:
    with pytest.raises(Problem) as refused:
        event_types.require_known(["wallet.deposited"], "action")
    assert refused.value.status == 422 and "wallet.deposit" in (refused.value.detail or "")


async def test_the_audit_filter_and_subscriptions_know_the_catalogue(
    suite: Suite, audit: Audit, webhooks: Webhooks
) -> None:
    owner = await suite.user()
    org = await suite.org(owner)
    status, problem = await audit.get(f"/orgs/{org}/audit/events?action=wallet.deposited",
                                      owner.token)
    assert status == 422 and "wallet.deposit" in problem["detail"], problem
    status, _ = await audit.get(f"/orgs/{org}/audit/events?action=wallet.deposit", owner.token)
    assert status == 200
    path = f"/orgs/{org}/webhooks/endpoints"
    status, problem = await webhooks.call("POST", path, owner.token, {
        "url": webhooks.receiver.url, "event_types": ["project.created", "projects.created"]})
    assert status == 422 and "project.created" in problem["detail"], problem
    status, listed = await webhooks.call("GET", path, owner.token)
    assert (status, listed) == (200, [])  # nothing was written
    for types in (["*"], ["project.created", "org.member.added"]):
        status, _ = await webhooks.call("POST", path, owner.token,
                                        {"url": webhooks.receiver.url, "event_types": types})
        assert status == 201
