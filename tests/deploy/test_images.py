"""Each image, built as its Dockerfile builds it, runs as docker-compose.yml and the Kubernetes
base run it: against this run's PostgreSQL and NATS, on a read-only root with only the declared
volumes writable, as the image's (or the pod's) user, with the deployment's environment and
secrets only (support.containers, support.deployments).

- the migrate image provisions roles and schemas and applies every service's migrations;
  in the auth image (what compose and the Job used to run) `argus migrate` cannot even start;
- every service becomes ready (/readyz) after it, compose's and Kubernetes' alike, and files
  keeps its objects in the volume the deployment declares;
- a service whose migrations the migrate step has not applied waits, then stops with one line.

CI builds and runs every image (one shared uv cache: a build is seconds); it needs root and
mount namespaces, which CI has (elsewhere the tests are skipped, saying why).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from argus_shared.embedded import free_port
from argus_shared.migrate import applied_migrations, migrations_for
from argus_shared.runner import package_of
from argus_shared.settings import SERVICES, schema_of
from support.containers import Builder, Container, Dockerfile, require_engine, run, run_to_exit
from support.deployments import (
    ROOT,
    Addresses,
    compose,
    compose_container,
    k8s_containers,
    kustomize_build,
)
from support.infra import Infra
from support.offline import assert_loopback_settings
from support.processes import Proc, wait_ready

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    require_engine()
    return Builder(Dockerfile.parse(ROOT / "Dockerfile"), ROOT,
                   tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def secret_files(infra: Infra, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, dict[str, Path]]:
    """Per deployment, the secret files it is given: the run's own secrets (the roles'
    passwords are the run's), a privileged URL to a database of its own, a loopback SMTP URL.
    Made readable as the README says for compose (`chmod 0644 deploy/secrets/*`)."""
    out: dict[str, dict[str, Path]] = {}
    for flavour in ("compose", "k8s"):
        directory = tmp_path_factory.mktemp(f"secrets-{flavour}")
        database = f"argus_image_{flavour}_{secrets.token_hex(3)}"
        files = {p.name: p for p in infra.secrets.directory.iterdir() if p.is_file()
                 and not p.name.startswith(".")}
        extra = {"database-admin-url": infra.url_for(database, with_admin=True),
                 "smtp-url": f"smtp://127.0.0.1:{free_port()}"}
        made = {}
        for name, source in files.items():
            made[name] = directory / name
            made[name].write_bytes(source.read_bytes())
        for name, text in extra.items():
            made[name] = directory / name
            made[name].write_text(text + "\n")
        for path in made.values():
            path.chmod(0o644)
        made["_database"] = directory / "_database"
        made["_database"].write_text(database)
        out[flavour] = made
    return out


def addresses(infra: Infra, files: dict[str, Path]) -> Addresses:
    database = files["_database"].read_text()
    return Addresses(infra.url_for(database), infra.nats_url, infra.hibp.url, free_port())


def check_loopback(container: Container, files: dict[str, Path]) -> None:
    """What the container reaches is on loopback (secrets read from the files it is given)."""
    env = dict(container.env)
    for name, value in container.env.items():
        if name.endswith("_FILE"):
            key = Path(value).name
            if key in files:
                env[name] = str(files[key])
    assert_loopback_settings(env)


def workdir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    return tmp_path_factory.mktemp(name)


# --- the migrate step ------------------------------------------------------------------------

def k8s_workloads() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    documents = kustomize_build()
    workloads = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("Deployment", "Job")}
    return documents, workloads


def run_migrate(flavour: str, builder: Builder, infra: Infra, files: dict[str, Path],
                where: Path) -> tuple[int, str]:
    if flavour == "compose":
        containers = [compose_container(builder, "migrate", files, addresses(infra, files))]
    else:
        documents, workloads = k8s_workloads()
        containers = k8s_containers(builder, workloads["argus-migrate"], documents, files,
                                    addresses(infra, files))
    output = ""
    for number, container in enumerate(containers):
        assert container.read_only, "the migrate container runs on a read-only root"
        check_loopback(container, files)
        step = where / str(number)
        step.mkdir()
        code, text = run_to_exit(container, step)
        output += text
        if code != 0:
            return code, output
    return 0, output


@pytest.fixture(scope="module")
def migrated(builder: Builder, infra: Infra, secret_files: dict[str, dict[str, Path]],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    return {flavour: run_migrate(flavour, builder, infra, secret_files[flavour],
                                 workdir(tmp_path_factory, f"migrate-{flavour}"))
            for flavour in ("compose", "k8s")}


@pytest.mark.parametrize("flavour", ["compose", "k8s"])
async def test_the_migrate_step_provisions_and_migrates_every_schema(
    flavour: str, migrated: dict[str, tuple[int, str]], infra: Infra,
    secret_files: dict[str, dict[str, Path]],
) -> None:
    code, output = migrated[flavour]
    assert code == 0, output
    database = secret_files[flavour]["_database"].read_text()
    conn = await asyncpg.connect(infra.url_for(database, with_admin=True))
    try:
        for service in SERVICES:
            assert f"{service}: " in output
            wanted = {m.name for m in migrations_for(package_of(service))}
            assert await applied_migrations(conn, schema_of(service)) == wanted, service
            rows = await conn.fetch(f"select name from {schema_of(service)}.schema_migrations")
            assert {r["name"] for r in rows} == wanted
    finally:
        await conn.close()


def test_argus_migrate_cannot_run_in_a_service_image(
    builder: Builder, infra: Infra, secret_files: dict[str, dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What compose and the Job ran before the migrate image: the auth image has no other
    service's package, so their migrations cannot be found."""
    files = secret_files["compose"]
    container = compose_container(builder, "migrate", files, addresses(infra, files))
    container.image = builder.build("service", {"SERVICE": "auth"})
    container.args = ["argus", "--data-dir", "/run", "migrate"]
    code, output = run_to_exit(container, workdir(tmp_path_factory, "migrate-in-auth"))
    assert code == 1
    assert "package argus_tenant_api is not installed" in output


# --- the services ----------------------------------------------------------------------------

def service_container(flavour: str, service: str, builder: Builder, infra: Infra,
                      files: dict[str, Path]) -> Container:
    if flavour == "compose":
        spec = compose()["services"][service]
        depends = spec.get("depends_on", {})
        assert depends.get("migrate") == {"condition": "service_completed_successfully"}
        return compose_container(builder, service, files, addresses(infra, files))
    documents, workloads = k8s_workloads()
    [container] = k8s_containers(builder, workloads[service], documents, files,
                                 addresses(infra, files))
    return container


@pytest.mark.parametrize("flavour", ["compose", "k8s"])
@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_image_becomes_ready_on_a_read_only_root(
    flavour: str, service: str, builder: Builder, infra: Infra,
    secret_files: dict[str, dict[str, Path]], migrated: dict[str, tuple[int, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    assert migrated[flavour][0] == 0, migrated[flavour][1]
    files = secret_files[flavour]
    container = service_container(flavour, service, builder, infra, files)
    assert container.read_only, f"{service} runs on a read-only root"
    check_loopback(container, files)
    where = workdir(tmp_path_factory, f"{flavour}-{service}")
    log = where / "output.log"
    with run(container, where, log) as process:
        await wait_ready(f"http://127.0.0.1:{container.env['ARGUS_PORT']}/readyz",
                         Proc(process, log), timeout=90)
        if service == "files":  # its objects live in the declared volume, nothing else
            [data] = [n for n, m in enumerate(container.mounts)
                      if m.target == container.env["ARGUS_FILES_DIR"]]
            assert (where / f"mount-{data}" / ".uploads").is_dir()


def test_a_service_waits_for_the_migrate_step_then_stops_in_one_line(
    builder: Builder, infra: Infra, secret_files: dict[str, dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Kubernetes starts the Deployments beside the migrate Job: a service whose migrations
    are not (all) applied waits for them, and gives up after ARGUS_MIGRATIONS_WAIT_SECONDS."""
    files = dict(secret_files["k8s"])
    database = f"argus_unmigrated_{secrets.token_hex(3)}"
    asyncio.run(_provisioned_only(infra, database))
    files["_database"] = workdir(tmp_path_factory, "unmigrated") / "_database"
    files["_database"].write_text(database)
    documents, workloads = k8s_workloads()
    [container] = k8s_containers(builder, workloads["audit"], documents, files,
                                 addresses(infra, files))
    container.env["ARGUS_MIGRATIONS_WAIT_SECONDS"] = "2"
    started = time.monotonic()
    code, output = run_to_exit(container, workdir(tmp_path_factory, "audit-waits"))
    assert code == 1 and time.monotonic() - started >= 2
    lines = [line for line in output.splitlines() if line.startswith("argus:")]
    assert len(lines) == 1 and "lacks" in lines[0] and "argus migrate" in lines[0], output
    assert "Traceback" not in output


async def _provisioned_only(infra: Infra, database: str) -> None:
    from argus_shared.provision import provision

    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'create database "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(infra.url_for(database, with_admin=True))
    try:
        await provision(conn, infra.secrets.read("db-owner-password"),
                        infra.secrets.service_passwords())
    finally:
        await conn.close()
