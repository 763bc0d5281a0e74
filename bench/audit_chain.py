"""Benchmark: the chain's canonical bytes of one event (argus_audit.chain.canonical), as a ratio
of what the json module takes to write the same bytes (json.dumps(document, sort_keys=True,
separators=(",", ":"), ensure_ascii=False), the format's definition), in the same process, for
data shaped as the services' events are (and one with floats, the slower path).

    .venv/bin/python bench/audit_chain.py [--calls 20000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import timeit
import uuid
from typing import Any

from argus_audit import chain

DATA: dict[str, Any] = {
    "small int": {"n": 5},
    "org.created": {"name": "Acme Inc.", "slug": "acme", "plan": "free",
                    "audit_retention_days": None},
    "nested": {"filters": {"actor_id": str(uuid.uuid4()), "since": "2026-01-01"},
               "ids": list(range(20))},
    "floats": {"ratio": 1.5, "big": 1e16, "name": "Acme"},
}


def row_of(data: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "org_id": str(uuid.uuid4()), "seq": 12345,
            "type": "project.created", "occurred_at": "2026-05-01T09:00:00.123456+00:00",
            "actor_type": "user", "actor_id": str(uuid.uuid4()), "resource_type": "project",
            "resource_id": str(uuid.uuid4()), "ip": "127.0.0.1",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0",
            "request_id": uuid.uuid4().hex, "data": data}


def by_json_module(row: dict[str, Any]) -> bytes:
    document = {"event_id": row["event_id"], "org_id": row["org_id"], "seq": row["seq"],
                "type": row["type"], "occurred_at": row["occurred_at"],
                "actor": [row["actor_type"], row["actor_id"]],
                "resource": [row["resource_type"], row["resource_id"]], "ip": row["ip"],
                "user_agent": row["user_agent"], "request_id": row["request_id"],
                "data": row["data"]}
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def best(fn: Any, calls: int, rounds: int) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=rounds)) / calls


def main(calls: int, rounds: int) -> None:
    for name, data in DATA.items():
        row = row_of(data)
        assert chain.canonical(row) == by_json_module(row)
        ours, baseline = 1e9, 1e9
        for _ in range(rounds):  # alternate, so machine noise hits both alike
            ours = min(ours, best(lambda row=row: chain.canonical(row), calls, 1))
            baseline = min(baseline, best(lambda row=row: by_json_module(row), calls, 1))
        print(f"{name:12}: canonical {ours * 1e9:6.0f} ns, json.dumps {baseline * 1e9:6.0f} ns,"
              f" ratio {ours / baseline:5.2f}  (lower is faster)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    main(args.calls, args.rounds)
