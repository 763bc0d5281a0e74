"""Membership rules: the last owner stays, only owners make or unmake owners, and a removal
takes effect on every service at once (event + revocation of the member's tokens for the org)."""

from __future__ import annotations

from uuid import UUID

from argus_shared.errors import Problem
from argus_tenant_api import queries
from argus_tenant_api.scope import Scope


async def change_role(conn: queries.Conn, scope: Scope, user_id: UUID, role: str) -> str:
    current = await queries.role_of(conn, scope.org_id, user_id)
    if current is None:
        raise Problem(404, "not found")
    if "owner" in (role, current) and scope.role != "owner":
        raise Problem(403, "only an owner can grant or remove the owner role")
    if current == "owner" and role != "owner":
        await _keep_an_owner(conn, scope.org_id, user_id)
    await queries.set_role(conn, scope.org_id, user_id, role)
    return current


async def remove(conn: queries.Conn, scope: Scope, user_id: UUID) -> str:
    current = await queries.role_of(conn, scope.org_id, user_id)
    if current is None:
        raise Problem(404, "not found")
    leaving = scope.user_id == user_id
    if not leaving and scope.role not in ("owner", "admin"):
        raise Problem(403, "only owners and admins remove other members")
    if current == "owner":
        if not leaving and scope.role != "owner":
            raise Problem(403, "only an owner can remove an owner")
        await _keep_an_owner(conn, scope.org_id, user_id)
    await queries.delete_member(conn, scope.org_id, user_id)
    return current


async def _keep_an_owner(conn: queries.Conn, org_id: UUID, losing: UUID) -> None:
    owners = await queries.owners_for_update(conn, org_id)  # locks them: no race to zero
    if owners == [losing]:
        raise Problem(409, "the last owner cannot leave or be demoted; make another owner first",
                      title="Last owner")
