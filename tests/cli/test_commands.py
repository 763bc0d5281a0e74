"""`argus keys` and `argus migrate`, run as commands."""

from __future__ import annotations

import sys
from pathlib import Path

from argus_shared import b64
from argus_shared.embedded import free_port
from argus_shared.settings import SERVICES, KeyRing
from support.infra import Infra
from support.processes import run_to_exit

ARGUS = str(Path(sys.executable).parent / "argus")


def argus(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    ports = ["--pg-port", str(free_port())] if args[:1] == ("migrate",) else []
    return run_to_exit([ARGUS, "--data-dir", str(data_dir), *args, *ports], env or {})


def ring(data_dir: Path, name: str) -> KeyRing:
    return KeyRing.parse((data_dir / "secrets" / name).read_text(), name)


def test_keys_init_creates_private_secrets_once(tmp_path: Path) -> None:
    code, _ = argus(tmp_path, "keys", "init")
    assert code == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "secrets").iterdir()}
    assert {"xut-keys", "master-keys", "db-owner-password"} <= set(first)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "secrets").iterdir())
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    argus(tmp_path, "keys", "init")
    assert {p.name: p.read_bytes() for p in (tmp_path / "secrets").iterdir()} == first


def test_keys_list_shows_key_ids_never_keys(tmp_path: Path) -> None:
    argus(tmp_path, "keys", "init")
    code, output = argus(tmp_path, "keys", "list")
    assert code == 0
    for name in ("xut-keys", "master-keys"):
        keys = ring(tmp_path, name)
        assert f"{name}: current {keys.current}" in output
        for key in keys.keys.values():
            assert b64.encode(key) not in output


def test_rotating_xut_keys_keeps_exactly_one_previous_key(tmp_path: Path) -> None:
    argus(tmp_path, "keys", "init")
    original = ring(tmp_path, "xut-keys").current
    code, output = argus(tmp_path, "keys", "rotate", "xut-keys")
    assert code == 0
    rotated = ring(tmp_path, "xut-keys")
    assert rotated.current != original and rotated.current in output
    assert list(rotated.keys) == [rotated.current, original]
    argus(tmp_path, "keys", "rotate", "xut-keys")
    again = ring(tmp_path, "xut-keys")
    assert list(again.keys) == [again.current, rotated.current]


def test_rotating_master_keys_keeps_every_previous_key(tmp_path: Path) -> None:
    argus(tmp_path, "keys", "init")
    argus(tmp_path, "keys", "rotate", "master-keys")
    argus(tmp_path, "keys", "rotate", "master-keys")
    assert len(ring(tmp_path, "master-keys").keys) == 3


def test_a_malformed_key_ring_is_one_line_naming_the_file(tmp_path: Path) -> None:
    argus(tmp_path, "keys", "init")
    (tmp_path / "secrets" / "xut-keys").write_text("no colon here\n")
    code, output = argus(tmp_path, "keys", "list")
    assert code == 2
    assert output.count("\n") == 1 and "Traceback" not in output
    assert "xut-keys" in output and "line 1" in output


def test_migrate_on_embedded_postgres_applies_once(tmp_path: Path) -> None:
    code, output = argus(tmp_path, "migrate")
    assert code == 0, output
    for service in SERVICES:
        assert f"{service}: shared/0001_outbox.sql" in output
    code, output = argus(tmp_path, "migrate")
    assert code == 0, output
    assert output.count("up to date") == len(SERVICES)


async def test_migrate_against_a_configured_database(infra: Infra, tmp_path: Path) -> None:
    url = await infra.create_database(migrate_services=())
    env = {
        "ARGUS_DATABASE_URL": url,
        "ARGUS_DB_OWNER_PASSWORD_FILE": str(infra.secrets.path("db-owner-password")),
    }
    code, output = argus(tmp_path, "migrate", env=env)
    assert code == 0, output
    assert output.count("0001_outbox") == len(SERVICES)
    assert not (tmp_path / "pg").exists()  # nothing embedded was started


def test_migrate_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {"ARGUS_DATABASE_URL": f"postgresql://127.0.0.1:{free_port()}/argus",
           "ARGUS_DB_OWNER_PASSWORD": "whatever-secret-value"}
    code, output = argus(tmp_path, "migrate", env=env)
    assert code == 1
    assert output.count("\n") == 1 and "Traceback" not in output
    assert "cannot connect" in output
    assert "whatever-secret-value" not in output
