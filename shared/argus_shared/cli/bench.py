"""`argus bench`: run every benchmark in bench/, print each figure with its same-run baseline
ratio, and write bench/results.json (and, with --readme, the table between README's markers).

A benchmark is a `bench/*.py` whose docstring starts with "Benchmark:"; the others there are
servers the benchmarks start. Each prints its figures as `label : value  (notes)` lines; a
figure whose label names a ratio is the comparison against the baseline measured in that run.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIGURE = re.compile(r"^\s*(?P<label>[^:]*\S)\s+:\s+(?P<value>-?\d+(?:\.\d+)?)\s*(?P<rest>.*)$")
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


class BenchFailed(Exception):
    """A benchmark exited non-zero, or none matched what was asked for."""


@dataclass
class Figure:
    label: str
    value: float
    notes: str

    @property
    def is_ratio(self) -> bool:
        return "ratio" in self.label.lower()


@dataclass
class Result:
    name: str
    seconds: float
    exit_code: int
    figures: list[Figure] = field(default_factory=list)


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="run the benchmarks in bench/, write "
                                "bench/results.json")
    bench.add_argument("names", nargs="*", metavar="name",
                       help="only these benchmarks (file names without .py; default: all)")
    bench.add_argument("--dir", type=Path, default=Path("bench"), help="where they are (bench)")
    bench.add_argument("--readme", type=Path, default=None, metavar="FILE",
                       help="also write the table between the bench markers of FILE")


def figures(output: str) -> list[Figure]:
    """The `label : value  notes` lines of a benchmark's output."""
    found = []
    for line in output.splitlines():
        match = FIGURE.match(line)
        if match:
            found.append(Figure(match["label"], float(match["value"]), match["rest"].strip()))
    return found


def discover(directory: Path, names: list[str]) -> list[Path]:
    """The benchmarks of a directory (or the named ones), in name order."""
    if not directory.is_dir():
        raise BenchFailed(f"{directory} is not a directory of benchmarks")
    found = {p.stem: p for p in sorted(directory.glob("*.py")) if _is_benchmark(p)}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise BenchFailed(f"no benchmark {', '.join(unknown)} in {directory} "
                          f"(there are: {', '.join(found) or 'none'})")
    return [found[n] for n in names] if names else list(found.values())


def _is_benchmark(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.startswith("Benchmark:")


def run_one(path: Path) -> Result:
    """Run one benchmark in this environment, echoing its output as it comes."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        sys.stdout.write(f"  {line}")
        lines.append(line)
    code = process.wait()
    return Result(path.stem, round(time.monotonic() - started, 1), code, figures("".join(lines)))


def machine() -> dict[str, Any]:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.machine()}


def table(results: list[Result], when: str, where: dict[str, Any]) -> str:
    """The Markdown table of every ratio, with the machine and time it came from."""
    rows = ["| benchmark | ratio | value | notes |", "|---|---|---:|---|"]
    for result in results:
        ratios = [f for f in result.figures if f.is_ratio]
        if result.exit_code != 0:
            rows.append(f"| {result.name} | failed (exit {result.exit_code}) | | |")
        for fig in ratios:
            notes = fig.notes.replace("|", "/")
            rows.append(f"| {result.name} | {fig.label} | {fig.value:g} | {notes} |")
    head = (f"Latest `./argus bench` on {where['host']} ({where['cpus']} CPUs, "
            f"{where['processor']}, Python {where['python']}), {when}:")
    return "\n".join([head, "", *rows])


def replace_block(text: str, block: str) -> str:
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise BenchFailed(f"the README has no {README_START} … {README_END} block")
    return f"{text[:start + len(README_START)]}\n{block}\n{text[end:]}"


def run(args: argparse.Namespace) -> None:
    paths = discover(args.dir, args.names)
    results = []
    for path in paths:
        print(f"{path.stem}:", flush=True)
        results.append(run_one(path))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    report = {"when": when, "machine": where,
              "benchmarks": {r.name: asdict(r) for r in results}}
    (args.dir / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = table(results, when, where)
    print(f"\n{summary}\n\nwritten to {args.dir / 'results.json'}")
    if args.readme is not None:
        args.readme.write_text(replace_block(args.readme.read_text(encoding="utf-8"), summary),
                               encoding="utf-8")
    failed = [r.name for r in results if r.exit_code != 0]
    if failed:
        raise BenchFailed(f"{', '.join(failed)} failed; their output is above")
