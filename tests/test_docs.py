"""The README and the pages under docs/ link only to files the repository has (a clone has
nothing beside it), and the architecture page names modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MODULE = re.compile(r"`((?:argus_[a-z_]+/)?[a-z_]+\.py)`")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_point_into_the_repository() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_architecture_page_names_real_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    sources = {p.name for p in ROOT.glob("shared/argus_shared/**/*.py")} | \
        {p.name for p in ROOT.glob("services/*/argus_*/*.py")}
    missing = sorted({name.rsplit("/", 1)[-1] for name in MODULE.findall(text)} - sources)
    assert missing == []
