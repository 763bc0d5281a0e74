"""The event envelope every service emits and consumes (DESIGN.md, Events)."""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

STREAM = "ARGUS_EVENTS"
SUBJECT_PREFIX = "argus.events"
EVENTS_AUDIENCE = "argus.events"
USER_AGENT_MAX = 500
# an event type becomes the tail of a NATS subject: dot-separated tokens, no wildcards or spaces
EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Actor(msgspec.Struct, forbid_unknown_fields=True):
    type: str  # user, api_key, service, system
    id: str


class Resource(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    id: str


class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    id: str
    type: str
    actor: Actor
    resource: Resource
    occurred_at: str
    org_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class _Origin(msgspec.Struct):
    """Only the request id of an envelope (every other field is skipped)."""

    request_id: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
_origin = msgspec.json.Decoder(_Origin)


def new_event(
    type: str,
    *,
    actor: Actor,
    resource: Resource,
    org_id: uuid.UUID | str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    check_type(type)
    return Event(
        id=str(uuid.uuid4()),
        type=str(type),  # a registered EventType is a str subclass: store the plain name
        actor=actor,
        resource=resource,
        occurred_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        org_id=None if org_id is None else str(org_id),
        ip=ip,
        user_agent=None if user_agent is None else user_agent[:USER_AGENT_MAX],
        request_id=request_id,
        data=data or {},
    )


def check_type(event_type: str) -> None:
    """Raise `ValueError` unless `event_type` can be the tail of a subject (`org.member.added`)."""
    if not EVENT_TYPE_RE.fullmatch(event_type):
        raise ValueError(f"event type {event_type[:100]!r} is not dot-separated words")


def canonical_uuid(text: str) -> str:
    """`text` as `str(UUID(text))`; raises `ValueError` if it is no UUID."""
    if _CANONICAL_UUID.fullmatch(text):  # what every producer of ours writes: no parse needed
        return text
    return str(uuid.UUID(text))


canonical_org = functools.lru_cache(maxsize=4096)(canonical_uuid)  # orgs recur, ids do not


def subject_for(service: str, event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{service}.{event_type}"


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes) -> Event:
    """Raises `msgspec.DecodeError`/`ValidationError` for a malformed envelope (`ValueError` for
    a bad id or time). Ids come out in the canonical form (`str(UUID)`), however they were
    written, so every consumer compares and stores one spelling."""
    event = _decoder.decode(raw)
    event.id = canonical_uuid(event.id)
    if event.org_id is not None:
        event.org_id = canonical_org(event.org_id)
    if datetime.fromisoformat(event.occurred_at).tzinfo is None:
        raise ValueError("occurred_at has no time zone")
    return event


def request_id_of(raw: bytes) -> str | None:
    """The request id an encoded envelope carries; None when it names none or is no envelope."""
    try:
        return _origin.decode(raw).request_id or None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
