"""Benchmark: live-event fan-out of audit's `GET /stream` (verify, filter per viewer, bounded
queue, SSE write) as a ratio of a bare fan-out (`bench/bare_stream_server.py`: the same NATS
subscription written to the same number of sockets, routed by org, with no authentication,
verification or filter), measured in the same run: N streams across 50 orgs receive a mixed
event flow offered at a fixed rate; events delivered/s, p99 publish->client latency, memory per
idle stream (RSS delta of the audit process / N), and the idle CPU of the polled revocation
check (every stream wakes every 0.25 s).

    .venv/bin/python bench/stream_fanout.py [--streams 2000] [--orgs 50] [--rate 1000]
        [--seconds 8] [--rounds 1]

auth, tenant-api and audit run as their own processes (real PostgreSQL and NATS); each org's
owner opens N/orgs streams (the per-user cap is raised for the run); events are published
straight to `ARGUS_EVENTS` with the relay's headers (`data.t`: the publish time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from argus_audit.stream import Connection, Hub
from argus_audit.stream import Metrics as StreamMetrics
from argus_audit.stream_filter import Viewer
from argus_audit.stream_http import police_once
from argus_shared import events
from argus_shared.access import AccessClaims, MemberChange, Revocations
from argus_shared.embedded import free_port
from argus_shared.event_types import CATALOGUE
from argus_shared.nats import connect
from argus_shared.runner import run_loop
from argus_shared.settings import KeyRing
from support.events import publish_as_relay
from support.infra import start_infra
from support.mailbox import tokens_for
from support.processes import PYTHON, Proc, service_command, wait_ready

PASSWORD = "correct horse battery staple"
FAST = {"ARGUS_RATE_LIMIT_IP_PER_MINUTE": "100000000", "ARGUS_RATE_LIMIT_ORG_PER_MINUTE":
        "100000000", "ARGUS_LOG_LEVEL": "WARNING",
        "ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "100000", "ARGUS_AUTH_ACCOUNT_LIMIT_PER_MINUTE": "100000"}
ORG_TYPES = [t for t in ("org.updated", "project.created", "project.deleted", "wallet.deposit",
                         "wallet.charge", "org.member.added", "webhooks.endpoint.created",
                         "org.invitation.created") if t in CATALOGUE]
ACCOUNT_TYPES = [t for t in ("auth.login.succeeded", "auth.session.revoked") if t in CATALOGUE]
T_RE = re.compile(rb'"t": ?([0-9.]+)')
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Clients:
    """Every stream of one target, read in this process: frames counted, latency taken from
    each frame's `data.t` while `measuring`."""

    responses: list[aiohttp.ClientResponse] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    frames: int = 0
    latencies: list[float] = field(default_factory=list)
    measuring: bool = False

    async def open(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        response = await http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=None))
        assert response.status == 200, (response.status, await response.text())
        await response.content.readuntil(b"\n\n")  # the retry hint: the stream is live
        self.responses.append(response)
        self.tasks.append(asyncio.create_task(self._read(response)))

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        tail = b""
        try:
            async for chunk in response.content.iter_any():
                now = time.time()
                buffer = tail + chunk
                cut = buffer.rfind(b"\n\n")
                if cut < 0:
                    tail = buffer
                    continue
                done, tail = buffer[:cut], buffer[cut + 2:]
                self.frames += done.count(b"\nevent: ")
                if self.measuring:
                    self.latencies.extend(now - float(t) for t in T_RE.findall(done))
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass

    async def close(self) -> None:
        for response in self.responses:
            response.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def owners(auth: str, tenant: str, mailbox: Path, count: int) -> list[tuple[str, str, str]]:
    """`count` verified users, each owning a new org: (user id, org id, access token)."""
    found = []
    async with aiohttp.ClientSession() as http:
        emails = [f"s{uuid.uuid4().hex[:10]}@example.com" for _ in range(count)]
        for email in emails:
            async with http.post(f"{auth}/signup", json={"email": email, "password": PASSWORD}):
                pass
        tokens = await tokens_for(mailbox, emails)
        for email in emails:
            async with http.post(f"{auth}/verify-email", json={"token": tokens[email]}):
                pass
            async with http.post(f"{auth}/login",
                                 json={"email": email, "password": PASSWORD}) as r:
                login = await r.json()
            bearer = {"Authorization": f"Bearer {login['access_token']}"}
            async with http.get(f"{auth}/me", headers=bearer) as r:
                user = (await r.json())["id"]
            slug = f"s{uuid.uuid4().hex[:10]}"
            async with http.post(f"{tenant}/orgs", json={"name": slug, "slug": slug},
                                 headers=bearer) as r:
                org = (await r.json())["org_id"]
            async with http.post(f"{auth}/orgs/switch", json={"org_id": org},
                                 headers=bearer) as r:
                token = (await r.json())["access_token"]
            found.append((user, org, token))
    return found


def event_for(orgs: list[tuple[str, str, str]], number: int) -> events.Event:
    user, org, _ = random.choice(orgs)
    actor = events.Actor("user", user if random.random() < 0.5 else str(uuid.uuid4()))
    resource_ = events.Resource("thing", str(uuid.uuid4()))
    data = {"t": time.time(), "n": number}
    if random.random() < 0.1:  # another user's account event: no stream here may see it
        someone = events.Actor("user", str(uuid.uuid4()))
        return events.new_event(random.choice(ACCOUNT_TYPES), actor=someone,
                                resource=events.Resource("user", someone.id),
                                request_id=f"req-bench-{number:08d}", data=data)
    return events.new_event(random.choice(ORG_TYPES), actor=actor, resource=resource_,
                            org_id=org, request_id=f"req-bench-{number:08d}", data=data)


async def offer(js: JetStreamContext, keys: KeyRing, orgs: list[tuple[str, str, str]], rate: float,
                seconds: float) -> tuple[int, int]:
    """Publish at `rate`/s for `seconds` (every 10 ms a batch); (events, org events)."""
    tick, sent, in_orgs = 0.01, 0, 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) - sent
        batch = [event_for(orgs, sent + i) for i in range(max(due, 0))]
        sent += len(batch)
        in_orgs += sum(1 for e in batch if e.org_id is not None)
        await asyncio.gather(*(publish_as_relay(js, keys, "tenant-api", e,
                                                {"sub": f"user:{e.actor.id}"}) for e in batch))
        await asyncio.sleep(tick)
    return sent, in_orgs


@dataclass
class Result:
    delivered_per_s: float
    completeness: float
    p99_ms: float


async def run_flow(clients: Clients, js: JetStreamContext, keys: KeyRing,
                   orgs: list[tuple[str, str, str]], per_org: int, rate: float,
                   seconds: float) -> Result:
    clients.frames, clients.latencies, clients.measuring = 0, [], True
    started = time.perf_counter()
    _, in_orgs = await offer(js, keys, orgs, rate, seconds)
    expected = in_orgs * per_org
    last, still = -1, 0
    while clients.frames < expected and still < 20:  # drained, or nothing more for 2 s
        await asyncio.sleep(0.1)
        still = still + 1 if clients.frames == last else 0
        last = clients.frames
    elapsed = time.perf_counter() - started - still * 0.1
    clients.measuring = False
    p99 = statistics.quantiles(clients.latencies, n=100)[98] * 1000 if clients.latencies else 0
    return Result(clients.frames / elapsed, clients.frames / max(expected, 1), p99)


UrlOf = Callable[[int], tuple[str, dict[str, str]]]


def shifted(url_of: UrlOf, by: int) -> UrlOf:
    return lambda i: url_of(i + by)


async def open_streams(http: aiohttp.ClientSession, clients: Clients, count: int,
                       url_of: UrlOf) -> None:
    for start in range(0, count, 50):
        await asyncio.gather(*(clients.open(http, *url_of(i))
                               for i in range(start, min(start + 50, count))))


def poll_pass_ms(streams: int, revoked: int = 10_000, passes: int = 50) -> float:
    """One pass of the replica's revocation/heartbeat check (`police_once`, the code the
    service runs every 0.25 s) over `streams` open user streams, against a mirror holding
    `revoked` sessions, users and memberships: milliseconds per pass (median)."""
    hub = Hub(None, KeyRing({"k": b"0" * 32}, "k"), StreamMetrics(CollectorRegistry()))
    mirror = Revocations()
    for number in range(revoked):
        mirror.sessions.add(f"s{number}")
        mirror.users[f"u{number}"] = 1.0
        mirror.members[(f"o{number}", f"u{number}")] = MemberChange(1.0, "member")
    exp = int(time.time()) + 900
    for _ in range(streams):
        user, org = str(uuid.uuid4()), str(uuid.uuid4())
        conn = Connection(Viewer("user", user, org, "owner", frozenset()), 256)
        conn.claims = AccessClaims(sub=user, sid=str(uuid.uuid4()), org=org, role="owner",
                                   amr=("pwd",), auth_time=0, iat=time.time(), exp=exp)
        hub.join(conn)
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        police_once(hub, mirror, 15.0, time.monotonic())
        times.append(time.perf_counter() - started)
    assert not any(c.closed for c in hub.connections)
    return statistics.median(times) * 1000


async def idle_cpu(pid: int, seconds: float = 5) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def main(streams: int, org_count: int, rate: float, seconds: float, rounds: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * streams + 1024)), hard))
    workdir = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    infra = start_infra(workdir)
    procs: list[Proc] = []
    per_org = streams // org_count
    try:
        url = await infra.create_database(("auth", "tenant-api", "audit"))
        stack = infra.stack(url)
        bases = {}
        caps = {"ARGUS_STREAM_MAX_PER_USER": str(per_org + 1),
                "ARGUS_STREAM_MAX_PER_ORG": str(per_org + 1)}
        for service in ("auth", "tenant-api", "audit"):
            env = {**stack.service_environment(service), **FAST, **caps}
            if service == "audit":
                env["ARGUS_AUTH_URL"] = stack.service_url("auth")
            proc = Proc.start(service_command(service), env, workdir / f"{service}.log")
            procs.append(proc)
            bases[service] = stack.service_url(service)
            await wait_ready(f"{bases[service]}/readyz", proc)
        audit = procs[-1]
        bare_port = free_port()
        nats_url = stack.service_environment("audit")["ARGUS_NATS_URL"]
        bare = Proc.start([PYTHON, str(Path(__file__).parent / "bare_stream_server.py"),
                           nats_url, str(bare_port)], {}, workdir / "bare.log")
        procs.append(bare)
        orgs = await owners(bases["auth"], bases["tenant-api"], stack.mailbox, org_count)
        keys = stack.secrets.keyring("xut-keys")
        nc = await connect(nats_url, "bench-stream")
        js = nc.jetstream()
        targets: dict[str, UrlOf] = {
            "bare": lambda i: (f"http://127.0.0.1:{bare_port}/stream?org={orgs[i % org_count][1]}",
                               {}),
            "audit": lambda i: (f"{bases['audit']}/stream", {
                "Authorization": f"Bearer {orgs[i % org_count][2]}"}),
        }
        await asyncio.sleep(1)
        results: dict[str, list[Result]] = {"bare": [], "audit": []}
        memory, poll = [], {}
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(rounds):
                for name, url_of in targets.items():
                    clients = Clients()
                    pid = (audit if name == "audit" else bare).popen.pid
                    await asyncio.sleep(1)
                    rss_before = rss_kib(pid)
                    if name == "audit":
                        poll[0] = await idle_cpu(pid)
                    half = min(1000, streams)
                    await open_streams(http, clients, half, url_of)
                    if name == "audit" and half == 1000:
                        poll[1000] = await idle_cpu(pid)
                    await open_streams(http, clients, streams - half, shifted(url_of, half))
                    await asyncio.sleep(2)
                    if name == "audit":
                        memory.append((rss_kib(pid) - rss_before) / streams)
                        poll[streams] = await idle_cpu(pid)
                    results[name].append(await run_flow(clients, js, keys, orgs, per_org,
                                                        rate, seconds))
                    await clients.close()
                    await asyncio.sleep(2)
        await nc.close()
        report(results, memory, poll, streams, org_count, rate)
        for count in (1000, streams):
            print(f"revocation pass, {count} streams: {poll_pass_ms(count):8.2f} ms  (in-process "
                  "police_once, every 0.25 s; 10k entries in the mirror)")
    finally:
        for proc in procs:
            proc.kill()
        infra.close()


def report(results: dict[str, list[Result]], memory: list[float], poll: dict[int, float],
           streams: int, org_count: int, rate: float) -> None:
    def median(name: str, what: str) -> float:
        return statistics.median(getattr(r, what) for r in results[name])

    bare, audit = median("bare", "delivered_per_s"), median("audit", "delivered_per_s")
    print(f"streams / orgs / offered  : {streams} / {org_count} / {rate:.0f} events/s")
    print(f"bare fan-out delivered    : {bare:8.0f} events/s  "
          f"({median('bare', 'completeness'):.3f} of expected)")
    print(f"audit stream delivered    : {audit:8.0f} events/s  "
          f"({median('audit', 'completeness'):.3f} of expected)")
    print(f"ratio                     : {audit / bare:8.2f}  (target >= 0.7)")
    print(f"p99 publish->client audit : {median('audit', 'p99_ms'):8.1f} ms  (target < 250; "
          f"bare {median('bare', 'p99_ms'):.1f} ms)")
    print(f"memory per idle stream    : {statistics.median(memory):8.1f} KiB  (target < 50)")
    for count, cpu in sorted(poll.items()):
        print(f"audit idle CPU, {count} streams: {cpu * 100:8.1f} % of a core  (5 s, "
              "ingest of earlier rounds' events included)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    run_loop(main(args.streams, args.orgs, args.rate, args.seconds, args.rounds))
