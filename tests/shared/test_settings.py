"""Settings and development secrets: every failure is one line naming the setting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from argus_shared.devsecrets import ensure_dev_secrets, rotate_keyring
from argus_shared.nats import DUPLICATE_WINDOW
from argus_shared.settings import ConfigError, Settings


def base_env(tmp_path: Path) -> dict[str, str]:
    store = ensure_dev_secrets(tmp_path / "secrets")
    return {
        "ARGUS_DATABASE_URL": "postgresql://127.0.0.1:5432/argus",
        "ARGUS_NATS_URL": "nats://127.0.0.1:4222",
        "ARGUS_DB_PASSWORD_FILE": str(store.path("db-auth-password")),
        "ARGUS_DB_OWNER_PASSWORD_FILE": str(store.path("db-owner-password")),
        "ARGUS_XUT_KEYS_FILE": str(store.path("xut-keys")),
    }


def test_settings_read_secrets_from_files(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    settings = Settings.from_env("auth", env)
    assert settings.db_password == Path(env["ARGUS_DB_PASSWORD_FILE"]).read_text().strip()
    assert settings.db_role == "argus_auth" and settings.schema == "auth"
    assert settings.db_password not in repr(settings)


def test_the_outbox_keeps_sent_rows_an_hour_unless_told_and_longer_than_the_dedup_window(
    tmp_path: Path,
) -> None:
    env = base_env(tmp_path)
    settings = Settings.from_env("auth", env)
    assert (settings.outbox_keep_seconds, settings.outbox_prune_seconds) == (3600, 15)
    assert Settings.from_env("auth", {**env, "ARGUS_OUTBOX_KEEP_SECONDS": "121",
                                      "ARGUS_OUTBOX_PRUNE_SECONDS": "1"}).outbox_keep_seconds == 121
    assert DUPLICATE_WINDOW == 120  # the message below names it


def test_live_stream_settings_have_their_defaults_unless_told(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    settings = Settings.from_env("audit", env)
    assert (settings.stream_max_per_user, settings.stream_max_per_org,
            settings.stream_buffer_events, settings.stream_heartbeat_seconds,
            settings.stream_lease_seconds) == (5, 200, 256, 15.0, 30.0)
    told = Settings.from_env("audit", {
        **env, "ARGUS_STREAM_MAX_PER_USER": "2", "ARGUS_STREAM_MAX_PER_ORG": "9",
        "ARGUS_STREAM_BUFFER_EVENTS": "64", "ARGUS_STREAM_HEARTBEAT_SECONDS": "5",
        "ARGUS_STREAM_LEASE_SECONDS": "12"})
    assert (told.stream_max_per_user, told.stream_max_per_org, told.stream_buffer_events,
            told.stream_heartbeat_seconds, told.stream_lease_seconds) == (2, 9, 64, 5.0, 12.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ARGUS_XUT_KEYS_FILE": None}, "ARGUS_XUT_KEYS_FILE is not set"),
        ({"ARGUS_XUT_KEYS_FILE": "/nonexistent/xut"}, "ARGUS_XUT_KEYS_FILE: cannot read"),
        ({"ARGUS_DATABASE_URL": None}, "ARGUS_DATABASE_URL is not set"),
        ({"ARGUS_DATABASE_URL": "mysql://x/y"}, "ARGUS_DATABASE_URL: 'mysql://x/y'"),
        ({"ARGUS_NATS_URL": "http://x"}, "ARGUS_NATS_URL"),
        ({"ARGUS_PORT": "eighty"}, "ARGUS_PORT: 'eighty' is not an integer"),
        ({"ARGUS_PORT": "70000"}, "ARGUS_PORT: 70000 is outside"),
        ({"ARGUS_ENV": "staging"}, "ARGUS_ENV: 'staging'"),
        ({"ARGUS_MIGRATE_ON_START": "maybe"}, "ARGUS_MIGRATE_ON_START"),
        ({"ARGUS_TRUSTED_PROXIES": "10.0.0.0/33"}, "ARGUS_TRUSTED_PROXIES"),
        ({"ARGUS_OUTBOX_KEEP_SECONDS": "120"},
         "ARGUS_OUTBOX_KEEP_SECONDS: 120 s does not exceed JetStream's duplicate window of 120 s"),
        ({"ARGUS_OUTBOX_KEEP_SECONDS": "soon"}, "ARGUS_OUTBOX_KEEP_SECONDS: 'soon'"),
        ({"ARGUS_OUTBOX_PRUNE_SECONDS": "0"}, "ARGUS_OUTBOX_PRUNE_SECONDS: 0 is outside"),
        ({"ARGUS_STREAM_MAX_PER_USER": "0"}, "ARGUS_STREAM_MAX_PER_USER: 0 is outside"),
        ({"ARGUS_STREAM_MAX_PER_ORG": "many"}, "ARGUS_STREAM_MAX_PER_ORG: 'many'"),
        ({"ARGUS_STREAM_BUFFER_EVENTS": "0"}, "ARGUS_STREAM_BUFFER_EVENTS: 0 is outside"),
        ({"ARGUS_STREAM_HEARTBEAT_SECONDS": "0"}, "ARGUS_STREAM_HEARTBEAT_SECONDS: 0 is outside"),
        ({"ARGUS_STREAM_LEASE_SECONDS": "2"}, "ARGUS_STREAM_LEASE_SECONDS: 2 is outside"),
    ],
)
def test_bad_settings_give_one_line_naming_them(
    tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    env = base_env(tmp_path)
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    with pytest.raises(ConfigError) as caught:
        Settings.from_env("auth", env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("no-colon-here\n", "line 1 is not 'kid:base64url-key'"),
        ("k1:c2hvcnQ\n", "shorter than 32 bytes"),
        ("k1:***\n", "not base64url"),
        ("# only a comment\n\n", "no keys found"),
    ],
)
def test_malformed_key_ring_is_named(tmp_path: Path, content: str, message: str) -> None:
    env = base_env(tmp_path)
    bad = tmp_path / "bad-keys"
    bad.write_text(content)
    env["ARGUS_XUT_KEYS_FILE"] = str(bad)
    with pytest.raises(ConfigError, match="ARGUS_XUT_KEYS") as caught:
        Settings.from_env("auth", env)
    assert message in str(caught.value)


def test_dev_secrets_are_private_created_once_and_rotated(tmp_path: Path) -> None:
    store = ensure_dev_secrets(tmp_path / "s")
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    for path in store.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    before = {p.name: p.read_text() for p in store.directory.iterdir()}
    ensure_dev_secrets(tmp_path / "s")
    assert {p.name: p.read_text() for p in store.directory.iterdir()} == before

    old = store.keyring("xut-keys")
    new_kid = rotate_keyring(store, "xut-keys")
    rotated = store.keyring("xut-keys")
    assert rotated.current == new_kid and list(rotated.keys)[1] == old.current
    rotate_keyring(store, "xut-keys")
    assert old.current not in store.keyring("xut-keys").keys  # only one previous key is kept
    master = store.keyring("master-keys")
    rotate_keyring(store, "master-keys")
    rotate_keyring(store, "master-keys")
    assert set(master.keys) < set(store.keyring("master-keys").keys)  # master keys all kept
    assert stat.S_IMODE(store.path("xut-keys").stat().st_mode) == 0o600
