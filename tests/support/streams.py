"""Clients of `GET /audit/stream` for tests: an SSE reader that keeps every field it was sent
(events, control events, `retry:` hints and comments), opened over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Listener:
    """One open stream, read in the background: `events` (id, type, envelope), `controls`
    (control event names), `retries` (`retry:` hints, ms) and `comments` (`: ...` lines)."""

    response: aiohttp.ClientResponse
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    clean: bool = False  # the server ended the body (not a reset or a client close)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for raw in self.response.content:
                self._line(raw.decode().rstrip("\n"), fields)
            self.clean = True
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()

    def _line(self, line: str, fields: dict[str, str]) -> None:
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            return
        if "retry" in fields:
            self.retries.append(int(fields["retry"]))
        if "id" in fields:
            self.events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
        elif "event" in fields:
            self.controls.append(fields["event"])
        fields.clear()

    def has(self, resource_id: str) -> bool:
        return any(e["resource"]["id"] == resource_id for _, _, e in self.events)

    def types(self) -> list[str]:
        return [t for _, t, _ in self.events]


async def listen(http: aiohttp.ClientSession, url: str, credential: str,
                 headers: dict[str, str] | None = None) -> Listener:
    """Open `url` (a stream) with `credential` as the bearer; it must answer 200 SSE."""
    sent = {"Authorization": f"Bearer {credential}", **(headers or {})}
    response = await http.get(url, headers=sent, timeout=aiohttp.ClientTimeout(total=None))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    listener = Listener(response)
    listener.task = asyncio.create_task(listener.read())
    return listener


async def until(check: Callable[[], Any], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def close_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.response.close()
        if listener.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await listener.task
