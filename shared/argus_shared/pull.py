"""Batches from a durable JetStream pull consumer, asked for with the pull API
(`$JS.API.CONSUMER.MSG.NEXT`) on one inbox whose messages arrive through a callback.

nats-py's `PullSubscription.fetch` waits for every message of a batch with a task and a timer
of its own; for a busy consumer that wait costs more than handling the message
(bench/audit_ingest.py prints both rates). Here a message costs one append to a buffer.

Messages are never attributed to a request: anything the consumer delivers to the inbox is a
delivery to handle (and acknowledge), whichever request it answers, so a reply that comes late
is kept for the next batch rather than lost. Only status replies (no messages, request expired,
a refusal such as a deleted consumer) carry the request's own subject, and end the wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

log = logging.getLogger("argus.consumer")
HEARTBEAT = "100"
QUIET = ("404", "408")  # no messages, request expired: the ordinary ends of a request
GRACE = 0.5  # beyond a request's expiry, in case its status reply is lost (a reconnect)


class PullBatches:
    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.prefix = f"{nc.new_inbox()}."
        self.buffer: list[Msg] = []
        self.asked = 0
        self.waiting_for = ""  # reply subject of the request being waited on
        self.wanted = 0
        self.refused = False  # the last request was refused (not merely empty)
        self.ready = asyncio.Event()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(f"{self.prefix}*", cb=self._arrived)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def fetch(self, batch: int, linger: float) -> list[Msg]:
        """Up to `batch` messages: what is waiting now, or else the first to arrive within
        `linger` seconds (with whatever came alongside); an empty list if none did."""
        self.refused = False
        if len(self.buffer) < batch:  # what the stream holds now, without waiting
            await self._ask({"batch": batch - len(self.buffer), "no_wait": True}, batch, linger)
        if not self.buffer and self.refused:  # asking again at once would only spin
            await asyncio.sleep(linger)
        elif not self.buffer:  # nothing waiting: linger until something arrives
            await self._ask({"batch": batch, "expires": int(linger * 1e9)}, 1, linger)
        taken, self.buffer = self.buffer[:batch], self.buffer[batch:]
        return taken

    async def _ask(self, request: dict[str, object], wanted: int, linger: float) -> None:
        self.asked += 1
        self.waiting_for, self.wanted = f"{self.prefix}{self.asked}", wanted
        self.ready.clear()
        await self.nc.publish(self.api, json.dumps(request).encode(), reply=self.waiting_for)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), linger + GRACE)

    async def _arrived(self, msg: Msg) -> None:
        if msg.subject.startswith(self.prefix):  # a status reply to one of our requests
            self._status(msg)
            return
        self.buffer.append(msg)
        if len(self.buffer) >= self.wanted:
            self.ready.set()

    def _status(self, msg: Msg) -> None:
        headers: dict[str, str] = dict(msg.headers or {})
        code = headers.get(Header.STATUS.value, "")
        if code == HEARTBEAT:
            return
        if code not in QUIET:  # e.g. the consumer was deleted: worth an operator's eye
            # (nats-py keys the description by the enum member itself)
            detail = headers.get(Header.DESCRIPTION) or headers.get(Header.DESCRIPTION.value)
            log.warning("pull request refused", extra={"status": code, "detail": detail})
            self.refused = True
        if msg.subject == self.waiting_for:  # any status ends the request it answers
            self.ready.set()
