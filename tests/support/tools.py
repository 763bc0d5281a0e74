"""Command-line tools the deployment tests run: a missing one skips the test, saying how to
install it, except under CI=true, where it is a failure (`.ci/run` installs them)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def require_tool(name: str, install: str) -> str:
    found = shutil.which(name) or (
        str(Path(sys.executable).parent / name)
        if (Path(sys.executable).parent / name).exists() else None)
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is not installed, and CI must run this test with it ({install})")
    pytest.skip(f"{name} is not installed ({install})")
