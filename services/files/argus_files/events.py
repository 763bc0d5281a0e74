"""The events the files service emits (through its outbox, in the transaction of the change).
File names are not in them: they may be personal, and the audit trail keeps events for years."""

from __future__ import annotations

from argus_shared.event_types import (
    FILE_DELETED,
    FILE_UPLOADED,
    FILES_ORG_PURGED,
    FILES_USER_PURGED,
)

UPLOADED = FILE_UPLOADED
DELETED = FILE_DELETED
USER_PURGED = FILES_USER_PURGED
ORG_PURGED = FILES_ORG_PURGED
