"""`argus demo` against a real `argus up`: every step passes and says what it proved; without a
running suite it is one line and exit 1."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from support.argus_up import argus_up
from support.processes import run_to_exit

ARGUS = str(Path(sys.executable).parent / "argus")
STEPS = ["signed up", "TOTP enrolled", "MFA challenge", "invitation as a member",
         "got 404", "same answer, once in the balance", "byte for byte",
         "signature verified", "refresh token reused", "its export verifies"]


@pytest.mark.timeout(420)
async def test_the_demo_walks_every_control_on_a_running_suite(tmp_path: Path) -> None:
    async with argus_up(tmp_path / "up.log", prefix="argus-demo-") as suite:
        code, output = await asyncio.to_thread(
            run_to_exit, [ARGUS, "--data-dir", str(suite.data_dir), "demo"], {}, 240)
    assert code == 0, output
    done = re.findall(r"^\s+\d+\. ✓ (.*)$", output, flags=re.M)
    for step in STEPS:
        assert any(step in line for line in done), (step, output)
    assert output.rstrip().endswith(f"every control behaved ({len(done)} steps)")


def test_without_a_running_suite_the_demo_is_one_line(tmp_path: Path) -> None:
    code, output = run_to_exit([ARGUS, "--data-dir", str(tmp_path), "demo"], {})
    assert code == 1
    assert output.strip() == (f"argus: no suite is up under {tmp_path.resolve()}; start "
                              f"`argus up` first (with the same --data-dir)")
