"""The events the files service emits (through its outbox, in the transaction of the change).
File names are not in them: they may be personal, and the audit trail keeps events for years."""

from __future__ import annotations

UPLOADED = "file.uploaded"
DELETED = "file.deleted"
USER_PURGED = "file.user_purged"
ORG_PURGED = "file.org_purged"
