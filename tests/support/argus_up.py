"""`argus up` as a user runs it, for tests: a real supervisor process on free ports, its data in a
fresh directory outside pytest's temporary root (a pytest run starting meanwhile makes that root
private again, and PostgreSQL, running as its own user under root, would lose its cluster);
and a client of its gateway."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from argus_shared.embedded import free_port, port_free
from argus_shared.settings import SERVICES
from support.mailbox import tokens_for
from support.processes import Proc

ARGUS = str(Path(sys.executable).parent / "argus")
PASSWORD = "a long enough passphrase"
STOP_DEADLINE = 20.0


def free_ports(replicas: int = 1) -> dict[str, int]:
    base = free_port()
    while not all(port_free(base + i) for i in range(len(SERVICES) * replicas)):
        base = free_port()
    return {"gateway": free_port(), "base": base, "pg": free_port(), "nats": free_port()}


def up_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    return [ARGUS, "--data-dir", str(data_dir), "up", "--port", str(ports["gateway"]),
            "--service-port-base", str(ports["base"]), "--pg-port", str(ports["pg"]),
            "--nats-port", str(ports["nats"])]


async def wait_for_banner(proc: Proc, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while "Press Ctrl-C to stop." not in (output := proc.output):
        if proc.popen.poll() is not None:
            raise AssertionError(f"argus up exited {proc.popen.returncode}: {output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"argus up not up within {timeout}s: {output}")
        await asyncio.sleep(0.1)
    return output


@dataclass
class RunningSuite:
    proc: Proc
    data_dir: Path
    ports: dict[str, int]
    banner: str

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def mailbox(self) -> Path:
        return self.data_dir / "mailbox"

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal `argus up` and wait for it to exit: its exit code."""
        if self.proc.popen.poll() is None:
            self.proc.signal(sig)
        return await asyncio.to_thread(self.proc.wait, STOP_DEADLINE)


@asynccontextmanager
async def argus_up(log: Path, env: dict[str, str] | None = None,
                   prefix: str = "argus-up-", replicas: int = 1) -> AsyncIterator[RunningSuite]:
    """A running `argus up` (its output in `log`); stopped (SIGTERM, else killed) afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    data_dir, ports = directory / "argus", free_ports(replicas)
    extra = ["--replicas", str(replicas)] if replicas > 1 else []
    proc = Proc.start([*up_command(data_dir, ports), *extra], env or {}, log)
    try:
        banner = await wait_for_banner(proc)
        yield RunningSuite(proc, data_dir, ports, banner)
        if proc.popen.poll() is None:
            proc.signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, STOP_DEADLINE)
    finally:
        proc.kill()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


@dataclass
class Gateway:
    """A client of the suite's gateway."""

    http: aiohttp.ClientSession
    base: str

    async def send(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, json=body, data=data,
                                     headers=sent) as response:
            return Answer(response.status, dict(response.headers), await response.text())

    async def call(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, headers: dict[str, str] | None = None,
                   expect: int = 200) -> Any:
        """The answer's JSON; AssertionError unless its status is `expect`."""
        answer = await self.send(method, path, token=token, body=body, headers=headers)
        assert answer.status == expect, (method, path, answer.status, answer.text)
        return answer.json

    async def logged_in(self, mailbox: Path, email: str) -> str:
        """Sign up, verify with the mailed token and log in: the access token (no org)."""
        await self.call("POST", "/auth/signup", body={"email": email, "password": PASSWORD},
                        expect=202)
        mailed = (await tokens_for(mailbox, [email]))[email]
        await self.call("POST", "/auth/verify-email", body={"token": mailed})
        login = await self.call("POST", "/auth/login",
                                body={"email": email, "password": PASSWORD})
        return str(login["access_token"])

    async def org_owner(self, mailbox: Path, email: str, slug: str) -> tuple[str, str]:
        """A new user who created an org and switched to it: (org id, org-scoped token)."""
        token = await self.logged_in(mailbox, email)
        org = await self.call("POST", "/tenant/orgs", token=token,
                              body={"name": slug, "slug": slug}, expect=201)
        switched = await self.call("POST", "/auth/orgs/switch", token=token,
                                   body={"org_id": org["org_id"]})
        return str(org["org_id"]), str(switched["access_token"])
