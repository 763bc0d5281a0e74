"""A short-lived cache of members' roles, so most requests skip the membership query. It never
outlives a change: this replica drops an entry when it changes the membership, and any replica
drops it when the change of that membership (published on every removal, role change and
acceptance, through NATS KV) is at or after the moment the cached role was read. Staleness
bound: another replica's change is honoured once the KV watcher delivers it (milliseconds);
only an org deletion by another replica can be seen up to `TTL` seconds late. Non-members are
never cached."""

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
        read_at, role = entry
        change = self.revocations.members.get((str(org_id), str(user_id))) \
            if self.revocations else None
        if time.time() - read_at > TTL or (change is not None and change.at >= read_at):
            del self.entries[(org_id, user_id)]
            return None
        return role

    def put(self, org_id: UUID, user_id: UUID, role: str, read_at: float) -> None:
        """`read_at`: taken before the query that read `role` began, so a change committed
        while it ran is never mistaken for one the cached role already reflects."""
        if len(self.entries) > 100_000:
            self.entries.clear()
        self.entries[(org_id, user_id)] = (read_at, role)

    def drop(self, org_id: UUID, user_id: UUID | None = None) -> None:
        if user_id is not None:
            self.entries.pop((org_id, user_id), None)
            return
        for key in [k for k in self.entries if k[0] == org_id]:
            del self.entries[key]
