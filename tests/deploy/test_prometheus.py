"""Prometheus: the shipped scrape configuration and rules pass `promtool check`, and every
alert is unit-tested with `promtool test rules` (tests/deploy/rules_test.yml) on series that
carry exactly the labels that configuration gives them: job argus-<service>, instance
<service>:8000. promtool is Debian's `prometheus` package (`.ci/run` installs it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES_TEST = Path(__file__).parent / "rules_test.yml"
SERIES = re.compile(r"^(\w+)\{(.*)\}$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def promtool(*args: str) -> str:
    from support.tools import require_tool

    tool = require_tool("promtool", "Debian: apt-get install prometheus; .ci/run installs it")
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False,
                          timeout=300, cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_the_scrape_configuration_and_its_rules_pass_promtool_check_config() -> None:
    output = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS" in output and "rules.yml" in output  # it loads the rules it names


def test_the_rules_pass_promtool_check_rules() -> None:
    output = promtool("check", "rules", str(PROMETHEUS / "rules.yml"))
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"][0]["rules"]
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_every_rule_passes_its_promtool_unit_tests() -> None:
    output = promtool("test", "rules", str(RULES_TEST))
    assert "SUCCESS" in output and "FAILED" not in output


def scrape_targets() -> dict[str, set[str]]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return {job["job_name"]: {t for c in job["static_configs"] for t in c["targets"]}
            for job in config["scrape_configs"]}


def labels_of(series: str) -> tuple[str, dict[str, str]]:
    match = SERIES.match(series.strip())
    assert match, series
    return match.group(1), dict(LABEL.findall(match.group(2)))


def test_each_alert_fires_and_stays_quiet_on_series_labelled_as_scraped() -> None:
    suite: dict[str, Any] = yaml.safe_load(RULES_TEST.read_text())
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"][0]["rules"]
    targets = scrape_targets()
    assert set(targets) == {f"argus-{s}" for s in
                            ("auth", "tenant-api", "audit", "webhooks", "files")}
    fired: set[str] = set()
    quiet: set[str] = set()
    jobs_seen: set[str] = set()
    for case in suite["tests"]:
        for entry in case["input_series"]:
            _, labels = labels_of(entry["series"])
            job = labels.get("job")
            if job is None or not job.startswith("argus-"):
                continue  # another job's series, which the alerts must ignore
            assert job in targets, f"{job}: no scrape job of that name"
            assert labels.get("instance") in targets[job], (job, labels.get("instance"))
            jobs_seen.add(job)
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
            for alert in check["exp_alerts"]:
                job = alert["exp_labels"].get("job")
                assert job is None or job in targets, job
    names = {rule["alert"] for rule in rules}
    assert fired == names, f"alerts never shown firing: {sorted(names - fired)}"
    assert quiet == names, f"alerts never shown quiet: {sorted(names - quiet)}"
    assert jobs_seen == set(targets)
    assert suite["rule_files"] == ["../../deploy/prometheus/rules.yml"]

