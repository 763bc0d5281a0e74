"""A test run reaches nothing beyond this machine (`support.offline`): a name lookup in the test
process is refused and fails the test that made it, naming the name, even if the code under test
swallowed the error; processes started by tests are given only loopback services."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import uvloop

from argus_shared.cli.stack import Stack
from argus_shared.settings import SERVICES
from support.hibp_server import HibpServer
from support.offline import assert_loopback_settings, refused_lookups
from support.processes import Proc, environ_for, run_to_exit

TESTS = Path(__file__).parent
NOTHING = [sys.executable, "-c", "pass"]


def test_lookups_of_public_names_are_refused_naming_them() -> None:
    with refused_lookups() as refused:
        with pytest.raises(socket.gaierror, match="api.pwnedpasswords.com"):
            socket.getaddrinfo("api.pwnedpasswords.com", 443)
        with pytest.raises(socket.gaierror, match="example.com"):
            socket.gethostbyname("example.com")
        with pytest.raises(socket.gaierror, match="example.org"):
            socket.gethostbyname_ex("example.org")
    assert refused == ["api.pwnedpasswords.com", "example.com", "example.org"]


async def test_event_loop_and_aiohttp_lookups_are_refused() -> None:
    loop = asyncio.get_running_loop()

    def on_uvloop() -> None:
        other = uvloop.new_event_loop()
        try:
            other.run_until_complete(other.getaddrinfo("uvloop.example.net", 443))
        finally:
            other.close()

    with refused_lookups() as refused:
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("asyncio.example.net", 443)
        with pytest.raises(socket.gaierror):
            await asyncio.to_thread(on_uvloop)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientConnectorDNSError, match="aiohttp.example.net"):
                await http.get("https://aiohttp.example.net/")
    assert refused == ["asyncio.example.net", "uvloop.example.net", "aiohttp.example.net"]


async def test_loopback_names_and_address_literals_need_no_permission() -> None:
    with refused_lookups() as refused:
        assert socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo("127.0.0.1", 80)
        assert socket.getaddrinfo("192.0.2.1", 80)  # a literal: nothing is looked up
        assert await asyncio.get_running_loop().getaddrinfo("localhost", 80)
    assert refused == []


def test_a_swallowed_lookup_still_fails_its_test_naming_the_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makeconftest('pytest_plugins = ["support.offline"]')
    pytester.makepyfile(test_inner="""
        import contextlib
        import socket

        def test_swallows_the_error():
            with contextlib.suppress(OSError):
                socket.getaddrinfo("leak.example", 443)

        def test_stays_local():
            socket.getaddrinfo("localhost", 80)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*looked up names outside this machine during the test: "
                                 "leak.example*"])


def test_processes_started_by_tests_are_given_only_loopback_services(
    hibp: HibpServer, stack: Stack, tmp_path: Path
) -> None:
    assert environ_for({})["ARGUS_HIBP_URL"] == hibp.url
    for service in SERVICES:
        assert_loopback_settings(environ_for(stack.service_environment(service)))
    smtp_file = tmp_path / "smtp-url"
    smtp_file.write_text("smtps://user:pass@mail.example.com:465\n")
    for name, value in [("ARGUS_HIBP_URL", "https://api.pwnedpasswords.com/range/"),
                        ("ARGUS_OTLP_ENDPOINT", "https://otel.example.com:4318"),
                        ("ARGUS_SMTP_URL", "smtp://user:pass@smtp.example.com:587"),
                        ("ARGUS_SMTP_URL_FILE", str(smtp_file))]:
        with pytest.raises(AssertionError, match=name.removesuffix("_FILE")):
            Proc.start(NOTHING, {name: value}, tmp_path / "refused.log")
        with pytest.raises(AssertionError, match="points at"):
            run_to_exit(NOTHING, {name: value})
    local = {"ARGUS_OTLP_ENDPOINT": "http://127.0.0.1:4318", "ARGUS_SMTP_URL": "smtp://localhost"}
    assert run_to_exit(NOTHING, local)[0] == 0
    with contextlib.suppress(FileNotFoundError):
        (tmp_path / "refused.log").unlink()
