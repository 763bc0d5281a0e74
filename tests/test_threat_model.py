"""THREAT_MODEL.md stays true: every threat names tests, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "THREAT_MODEL.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")

REQUIRED = {
    "tenant-crossing", "token-theft", "refresh-reuse", "replay-of-money", "forged-webhooks",
    "ssrf", "enumeration", "pii-in-logs", "csv-injection", "runaway-queries",
    "privilege-escalation", "key-compromise", "backup-theft",
}


def sections(text: str) -> dict[str, str]:
    """Each `### name` section of the page, by name."""
    parts = re.split(r"^### (\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions a file defines, at module level or in a class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def problems(text: str) -> list[str]:
    """What is wrong with a threat-model page: no defence, no test, or a test that is gone."""
    found = []
    for name, body in sections(text).items():
        if "Defence:" not in body:
            found.append(f"{name}: states no defence")
        ids = TEST_ID.findall(body)
        if not ids:
            found.append(f"{name}: names no test")
        for file, function in ids:
            path = ROOT / file
            if not path.is_file() or function not in defined_tests(path):
                found.append(f"{name}: {file}::{function} does not exist")
    return found


def test_every_required_threat_has_a_section() -> None:
    assert REQUIRED - sections(PAGE.read_text(encoding="utf-8")).keys() == set()


def test_every_threat_states_a_defence_and_names_tests_that_exist() -> None:
    assert problems(PAGE.read_text(encoding="utf-8")) == []


def test_a_vanished_test_or_a_threat_without_tests_is_caught() -> None:
    page = ("### gone\nDefence: x.\n- `tests/test_threat_model.py::test_that_was_renamed`\n"
            "### untested\nDefence: y.\n")
    assert problems(page) == [
        "gone: tests/test_threat_model.py::test_that_was_renamed does not exist",
        "untested: names no test",
    ]
