"""Who may see which live event (`GET /stream`), decided from the connection's verified
identity only, before anything is written to its socket:

- a user sees their own account events (auth's events whose actor or resource is them) in any
  org, and any other event whose actor or resource is them in no org or their active org;
- in the active org, owners and admins see every event; members and viewers see only those
  whose actor or resource is themselves, and the public notices `PUBLIC` names;
- an API key sees only its own org's events of the families its scopes read (`FAMILY_SCOPES`),
  and the events it caused itself;
- `?types=` narrows any of that by prefix. Nothing else: never another org's, never another
  user's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from argus_shared import event_types as et
from argus_shared import scopes
from argus_shared.access import Principal
from argus_shared.events import Event

# org-wide notices every member sees: what the org is and which projects it has
PUBLIC: frozenset[str] = frozenset({
    et.ORG_UPDATED.name, et.ORG_DELETED.name, et.PROJECT_CREATED.name, et.PROJECT_DELETED.name,
})
ORG_WIDE_ROLES = frozenset({"owner", "admin"})
# an API key sees an event type of a family when it holds that family's read scope
FAMILY_SCOPES: tuple[tuple[str, str], ...] = (
    ("org.", scopes.TENANT_READ), ("project.", scopes.TENANT_READ),
    ("wallet.", scopes.WALLET_READ), ("audit.", scopes.AUDIT_READ),
    ("webhooks.", scopes.WEBHOOKS_WRITE), ("file.", scopes.FILES_READ),
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """A connection's identity: the principal (kind and id), its active org and role (users)
    or scopes (API keys), and the `?types=` prefixes it asked for (none: every type)."""

    kind: str
    id: str
    org: str | None
    role: str | None
    scopes: frozenset[str]
    types: tuple[str, ...] = ()

    @classmethod
    def of(cls, principal: Principal, types: Sequence[str] = ()) -> Viewer:
        return cls(principal.kind, principal.id, principal.org, principal.role,
                   frozenset(principal.scopes), tuple(types))

    def wants(self, event_type: str) -> bool:
        return not self.types or event_type.startswith(self.types)

    def allows(self, event: Event) -> bool:
        if not self.wants(event.type):
            return False
        if self.kind == "api_key":
            return self._key_allows(event)
        return self._user_allows(event)

    def _is_me(self, event: Event) -> bool:
        return (event.actor.type == self.kind and event.actor.id == self.id) or (
            event.resource.type == self.kind and event.resource.id == self.id)

    def _user_allows(self, event: Event) -> bool:
        mine = self.kind == "user" and self._is_me(event)
        if mine and (event.org_id is None or event.type.startswith("auth.")):
            return True
        if self.org is None or event.org_id != self.org:
            return False
        return mine or self.role in ORG_WIDE_ROLES or event.type in PUBLIC

    def _key_allows(self, event: Event) -> bool:
        if self.org is None or event.org_id != self.org:
            return False
        if event.actor.type == "api_key" and event.actor.id == self.id:
            return True
        return any(event.type.startswith(prefix) and scope in self.scopes
                   for prefix, scope in FAMILY_SCOPES)
