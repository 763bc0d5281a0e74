"""Tests reach nothing beyond this machine.

In the test process, every name lookup (`socket.getaddrinfo`, `gethostbyname[_ex]`, asyncio's and
uvloop's `loop.getaddrinfo`, aiohttp's and dnspython's resolvers) of a name other than
`localhost` is refused before anything is sent, and the test it happened in fails, naming it,
even when the code under test swallowed the error (a dnspython query sent only to loopback
nameservers, a DNS server the test runs, stays here and passes). IP literals need no lookup
and pass; so do the hosts of `ARGUS_TEST_DATABASE_URL` / `ARGUS_TEST_NATS_URL`, which the
operator chose.

For processes a test starts, `assert_loopback_settings` checks that every outside service they
are given (breached-password check, SMTP, OTLP, database, NATS, S3, auth) is on loopback.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

OPERATOR_CHOSEN = ("ARGUS_TEST_DATABASE_URL", "ARGUS_TEST_NATS_URL")
# settings that name something a service connects to
DESTINATIONS = (
    "ARGUS_HIBP_URL", "ARGUS_SMTP_URL", "ARGUS_OTLP_ENDPOINT", "ARGUS_DATABASE_URL",
    "ARGUS_DATABASE_ADMIN_URL", "ARGUS_NATS_URL", "ARGUS_AUTH_URL", "ARGUS_FILES_S3_ENDPOINT",
)


def _as_text(host: object) -> str | None:
    if isinstance(host, bytes | bytearray):
        return bytes(host).decode(errors="replace")
    return None if host is None else str(host)


def is_literal(host: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return True
    return False


def is_loopback(host: str) -> bool:
    """`localhost` (and names under it) or a loopback address literal."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@functools.cache
def operator_hosts() -> frozenset[str]:
    hosts = {urlsplit(os.environ[name]).hostname for name in OPERATOR_CHOSEN if name in os.environ}
    return frozenset(h.lower() for h in hosts if h)


def lookup_allowed(host: object) -> bool:
    name = _as_text(host)
    if not name:  # None or "": the local wildcard
        return True
    return is_literal(name) or is_loopback(name) or name.lower() in operator_hosts()


# --- the guard in this process ---------------------------------------------------------------

class LookupRefused(socket.gaierror):
    pass


class DnsGuard:
    def __init__(self) -> None:
        self.refused: list[str] = []  # names looked up, in order, not yet reported
        self.lock = threading.Lock()
        self.restore: list[Callable[[], None]] = []

    def check(self, host: object) -> None:
        if lookup_allowed(host):
            return
        name = _as_text(host) or ""
        with self.lock:
            self.refused.append(name)
        raise LookupRefused(socket.EAI_NONAME,
                            f"the test guard refuses a DNS lookup of {name!r} (tests stay local)")

    def take(self) -> list[str]:
        with self.lock:
            names, self.refused[:] = list(self.refused), []
        return names

    def wrap(self, owner: Any, attribute: str, host_of: Callable[..., object]) -> None:
        original = getattr(owner, attribute)
        if getattr(original, "__wrapped_by_dns_guard__", False):
            return
        guarded = _guarded(self, original, host_of)
        setattr(owner, attribute, guarded)
        self.restore.append(lambda: setattr(owner, attribute, original))

    def install(self) -> None:
        first = _first_argument
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            self.wrap(socket, name, first)
        import asyncio.base_events

        self.wrap(asyncio.base_events.BaseEventLoop, "getaddrinfo", _method_argument)
        for module, owner, attribute in _optional_resolvers():
            with contextlib.suppress(ImportError, AttributeError):
                target = getattr(__import__(module, fromlist=[owner]), owner)
                host_of = _dnspython_query if module.startswith("dns.") else _method_argument
                self.wrap(target, attribute, host_of)

    def uninstall(self) -> None:
        while self.restore:
            self.restore.pop()()


def _optional_resolvers() -> list[tuple[str, str, str]]:
    """Resolvers that do not go through socket.getaddrinfo, where installed."""
    return [
        ("uvloop", "Loop", "getaddrinfo"),
        ("aiohttp.resolver", "AsyncResolver", "resolve"),
        ("dns.resolver", "Resolver", "resolve"),
        ("dns.asyncresolver", "Resolver", "resolve"),
    ]


def _first_argument(*args: Any, **kwargs: Any) -> object:
    return args[0] if args else kwargs.get("host", kwargs.get("hostname"))


def _method_argument(*args: Any, **kwargs: Any) -> object:
    return args[1] if len(args) > 1 else kwargs.get("host", kwargs.get("qname"))


def _dnspython_query(*args: Any, **kwargs: Any) -> object:
    """A dnspython query sent only to loopback nameservers (a DNS server the test runs) stays
    on this machine, whatever the name; any other is judged by its name."""
    nameservers = [str(n) for n in getattr(args[0], "nameservers", ())] if args else []
    if nameservers and all(is_loopback(n) for n in nameservers):
        return "localhost"
    return _method_argument(*args, **kwargs)


def _guarded(guard: DnsGuard, original: Callable[..., Any],
             host_of: Callable[..., object]) -> Callable[..., Any]:
    """`original`, checking the host first; for a coroutine function the check comes at the
    call, and what it returns is awaited as before."""

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        guard.check(host_of(*args, **kwargs))
        return original(*args, **kwargs)

    guarded.__wrapped_by_dns_guard__ = True  # type: ignore[attr-defined]
    return guarded


GUARD = DnsGuard()


@contextlib.contextmanager
def refused_lookups() -> Iterator[list[str]]:
    """For a test of the guard itself: the names refused inside the block, which then do not
    fail the test."""
    before = GUARD.take()
    names: list[str] = []
    try:
        yield names
    finally:
        names.extend(GUARD.take())
        with GUARD.lock:
            GUARD.refused[:0] = before


def pytest_configure(config: pytest.Config) -> None:
    GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    GUARD.uninstall()


def _report(phase: str) -> Generator[None, object, object]:
    """Fail the phase when a lookup was refused during it (or since the last phase ended: a
    background task of an earlier test is reported by the next one, never dropped)."""
    try:
        outcome = yield
    except BaseException as exc:
        names = GUARD.take()
        if names:
            exc.add_note(f"DNS lookups refused during {phase}: {', '.join(names)}")
        raise
    names = GUARD.take()
    if names:
        pytest.fail(f"the test looked up names outside this machine during {phase}: "
                    f"{', '.join(names)} (tests reach only loopback)", pytrace=False)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _report("setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _report("the test"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _report("teardown"))


# --- processes started by tests --------------------------------------------------------------

def _setting(env: Mapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path and Path(path).is_file():
        return Path(path).read_text().strip()
    return None


def assert_loopback_settings(env: Mapping[str, str]) -> None:
    """Every outside service in a test process's environment is on loopback (or off)."""
    for name in DESTINATIONS:
        value = _setting(env, name)
        if not value or "://" not in value:
            continue  # unset, or "off"
        host = urlsplit(value).hostname or ""
        if not (is_loopback(host) or host.lower() in operator_hosts()):
            raise AssertionError(
                f"{name} points at {host!r}: processes started by tests reach only loopback"
            )
