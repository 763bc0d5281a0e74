"""Benchmark: can the timing of `POST /signup` and `POST /password/forgot` tell whether an email
has an account? Prints, per route, the median latency for known and unknown emails, the
difference of the medians with a 95% bootstrap interval over the pairs (the guarantee: under
1 ms), and the after-effect: the same difference for a /healthz sent right after each probe
(work moved off the response path must not land on the next answer either).

    .venv/bin/python bench/auth_enumeration.py [--pairs 200] [--rounds 1]

The service runs as its own process (as users run it: default Argon2id parameters, real mail
to the development mailbox) on embedded PostgreSQL and NATS; see tests/support/timing.py for
how the requests are sent and compared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_shared.embedded import free_port
from argus_shared.runner import run_loop
from support.infra import start_infra
from support.mailbox import tokens_for
from support.processes import Proc, service_command, wait_ready
from support.timing import Body, RawClient, compare

PASSWORD = "correct horse battery staple"
KNOWN = 20


def email(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}@example.com"  # every address the same length


async def make_known(base: str, mailbox: Path) -> list[str]:
    known = [email("k") for _ in range(KNOWN)]
    async with aiohttp.ClientSession() as http:
        for address in known:
            async with http.post(f"{base}/signup",
                                 json={"email": address, "password": PASSWORD}) as r:
                assert r.status == 202, await r.text()
        tokens = await tokens_for(mailbox, known)  # mail is sent after the answer
        for address in known:
            token = tokens[address]
            async with http.post(f"{base}/verify-email", json={"token": token}) as r:
                assert r.status == 200, await r.text()
    return known


async def measure(base: str, known: list[str], pairs: int, seed: int) -> None:
    async with RawClient.for_base(base) as client:
        control = client.request("/healthz", None)
        routes: dict[str, Callable[[str], Body]] = {
            "/password/forgot": lambda address: {"email": address},
            "/signup": lambda address: {"email": address, "password": PASSWORD},
        }
        for path, body in routes.items():
            def known_one(i: int, b: Callable[[str], Body] = body) -> Body:
                return b(known[i % KNOWN])

            def unknown_one(i: int, b: Callable[[str], Body] = body) -> Body:
                return b(email("u"))

            await compare(client, path, known_one, unknown_one, 20, control, seed=seed)  # warm-up
            result = await compare(client, path, known_one, unknown_one, pairs, control,
                                   seed=seed)
            print(result.direct.report(f"POST {path}"))
            print(result.after.report("  /healthz right after it"))


async def main(pairs: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    proc: Proc | None = None
    try:
        url = await infra.create_database(("auth",))
        stack = infra.stack(url)
        env = {**stack.service_environment("auth"), "ARGUS_PORT": str(free_port()),
               "ARGUS_HIBP_URL": "off", "ARGUS_RATE_LIMIT_IP_PER_MINUTE": "10000000",
               "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "10000000",
               "ARGUS_LOG_LEVEL": "WARNING"}
        base = f"http://127.0.0.1:{env['ARGUS_PORT']}"
        proc = Proc.start(service_command("auth"), env, workdir / "auth.log")
        await wait_ready(f"{base}/readyz", proc)
        known = await make_known(base, stack.mailbox)
        print(f"{pairs} pairs (one known, one unknown email, random order) per route and round;"
              " target: |difference| < 1 ms")
        for round_ in range(rounds):
            print(f"round {round_ + 1}")
            await measure(base, known, pairs, seed=round_)
    finally:
        if proc is not None:
            proc.kill()
        infra.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    run_loop(main(args.pairs, args.rounds))
