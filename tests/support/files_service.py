"""The files service in-process beside auth and tenant-api (one PostgreSQL, one NATS), over the
local filesystem (`files`) or a real S3-compatible server process (`files_s3`), with helpers to
upload, download and look at what is stored."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from argus_files.app import create_app
from argus_files.config import FilesConfig, S3Config
from argus_files.store import STORE_KEY, Store
from argus_shared.settings import Settings
from support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server
from support.suite import Suite, User

MAX_BYTES = 3 * 1024 * 1024


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Files:
    base: str
    suite: Suite
    app: Any
    config: FilesConfig

    @property
    def store(self) -> Store:
        return self.app[STORE_KEY]

    async def request(self, method: str, path: str, token: str | None = None,
                      **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        async with self.suite.http.request(method, f"{self.base}{path}", headers=headers,
                                           **kwargs) as r:
            return Reply(r.status, r.headers, await r.read())

    async def upload(self, token: str, org: str, owner: str, data: Any, name: str | None = None,
                     **kwargs: Any) -> Reply:
        params = {"name": name} if name is not None else None
        return await self.request("POST", f"/objects/{org}/{owner}", token, data=data,
                                  params=params, **kwargs)

    async def uploaded(self, token: str, org: str, owner: str, data: bytes,
                       name: str = "notes.txt") -> dict[str, Any]:
        reply = await self.upload(token, org, owner, data, name)
        assert reply.status == 201, reply.body
        return reply.json()

    async def download(self, token: str, path: str, headers: dict[str, str] | None = None
                       ) -> Reply:
        return await self.request("GET", f"/objects/{path}", token, headers=headers)

    async def member_of_new_org(self, role: str = "member") -> tuple[User, str, str]:
        """A fresh org, and (owner, org, owner's org token) when role is owner, else a member
        with that role: (member, org, member's org token)."""
        owner = await self.suite.user()
        org = await self.suite.org(owner)
        if role == "owner":
            return owner, org, await self.suite.switch(owner, org)
        member = await self.suite.member(org, owner, role)
        return member, org, await self.suite.switch(member, org)


def stored_files(root: Path) -> list[Path]:
    """Every file under the local storage directory (objects and unfinished uploads)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


async def start_files(suite: Suite, settings: Settings, config: FilesConfig
                      ) -> tuple[Files, TestServer]:
    app = create_app(settings, config)
    server = TestServer(app)
    await server.start_server()
    return Files(str(server.make_url("")).rstrip("/"), suite, app, config), server


def files_config(suite: Suite, directory: Path, **overrides: Any) -> FilesConfig:
    return replace(FilesConfig(auth_url=suite.auth.base, directory=directory,
                               max_bytes=MAX_BYTES, sweep_seconds=3600), **overrides)


@pytest.fixture
async def files(suite: Suite, settings_for: Callable[..., Settings], tmp_path: Path
                ) -> AsyncIterator[Files]:
    service, server = await start_files(suite, settings_for("files"),
                                        files_config(suite, tmp_path / "objects"))
    yield service
    await server.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server.start(Path(tempfile.mkdtemp(prefix="argus-s3-")))
    yield server
    server.stop()


def s3_config(server: S3Server, bucket: str) -> S3Config:
    return S3Config(endpoint_url=server.endpoint, bucket=bucket, access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, part_size=5 * 1024 * 1024)


@pytest.fixture
async def files_s3(suite: Suite, settings_for: Callable[..., Settings], s3_server: S3Server,
                   tmp_path: Path) -> AsyncIterator[Files]:
    await s3_server.wait_ready()
    config = files_config(suite, tmp_path / "unused", backend="s3",
                          s3=s3_config(s3_server, "argus-files"), max_bytes=12 * 1024 * 1024)
    service, server = await start_files(suite, settings_for("files"), config)
    yield service
    await server.close()
