"""`argus bench`, run as a command over a directory of small benchmarks: it runs only the
benchmarks (not the servers beside them), collects their figures and ratios into results.json,
writes the README table between its markers, and fails naming a benchmark that failed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from argus_shared.cli.bench import figures
from support.processes import run_to_exit

ARGUS = str(Path(sys.executable).parent / "argus")

FAST = '''"""Benchmark: a fast one."""
print("thing/s          :   1200.5  (median of 3)")
print("baseline thing/s :   1500.0")
print("ratio            :     0.80  (target >= 0.7)")
'''
SERVER = '''"""The baseline server for another benchmark; not itself one."""
raise SystemExit("a server must not be run as a benchmark")
'''
BROKEN = '''"""Benchmark: one that fails."""
print("ratio to nothing : 0.10")
raise SystemExit(3)
'''


def bench_dir(tmp_path: Path, *broken: bool) -> Path:
    directory = tmp_path / "bench"
    directory.mkdir()
    (directory / "fast.py").write_text(FAST)
    (directory / "bare_server.py").write_text(SERVER)
    if broken:
        (directory / "broken.py").write_text(BROKEN)
    return directory


def test_every_benchmark_runs_and_its_figures_are_written(tmp_path: Path) -> None:
    directory = bench_dir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nafter\n")
    code, output = run_to_exit([ARGUS, "bench", "--dir", str(directory), "--readme",
                                str(readme)], {})
    assert code == 0, output
    report = json.loads((directory / "results.json").read_text())
    assert list(report["benchmarks"]) == ["fast"]
    fast = report["benchmarks"]["fast"]
    assert fast["exit_code"] == 0
    assert [(f["label"], f["value"]) for f in fast["figures"]] == [
        ("thing/s", 1200.5), ("baseline thing/s", 1500.0), ("ratio", 0.8)]
    assert report["machine"]["cpus"] >= 1
    text = readme.read_text()
    assert "old table" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| fast | ratio | 0.8 | (target >= 0.7) |" in text


def test_a_failing_benchmark_fails_the_command_naming_it(tmp_path: Path) -> None:
    directory = bench_dir(tmp_path, True)
    code, output = run_to_exit([ARGUS, "bench", "--dir", str(directory)], {})
    assert code == 1
    assert output.strip().splitlines()[-1] == "argus: broken failed; their output is above"
    report = json.loads((directory / "results.json").read_text())
    assert report["benchmarks"]["broken"]["exit_code"] == 3
    assert report["benchmarks"]["fast"]["exit_code"] == 0


def test_an_unknown_benchmark_is_one_line_listing_the_known(tmp_path: Path) -> None:
    directory = bench_dir(tmp_path)
    code, output = run_to_exit([ARGUS, "bench", "--dir", str(directory), "nope"], {})
    assert code == 1
    assert output.strip() == f"argus: no benchmark nope in {directory} (there are: fast)"
    assert not (directory / "results.json").exists()


def test_figures_are_the_label_value_lines_only() -> None:
    found = figures("argon2id m=65536KiB t=3\nratio logins/raw : 0.91  (target >= 0.85)\n"
                    "/healthz p99 during storm    :     4.2 ms  (target < 20 ms)\nno figure\n")
    assert [(f.label, f.value, f.notes, f.is_ratio) for f in found] == [
        ("ratio logins/raw", 0.91, "(target >= 0.85)", True),
        ("/healthz p99 during storm", 4.2, "ms  (target < 20 ms)", False)]
