"""The events auth emits, through the outbox in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argus_auth.queries import Conn
from argus_shared import events, outbox

SERVICE = "auth"


@dataclass(frozen=True)
class Ctx:
    """Who is asking, from where: carried into every event."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


async def emit(
    conn: Conn, ctx: Ctx, event_type: str, *, actor: tuple[str, str],
    resource: tuple[str, str], org_id: str | None = None, data: dict[str, Any] | None = None,
) -> None:
    event = events.new_event(
        event_type, actor=events.Actor(*actor), resource=events.Resource(*resource),
        org_id=org_id, ip=ctx.ip, user_agent=ctx.user_agent, request_id=ctx.request_id,
        data=data,
    )
    await outbox.emit(conn, SERVICE, event)


def user(user_id: object) -> tuple[str, str]:
    return ("user", str(user_id))


ANONYMOUS = ("anonymous", "-")
