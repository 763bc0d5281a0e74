"""Benchmark: SSO sign-ins per second through auth's full callback (sealed state cookie, the
state spent in PostgreSQL, code exchange and ID token checks, identity lookup, a new session
with its refresh token and outbox event) as a ratio of a bare authlib callback handler
(bench/bare_sso_server.py: the same code exchange and ID token checks, nothing else), against
the same OpenID Provider process (tests/support/oidc_provider.py), in the same run.

    .venv/bin/python bench/sso_signin.py [--seconds 10] [--concurrency 8] [--rounds 3]

Each sign-in is the whole browser round: GET start (a redirect), GET the provider's authorize
(a redirect with the code), GET the callback. The identity signs in again each time (the
steady state: its account exists). auth runs as its own process (as users run it) on embedded
PostgreSQL and NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_shared.embedded import free_port
from argus_shared.runner import run_loop
from support.infra import start_infra
from support.processes import PYTHON, Proc, service_command, wait_ready
from support.sso import PUBLIC, SECRET, start_provider

TENANT = "bench"


async def sign_in(http: aiohttp.ClientSession, base: str, start: str, name: str,
                  expect: int) -> None:
    cookies: dict[str, str] = {}
    async with http.get(f"{base}{start}", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        authorize = r.headers["Location"]
        for value in r.cookies.values():
            cookies[value.key] = value.value
    async with http.get(authorize, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        back = r.headers["Location"]
    back = base + back[len(f"{PUBLIC}/sso/{name}"):] if name == "bare" \
        else base + back[len(PUBLIC):]
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with http.get(back, allow_redirects=False, headers={"Cookie": header}) as r:
        assert r.status == expect, (r.status, await r.text())


async def rate(base: str, start: str, name: str, expect: int, seconds: float,
               concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await sign_in(http, base, start, name, expect)
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - began)


async def main(seconds: float, concurrency: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    procs: list[Proc] = []
    op = None
    try:
        op = await start_provider(workdir)
        procs.append(op.proc)
        await op.client(TENANT, "client-acme", ["acme", "bare"])
        await op.user(TENANT, "bench@example.com", sub="bench-user", amr=["pwd"])
        url = await infra.create_database(("auth",))
        stack = infra.stack(url)
        env = {**stack.service_environment("auth"), "ARGUS_PORT": str(free_port()),
               "ARGUS_HIBP_URL": "off", "ARGUS_RATE_LIMIT_IP_PER_MINUTE": "10000000",
               "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "10000000", "ARGUS_LOG_LEVEL": "WARNING",
               "ARGUS_SSO_PROVIDERS": "acme", "ARGUS_SSO_ACME_ISSUER": op.issuer(TENANT),
               "ARGUS_SSO_ACME_CLIENT_ID": "client-acme",
               "ARGUS_SSO_ACME_CLIENT_SECRET": SECRET, "ARGUS_SSO_REDIRECT_BASE": PUBLIC}
        auth_base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
        procs.append(Proc.start(service_command("auth"), env, workdir / "auth.log"))
        await wait_ready(f"{auth_base}/readyz", procs[-1])
        bare_port = free_port()
        procs.append(Proc.start(
            [PYTHON, str(Path(__file__).parent / "bare_sso_server.py"), "--port", str(bare_port),
             "--issuer", op.issuer(TENANT), "--client-id", "client-acme", "--secret", SECRET,
             "--redirect-uri", f"{PUBLIC}/sso/bare/callback"], {}, workdir / "bare.log"))
        bare_base = f"http://127.0.0.1:{bare_port}"
        await wait_ready(f"{bare_base}/healthz", procs[-1])
        full_args = (auth_base, "/sso/acme/start?return_to=/app", "acme", 303)
        bare_args = (bare_base, "/start", "bare", 200)
        await rate(*full_args, 1.0, concurrency)  # warm-up: the account exists, caches fill
        await rate(*bare_args, 1.0, concurrency)
        fulls, bares, ratios = [], [], []
        print(f"{concurrency} concurrent browsers, {seconds:g} s per measurement")
        for round_ in range(rounds):  # alternated, so a noisy machine hits both alike
            bares.append(await rate(*bare_args, seconds, concurrency))
            fulls.append(await rate(*full_args, seconds, concurrency))
            ratios.append(fulls[-1] / bares[-1])
            print(f"  round {round_ + 1}: full {fulls[-1]:.1f}/s, bare {bares[-1]:.1f}/s")
        print(f"bare authlib callback    : {statistics.median(bares):8.1f} sign-ins/s "
              f"(median of {rounds})")
        print(f"auth full callback       : {statistics.median(fulls):8.1f} sign-ins/s")
        print(f"ratio                    : {statistics.median(ratios):8.2f}  (median of the "
              "per-round ratios)")
    finally:
        for proc in procs:
            proc.kill()
        if op is not None:
            await op.http.close()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_loop(main(args.seconds, args.concurrency, args.rounds))
