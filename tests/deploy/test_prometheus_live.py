"""A real Prometheus (Debian's `prometheus`) scrapes every service of a running `argus up` while
traffic goes through the gateway; then every Grafana panel's query and every rule's expression
is evaluated against what it stored: none may error, and each must have a result wherever the
traffic made its series (the few that only exist after a failure are named, with why).

For an alert the expression is judged without its threshold (`up == 0` as `up`): a healthy suite
must not fire it, but the series it watches must exist with the labels it selects. The one
failure the test causes, a forged event, must fire exactly its alert; nothing else may fire.
CI scrapes for 20 s; ARGUS_FULL=1 for a minute."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from argus_shared import events, xut
from argus_shared.embedded import free_port
from argus_shared.nats import connect as nats_connect
from argus_shared.settings import SERVICES
from support.argus_up import Gateway, RunningSuite, argus_up
from support.processes import Proc, wait_ready
from support.tools import require_tool

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "argus.json"
RECEIVER = str(ROOT / "tests" / "support" / "receiver.py")
SCRAPE_SECONDS = 60 if os.environ.get("ARGUS_FULL") == "1" else 20
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*-?\d+(\.\d+)?\s*$")

# Series that exist only once something went wrong: a healthy run leaves them empty.
ONLY_AFTER_FAILURES = {
    "sum by (job) (rate(argus_stream_slow_drops_total{job=~\".*\"}[5m]))": "no reader was slow",
    "sum by (job) (increase(argus_stream_slow_drops_total[15m]))": "no reader was slow",
    "sum by (job, cap) (rate(argus_stream_cap_refusals_total{job=~\".*\"}[5m]))":
        "no stream was refused",
}


def panel_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"].replace("$job", ".*") for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def rule_expressions() -> list[tuple[str, str]]:
    """(alert or record name, expression without an alert's threshold)."""
    found = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            found.append((rule.get("alert") or rule["record"], THRESHOLD.sub("", expr)))
    return found


def prometheus_config(suite: RunningSuite, directory: Path) -> Path:
    jobs = [{"job_name": f"argus-{name}",
             "static_configs": [{"targets": [f"127.0.0.1:{suite.ports['base'] + index}"]}]}
            for index, name in enumerate(SERVICES)]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)], "scrape_configs": jobs}
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def traffic(gateway: Gateway, suite: RunningSuite, hook_port: int) -> None:
    """Sign-ups, logins, an org, money, a file, a webhook delivery, audit reads, a stream."""
    org_id, token = await gateway.org_owner(suite.mailbox, "owner@example.com", "acme")
    me = await gateway.call("GET", "/auth/me", token=token)
    await gateway.call("POST", f"/webhooks/orgs/{org_id}/webhooks/endpoints", token=token,
                       body={"url": f"http://127.0.0.1:{hook_port}/hook",
                             "event_types": ["wallet.deposit"]}, expect=201)
    for n in range(3):
        await gateway.call("POST", f"/tenant/orgs/{org_id}/wallet/deposits", token=token,
                           body={"amount_cents": 100 + n},
                           headers={"Idempotency-Key": f"deposit-{n}"}, expect=201)
    answer = await gateway.send("POST", f"/files/objects/{org_id}/{me['id']}?name=a.txt",
                                token=token, data=b"hello\n",
                                headers={"Content-Type": "text/plain"})
    assert answer.status == 201, answer.text
    download = await gateway.send(
        "GET", f"/files/objects/{org_id}/{me['id']}/{answer.json['id']}", token=token)
    assert download.status == 200 and download.text == "hello\n"
    refused = await gateway.send("POST", f"/files/objects/{org_id}/{me['id']}?name=a.exe",
                                 token=token, data=b"MZ",
                                 headers={"Content-Type": "application/x-msdownload"})
    assert refused.status == 415, refused.text
    await gateway.call("GET", f"/audit/orgs/{org_id}/audit/events", token=token)
    async with gateway.http.get(f"{gateway.base}/audit/stream",
                                headers={"Authorization": f"Bearer {token}"}) as stream:
        assert stream.status == 200
        await gateway.call("GET", f"/tenant/orgs/{org_id}/wallet", token=token)


async def forge_an_event(suite: RunningSuite) -> None:
    """A message signed with a key the suite does not hold: audit must quarantine it."""
    event = events.new_event("org.updated", actor=events.Actor("user", "forger"),
                             resource=events.Resource("org", "x"), org_id=str(uuid.uuid4()))
    body = events.encode(event)
    token = xut.sign(xut.KeyRing({"k1": b"f" * 32}, "k1"),
                     xut.Identity(sub="user:forger", org=event.org_id), issuer="tenant-api",
                     audience=events.EVENTS_AUDIENCE, body=body)
    nc = await nats_connect(f"nats://127.0.0.1:{suite.ports['nats']}", "forger")
    await nc.jetstream().publish("argus.events.tenant-api.org.updated", body,
                                 headers={xut.HEADER: token})
    await nc.close()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> list[Any]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body.get("status") == "success", (expr, body)
    return list(body["data"]["result"])


async def wait_for_samples(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while len(await query(http, base, 'up{job=~"argus-.*"} == 1')) < len(SERVICES):
        assert time.monotonic() < deadline, "Prometheus never saw every service up"
        await asyncio.sleep(1)


@pytest.mark.timeout(420)
async def test_every_panel_and_rule_evaluates_against_a_real_scrape(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", "Debian: apt-get install prometheus; "
                              ".ci/run installs it")
    hook_port, prom_port = free_port(), free_port()
    receiver = Proc.start([sys.executable, RECEIVER, str(hook_port), str(tmp_path / "hooks")],
                          {}, tmp_path / "receiver.log")
    async with argus_up(tmp_path / "up.log", prefix="argus-prom-") as suite:
        server = Proc.start([prometheus, f"--config.file={prometheus_config(suite, tmp_path)}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            {}, tmp_path / "prometheus.log")
        base = f"http://127.0.0.1:{prom_port}"
        try:
            await wait_ready(f"http://127.0.0.1:{hook_port}/healthz", receiver)
            await wait_ready(f"{base}/-/ready", server)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
                await wait_for_samples(http, base)
                await traffic(Gateway(http, suite.gateway), suite, hook_port)
                await forge_an_event(suite)
                await asyncio.sleep(SCRAPE_SECONDS)
                await judge(http, base)
        finally:
            server.kill()
            receiver.kill()
    print(f"prometheus scraped {len(SERVICES)} services for {SCRAPE_SECONDS}s; "
          f"{len(panel_queries())} panel queries, {len(rule_expressions())} rules evaluated")


async def judge(http: aiohttp.ClientSession, base: str) -> None:
    empty = []
    for expr in panel_queries():
        if not await query(http, base, expr) and expr not in ONLY_AFTER_FAILURES:
            empty.append(f"panel: {expr}")
    for name, expr in rule_expressions():
        if not await query(http, base, expr) and expr not in ONLY_AFTER_FAILURES:
            empty.append(f"rule {name}: {expr}")
    assert empty == [], "no series where traffic was sent:\n" + "\n".join(empty)
    firing = await query(http, base, 'ALERTS{alertstate="firing"}')
    assert [a["metric"]["alertname"] for a in firing] == ["ArgusAuditQuarantine"]
    assert firing[0]["metric"]["reason"].startswith("token_")
