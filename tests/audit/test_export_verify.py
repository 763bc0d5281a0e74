"""A third party verifies an org's audit chain from its NDJSON export alone: with
`argus audit verify` and with the standalone docs/verify_audit_chain.py, both run as real
processes on a real export; every tampering is named at its line."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from argus_audit import chain, export
from argus_audit.maintenance import prune
from argus_shared import events, xut
from argus_shared.db import connect
from argus_shared.nats import connect as nats_connect
from argus_shared.settings import OWNER_ROLE
from support.audit_service import Audit
from support.infra import Infra
from support.processes import environ_for
from support.suite import Suite

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "docs" / "verify_audit_chain.py"
ARGUS = str(Path(sys.executable).parent / "argus")
Tool = Callable[[Path], tuple[int, str, str]]


def run(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, env=environ_for({}), capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def cli(path: Path, *extra: str) -> tuple[int, str, str]:
    return run([ARGUS, "audit", "verify", str(path), *extra])


def script(path: Path) -> tuple[int, str, str]:
    # -I -S: no site-packages, no environment, no current directory: the standard library only
    return run([sys.executable, "-I", "-S", str(SCRIPT), str(path)])


TOOLS: dict[str, Tool] = {"argus audit verify": cli, "verify_audit_chain.py": script}


async def org_with_log(suite: Suite, audit: Audit) -> tuple[Any, str, str]:
    owner = await suite.user()
    org = await suite.org(owner)
    token = await suite.switch(owner, org)
    await audit.events_until(org, token, lambda evs: any(e["type"] == "org.created"
                                                          for e in evs))
    return owner, org, token


async def publish(audit: Audit, infra: Infra, event: events.Event, sub: str) -> None:
    body = events.encode(event)
    header = xut.sign(audit.settings.xut_keys, xut.Identity(sub=sub, org=event.org_id),
                      issuer="tenant-api", audience=events.EVENTS_AUDIENCE, body=body)
    nc = await nats_connect(infra.nats_url, "publisher")
    await nc.jetstream().publish(f"argus.events.tenant-api.{event.type}", body,
                                 headers={xut.HEADER: header, "Nats-Msg-Id": event.id})
    await nc.close()


async def exported(audit: Audit, org: str, token: str, path: Path) -> list[bytes]:
    status, text = await audit.get(f"/orgs/{org}/audit/export.ndjson", token)
    assert status == 200
    path.write_text(text)
    return path.read_bytes().splitlines(keepends=True)


async def org_with_awkward_log(suite: Suite, audit: Audit, infra: Infra) -> tuple[str, str]:
    """An org whose chain holds what is hardest to export and hash alike: numbers jsonb would
    rewrite, a NUL, U+2028, and an event at a whole second (no microseconds)."""
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    data = {"big": 1e16, "negative_zero": -0.0, "tiny": 5e-324, "small": 1e-05,
            "huge_int": 2**70, "nul": "a\u0000b", "line": "\u2028☃😀", "ctl": "\x1f\x7f",
            "nested": {"b": [1.50, None], "a": True, "": {}}}
    event = events.new_event("project.tagged", actor=events.Actor("user", owner.id),
                             resource=events.Resource("project", "p"), org_id=org, data=data)
    event.occurred_at = "2026-05-01T12:00:00+00:00"
    await publish(audit, infra, event, f"user:{owner.id}")
    await audit.events_until(org, token, lambda evs: sum(
        e["type"] in ("project.created", "project.tagged") for e in evs) == 2)
    return org, token


def verified(result: tuple[int, str, str], lines: list[bytes]) -> None:
    code, out, err = result
    assert (code, out, err) == (0, f"{len(lines)} events in 1 chains verified\n", ""), result


def broken_at(result: tuple[int, str, str], line: int, why: str) -> None:
    code, out, err = result
    assert code == 1 and out == "", result
    assert err.count("\n") == 1 and f"line {line}" in err and why in err, err


def tampered(lines: list[bytes], index: int, change: Callable[[dict], None]) -> list[bytes]:
    item = json.loads(lines[index])
    change(item)
    return [*lines[:index], json.dumps(item).encode() + b"\n", *lines[index + 1:]]


def flip_hash(item: dict) -> None:
    item["hash"] = ("1" if item["hash"][0] != "1" else "2") + item["hash"][1:]


def change_data(item: dict) -> None:
    item["data"]["tampered"] = True


async def test_an_export_verifies_with_the_cli_and_the_standalone_script(
    suite: Suite, audit: Audit, infra: Infra, tmp_path: Path
) -> None:
    org, token = await org_with_awkward_log(suite, audit, infra)
    lines = await exported(audit, org, token, tmp_path / "audit.ndjson")
    tagged = next(json.loads(line) for line in lines if b'"project.tagged"' in line)
    assert tagged["occurred_at"] == "2026-05-01T12:00:00.000000+00:00"
    assert tagged["data"]["huge_int"] == 2**70 and len(lines) >= 4
    for name, tool in TOOLS.items():
        print(name)
        verified(tool(tmp_path / "audit.ndjson"), lines)


async def test_every_tampering_is_named_at_its_line(
    suite: Suite, audit: Audit, infra: Infra, tmp_path: Path
) -> None:
    org, token = await org_with_awkward_log(suite, audit, infra)
    lines = await exported(audit, org, token, tmp_path / "audit.ndjson")
    tagged = next(i for i, line in enumerate(lines) if b'"project.tagged"' in line)
    cases = {  # the file, the line named (from 1), why
        "data changed": (tampered(lines, tagged, change_data), tagged + 1, "content"),
        "a line deleted": ([*lines[:2], *lines[3:]], 3, "expected seq 3"),
        "the first line deleted": (lines[1:], 1, "expected seq 1"),
        "two lines swapped": ([lines[0], lines[2], lines[1], *lines[3:]], 2,
                              "expected seq 2"),
        "a hash changed": (tampered(lines, 1, flip_hash), 2, "content"),
        "prev_hash changed": (tampered(lines, 2, lambda e: e.update(prev_hash="0" * 64)), 3,
                              "prev_hash"),
    }
    for case, (content, line, why) in cases.items():
        path = tmp_path / "tampered.ndjson"
        path.write_bytes(b"".join(content))
        for name, tool in TOOLS.items():
            print(case, name)
            broken_at(tool(path), line, why)


async def test_unreadable_or_malformed_input_exits_2(
    suite: Suite, audit: Audit, tmp_path: Path
) -> None:
    _, org, token = await org_with_log(suite, audit)
    lines = await exported(audit, org, token, tmp_path / "audit.ndjson")
    first = json.loads(lines[0])
    del first["prev_hash"]
    files = {
        "not json": [lines[0], b"{not json\n"],
        "a field missing": [json.dumps(first).encode() + b"\n"],
        "not utf-8": [lines[0], b'{"seq": "\xff"}\n'],
    }
    for case, content in files.items():
        path = tmp_path / f"{case}.ndjson"
        path.write_bytes(b"".join(content))
        for name, tool in TOOLS.items():
            code, out, err = tool(path)
            assert code == 2 and out == "" and err.count("\n") == 1, (case, name, code, err)
            assert "line 2" in err if len(content) == 2 else "line 1" in err, (case, name, err)
    for name, tool in TOOLS.items():
        for path in (tmp_path / "missing.ndjson", tmp_path):
            code, out, err = tool(path)
            assert code == 2 and out == "" and err.count("\n") == 1, (name, path, err)
    code, _, err = cli(tmp_path / "audit.ndjson", "--checkpoint-key", "xyz")
    assert code == 2 and "--checkpoint-key" in err and err.count("\n") == 1


async def test_an_export_after_retention_starts_at_its_signed_checkpoint(
    suite: Suite, audit: Audit, admin: asyncpg.Connection, database_url: str,
    owner_password: str, tmp_path: Path,
) -> None:
    owner, org, token = await org_with_log(suite, audit)
    await suite.project(org, owner)
    await audit.events_until(org, token, lambda evs: len(evs) >= 4)
    await admin.execute("select audit.ensure_partitions(now() - interval '4 months', 4)")
    async with admin.transaction():  # age the first two events past the free plan's 90 days
        await admin.execute("set local session_replication_role = replica")
        await admin.execute("update audit.audit_events set received_at = now()"
                            " - interval '100 days' where org_id = $1 and seq <= 2",
                            uuid.UUID(org))
    conn = await connect(database_url, OWNER_ROLE, owner_password)
    try:
        await prune(conn, audit.master)
    finally:
        await conn.close()
    path = tmp_path / "audit.ndjson"
    lines = await exported(audit, org, token, path)
    first = json.loads(lines[0])
    mark = first["retention_checkpoint"]
    assert first["seq"] == 3 and mark["seq"] == 2 and first["prev_hash"] == mark["hash"]
    assert not any(b"retention_checkpoint" in line for line in lines[1:])
    _, key = await audit.get("/checkpoint-key", token)
    assert cli(path, "--checkpoint-key", key["public_key"]) == (
        0, f"{len(lines)} events in 1 chains verified\n", "")
    code, out, _ = cli(path)
    assert code == 0 and "signature was not checked" in out
    verified(script(path), lines)
    wrong = bytes(32).hex()  # a valid point, not the signing key
    broken_at(cli(path, "--checkpoint-key", wrong), 1, "signature")
    forged = tampered(lines, 0, lambda e: e["retention_checkpoint"].update(seq=1))
    path.write_bytes(b"".join(forged))
    for tool in TOOLS.values():
        broken_at(tool(path), 1, "expected seq 2")
    path.write_bytes(b"".join([lines[0], *tampered(lines, 1, lambda e: e.update(
        retention_checkpoint=mark))[1:]]))
    for tool in TOOLS.values():
        broken_at(tool(path), 2, "in the middle of a chain")


def test_the_standalone_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= sys.stdlib_module_names, imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert "argus_" not in SCRIPT.read_text().replace("argus audit verify", "")
    body = [line for line in SCRIPT.read_text().splitlines() if line.strip()]
    assert len(body) <= 40, len(body)  # "about 30 lines"


DOC = ROOT / "docs" / "audit-chain.md"


def example(name: str) -> str:
    """The text of the code block after `<!-- example:name -->` in the doc."""
    found = re.search(rf"<!-- example:{name} -->\n```\w*\n(.*?)\n```\n", DOC.read_text(), re.S)
    assert found, name
    return found.group(1)


def table(name: str) -> list[tuple[str, str]]:
    """The first `code` of each cell of the table after `<!-- example:name -->`."""
    found = re.search(rf"<!-- example:{name} -->\n((?:\|.*\n)+)", DOC.read_text())
    assert found, name
    rows = found.group(1).splitlines()[2:]
    cells = [[re.match(r"\s*`([^`]*)`", cell) for cell in row.strip("|").split(" | ")]
             for row in rows]
    return [(left.group(1), right.group(1)) for left, right, *_ in cells if left and right]


def standalone() -> Any:
    spec = importlib.util.spec_from_file_location("verify_audit_chain", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canonical_both_ways(line: dict[str, Any]) -> bytes:
    """The canonical bytes as the service's chain and the standalone script write them."""
    row = {"event_id": line["event_id"], "org_id": line["org_id"], "seq": line["seq"],
           "type": line["type"], "occurred_at": line["occurred_at"],
           "actor_type": line["actor"]["type"], "actor_id": line["actor"]["id"],
           "resource_type": line["resource"]["type"], "resource_id": line["resource"]["id"],
           "ip": line["ip"], "user_agent": line["user_agent"],
           "request_id": line["request_id"], "data": line["data"]}
    ours = chain.canonical(row)
    assert standalone().canonical(line) == ours
    return ours


def test_the_documented_worked_example_is_true() -> None:
    first, second = json.loads(example("export-1")), json.loads(example("export-2"))
    canonical = example("canonical-1").encode()
    assert canonical_both_ways(first) == canonical
    assert f"{len(canonical)} bytes, no newline" in DOC.read_text()
    assert first["seq"] == 1 and first["prev_hash"] == "0" * 64
    assert hashlib.sha256(bytes(32) + canonical).hexdigest() == example("sha256-1") \
        == first["hash"]
    assert second["seq"] == 2 and second["prev_hash"] == first["hash"]
    assert canonical_both_ways(second) == example("canonical-2").encode()
    assert hashlib.sha256(bytes.fromhex(first["hash"]) + example("canonical-2").encode()) \
        .hexdigest() == second["hash"]
    awkward = json.loads(example("export-awkward"))
    canonical = ast.literal_eval(example("canonical-awkward"))
    assert canonical_both_ways(awkward) == canonical
    assert hashlib.sha256(bytes.fromhex(awkward["prev_hash"]) + canonical).hexdigest() \
        == example("sha256-awkward") == awkward["hash"]


def test_the_documented_retention_checkpoint_is_true() -> None:
    line = json.loads(example("export-retention"))
    mark = line["retention_checkpoint"]
    assert line["seq"] == mark["seq"] + 1 and line["prev_hash"] == mark["hash"]
    message = ast.literal_eval(example("checkpoint-message"))
    assert message == chain.checkpoint_message(uuid.UUID(line["org_id"]), mark["seq"],
                                               bytes.fromhex(mark["hash"]))
    published = json.loads(example("checkpoint-key"))
    assert published["kid"] == mark["kid"]
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(published["public_key"]))
    key.verify(bytes.fromhex(mark["signature"]), message)
    assert hashlib.sha256(bytes.fromhex(mark["hash"]) + canonical_both_ways(line)).hexdigest() \
        == line["hash"]
    assert export.verify_lines([example("export-retention").encode()], key).events == 1


def test_the_documented_encodings_are_true() -> None:
    numbers, strings = table("numbers"), table("strings")
    assert len(numbers) >= 10 and len(strings) >= 5
    for exported, canonical in numbers:
        assert chain.canonical_json(json.loads(exported)) == canonical.encode(), exported
        assert json.dumps(json.loads(exported), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False) == canonical
    for exported, hex_bytes in strings:
        assert chain.canonical_json(json.loads(exported)) == bytes.fromhex(hex_bytes), exported
