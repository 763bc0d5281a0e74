"""docker-compose.yml: valid against the Compose Specification's own JSON schema (vendored,
see SOURCES.md; what `docker compose config` checks), and started in a complete, acyclic
order: nothing that needs PostgreSQL, NATS or the migrations starts before they are ready."""

from __future__ import annotations

import copy
import json
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from argus_shared.devsecrets import KEYRINGS, PASSWORD_FILES
from argus_shared.gateway_rules import GATEWAY
from argus_shared.settings import SERVICES

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def test_compose_is_valid_against_the_compose_spec_schema() -> None:
    assert errors(compose()) == []


@pytest.mark.parametrize("breakage", ["condition", "healthcheck", "unknown key"])
def test_the_schema_refuses_what_compose_would(breakage: str) -> None:
    broken = copy.deepcopy(compose())
    if breakage == "condition":
        broken["services"]["auth"]["depends_on"]["migrate"]["condition"] = "service_done"
    elif breakage == "healthcheck":
        broken["services"]["postgres"]["healthcheck"]["interval"] = 5
    else:
        broken["services"]["files"]["read_only_root"] = True
    assert errors(broken), breakage


def depends(spec: dict[str, Any]) -> dict[str, str]:
    entries = spec.get("depends_on") or {}
    if isinstance(entries, list):
        return dict.fromkeys(entries, "service_started")
    return {name: (value or {}).get("condition", "service_started")
            for name, value in entries.items()}


def test_the_start_order_is_acyclic_and_every_condition_can_be_met() -> None:
    services = compose()["services"]
    graph = {name: set(depends(spec)) for name, spec in services.items()}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"depends_on has a cycle: {exc.args[1]}")
    assert set(order) == set(services)
    for name, spec in services.items():
        for dependency, condition in depends(spec).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            target = services[dependency]
            if condition == "service_healthy":
                check = target.get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {dependency} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully":
                assert target.get("restart", "no") == "no", (
                    f"{name} waits for {dependency} to exit; it is restarted instead")
            else:
                assert condition == "service_started", condition


def test_what_needs_the_database_nats_or_migrations_waits_for_them() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        env = spec.get("environment") or {}
        after = depends(spec)
        if "ARGUS_DATABASE_URL" in env:
            assert after.get("postgres") == "service_healthy", name
        if "ARGUS_NATS_URL" in env:
            assert after.get("nats") == "service_healthy", name
        if env.get("ARGUS_MIGRATE_ON_START") == "false":
            assert after.get("migrate") == "service_completed_successfully", name
    for service in SERVICES:
        assert services[service]["environment"]["ARGUS_MIGRATE_ON_START"] == "false"
    # the gateway starts once every upstream of its rendered configuration answers /readyz
    upstreams = {upstream.name for upstream in GATEWAY.services}
    assert upstreams == set(SERVICES)
    gateway = depends(services["gateway"])
    assert all(gateway.get(u) == "service_healthy" for u in upstreams), gateway


def test_every_container_runs_read_only_and_secrets_are_the_files_it_reads() -> None:
    project = compose()
    for name, spec in project["services"].items():
        if name not in ("postgres", "nats"):  # their data directories are their whole write
            assert spec.get("read_only") is True, name
        env = spec.get("environment") or {}
        given = set(spec.get("secrets") or [])
        assert given <= set(project.get("secrets", {})), name
        read = {Path(v).name for k, v in env.items()
                if k.endswith("_FILE") and str(v).startswith("/run/secrets/")}
        if name == "migrate":  # `argus migrate` reads the role passwords from ARGUS_DATA_DIR
            read |= {*PASSWORD_FILES, *KEYRINGS}
        assert read == given, f"{name}: reads {sorted(read)}, is given {sorted(given)}"
        for key in env:
            assert not re.search(r"(PASSWORD|SECRET|KEYS|TOKEN)$", key), (name, key)
