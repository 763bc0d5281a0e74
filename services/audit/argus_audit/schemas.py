"""Request types of the audit API (strict: unknown query fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from argus_shared.validation import END, SingleLine, Strict

Action = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+" + END,
                                     max_length=100)]
Filter = Annotated[SingleLine, msgspec.Meta(min_length=1, max_length=200)]


class EventsQuery(Strict):
    actor: Filter | None = None
    action: Action | None = None
    resource_type: Filter | None = None
    resource_id: Filter | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,18}" + END)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


class StreamQuery(Strict):
    types: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.,-]{1,500}" + END)] | None = None
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None
