"""Verify an Argus audit export with Python 3.10+ alone (audit-chain.md tells how):
python3 verify_audit_chain.py FILE.ndjson; exit 0 verified, 1 a chain broken, 2 not an export."""
import hashlib
import json
import sys

HASHED = ("data", "event_id", "ip", "occurred_at", "org_id", "request_id", "seq", "type")


def canonical(e: dict) -> bytes:
    doc = {key: e[key] for key in (*HASHED, "user_agent")}
    doc["actor"], doc["resource"] = ([e[k]["type"], e[k]["id"]] for k in ("actor", "resource"))
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def problem(e: dict, heads: dict) -> str | None:
    mark = e.get("retention_checkpoint")  # its signature: `argus audit verify --checkpoint-key`
    if e["org_id"] in heads and mark:
        return "a retention checkpoint in the middle of a chain"
    seq, head = heads.get(e["org_id"]) or ((mark["seq"], mark["hash"]) if mark else (0, "0" * 64))
    if e["seq"] != seq + 1:
        return f"expected seq {seq + 1} (a line before it is missing or out of order)"
    if e["prev_hash"] != head:
        return "prev_hash is not the hash of the link before it"
    if hashlib.sha256(bytes.fromhex(head) + canonical(e)).hexdigest() != e["hash"]:
        return "the event does not give its hash (its content was changed)"
    heads[e["org_id"]] = (e["seq"], e["hash"])
    return None


def main(path: str, heads: dict, count: int = 0) -> tuple[str, int]:
    try:
        with open(path, "rb") as file:
            for count, line in enumerate(file, 1):
                if reason := problem(json.loads(line), heads):
                    return f"line {count}: {reason}", 1
    except OSError as exc:
        return f"{path}: cannot be read: {exc.strerror or exc}", 2
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"line {count}: not an exported event: {exc!r}", 2
    return f"{count} events in {len(heads)} chains verified", 0


if __name__ == "__main__":
    usage = ("usage: python3 verify_audit_chain.py FILE.ndjson", 2)
    message, code = main(sys.argv[1], {}) if len(sys.argv) == 2 else usage
    print(message, file=sys.stderr if code else sys.stdout)
    sys.exit(code)
