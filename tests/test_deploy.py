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

from argus_shared.gateway_nginx import FORMS, render
from argus_shared.gateway_rules import GATEWAY
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


def test_every_service_and_the_gateway_is_a_hardened_deployment_with_probes() -> None:
    deployments = {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}
    assert set(deployments) == {*SERVICES, "argus-gateway"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        ready = "/healthz" if name == "argus-gateway" else "/readyz"
        assert container["readinessProbe"]["httpGet"]["path"] == ready
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        hardening = container["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True
        assert hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"]
        if name == "argus-gateway":
            continue  # no secrets at all: test_the_k8s_gateway_runs_the_rendered_config
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


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_committed_nginx_configs_are_fresh_renders_of_the_gateway_table(form: str) -> None:
    committed = (ROOT / FORMS[form].path).read_text()
    assert committed == render(form), (
        f"{FORMS[form].path} differs from the gateway table: run "
        f"`argus gateway render {form} > {FORMS[form].path}`"
    )


def test_compose_serves_the_rendered_config() -> None:
    gateway = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gateway"]
    assert gateway["image"].startswith("nginx:")
    assert f"./{FORMS['compose'].path}:/etc/nginx/conf.d/default.conf:ro" in gateway["volumes"]
    assert gateway["ports"] == ["8080:8080"] and FORMS["compose"].listen == "8080"


def test_the_k8s_gateway_runs_the_rendered_config() -> None:
    base = ROOT / "deploy" / "k8s" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    rendered = Path(FORMS["k8s"].path).relative_to("deploy/k8s/base")
    assert generated["argus-gateway"]["files"] == [f"nginx.conf={rendered}"]
    documents = k8s_documents()
    [deployment] = [d for d in documents
                    if d["kind"] == "Deployment" and d["metadata"]["name"] == "argus-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/argus-gateway"]]["configMap"]["name"] == "argus-gateway"
    assert "emptyDir" in volumes[mounts["/tmp"]]  # -p /tmp/: pid and temp paths, nothing else
    assert container["command"] == ["nginx", "-p", "/tmp/", "-e", "stderr",
                                    "-c", "/etc/argus-gateway/nginx.conf"]
    assert not any("secret" in v for v in pod["volumes"]) and "env" not in container
    assert pod["securityContext"]["runAsUser"] != 0
    [port] = container["ports"]
    assert str(port["containerPort"]) == FORMS["k8s"].listen
    [service] = [d for d in documents
                 if d["kind"] == "Service" and d["metadata"]["name"] == "argus-gateway"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    # the rendered upstreams are the Services of the base, at their ports
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    for upstream in GATEWAY.services:
        assert upstream.port in [p["port"] for p in services[upstream.name]["spec"]["ports"]]
        assert f"server {upstream.name}:{upstream.port};" in render("k8s")


def test_the_ingress_sends_everything_to_the_gateway_and_nothing_elsewhere() -> None:
    documents = k8s_documents()
    ingresses = [d for d in documents if d["kind"] == "Ingress"]
    assert len(ingresses) == 1
    [ingress] = ingresses
    backends = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert backends == [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "argus-gateway", "port": {"name": "http"}}}}]
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-body-size"] == f"{GATEWAY.max_body_bytes // 2**20}m"
    assert GATEWAY.max_body_bytes % 2**20 == 0
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    assert annotations[prefix + "proxy-buffering"] == "off"
    # no rewrite, regex or snippet that would change the target before the gateway sees it
    assert not {k for k in annotations if re.search(r"rewrite|regex|snippet", k)}


def test_only_the_ingress_controller_reaches_the_gateway_and_only_the_gateway_the_services(
) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in k8s_documents()
                if d["kind"] == "NetworkPolicy"}
    gateway = policies["argus-gateway"]
    assert gateway["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "gateway"}}
    [allowed] = gateway["ingress"]
    assert allowed["from"] == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    services = policies["argus-services"]
    assert services["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["gateway"]}]
    sources = [s for rule in services["ingress"] for s in rule["from"]]
    assert not any("ingress-nginx" in json.dumps(s) for s in sources)
