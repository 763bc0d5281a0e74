"""`argus --help` and `argus help` list every command with what it does, `test` and `lint`
(which `./argus` runs) included; `argus test` and `argus lint` hand their arguments on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.argus_up import ARGUS
from support.processes import run_to_exit

# at least these (`argus --help` may list more)
COMMANDS = ("up", "migrate", "keys", "audit", "gateway", "events", "status", "backup", "backups",
            "restore", "drill", "test", "lint", "help")


def listed(output: str) -> dict[str, str]:
    """The commands the help lists, each with its one-line description."""
    section = output.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        match = re.fullmatch(r" {4}(\S+) +(\S.*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("help",)])
def test_the_help_lists_every_command_with_a_description(args: tuple[str, ...]) -> None:
    code, output = run_to_exit([ARGUS, *args], {"COLUMNS": "100"})
    assert code == 0, output
    commands = listed(output)
    assert set(COMMANDS) <= set(commands), output
    assert all(len(text) > 10 for text in commands.values()), commands
    assert "pytest" in commands["test"]
    assert "ruff" in commands["lint"] and "mypy" in commands["lint"]


def test_help_on_one_command_and_on_none_that_exists() -> None:
    code, output = run_to_exit([ARGUS, "help", "status"], {})
    assert code == 0 and output.startswith("usage: argus status [-h] [--data-dir DATA_DIR]")
    code, output = run_to_exit([ARGUS, "help", "nope"], {})
    assert code == 2 and output.splitlines()[-1].startswith("argus: error: no command 'nope'")
    code, output = run_to_exit([ARGUS], {})
    assert code == 2 and "required: <command>" in output


def test_test_and_lint_pass_their_arguments_on(tmp_path: Path) -> None:
    code, output = run_to_exit([ARGUS, "test", "--version"], {})
    assert code == 0 and output.startswith("pytest "), output
    source = tmp_path / "long.py"
    source.write_text("x = 'a line longer than twenty characters'\n")
    code, output = run_to_exit([ARGUS, "--data-dir", str(tmp_path), "lint", "--isolated",
                                "--select", "E501", "--line-length", "20", str(source)], {})
    assert code == 1 and "E501" in output, output
