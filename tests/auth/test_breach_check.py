"""The breached-password check in tests asks the local range server (`support.hibp_server`), in
process and from service processes alike; production settings still ask the public API."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from argus_auth.config import AuthConfig
from argus_shared.cli.stack import Stack
from argus_shared.embedded import free_port
from support.auth_service import PASSWORD, AuthService
from support.hibp_server import BREACHED, HibpServer, sha1_hex
from support.processes import Proc, service_command, wait_ready

PUBLIC_RANGE_API = "https://api.pwnedpasswords.com/range/"
KNOWN = "password123"


def new_email() -> str:
    return f"h{uuid.uuid4().hex[:10]}@example.com"


async def range_answer(hibp: HibpServer, prefix: str, padded: bool) -> tuple[int, str, str]:
    headers = {"Add-Padding": "true"} if padded else {}
    async with aiohttp.ClientSession() as http, http.get(f"{hibp.url}{prefix}",
                                                         headers=headers) as response:
        return response.status, response.content_type, await response.text()


async def test_the_local_range_server_answers_like_the_real_api(hibp: HibpServer) -> None:
    digest = sha1_hex(KNOWN)
    status, content_type, body = await range_answer(hibp, digest[:5].lower(), padded=False)
    assert status == 200 and content_type == "text/plain"
    assert f"{digest[5:]}:{BREACHED[KNOWN]}" in body.split("\r\n")

    status, _, body = await range_answer(hibp, digest[:5], padded=True)
    lines = body.split("\r\n")
    assert status == 200 and 800 <= len(lines) <= 1000
    assert all(re.fullmatch(r"[0-9A-F]{35}:\d+", line) for line in lines)
    assert f"{digest[5:]}:{BREACHED[KNOWN]}" in lines
    assert sum(1 for line in lines if not line.endswith(":0")) == 1  # the rest is padding
    assert lines == sorted(lines)

    assert (await range_answer(hibp, "XYZ12", padded=False))[0] == 400


async def test_a_known_breached_password_is_refused_through_the_local_server(
    service: AuthService, hibp: HibpServer
) -> None:
    before = len(hibp.seen)
    status, problem, _ = await service.post("/signup", {"email": new_email(), "password": KNOWN})
    assert status == 422 and "breach" in problem["detail"]
    assert hibp.saw(KNOWN)
    assert all(len(r.prefix) == 5 for r in hibp.seen[before:])  # only 5 hex characters leave
    status, _, _ = await service.post("/signup", {"email": new_email(), "password": PASSWORD})
    assert status == 202


@pytest.fixture
def auth_process(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    env = {**stack.service_environment("auth"), "ARGUS_PORT": str(free_port())}
    proc = Proc.start(service_command("auth"), env, tmp_path / "auth.log")
    yield f"http://127.0.0.1:{env['ARGUS_PORT']}", proc
    proc.kill()


@pytest.mark.timeout(180)
async def test_an_auth_process_started_by_a_test_asks_the_local_server(
    auth_process: tuple[str, Proc], hibp: HibpServer
) -> None:
    base, proc = auth_process
    environ = Path(f"/proc/{proc.popen.pid}/environ").read_bytes().split(b"\0")
    assert f"ARGUS_HIBP_URL={hibp.url}".encode() in environ
    await wait_ready(f"{base}/readyz", proc, timeout=120)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/signup", json={"email": new_email(),
                                                     "password": "letmein12345"}) as response:
            assert response.status == 422
            assert "breach" in (await response.json(content_type=None))["detail"]
    assert hibp.saw("letmein12345")


def test_production_settings_still_ask_the_public_range_api(stack: Stack, tmp_path: Path) -> None:
    assert AuthConfig().hibp_url == PUBLIC_RANGE_API
    assert AuthConfig.from_env({"ARGUS_MAILBOX_DIR": str(tmp_path)}).hibp_url == PUBLIC_RANGE_API
    assert AuthConfig.from_env({"ARGUS_MAILBOX_DIR": str(tmp_path),
                                "ARGUS_HIBP_URL": "off"}).hibp_url is None
    # what `argus up` gives auth for a user: nothing, so auth's default applies
    users = replace(stack, env="dev", hibp_url=None)
    assert "ARGUS_HIBP_URL" not in users.service_environment("auth")
