"""Request types of the webhooks API (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from argus_shared.validation import END, Strict, Text, UrlText

EventType = Annotated[str, msgspec.Meta(pattern=r"^(\*|[a-z0-9_-]+(\.[a-z0-9_-]+)*)" + END,
                                        max_length=100)]
Url = Annotated[UrlText, msgspec.Meta(min_length=8, max_length=2000)]
Description = Annotated[Text, msgspec.Meta(max_length=500)]


class NewEndpoint(Strict):
    url: Url
    event_types: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=50)]
    description: Description = ""


class EndpointChanges(Strict):
    url: Url | None = None
    event_types: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=50)] | None = None
    description: Description | None = None
    enabled: bool | None = None


class Rotation(Strict):
    overlap_hours: Annotated[int, msgspec.Meta(ge=0, le=24 * 7)] | None = None
