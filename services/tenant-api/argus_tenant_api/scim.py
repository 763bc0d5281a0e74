"""SCIM provisioning rules, inside the org's tenant transaction (no HTTP here).

- A provisioned, active user is an org member. Its Argus account is found by email: an
  existing member of the org is linked at once; anyone else is sent an invitation (the
  existing invitation flow: a verified account with that email accepts it, and the SCIM user
  is linked to it then). A deactivated or deleted user loses the membership (or its pending
  invitation), and the removal is published as every removal is: the event `org.member.removed`
  and the revocation entry `member.<org>.<user>`, so every service refuses the user's tokens
  for the org at once.
- Roles come from groups: the role of a user is the highest role that the display names of its
  groups map to (the org's mappings, else DEFAULT_MAPPINGS), `member` when none maps. SCIM never
  makes, changes or removes an owner's role, and never removes the last owner.
- Every change is an event (scim.*, org.member.*, org.invitation.*)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from argus_shared.errors import Problem
from argus_shared.event_types import (
    INVITATION_CREATED,
    INVITATION_REVOKED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    MEMBER_ROLE_CHANGED,
    SCIM_GROUP_CREATED,
    SCIM_GROUP_DELETED,
    SCIM_GROUP_UPDATED,
    SCIM_USER_CREATED,
    SCIM_USER_DELETED,
    SCIM_USER_UPDATED,
    EventType,
)
from argus_shared.outbox import Ctx, record
from argus_tenant_api import SERVICE, invitations, members, queries
from argus_tenant_api.scim_protocol import ScimError, not_found
from argus_tenant_api.scim_resources import GroupPatch, GroupValues, UserValues

DEFAULT_MAPPINGS = {"admin": "admin", "admins": "admin", "member": "member",
                    "members": "member", "viewer": "viewer", "viewers": "viewer"}
RANK = {"viewer": 0, "member": 1, "admin": 2}
DEFAULT_ROLE = "member"


@dataclass(frozen=True)
class Caller:
    """Who acts: a SCIM token of one org (and the admin who created it, who invites)."""

    org_id: UUID
    token_id: UUID
    created_by: UUID

    @property
    def actor(self) -> tuple[str, str]:
        return ("scim_token", str(self.token_id))


@dataclass
class After:
    """What the handler does once the transaction has committed: publish revocations
    (user, role after; None: removed) and mail invitations."""

    revocations: list[tuple[UUID, str | None]] = field(default_factory=list)
    mails: list[invitations.Issued] = field(default_factory=list)


@dataclass(frozen=True)
class Work:
    conn: queries.Conn
    caller: Caller
    ctx: Ctx
    after: After

    async def event(self, kind: EventType, resource: tuple[str, str],
                    data: dict[str, Any] | None = None) -> None:
        await record(self.conn, SERVICE, self.ctx, kind, actor=self.caller.actor,
                     resource=resource, org_id=self.caller.org_id, data=data)


def _user(row: queries.Row) -> tuple[str, str]:
    return ("scim_user", str(row["id"]))


# users ------------------------------------------------------------------------------------------

def _record(values: UserValues) -> dict[str, Any]:
    return {"user_name": values.user_name, "email": values.email,
            "external_id": values.external_id, "active": values.active,
            "resource": values.resource}


async def create_user(work: Work, values: UserValues) -> queries.Row:
    org_id = work.caller.org_id
    row = await queries.insert_scim_user(work.conn, org_id,
                                         {"id": uuid.uuid4(), **_record(values)})
    if row is None:
        raise ScimError(409, f"userName {values.user_name!r} is taken", "uniqueness")
    await work.event(SCIM_USER_CREATED, _user(row), {"active": values.active})
    if values.active:
        await _provision(work, row)
    return await _reloaded(work, row["id"])


async def _reloaded(work: Work, scim_id: UUID) -> queries.Row:
    row = await queries.scim_user(work.conn, work.caller.org_id, scim_id)
    assert row is not None
    return row


async def locked_user(work: Work, scim_id: UUID) -> queries.Row:
    row = await queries.scim_user(work.conn, work.caller.org_id, scim_id, lock=True)
    if row is None:
        raise not_found()
    return row


async def update_user(work: Work, before: queries.Row, values: UserValues) -> queries.Row:
    """PUT or PATCH: the new values, then whatever a change of `active` means."""
    row = await queries.update_scim_user(work.conn, work.caller.org_id, before["id"],
                                         _record(values))
    if row is None:
        raise ScimError(409, f"userName {values.user_name!r} is taken", "uniqueness")
    changed = sorted(k for k in ("user_name", "email", "external_id", "active", "resource")
                     if row[k] != before[k])
    await work.event(SCIM_USER_UPDATED, _user(row), {"active": row["active"],
                                                     "changed": changed})
    if before["active"] and not row["active"]:
        await _deprovision(work, row)
    elif row["active"] and not before["active"]:
        await _provision(work, row)
    return await _reloaded(work, row["id"])


async def delete_user(work: Work, scim_id: UUID) -> None:
    row = await locked_user(work, scim_id)
    if row["active"]:
        await _deprovision(work, row)
    await queries.delete_scim_user(work.conn, work.caller.org_id, scim_id)
    await work.event(SCIM_USER_DELETED, _user(row))


async def _provision(work: Work, row: queries.Row) -> None:
    """An active user: its membership (known account), a link to a member with its email, or
    an invitation to that email."""
    conn, org_id = work.conn, work.caller.org_id
    user_id = row["user_id"]
    if user_id is None:
        found = await queries.member_by_email(conn, org_id, row["email"])
        if found is None:
            await _invite(work, row)
            return
        user_id = found["user_id"]
        await queries.link_scim_user(conn, org_id, row["id"], user_id, None)
    role = await desired_role(conn, org_id, row["id"])
    if await queries.insert_member(conn, org_id, user_id, role, row["email"]):
        await work.event(MEMBER_ADDED, ("user", str(user_id)), {"role": role, "via": "scim"})
        work.after.revocations.append((user_id, role))
    else:
        await _set_member_role(work, user_id, role)


async def _invite(work: Work, row: queries.Row) -> None:
    conn, org_id = work.conn, work.caller.org_id
    role = await desired_role(conn, org_id, row["id"])
    token = secrets.token_urlsafe(32)
    invitation = await queries.insert_invitation(conn, {
        "org_id": org_id, "id": uuid.uuid4(), "email": row["email"], "role": role,
        "token_hash": hashlib.sha256(token.encode()).digest(),
        "invited_by": work.caller.created_by,
        "expires_at": datetime.now(UTC) + timedelta(days=invitations.DAYS)})
    await queries.link_scim_user(conn, org_id, row["id"], None, invitation["id"])
    await work.event(INVITATION_CREATED, ("invitation", str(invitation["id"])),
                     {"role": role, "via": "scim"})
    org = await queries.org(conn, org_id)
    work.after.mails.append(invitations.Issued(token, invitation, org["name"] if org else "",
                                               None))


async def _deprovision(work: Work, row: queries.Row) -> None:
    """The membership goes (never the last owner), or the pending invitation."""
    conn, org_id = work.conn, work.caller.org_id
    if row["invitation_id"] is not None:
        if await queries.revoke_invitation(conn, org_id, row["invitation_id"]):
            await work.event(INVITATION_REVOKED, ("invitation", str(row["invitation_id"])),
                             {"via": "scim"})
        await queries.link_scim_user(conn, org_id, row["id"], row["user_id"], None)
    user_id = row["user_id"]
    role = await queries.role_of(conn, org_id, user_id) if user_id else None
    if user_id is None or role is None:
        return
    if role == "owner":
        try:
            await members._keep_an_owner(conn, org_id, user_id)
        except Problem:
            raise ScimError(409, "the org's last owner cannot be deprovisioned; make another "
                            "owner first", "mutability") from None
    await queries.delete_member(conn, org_id, user_id)
    await work.event(MEMBER_REMOVED, ("user", str(user_id)), {"role": role, "via": "scim"})
    work.after.revocations.append((user_id, None))


# roles ------------------------------------------------------------------------------------------

async def desired_role(conn: queries.Conn, org_id: UUID, scim_id: UUID) -> str:
    mappings = await queries.role_mappings(conn, org_id) or DEFAULT_MAPPINGS
    names = await queries.group_names_of(conn, org_id, scim_id)
    roles = [mappings[n] for n in names if n in mappings]
    return max(roles, key=RANK.__getitem__) if roles else DEFAULT_ROLE


async def _set_member_role(work: Work, user_id: UUID, role: str) -> None:
    conn, org_id = work.conn, work.caller.org_id
    current = await queries.role_of(conn, org_id, user_id)
    if current is None or current in ("owner", role):
        return
    await queries.set_role(conn, org_id, user_id, role)
    await work.event(MEMBER_ROLE_CHANGED, ("user", str(user_id)),
                     {"from": current, "to": role, "via": "scim"})
    work.after.revocations.append((user_id, role))


async def apply_roles(work: Work, scim_ids: list[UUID]) -> None:
    """After group changes: each named active user's membership (or pending invitation) gets
    the role its groups give now."""
    for scim_id in dict.fromkeys(scim_ids):
        row = await queries.scim_user(work.conn, work.caller.org_id, scim_id)
        if row is None or not row["active"]:
            continue
        role = await desired_role(work.conn, work.caller.org_id, scim_id)
        if row["user_id"] is not None:
            await _set_member_role(work, row["user_id"], role)
        elif row["invitation_id"] is not None:
            await queries.set_invitation_role(work.conn, work.caller.org_id,
                                              row["invitation_id"], role)


# groups -----------------------------------------------------------------------------------------

def _group(row: queries.Row) -> tuple[str, str]:
    return ("scim_group", str(row["id"]))


async def _known(work: Work, scim_ids: list[UUID]) -> list[UUID]:
    """Members must be users of this org (another org's ids are simply unknown here)."""
    known = await queries.existing_scim_users(work.conn, work.caller.org_id, scim_ids)
    if set(scim_ids) - known:
        raise ScimError(400, "a member is not a user of this service provider", "invalidValue")
    return list(dict.fromkeys(scim_ids))


async def create_group(work: Work, values: GroupValues) -> queries.Row:
    org_id = work.caller.org_id
    members_ = await _known(work, values.members or [])
    row = await queries.insert_scim_group(work.conn, org_id, uuid.uuid4(), values.display_name,
                                          values.external_id)
    if row is None:
        raise ScimError(409, f"displayName {values.display_name!r} is taken", "uniqueness")
    await queries.add_group_members(work.conn, org_id, row["id"], members_)
    await work.event(SCIM_GROUP_CREATED, _group(row), {"members": len(members_)})
    await apply_roles(work, members_)
    return row


async def locked_group(work: Work, group_id: UUID) -> queries.Row:
    row = await queries.scim_group(work.conn, work.caller.org_id, group_id, lock=True)
    if row is None:
        raise not_found()
    return row


async def change_group(work: Work, before: queries.Row, patch: GroupPatch) -> queries.Row:
    """PUT (a patch that replaces everything) or PATCH."""
    conn, org_id, group_id = work.conn, work.caller.org_id, before["id"]
    name = patch.display_name or before["display_name"]
    external_id = patch.external_id if patch.external_id is not None else before["external_id"]
    row = await queries.update_scim_group(conn, org_id, group_id, name, external_id)
    if row is None:
        raise ScimError(409, f"displayName {name!r} is taken", "uniqueness")
    touched: list[UUID] = []
    if patch.replace is not None or patch.remove_all:
        touched += await queries.remove_group_members(conn, org_id, group_id, None)
    for ids in (patch.replace, patch.add):
        if ids:
            known = await _known(work, ids)
            await queries.add_group_members(conn, org_id, group_id, known)
            touched += known
    if patch.remove:
        touched += await queries.remove_group_members(conn, org_id, group_id, patch.remove)
    await work.event(SCIM_GROUP_UPDATED, _group(row), {
        "renamed": name != before["display_name"], "members_touched": len(set(touched))})
    # a rename can change every member's role, as a membership change changes one's
    members_now = [r["id"] for r in await queries.group_members(conn, org_id, [group_id])]
    await apply_roles(work, touched + (members_now if name != before["display_name"] else []))
    return row


async def delete_group(work: Work, group_id: UUID) -> None:
    row = await locked_group(work, group_id)
    members_ = await queries.remove_group_members(work.conn, work.caller.org_id, group_id, None)
    await queries.delete_scim_group(work.conn, work.caller.org_id, group_id)
    await work.event(SCIM_GROUP_DELETED, _group(row), {"members": len(members_)})
    await apply_roles(work, members_)
