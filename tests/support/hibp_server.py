"""A local stand-in for the Pwned Passwords k-anonymity range API, so no test or benchmark asks
the public one: `GET /range/<first 5 hex of the SHA-1>` answers the 35-character upper-case
suffixes it knows as `SUFFIX:COUNT` lines (CRLF), and with `Add-Padding: true` pads the answer
with zero-count suffixes to 800-1,000 lines, as api.pwnedpasswords.com does. It runs on
127.0.0.1 in a thread of its own, so in-process services, service processes and `argus up`
started by tests can all reach it whatever event loop they run on.

The `hibp` session fixture starts one for the whole test run and points `ARGUS_HIBP_URL` at it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from aiohttp import web

# passwords the local server reports as breached (with how often they were seen)
BREACHED: Mapping[str, int] = {
    "password123": 2_505_431,
    "password1234": 181_207,
    "qwertyuiop123": 21_035,
    "letmein12345": 3_512,
}
PREFIX = re.compile(r"[0-9A-Fa-f]{5}")
PADDED_LINES = (800, 1000)


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


def range_lines(prefix: str, known: Mapping[str, int], padded: bool) -> list[str]:
    """The answer for one prefix: known suffixes, plus zero-count padding when asked, sorted."""
    prefix = prefix.upper()
    counts = {digest[5:]: count for digest, count in known.items() if digest[:5] == prefix}
    if padded:
        rng = random.Random(prefix)
        total = rng.randint(*PADDED_LINES)
        while len(counts) < total:
            counts.setdefault(f"{rng.getrandbits(140):035X}", 0)
    return [f"{suffix}:{count}" for suffix, count in sorted(counts.items())]


@dataclass(frozen=True)
class RangeRequest:
    prefix: str
    padded: bool


class HibpServer:
    """The range API on 127.0.0.1 (a free port); `seen` lists the requests it answered."""

    def __init__(self, breached: Mapping[str, int] = BREACHED) -> None:
        self.known = {sha1_hex(password): count for password, count in breached.items()}
        self.seen: list[RangeRequest] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """What ARGUS_HIBP_URL is set to: the prefix is appended to it."""
        return f"http://127.0.0.1:{self.port}/range/"

    def saw(self, password: str) -> bool:
        """Whether a range request for this password's prefix arrived (padded, as auth asks)."""
        prefix = sha1_hex(password)[:5]
        return any(r.prefix == prefix and r.padded for r in self.seen)

    def start(self) -> HibpServer:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="hibp",
                                        daemon=True)
        self._thread.start()
        if not started.wait(30) or self._failure is not None:
            raise RuntimeError(f"the local range server did not start: {self._failure!r}")
        return self

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _answer(self, request: web.Request) -> web.Response:
        prefix = request.match_info["prefix"]
        if not PREFIX.fullmatch(prefix):
            return web.Response(status=400, text="The hash prefix was not in a valid format")
        padded = request.headers.get("Add-Padding", "").lower() == "true"
        self.seen.append(RangeRequest(prefix.upper(), padded))
        body = "\r\n".join(range_lines(prefix, self.known, padded))
        return web.Response(text=body, content_type="text/plain")

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            started.set()
            return
        started.set()
        self._loop.run_forever()
        if self._runner is not None:
            self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/range/{prefix}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]


@pytest.fixture(scope="session", autouse=True)
def hibp() -> Iterator[HibpServer]:
    """The local range server for the whole run; ARGUS_HIBP_URL points at it for this process
    (in-process services) and for every process a test starts (`support.processes`)."""
    server = HibpServer().start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARGUS_HIBP_URL", server.url)
        yield server
    server.close()
