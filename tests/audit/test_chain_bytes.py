"""The chain's bytes are pinned: canonical_json writes exactly what json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False) writes for any value decoded from JSON, through
public APIs only (msgspec, with Python's float form), and rows hash as they always have."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from argus_audit import chain

TRICKY: list[Any] = [
    1e16, 1e-05, 1e-4, 1e15, 1e22, 1e-7, -0.0, 0.0, 5e-324, 1.7976931348623157e308,
    2.2250738585072014e-308, 0.1, 1.5, 100.0, 123456789012345678.0, -1234.5e-10,
    0, -1, 2**63 - 1, 2**63, 2**64, 2**70, -(2**70), 10**400,
    "", "\x00\x01\x08\t\n\x0b\x0c\r\x1f", '"\\/', "\x7f", "\u2028\u2029", "\ufeff\uffff",
    "é☃😀", "1.5", ":1.5", "[1e5", ",2E3", "\\u0000",
    True, False, None, [], {}, [[]], {"": {}},
    {"b": 1, "a": 2, "B": 3, "é": 4, "ÿ": 5, "\uffff": 6, "😀": 7, "": 8, "10": 9, "9": 10},
    {"x": [1.5, {"y": -0.0, "z": [2**70, "a:1.5"]}], "1e5": "1e5", "n": None},
    {"plan": "free", "name": "Acme Inc.", "audit_retention_days": None, "members": 3},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def test_canonical_json_writes_what_json_dumps_writes_for_tricky_values() -> None:
    for value in TRICKY:
        assert chain.canonical_json(value) == reference(value), value
        arrived = msgspec.json.decode(msgspec.json.encode(value))  # as ingest and verify see it
        assert chain.canonical_json(arrived) == reference(value), value


def test_every_character_is_written_as_json_dumps_writes_it() -> None:
    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(characters), 65536):
        text = "".join(characters[start:start + 65536])
        assert chain.canonical_json(text) == reference(text)
        assert chain.canonical_json({text: text}) == reference({text: text})


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(json_values)
def test_canonical_json_is_json_dumps_for_any_json_value(value: Any) -> None:
    assert chain.canonical_json(value) == reference(value)


def test_a_key_that_is_not_a_string_still_writes_as_json_dumps_does() -> None:
    assert chain.canonical_json({2: "b", 10: "a"}) == reference({2: "b", 10: "a"})


def test_stored_links_keep_their_bytes() -> None:
    """A row's hash as the encoder before msgspec (json.encoder's C encoder) wrote it: rows
    already stored verify as they did."""
    row = {"event_id": "5dda5a5b-d932-4ad0-b56b-427fa1fe1cb3",
           "org_id": "5f2d18cb-cc18-42fc-84e0-647481f07c5e", "seq": 6, "type": "project.tagged",
           "occurred_at": datetime(2026, 5, 1, 15, 0, tzinfo=timezone(timedelta(hours=3))),
           "actor_type": "user", "actor_id": 'x"\\\n\u2028☃\x7f', "resource_type": "project",
           "resource_id": "p", "ip": None, "user_agent": "Mozilla/5.0 (X11; rv:121.0)",
           "request_id": None,
           "data": {"big": 1e16, "small": 1e-05, "negative_zero": -0.0, "tiny": 5e-324,
                    "huge_int": 2**70, "nul": "a\x00b", "line": "\u2028☃😀", "ctl": "\x1f\x7f",
                    "": {}, "é": [1.50, None, True, False],
                    "😀": {"\uffff": 0, "b": "1.5", "a": ":1e5"}}}
    canonical = chain.canonical(row)
    assert len(canonical) == 540
    assert hashlib.sha256(chain.GENESIS + canonical).hexdigest() == (
        "f6690d379f0b8d940c6b86abd88d1b0d749b2425af007a53724f432625d3f2b7")
    row["data"] = {"n": 5}
    assert chain.canonical(row) == reference({
        "event_id": row["event_id"], "org_id": row["org_id"], "seq": 6, "type": row["type"],
        "occurred_at": "2026-05-01T12:00:00.000000+00:00", "actor": ["user", row["actor_id"]],
        "resource": ["project", "p"], "ip": None, "user_agent": row["user_agent"],
        "request_id": None, "data": {"n": 5}})


def test_the_chain_uses_no_private_json_api() -> None:
    tree = ast.parse(inspect.getsource(chain))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "encoder" not in used and "c_make_encoder" not in used
    assert not {name for name in used if name.startswith("_") and name != "__name__"}
