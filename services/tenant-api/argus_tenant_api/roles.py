"""A short-lived cache of members' roles, so most requests skip the membership query. It never
outlives a change: this replica drops an entry when it changes the membership, and any replica
drops it when the revocation of that member's org tokens (published on every removal and role
change, through NATS KV) is newer than the entry. Only org deletion by another replica can be
seen up to `TTL` seconds late. Non-members are never cached."""

from __future__ import annotations

import time
from uuid import UUID

from argus_shared.access import Revocations

TTL = 5.0


class RoleCache:
    def __init__(self, revocations: Revocations | None) -> None:
        self.revocations = revocations
        self.entries: dict[tuple[UUID, UUID], tuple[float, str]] = {}

    def get(self, org_id: UUID, user_id: UUID) -> str | None:
        entry = self.entries.get((org_id, user_id))
        if entry is None:
            return None
        cached_at, role = entry
        revoked = self.revocations.members.get((str(org_id), str(user_id))) \
            if self.revocations else None
        if time.time() - cached_at > TTL or (revoked is not None and revoked >= cached_at - 1):
            del self.entries[(org_id, user_id)]
            return None
        return role

    def put(self, org_id: UUID, user_id: UUID, role: str) -> None:
        if len(self.entries) > 100_000:
            self.entries.clear()
        self.entries[(org_id, user_id)] = (time.time(), role)

    def drop(self, org_id: UUID, user_id: UUID | None = None) -> None:
        if user_id is not None:
            self.entries.pop((org_id, user_id), None)
            return
        for key in [k for k in self.entries if k[0] == org_id]:
            del self.entries[key]
