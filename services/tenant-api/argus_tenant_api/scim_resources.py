"""SCIM request bodies as this service keeps them: a user or group is a JSON object whose
attributes the service owns (`userName`, `active`, `externalId`, `displayName`, `members`) are
checked and stored in columns, and whose other attributes (name, emails, enterprise extension,
...) are kept as the client sent them. PATCH (RFC 7644 section 3.5.2) in the forms Okta and
Entra ID send: `op` in any case, a `path` (`active`, `name.givenName`, a URN-qualified
attribute, `emails[type eq "work"].value`, `members[value eq "<id>"]`) or none (a value
object)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from argus_shared import emails
from argus_shared.validation import NOT_SINGLE_LINE
from argus_tenant_api.scim_protocol import PATCH_OP, USER, USER_OWN, bad

MAX_DEPTH = 6
_FILTERED = re.compile(r'^([\w:.]+)\[\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\](?:\.(\w+))?$',
                       re.IGNORECASE)


def decode(raw: bytes) -> dict[str, Any]:
    """A JSON object, every string in it free of control characters; else 400."""
    if not raw:
        raise bad("a JSON body is required", "invalidSyntax")
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise bad("the body is not JSON", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object", "invalidSyntax")
    _check_text(body, 0)
    return body


def _check_text(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise bad("the body is nested too deeply", "invalidSyntax")
    if isinstance(value, str) and NOT_SINGLE_LINE.search(value):
        raise bad("text must not contain control characters", "invalidValue")
    items = value.items() if isinstance(value, dict) else \
        ((None, v) for v in value) if isinstance(value, list) else ()
    for key, item in items:
        if key is not None:
            _check_text(key, depth + 1)
        _check_text(item, depth + 1)


def _text(value: Any, name: str, required: bool = False, limit: int = 500) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise bad(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def _bool(value: Any, name: str) -> bool:
    """Entra ID sends booleans as the strings "True"/"False" in PATCH values."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad(f"{name} must be a boolean")


@dataclass(frozen=True)
class UserValues:
    user_name: str
    email: str
    external_id: str | None
    active: bool
    resource: dict[str, Any]


def _key(state: dict[str, Any], name: str) -> str:
    """Attribute names are case-insensitive: the spelling already in `state`, if any."""
    lowered = name.lower()
    return next((k for k in state if k.lower() == lowered), name)


def _get(state: dict[str, Any], name: str) -> Any:
    return state.get(_key(state, name))


def _primary_email(state: dict[str, Any]) -> Any:
    found = _get(state, "emails")
    if isinstance(found, list):
        values = [e for e in found if isinstance(e, dict) and e.get("value")]
        primary = [e for e in values if e.get("primary") in (True, "true", "True")]
        if primary or values:
            return (primary or values)[0]["value"]
    return _get(state, "userName")


def user_values(state: dict[str, Any]) -> UserValues:
    """The columns of a user from its whole state (a POST or PUT body, or a patched state)."""
    user_name = _text(_get(state, "userName"), "userName", required=True, limit=320)
    assert user_name is not None
    raw_email = _primary_email(state)
    try:
        email = emails.normalise(raw_email) if isinstance(raw_email, str) else None
    except emails.EmailRefused:
        email = None
    if email is None:
        raise bad("a user needs an email address (emails[].value or an email as userName)")
    active = _get(state, "active")
    resource = {k: v for k, v in state.items() if k.lower() not in USER_OWN}
    return UserValues(user_name, email, _text(_get(state, "externalId"), "externalId"),
                      True if active is None else _bool(active, "active"), resource)


def user_state(row: Any) -> dict[str, Any]:
    """A stored user as one state a PATCH applies to."""
    state = {**dict(row["resource"]), "userName": row["user_name"], "active": row["active"]}
    if row["external_id"] is not None:
        state["externalId"] = row["external_id"]
    return state


def operations(body: dict[str, Any]) -> list[dict[str, Any]]:
    ops = _get(body, "Operations")
    schemas = body.get("schemas")
    if isinstance(schemas, list) and PATCH_OP not in schemas:
        raise bad(f"a PATCH body names the schema {PATCH_OP}", "invalidSyntax")
    if not isinstance(ops, list) or not ops or \
            not all(isinstance(op, dict) and isinstance(op.get("op"), str) for op in ops):
        raise bad("Operations must be a non-empty list of {op, path?, value?}", "invalidSyntax")
    for op in ops:
        op["op"] = op["op"].lower()
        if op["op"] not in ("add", "replace", "remove"):
            raise bad(f"unknown op {op['op']!r}", "invalidSyntax")
        if op.get("path") is not None and not isinstance(op["path"], str):
            raise bad("path must be a string", "invalidPath")
    return ops


def _unqualified(path: str) -> str:
    """`urn:...:core:2.0:User:name.givenName` -> `name.givenName`; an extension's attribute
    stays under its URN (`urn:...:enterprise:2.0:User:department`)."""
    if path.lower().startswith(USER.lower() + ":"):
        return path[len(USER) + 1:]
    return path


def _set_path(state: dict[str, Any], path: str, value: Any, remove: bool) -> None:
    if path.lower().startswith("urn:"):
        urn, _, attribute = path.rpartition(":")
        container = state.setdefault(_key(state, urn), {})
        if not isinstance(container, dict):
            raise bad(f"{urn} is not an object", "invalidPath")
        _assign(container, attribute, value, remove)
        return
    head, _, tail = path.partition(".")
    if not tail:
        _assign(state, head, value, remove)
        return
    container = state.setdefault(_key(state, head), {})
    if not isinstance(container, dict):
        raise bad(f"{head} is not an object", "invalidPath")
    _assign(container, tail, value, remove)


def _assign(state: dict[str, Any], name: str, value: Any, remove: bool) -> None:
    if not re.fullmatch(r"[A-Za-z$][\w$-]*", name):
        raise bad(f"not an attribute path: {name!r}", "invalidPath")
    if remove:
        state.pop(_key(state, name), None)
    else:
        state[_key(state, name)] = value


def _set_filtered(state: dict[str, Any], found: re.Match[str], value: Any, remove: bool) -> None:
    """`emails[type eq "work"].value`: the matching elements (one is added when none match)."""
    attribute, sub, wanted, leaf = found.groups()
    key = _key(state, attribute)
    items = state.get(key) if isinstance(state.get(key), list) else []
    assert isinstance(items, list)
    matches = [i for i in items if isinstance(i, dict) and str(i.get(sub)) == wanted]
    if remove:
        kept = [i for i in items if i not in matches] if leaf is None else items
        for item in matches if leaf is not None else ():
            item.pop(leaf, None)
        state[key] = kept
        return
    if not matches:
        matches = [{sub: wanted}]
        items.append(matches[0])
    for item in matches:
        if leaf is None:
            if not isinstance(value, dict):
                raise bad(f"{attribute}[...] takes an object", "invalidValue")
            item.update(value)
        else:
            item[leaf] = value
    state[key] = items


def patch_user(state: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """`state` with the operations applied (a new dict; `state` is left as it was)."""
    patched: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(state))
    for op in ops:
        remove, path, value = op["op"] == "remove", op.get("path"), op.get("value")
        if path is None:
            if remove or not isinstance(value, dict):
                raise bad("an operation without a path needs an object value", "noTarget")
            for name, item in value.items():
                _set_path(patched, _unqualified(name), item, False)
            continue
        path = _unqualified(path)
        filtered = _FILTERED.match(path)
        if filtered is not None:
            _set_filtered(patched, filtered, value, remove)
        elif path.lower() in ("username", "id", "meta", "groups", "schemas") and remove:
            raise bad(f"{path} cannot be removed", "mutability")
        else:
            _set_path(patched, path, value, remove)
    return patched


# groups -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupValues:
    display_name: str
    external_id: str | None
    members: list[UUID] | None  # None: not given


def member_ids(value: Any) -> list[UUID]:
    """`[{"value": "<scim user id>"}, ...]` -> the ids (one object alone is taken as a list)."""
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items:
        raw = item.get("value") if isinstance(item, dict) else None
        try:
            found.append(UUID(str(raw)))
        except ValueError:
            raise bad("members are objects {\"value\": \"<user id>\"}") from None
    return found


def group_values(body: dict[str, Any]) -> GroupValues:
    name = _text(_get(body, "displayName"), "displayName", required=True, limit=256)
    assert name is not None
    members = _get(body, "members")
    return GroupValues(name, _text(_get(body, "externalId"), "externalId"),
                       None if members is None else member_ids(members))


@dataclass
class GroupPatch:
    """What a group PATCH does, in order: rename, then set, add and remove members."""

    display_name: str | None = None
    external_id: str | None = None
    replace: list[UUID] | None = None
    add: list[UUID] | None = None
    remove: list[UUID] | None = None
    remove_all: bool = False


def _group_value_object(patch: GroupPatch, value: Any) -> None:
    if not isinstance(value, dict):
        raise bad("an operation without a path needs an object value", "noTarget")
    for name, item in value.items():
        lowered = name.lower()
        if lowered == "displayname":
            patch.display_name = _text(item, "displayName", required=True, limit=256)
        elif lowered == "externalid":
            patch.external_id = _text(item, "externalId")
        elif lowered == "members":
            patch.replace = member_ids(item)
        elif lowered not in ("id", "schemas", "meta"):
            raise bad(f"a group has no attribute {name}", "invalidPath")


def _group_members_op(patch: GroupPatch, op: str, value: Any) -> None:
    ids = member_ids(value) if value is not None else None
    if op == "remove":
        if ids is None:
            patch.remove_all = True
        else:
            patch.remove = (patch.remove or []) + ids
    elif ids is None:
        raise bad("adding members needs a value", "invalidValue")
    elif op == "add":
        patch.add = (patch.add or []) + ids
    else:
        patch.replace, patch.add, patch.remove = ids, None, None


def group_patch(ops: list[dict[str, Any]]) -> GroupPatch:
    patch = GroupPatch()
    for op in ops:
        name, path, value = op["op"], op.get("path"), op.get("value")
        if path is None:
            if name == "remove":
                raise bad("remove needs a path", "noTarget")
            _group_value_object(patch, value)
            continue
        filtered = _FILTERED.match(path)
        lowered = path.lower()
        if filtered is not None and filtered.group(1).lower() == "members" and \
                filtered.group(2).lower() == "value" and name == "remove":
            patch.remove = (patch.remove or []) + member_ids({"value": filtered.group(3)})
        elif lowered == "members":
            _group_members_op(patch, name, value)
        elif lowered == "displayname" and name != "remove":
            patch.display_name = _text(value, "displayName", required=True, limit=256)
        elif lowered == "externalid":
            patch.external_id = None if name == "remove" else _text(value, "externalId")
        else:
            raise bad(f"unsupported path {path}", "invalidPath")
    return patch
