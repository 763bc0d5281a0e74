"""Request types of the audit API (strict: unknown query fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from argus_shared.validation import Strict

Action = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$", max_length=100)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class EventsQuery(Strict):
    actor: Text | None = None
    action: Action | None = None
    resource_type: Text | None = None
    resource_id: Text | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,18}$")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
