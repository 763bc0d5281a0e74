"""Benchmark: SCIM requests through tenant-api (SCIM token lookup, the org's RLS transaction,
SCIM views) as a ratio of the org API doing the nearest same work, in the same run:

- read: `GET /scim/v2/Users?filter=userName eq "..."` (what Okta and Entra send before every
  create) vs `GET /orgs/{org}/members` (a member's list read with an access token);
- write: provisioning a user who has no membership yet and deleting it (`POST /scim/v2/Users` +
  `DELETE /scim/v2/Users/{id}`: the SCIM row, an invitation and its mail, its revocation,
  four events) vs inviting that address and revoking it through the org API
  (`POST /orgs/{org}/invitations` + `DELETE .../invitations/{id}`: invitation, mail, two
  events).

    .venv/bin/python bench/scim_provisioning.py [--seconds 6] [--connections 8] [--rounds 3]

auth and tenant-api run as their own processes on embedded PostgreSQL and NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_shared.runner import run_loop
from support.infra import start_infra
from support.mailbox import tokens_for
from support.processes import Proc, service_command, wait_ready

PASSWORD = "correct horse battery staple"
FAST = {"ARGUS_RATE_LIMIT_IP_PER_MINUTE": "100000000", "ARGUS_RATE_LIMIT_ORG_PER_MINUTE":
        "100000000", "ARGUS_LOG_LEVEL": "WARNING",
        "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "100000", "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "100000"}
Work = Callable[[aiohttp.ClientSession], Awaitable[None]]
COUNTER = itertools.count()


async def rate(work: Work, seconds: float, connections: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await work(http)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.perf_counter() - started)


async def setup(auth: str, tenant: str, mailbox: Path) -> tuple[str, str, str, str]:
    """An owner's org with 20 SCIM users: (org, access token, SCIM token, a userName)."""
    email = f"bench{uuid.uuid4().hex[:8]}@example.com"
    async with aiohttp.ClientSession() as http:
        await http.post(f"{auth}/signup", json={"email": email, "password": PASSWORD})
        token = (await tokens_for(mailbox, [email]))[email]
        await http.post(f"{auth}/verify-email", json={"token": token})
        async with http.post(f"{auth}/login", json={"email": email, "password": PASSWORD}) as r:
            plain = (await r.json())["access_token"]
        slug = f"b{uuid.uuid4().hex[:8]}"
        async with http.post(f"{tenant}/orgs", json={"name": "b", "slug": slug},
                             headers={"Authorization": f"Bearer {plain}"}) as r:
            org = (await r.json())["org_id"]
        async with http.post(f"{auth}/orgs/switch", json={"org_id": org},
                             headers={"Authorization": f"Bearer {plain}"}) as r:
            access = (await r.json())["access_token"]
        bearer = {"Authorization": f"Bearer {access}"}
        async with http.post(f"{tenant}/orgs/{org}/scim-tokens", headers=bearer) as r:
            scim = (await r.json())["token"]
        for index in range(20):
            async with http.post(f"{tenant}/scim/v2/Users", json={
                    "userName": f"seed{index}-{org[:8]}@example.com"},
                    headers={"Authorization": f"Bearer {scim}"}) as r:
                assert r.status == 201, await r.text()
    return org, access, scim, f"seed7-{org[:8]}@example.com"


def works(tenant: str, org: str, access: str, scim: str, user_name: str) -> dict[str, Work]:
    user_bearer = {"Authorization": f"Bearer {access}"}
    scim_bearer = {"Authorization": f"Bearer {scim}"}
    lookup = f'{tenant}/scim/v2/Users?filter=userName eq "{user_name}"'

    async def scim_read(http: aiohttp.ClientSession) -> None:
        async with http.get(lookup, headers=scim_bearer) as r:
            assert r.status == 200 and (await r.json(content_type=None))["totalResults"] == 1

    async def api_read(http: aiohttp.ClientSession) -> None:
        async with http.get(f"{tenant}/orgs/{org}/members", headers=user_bearer) as r:
            assert r.status == 200, await r.text()
            await r.read()

    async def scim_write(http: aiohttp.ClientSession) -> None:
        name = f"w{next(COUNTER)}-{org[:8]}@example.com"
        async with http.post(f"{tenant}/scim/v2/Users", json={"userName": name},
                             headers=scim_bearer) as r:
            assert r.status == 201, await r.text()
            scim_id = (await r.json(content_type=None))["id"]
        async with http.delete(f"{tenant}/scim/v2/Users/{scim_id}", headers=scim_bearer) as r:
            assert r.status == 204

    async def api_write(http: aiohttp.ClientSession) -> None:
        name = f"w{next(COUNTER)}-{org[:8]}@example.com"
        async with http.post(f"{tenant}/orgs/{org}/invitations", headers=user_bearer,
                             json={"email": name, "role": "member"}) as r:
            assert r.status == 201, await r.text()
            invitation = (await r.json())["invitation"]["id"]
        async with http.delete(f"{tenant}/orgs/{org}/invitations/{invitation}",
                               headers=user_bearer) as r:
            assert r.status == 204

    return {"scim read": scim_read, "api read": api_read, "scim write": scim_write,
            "api write": api_write}


async def main(seconds: float, connections: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    procs: list[Proc] = []
    try:
        url = await infra.create_database(("auth", "tenant-api"))
        stack = infra.stack(url)
        bases = {}
        for service in ("auth", "tenant-api"):
            env = {**stack.service_environment(service), **FAST}
            proc = Proc.start(service_command(service), env, workdir / f"{service}.log")
            procs.append(proc)
            bases[service] = stack.service_url(service)
            await wait_ready(f"{bases[service]}/readyz", proc)
        org, access, scim, user_name = await setup(bases["auth"], bases["tenant-api"],
                                                   stack.mailbox)
        work = works(bases["tenant-api"], org, access, scim, user_name)
        found: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(rounds):
            for name, one in work.items():
                found[name].append(await rate(one, seconds, connections))
        rates = {name: statistics.median(values) for name, values in found.items()}
        print(f"api read (GET members)         : {rates['api read']:8.0f} req/s "
              f"(median of {rounds})")
        print(f"scim read (filter userName eq) : {rates['scim read']:8.0f} req/s")
        print(f"read ratio                     : {rates['scim read'] / rates['api read']:8.2f}")
        print(f"api write (invite + revoke)    : {rates['api write']:8.0f} pairs/s")
        print(f"scim write (create + delete)   : {rates['scim write']:8.0f} pairs/s")
        print(f"write ratio                    : {rates['scim write'] / rates['api write']:8.2f}")
    finally:
        for proc in procs:
            proc.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_loop(main(args.seconds, args.connections, args.rounds))
