"""The files service's own settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from argus_files.sniff import DEFAULT_ALLOWED
from argus_shared.settings import ConfigError, Env

BACKENDS = ("local", "s3")


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None  # None: AWS itself
    bucket: str
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    part_size: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class FilesConfig:
    auth_url: str = "http://127.0.0.1:8101"
    auth_issuer: str = "argus-auth"
    auth_audience: str = "argus"
    backend: str = "local"
    directory: Path = Path(".argus/files")
    s3: S3Config | None = None
    max_bytes: int = 100 * 1024 * 1024
    allowed_types: tuple[str, ...] = DEFAULT_ALLOWED
    sweep_seconds: int = 60
    stale_upload_seconds: int = 24 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FilesConfig:
        env = Env(environ)
        backend = env.str("ARGUS_FILES_BACKEND", "local") or "local"
        if backend not in BACKENDS:
            raise ConfigError(f"ARGUS_FILES_BACKEND: '{backend}' is not one of local, s3")
        types = env.str("ARGUS_FILES_ALLOWED_TYPES")
        return cls(
            auth_url=(env.str("ARGUS_AUTH_URL", cls.auth_url) or cls.auth_url).rstrip("/"),
            auth_issuer=env.str("ARGUS_AUTH_ISSUER", cls.auth_issuer) or cls.auth_issuer,
            auth_audience=env.str("ARGUS_AUTH_AUDIENCE", cls.auth_audience) or cls.auth_audience,
            backend=backend,
            directory=_directory(env),
            s3=_s3(env) if backend == "s3" else None,
            max_bytes=env.int("ARGUS_FILES_MAX_BYTES", cls.max_bytes, 1, 2**50),
            allowed_types=tuple(t.strip() for t in types.split(",") if t.strip())
            if types else DEFAULT_ALLOWED,
            sweep_seconds=env.int("ARGUS_FILES_SWEEP_SECONDS", 60, 1),
            stale_upload_seconds=env.int("ARGUS_FILES_STALE_UPLOAD_SECONDS", 24 * 3600, 1),
        )


def _directory(env: Env) -> Path:
    """`ARGUS_FILES_DIR` (`argus up` sets `<data dir>/files`), else `.argus/files`."""
    return Path(env.str("ARGUS_FILES_DIR") or FilesConfig.directory)


def _s3(env: Env) -> S3Config:
    endpoint = env.str("ARGUS_FILES_S3_ENDPOINT")
    if endpoint and (urlsplit(endpoint).scheme not in ("http", "https")
                     or not urlsplit(endpoint).hostname):
        raise ConfigError(f"ARGUS_FILES_S3_ENDPOINT: '{endpoint}' is not an http(s) URL")
    return S3Config(
        endpoint_url=endpoint,
        bucket=env.required("ARGUS_FILES_S3_BUCKET"),
        region=env.str("ARGUS_FILES_S3_REGION", "us-east-1") or "us-east-1",
        access_key_id=env.secret("ARGUS_FILES_S3_ACCESS_KEY_ID", required=False),
        secret_access_key=env.secret("ARGUS_FILES_S3_SECRET_ACCESS_KEY", required=False),
        part_size=env.int("ARGUS_FILES_S3_PART_MB", 8, 5, 512) * 1024 * 1024,
    )


CONFIG_KEY = web.AppKey("files_config", FilesConfig)
