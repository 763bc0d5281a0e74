"""The events auth emits, through the outbox in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from argus_auth import SERVICE
from argus_auth.queries import Conn
from argus_shared import outbox
from argus_shared.event_types import EventType, emitted_by
from argus_shared.outbox import Ctx, record

ANONYMOUS = ("anonymous", "-")
__all__ = ["ANONYMOUS", "Ctx", "emit", "prepare", "user"]


async def emit(
    conn: Conn, ctx: Ctx, event_type: EventType, *, actor: tuple[str, str],
    resource: tuple[str, str], org_id: str | None = None, data: dict[str, Any] | None = None,
) -> None:
    await record(conn, SERVICE, ctx, event_type, actor=actor, resource=resource, org_id=org_id,
                 data=data)


def prepare(ctx: Ctx, event_type: EventType, *, actor: tuple[str, str],
            resource: tuple[str, str], data: dict[str, Any] | None = None) -> outbox.Row:
    """An outbox row for a statement that writes the change and its event at once."""
    emitted_by(event_type, SERVICE)
    event = outbox.request_event(ctx, event_type, actor=actor, resource=resource, data=data)
    return outbox.prepare(SERVICE, event)


def user(user_id: object) -> tuple[str, str]:
    return ("user", str(user_id))
