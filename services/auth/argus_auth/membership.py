"""What auth asks tenant-api before a membership counts: the member's role in an org as it is
now (`argus.rpc.tenant-api.membership`), never a role copied from an earlier token or session.
Every org-scoped access token is minted from this answer (org switch, refresh, step-up), and API
keys are issued, listed, rotated and revoked only by a current owner or admin. There is no
cache: the answer costs one NATS round trip, and a stale answer is exactly the hole it closes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

from argus_auth import queries
from argus_auth.core import Auth
from argus_shared import events, xut
from argus_shared.access import revoke_membership
from argus_shared.consumer import Received
from argus_shared.errors import Problem
from argus_shared.event_types import MEMBER_ADDED, MEMBER_REMOVED, MEMBER_ROLE_CHANGED
from argus_shared.logs import request_context
from argus_shared.nats import RpcError, request
from argus_shared.problem_types import SSO_REQUIRED

log = logging.getLogger("argus.auth.membership")
SSO_REQUIRED_REASON = "sso-required"  # how tenant-api's 403 starts when its SSO policy refuses

MFA_METHODS = frozenset({"otp", "recovery"})


@dataclass(frozen=True)
class Membership:
    role: str
    require_mfa: bool
    mfa_roles: tuple[str, ...]
    project: bool | None  # whether the org has the project asked about (None: not asked)

    def mfa_missing(self, amr: Iterable[str]) -> bool:
        """The org requires MFA of this role and the session did not use a second factor."""
        return self.require_mfa and self.role in self.mfa_roles and not MFA_METHODS & set(amr)


@dataclass(frozen=True)
class SignedIn:
    """How the asking session signed in, for the org's SSO policy in tenant-api: the issuer of
    the provider it signed in through (None: not federated) and its `amr`."""

    idp: str | None
    amr: tuple[str, ...]


class SsoRequired(Exception):
    """tenant-api: the org requires signing in through its own SSO connection."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def unavailable() -> Problem:
    return Problem(503, "memberships cannot be checked right now (tenant-api is not "
                   "answering); try again later", title="Service unavailable",
                   headers={"Retry-After": "1"})


async def lookup(auth: Auth, user_id: UUID | str, org_id: UUID | str, request_id: str | None,
                 project_id: UUID | None = None,
                 signed_in: SignedIn | None = None) -> Membership | None:
    """The membership as tenant-api holds it now; None when the user is not a member;
    SsoRequired when the org requires its SSO and the session did not sign in through it."""
    payload: dict[str, Any] = {"user_id": str(user_id), "org_id": str(org_id)}
    if project_id is not None:
        payload["project_id"] = str(project_id)
    if signed_in is not None:
        payload.update(idp=signed_in.idp, amr=list(signed_in.amr))
    identity = xut.Identity(sub=f"user:{user_id}", request_id=request_id or "")
    try:
        answer = await request(
            auth.nc, auth.xut_keys, issuer="auth", service="tenant-api",
            method="membership", payload=payload, identity=identity,
        )
    except RpcError as exc:
        if exc.status == 404:
            return None
        if exc.status == 403 and exc.detail.startswith(SSO_REQUIRED_REASON):
            raise SsoRequired(exc.detail.removeprefix(SSO_REQUIRED_REASON).lstrip(": ")) \
                from None
        raise unavailable() from None
    return Membership(answer["role"], bool(answer.get("require_mfa")),
                      tuple(answer.get("mfa_roles", ("owner", "admin"))), answer.get("project"))


async def role_for_token(auth: Auth, user_id: UUID | str, org_id: UUID | str,
                         amr: Iterable[str], request_id: str | None,
                         idp: str | None = None) -> str | None:
    """The role an org-scoped token of this session may carry now; None when the org scope
    must end (no longer a member, or the org's MFA or SSO policy now refuses this session)."""
    methods = tuple(amr)
    try:
        found = await lookup(auth, user_id, org_id, request_id,
                             signed_in=SignedIn(idp, methods))
    except SsoRequired:
        return None
    if found is None or found.mfa_missing(methods):
        return None
    return found.role


def sso_required(exc: SsoRequired) -> Problem:
    return Problem(403, exc.detail or "this organisation requires signing in through its SSO",
                   title="SSO required", type=SSO_REQUIRED)


def mfa_required() -> Problem:
    return Problem(403, "this organisation requires MFA for your role: enrol TOTP and log in "
                   "with it", title="MFA required", type="urn:argus:problem:mfa-required")


async def of_project(auth: Auth, user_id: UUID, org_id: UUID, project_id: UUID,
                     request_id: str | None, signed_in: SignedIn | None = None) -> Membership:
    """For the API-key routes: the caller's membership at this moment, in an org that has the
    project; else 404 (not a member, or no such project), 403 when the org requires its SSO."""
    try:
        found = await lookup(auth, user_id, org_id, request_id, project_id, signed_in)
    except SsoRequired as exc:
        raise sso_required(exc) from None
    if found is None or not found.project:
        raise Problem(404, "not found")
    return found


MEMBER_EVENTS = events.subject_for("tenant-api", "org.member.*")
RoleAfter: TypeAlias = Callable[[dict[str, Any]], Any]
ROLE_AFTER: dict[str, RoleAfter] = {MEMBER_REMOVED: lambda data: None,
              MEMBER_ROLE_CHANGED: lambda data: data.get("to"),
              MEMBER_ADDED: lambda data: data.get("role")}


async def membership_changed(auth: Auth, event: events.Event) -> None:
    """tenant-api's membership events, the durable half of a change: a removed member's
    sessions lose the org, and the revocation entry is written again in case tenant-api
    stopped between its commit and its own write (an older change never replaces a newer)."""
    assert event.org_id is not None
    role = ROLE_AFTER[event.type](event.data)
    user_id, org_id = UUID(event.resource.id), UUID(event.org_id)
    if event.type == MEMBER_REMOVED:
        async with auth.pool.acquire() as conn:
            await queries.end_org_scope(conn, user_id, org_id)
    at = datetime.fromisoformat(event.occurred_at).timestamp()
    await revoke_membership(auth.js, str(org_id), str(user_id), role, at)
    log.info("membership change applied", extra={
        "event_id": event.id, "event_type": event.type, "org_id": str(org_id),
        "user_id": str(user_id), "role": role})


async def membership_events_handler(auth: Auth, batch: Sequence[Received]) -> None:
    for item in batch:
        with request_context(item.request_id):
            await membership_event(auth, item)


async def membership_event(auth: Auth, item: Received) -> None:
    event, claims = item.event, item.claims
    if event is None or claims is None or claims.iss != "tenant-api" or not event.org_id \
            or event.type not in ROLE_AFTER or event.resource.type != "user":
        log.warning("membership event refused", extra={"reason": item.error or "shape"})
        return
    await membership_changed(auth, event)
