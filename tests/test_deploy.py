"""The deployment files (compose, Kubernetes, Prometheus rules, Grafana, nginx) are validated
here, since no container engine runs in CI: structure, secrets only as files, hardening, probes,
and that every metric an alert or panel uses is one the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from argus_shared.settings import SERVICES

ROOT = Path(__file__).parents[1]
METRIC = re.compile(r"\b(argus_[a-z_]+)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def declared_metrics() -> set[str]:
    names = set()
    for path in [*ROOT.glob("shared/argus_shared/*.py"), *ROOT.glob("services/*/argus_*/*.py")]:
        names |= set(re.findall(r'"(argus_[a-z_]+)"', path.read_text()))
    return names


def used_metrics(text: str) -> set[str]:
    found = set()
    for name in METRIC.findall(text):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        found.add(name)
    return found


def test_compose_runs_every_service_with_file_secrets_only() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for service in SERVICES:
        spec = services[service]
        env = spec["environment"]
        assert env["ARGUS_DB_PASSWORD_FILE"] == f"/run/secrets/db-{service}-password"
        assert env["ARGUS_XUT_KEYS_FILE"].startswith("/run/secrets/")
        assert spec["read_only"] is True
        for name, value in env.items():
            assert not re.search(r"(PASSWORD|SECRET|KEYS|TOKEN)$", name), name
            assert "whsec_" not in str(value)
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./deploy/secrets/"), name
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text()


def k8s_documents() -> list[dict[str, Any]]:
    base = ROOT / "deploy" / "k8s" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((base / resource).read_text()) if d]
    assert {p.name for p in base.glob("*.yaml")} == {*kustomization["resources"],
                                                    "kustomization.yaml"}
    return documents


def test_every_service_is_a_hardened_deployment_with_probes() -> None:
    deployments = {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        hardening = container["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True
        assert hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"]
        secret_volumes = [v for v in pod["volumes"] if "secret" in v]
        assert secret_volumes and all(m.get("readOnly") for m in container["volumeMounts"]
                                      if m["name"] == "secrets")
        assert all("value" not in e or "PASSWORD" not in e["name"] or
                   e["name"].endswith("_FILE") for e in container.get("env", [])), name


@pytest.mark.parametrize("path", ["deploy/prometheus/rules.yml", "deploy/grafana/argus.json"])
def test_alerts_and_panels_use_metrics_the_services_export(path: str) -> None:
    text = (ROOT / path).read_text()
    if path.endswith(".json"):
        json.loads(text)
    else:
        rules = yaml.safe_load(text)["groups"][0]["rules"]
        assert all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    used = used_metrics(text)
    assert used, path
    missing = used - declared_metrics()
    assert not missing, f"{path} uses metrics nobody exports: {sorted(missing)}"


def test_the_gateway_config_never_routes_internal_or_metrics() -> None:
    conf = (ROOT / "deploy" / "nginx" / "argus.conf").read_text()
    assert re.search(r"location ~\* .*\(internal\|metrics\).*return 404", conf)
    assert 'proxy_set_header X-User-Token "";' in conf
    for prefix, service in (("auth", "auth"), ("tenant", "tenant_api"), ("audit", "audit"),
                            ("webhooks", "webhooks"), ("files", "files")):
        assert re.search(rf"location /{prefix}/ +\{{ proxy_pass http://{service}/; \}}", conf)
