"""`argus up` as a user runs it: a real supervisor process with embedded PostgreSQL and NATS,
five services and the gateway; then stopped by SIGTERM or Ctrl-C (SIGINT). A service killed
meanwhile is restarted; one that cannot start stops the suite."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

from argus_shared.cli.stack import GATEWAY_PREFIXES
from argus_shared.cli.supervisor import RestartPolicy
from argus_shared.cli.up import public_url
from argus_shared.embedded import free_port, port_free
from argus_shared.settings import SERVICES
from support.hibp_server import HibpServer
from support.mailbox import mail_to
from support.pages import link_in, open_page
from support.processes import Proc

ARGUS = str(Path(sys.executable).parent / "argus")
STOP_DEADLINE = 10.0


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line or environment mentions `marker` (our data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if marker.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


async def wait_for_banner(proc: Proc, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = proc.output
        if "Press Ctrl-C to stop." in output:
            return output
        if proc.popen.poll() is not None:
            raise AssertionError(f"argus up exited {proc.popen.returncode}: {output}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"argus up not ready in {timeout}s: {proc.output}")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory outside pytest's own temporary root: a pytest run starting meanwhile
    makes that root private again (0700), and PostgreSQL, which runs as its own user when this
    runs as root, could no longer reach its cluster."""
    directory = Path(tempfile.mkdtemp(prefix="argus-up-"))
    yield directory / "argus"
    shutil.rmtree(directory, ignore_errors=True)


def up_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    return [
        ARGUS, "--data-dir", str(data_dir), "up", "--port", str(ports["gateway"]),
        "--service-port-base", str(ports["base"]), "--pg-port", str(ports["pg"]),
        "--nats-port", str(ports["nats"]),
    ]


def free_ports() -> dict[str, int]:
    base = free_port()
    while not all(port_free(base + i) for i in range(5)):
        base = free_port()
    return {"gateway": free_port(), "base": base, "pg": free_port(), "nats": free_port()}


async def check_suite(gateway: str) -> None:
    async with aiohttp.ClientSession() as session:
        for prefix in GATEWAY_PREFIXES:
            async with session.get(f"{gateway}/{prefix}/readyz") as response:
                assert response.status == 200, prefix
                body = await response.json()
                checks = body["checks"]  # every service checks these; some check more
                assert {"database", "nats"} <= set(checks), prefix
                assert set(checks.values()) == {"ok"}, checks
                assert response.headers["X-Request-Id"]
            async with session.get(f"{gateway}/{prefix}/openapi.json") as response:
                assert response.status == 200
                assert (await response.json())["servers"][0]["url"] == f"/{prefix}"
            async with session.get(f"{gateway}/{prefix}/docs") as response:
                assert (response.status, response.content_type) == (200, "text/html"), prefix
            async with session.get(f"{gateway}/{prefix}/docs/assets/argus-docs.js") as response:
                assert response.status == 200, prefix
            for blocked in ("metrics", "internal/whoami"):
                async with session.get(f"{gateway}/{prefix}/{blocked}") as response:
                    assert response.status == 404, f"/{prefix}/{blocked}"


async def stop_and_check(proc: Proc, sig: int, data_dir: Path, ports: dict[str, int]) -> None:
    started = time.monotonic()
    proc.signal(sig)
    code = await asyncio.to_thread(proc.wait, STOP_DEADLINE + 5)
    took = time.monotonic() - started
    assert code == 0, proc.output
    assert took < STOP_DEADLINE, f"stopping took {took:.1f}s"
    assert "Traceback" not in proc.output
    await asyncio.sleep(0.2)
    assert processes_mentioning(str(data_dir)) == []
    ports_in_use = [p for p in (ports["gateway"], ports["pg"], ports["nats"]) if not port_free(p)]
    assert ports_in_use == []


@pytest.mark.timeout(300)
async def test_argus_up_serves_the_suite_and_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    ports = free_ports()
    gateway = f"http://127.0.0.1:{ports['gateway']}"

    first = Proc.start(up_command(data_dir, ports), {}, tmp_path / "first.log")
    try:
        banner = await wait_for_banner(first)
        assert gateway in banner
        assert "PostgreSQL" in banner and "NATS" in banner
        await check_suite(gateway)
        secrets = {p.name: p.read_bytes() for p in (data_dir / "secrets").iterdir()}
        for path in (data_dir / "secrets").iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path
        await stop_and_check(first, signal.SIGTERM, data_dir, ports)
    finally:
        first.kill()

    # a second run reuses the data and the secrets, and stops on Ctrl-C
    second = Proc.start(up_command(data_dir, ports), {}, tmp_path / "second.log")
    try:
        await wait_for_banner(second)
        await check_suite(gateway)
        assert {p.name: p.read_bytes() for p in (data_dir / "secrets").iterdir()} == secrets
        await stop_and_check(second, signal.SIGINT, data_dir, ports)
    finally:
        second.kill()


async def test_argus_up_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    ports = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["gateway"]))
        taken.listen()
        proc = Proc.start(up_command(tmp_path / "argus", ports), {}, tmp_path / "up.log")
        code = await asyncio.to_thread(proc.wait, 60)
    output = proc.output.strip()
    assert code != 0
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1
    assert f"port {ports['gateway']} is already in use" in output


def test_restart_back_off_doubles_from_half_a_second_to_a_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert policy.delay(10_000) == 10
    assert policy.stable_after == 30 and policy.max_startup_failures == 5


def service_pids(data_dir: Path) -> dict[str, int]:
    """What `argus up` wrote in <data-dir>/run/<service>.pid."""
    return {path.stem: int(path.read_text()) for path in (data_dir / "run").glob("*.pid")}


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return False
    return state != "Z"


async def eventually(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


async def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body), or (0, "", error) when nothing answers."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as response:
                return response.status, response.content_type, await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, "", repr(exc)


@pytest.mark.timeout(300)
async def test_a_killed_service_is_restarted_while_the_others_keep_running(
    tmp_path: Path, data_dir: Path, hibp: HibpServer
) -> None:
    ports = free_ports()
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    direct = f"http://127.0.0.1:{ports['base'] + SERVICES.index('auth')}"
    proc = Proc.start(up_command(data_dir, ports), {}, tmp_path / "up.log")
    try:
        await wait_for_banner(proc)
        before = service_pids(data_dir)
        assert set(before) == set(SERVICES)
        others = {s: pid for s, pid in before.items() if s != "auth"}

        os.kill(before["auth"], signal.SIGKILL)
        await eventually("auth reaped", lambda: not running(before["auth"]))
        # gone, and its successor at least 0.5 s of back-off and a start-up away: the gateway
        # still routes, and answers for auth with a problem meanwhile
        status, content_type, body = await get(f"{gateway}/auth/healthz")
        assert status in (502, 503) and content_type == "application/problem+json", body
        assert "auth" in body

        restarted = "argus: auth exited (signal 9); restarting in 0.5 s (restart 1)"
        await eventually("the restart line", lambda: restarted in proc.output)
        await eventually("auth back", lambda: "argus: auth is back" in proc.output)
        after = service_pids(data_dir)
        assert after["auth"] != before["auth"] and running(after["auth"])
        assert f"argus: auth is back (pid {after['auth']})" in proc.output
        # what the suite gives auth in a test: the local range server, never the public one
        environ = Path(f"/proc/{after['auth']}/environ").read_bytes().split(b"\0")
        assert f"ARGUS_HIBP_URL={hibp.url}".encode() in environ
        for url in (f"{direct}/healthz", f"{gateway}/auth/healthz"):
            assert (await get(url))[0] == 200, url
        await check_suite(gateway)

        assert {s: pid for s, pid in after.items() if s != "auth"} == others
        assert all(running(pid) for pid in others.values())
        assert proc.output.count(" exited (") == 1, proc.output
        await stop_and_check(proc, signal.SIGTERM, data_dir, ports)
        assert not (data_dir / "run").exists() or service_pids(data_dir) == {}
    finally:
        proc.kill()


@pytest.mark.timeout(300)
async def test_a_service_that_keeps_failing_at_start_up_stops_the_suite(
    tmp_path: Path, data_dir: Path
) -> None:
    ports = free_ports()
    bad = {"ARGUS_AUTH_IP_LIMIT_PER_MINUTE": "0"}  # a setting only auth reads, out of range
    proc = Proc.start(up_command(data_dir, ports), bad, tmp_path / "up.log")
    try:
        code = await asyncio.to_thread(proc.wait, 240)
    finally:
        proc.kill()
    output = proc.output
    assert code == 1, output
    assert "Traceback" not in output and "Argus is up." not in output
    lines = output.splitlines()
    assert [line for line in lines if " exited (" in line] == [
        f"argus: auth exited (exit code 2); restarting in {delay} s (restart {n})"
        for n, delay in enumerate(("0.5", "1", "2", "4"), start=1)
    ]
    final = [line for line in lines if "giving up" in line]
    assert len(final) == 1, output
    assert final[0].startswith("argus: auth exited 5 times in a row before it was ready")
    assert str(data_dir / "logs" / "auth.log") in final[0]
    assert "ARGUS_AUTH_IP_LIMIT_PER_MINUTE" in final[0]  # the service's own last line
    await asyncio.sleep(0.2)
    assert processes_mentioning(str(data_dir)) == []
    assert [p for p in (ports["gateway"], ports["pg"], ports["nats"]) if not port_free(p)] == []


def test_mail_links_point_at_the_gateway_port_unless_public_url_is_set() -> None:
    assert public_url(8123, {}) == "http://127.0.0.1:8123"
    assert public_url(8123, {"ARGUS_PUBLIC_URL": "https://argus.example.com"}) == \
        "https://argus.example.com"


@pytest.mark.timeout(300)
async def test_a_mailed_link_opens_a_page_of_the_gateway_that_verifies(
    tmp_path: Path, data_dir: Path
) -> None:
    """Sign up through the gateway of `argus up --port N`; the mail's link names that gateway,
    its page loads through it, and the POST its script makes verifies: then the login works."""
    ports = free_ports()
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    email, password = "newcomer@example.com", "a long enough passphrase"
    proc = Proc.start(up_command(data_dir, ports), {}, tmp_path / "up.log")
    try:
        await wait_for_banner(proc)
        async with aiohttp.ClientSession() as http:
            credentials = {"email": email, "password": password}
            async with http.post(f"{gateway}/auth/signup", json=credentials) as response:
                assert response.status == 202
            link = link_in(await mail_to(data_dir / "mailbox", email))
            assert link.startswith(f"{gateway}/auth/pages/verify-email#"), link
            page = await open_page(http, link)
            assert page.endpoint == f"{gateway}/auth/verify-email"
            token = link.split("#", 1)[1]
            assert await page.post(http, {"token": token}) == (200, {"status": "verified"})
            async with http.post(f"{gateway}/auth/login", json=credentials) as response:
                assert response.status == 200
                assert (await response.json())["token_type"] == "Bearer"
        await stop_and_check(proc, signal.SIGTERM, data_dir, ports)
    finally:
        proc.kill()


async def post_json(http: aiohttp.ClientSession, url: str, body: object,
                    token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def signed_up(http: aiohttp.ClientSession, gateway: str, mailbox: Path, email: str,
                    password: str) -> str:
    """Sign up and verify through the gateway; the login's access token."""
    credentials = {"email": email, "password": password}
    assert (await post_json(http, f"{gateway}/auth/signup", credentials))[0] == 202
    token = link_in(await mail_to(mailbox, email)).split("#", 1)[1]
    assert (await post_json(http, f"{gateway}/auth/verify-email", {"token": token}))[0] == 200
    status, tokens = await post_json(http, f"{gateway}/auth/login", credentials)
    assert status == 200, tokens
    return str(tokens["access_token"])


@pytest.mark.timeout(300)
async def test_an_invitation_is_mailed_and_accepted_through_the_gateway(
    tmp_path: Path, data_dir: Path
) -> None:
    """Invite through the gateway of `argus up`: the mail lands in the dev mailbox with a link
    to that gateway, its page loads through it, and signing in and accepting as its script
    does makes the invitee a member."""
    ports = free_ports()
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    mailbox, password = data_dir / "mailbox", "a long enough passphrase"
    owner_email, invitee_email = "owner@example.com", "invitee@example.com"
    proc = Proc.start(up_command(data_dir, ports), {}, tmp_path / "up.log")
    try:
        await wait_for_banner(proc)
        # no cookies, as the page's fetch sends none: the bearer token is the credential
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            owner = await signed_up(http, gateway, mailbox, owner_email, password)
            await signed_up(http, gateway, mailbox, invitee_email, password)
            status, org = await post_json(http, f"{gateway}/tenant/orgs",
                                          {"name": "Acme", "slug": "acme"}, owner)
            assert status == 201, org
            status, switched = await post_json(http, f"{gateway}/auth/orgs/switch",
                                               {"org_id": org["org_id"]}, owner)
            assert status == 200, switched
            status, invited = await post_json(
                http, f"{gateway}/tenant/orgs/{org['org_id']}/invitations",
                {"email": "Invitee@Example.com", "role": "member"}, str(switched["access_token"]))
            assert status == 201 and invited["mailed"] is True, invited

            link = link_in(await mail_to(mailbox, invitee_email))
            assert link == f"{gateway}/tenant/pages/accept-invitation#{invited['token']}"
            page = await open_page(http, link)
            assert page.endpoint == f"{gateway}/tenant/invitations/accept"
            assert 'data-login="../../auth/login"' in page.html
            status, tokens = await post_json(http, urljoin(page.url, "../../auth/login"),
                                             {"email": invitee_email, "password": password})
            assert status == 200, tokens
            assert await post_json(http, page.endpoint, {"token": invited["token"]},
                                   str(tokens["access_token"])) == \
                (200, {"org_id": org["org_id"], "role": "member"})
        await stop_and_check(proc, signal.SIGTERM, data_dir, ports)
    finally:
        proc.kill()
