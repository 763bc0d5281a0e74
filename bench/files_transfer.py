"""Benchmark: encrypted upload and download throughput of the files service as a ratio of the
same transfers with a pass-through codec through the same stack (bench/plain_files_server.py),
measured in the same run, alternating; then the service's peak RSS while it moves a 1 GiB
object up and down.

    .venv/bin/python bench/files_transfer.py [--mib 128] [--rounds 3] [--big-mib 1024]

auth, tenant-api and both files processes run as their own processes on embedded PostgreSQL
and NATS; objects go to the local filesystem backend.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from tenant_list import FAST, setup_data

from argus_shared.embedded import free_port
from argus_shared.runner import run_loop
from support.infra import start_infra
from support.processes import PYTHON, Proc, service_command, wait_ready

CHUNK = b"%PDF-1.7\n" + bytes(range(256)) * 4096  # 1 MiB + 9 bytes, PDF by its first bytes
MIB = 1024 * 1024


async def body(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = CHUNK[:min(len(CHUNK), total - sent)]
        sent += len(piece)
        yield piece


async def upload(http: aiohttp.ClientSession, url: str, total: int) -> tuple[float, str]:
    started = time.perf_counter()
    async with http.post(url, data=body(total), params={"name": "bench.pdf"}) as response:
        found = await response.json()
        assert response.status == 201, found
    return total / MIB / (time.perf_counter() - started), found["path"]


async def download(http: aiohttp.ClientSession, url: str, total: int) -> float:
    started = time.perf_counter()
    got = 0
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        async for piece in response.content.iter_chunked(MIB):
            got += len(piece)
    assert got == total, (got, total)
    return total / MIB / (time.perf_counter() - started)


def memory_mib(proc: Proc, field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (peak) of a process, from /proc."""
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc")


async def transfer(http: aiohttp.ClientSession, base: str, namespace: str, total: int
                   ) -> tuple[float, float]:
    up, path = await upload(http, f"{base}/objects/{namespace}", total)
    down = await download(http, f"{base}/objects/{path}", total)
    async with http.delete(f"{base}/objects/{path}") as response:
        assert response.status == 204
    return up, down


async def main(mib: int, rounds: int, big_mib: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    procs: dict[str, Proc] = {}
    try:
        url = await infra.create_database(("auth", "tenant-api", "files"))
        stack = infra.stack(url)
        limit = {"ARGUS_FILES_MAX_BYTES": str((max(mib, big_mib) + 1) * MIB)}
        bases = {}
        starts = {"auth": service_command("auth"), "tenant-api": service_command("tenant-api"),
                  "files": service_command("files"),
                  "plain": [PYTHON, str(Path(__file__).parent / "plain_files_server.py")]}
        for name, argv in starts.items():
            service = "files" if name == "plain" else name
            env = {**stack.service_environment(service), **FAST, **limit}
            if name == "plain":
                env["ARGUS_PORT"] = str(free_port())
                env["ARGUS_FILES_DIR"] = str(workdir / "plain-files")
            bases[name] = f"http://127.0.0.1:{env['ARGUS_PORT']}"
            procs[name] = Proc.start(argv, env, workdir / f"{name}.log")
            await wait_ready(f"{bases[name]}/readyz", procs[name])
        org, access = await setup_data(bases["auth"], bases["tenant-api"], stack.mailbox)
        token = await org_token(bases["auth"], access, org)
        user = await whoami(bases["auth"], token)
        namespace = f"{org}/{user}"
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                         timeout=timeout) as http:
            speeds: dict[str, list[tuple[float, float]]] = {"files": [], "plain": []}
            await transfer(http, bases["files"], namespace, 8 * MIB)  # warm both
            await transfer(http, bases["plain"], namespace, 8 * MIB)
            for _ in range(rounds):
                for name in ("plain", "files"):
                    speeds[name].append(await transfer(http, bases[name], namespace, mib * MIB))
            before = memory_mib(procs["files"], "VmRSS")
            big = await transfer(http, bases["files"], namespace, big_mib * MIB)
            peak = memory_mib(procs["files"], "VmHWM")
        report(speeds, mib, rounds, big_mib, big, before, peak)
    finally:
        for proc in procs.values():
            proc.kill()
        infra.close()


async def org_token(auth: str, access: str, org: str) -> str:
    """setup_data's user, switched into its org (files needs an org-scoped token)."""
    async with (aiohttp.ClientSession(headers={"Authorization": f"Bearer {access}"}) as http,
                http.post(f"{auth}/orgs/switch", json={"org_id": org}) as r):
        answer = await r.json()
        assert r.status == 200, answer
        return str(answer["access_token"])


async def whoami(auth: str, token: str) -> str:
    async with (aiohttp.ClientSession() as http,
                http.get(f"{auth}/me", headers={"Authorization": f"Bearer {token}"}) as r):
        return str((await r.json())["id"])


def report(speeds: dict[str, list[tuple[float, float]]], mib: int, rounds: int, big_mib: int,
           big: tuple[float, float], before: float, peak: float) -> None:
    def median(name: str, which: int) -> float:
        return statistics.median(s[which] for s in speeds[name])

    print(f"{mib} MiB objects, median of {rounds} alternating rounds (local backend)")
    for label, which in (("upload", 0), ("download", 1)):
        plain, enc = median("plain", which), median("files", which)
        print(f"  {label:8} plain {plain:7.1f} MiB/s  encrypted {enc:7.1f} MiB/s  "
              f"ratio {enc / plain:5.2f}  (target >= 0.8)")
    print(f"{big_mib} MiB object through the encrypting service: upload {big[0]:.1f} MiB/s, "
          f"download {big[1]:.1f} MiB/s")
    print(f"  service RSS before {before:.0f} MiB, peak (VmHWM) {peak:.0f} MiB  (target < 100)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=1024)
    args = parser.parse_args()
    run_loop(main(args.mib, args.rounds, args.big_mib))  # the services' loop
