"""Delivery workers: claim due deliveries with SKIP LOCKED (any number of replicas), sign, POST
to the address that passed the SSRF check, record the attempt, then succeed, retry later with
back-off and jitter (Retry-After honoured within bounds), disable the endpoint (410, or failing
for 5 days) or give up when the schedule is exhausted. A worker that dies leaves a lease that
expires; the next claim takes the delivery again, so every delivery completes at least once.
An attempt's log lines carry the request id of the event it delivers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from argus_shared import crypto, db, events
from argus_shared.event_types import ENDPOINT_DISABLED
from argus_shared.logs import request_context
from argus_shared.outbox import Ctx, record
from argus_shared.settings import KeyRing
from argus_webhooks import SERVICE, excerpt, queries, signing, ssrf
from argus_webhooks.config import WebhooksConfig

log = logging.getLogger("argus.webhooks.delivery")
CLAIM_FACTOR = 8  # deliveries leased at a time, per concurrent worker (a deep queue: the
# workers never wait for the next claim)
BATCH_FACTOR = 2  # claims and recorded successes come in groups of this many per worker
# a passed SSRF check and an unsealed secret are reused this long (aiohttp's own DNS cache keeps
# 10 s); connections still go only to the addresses that were checked, and a deleted endpoint's
# secret does not stay in memory for longer
CACHE_SECONDS = 10.0
CACHE_LIMIT = 4096


def secret_context(org_id: Any, endpoint_id: Any) -> bytes:
    return f"webhooks.secret:{org_id}:{endpoint_id}".encode()


class Metrics:
    def __init__(self, registry: Any) -> None:
        self.results = Counter("argus_webhook_deliveries", "Delivery attempts by result",
                               ["result"], registry=registry)
        self.latency = Histogram("argus_webhook_attempt_seconds", "Delivery attempt latency",
                                 registry=registry)
        self.depth = Gauge("argus_webhook_queue_depth", "Deliveries not yet done",
                           registry=registry)
        self.oldest = Gauge("argus_webhook_oldest_pending_seconds",
                            "Age of the oldest delivery not yet done", registry=registry)
        self.disabled = Gauge("argus_webhook_endpoints_disabled", "Disabled endpoints",
                              registry=registry)


def next_delay(attempt: int, schedule: tuple[int, ...], retry_after: int | None,
               cap: int) -> float:
    base = schedule[min(attempt - 1, len(schedule) - 1)]
    if retry_after is not None:
        base = max(base, min(retry_after, cap))
    return base * random.uniform(0.9, 1.1)


def retry_after_of(response_headers: Any) -> int | None:
    value = response_headers.get("Retry-After") if response_headers else None
    if value and value.strip().isdigit():
        return int(value.strip())
    return None


async def _head(content: aiohttp.StreamReader, limit: int) -> bytes:
    """At most `limit` bytes from the start of a body (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def failure(exc: BaseException) -> str:
    """A failed attempt as the tenant sees it: never the bytes of a malformed answer, which
    aiohttp's parser errors quote."""
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"{type(exc).__name__}: the answer is not valid HTTP"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class _Recent:
    """A small map whose entries are forgotten after `CACHE_SECONDS` (and all at once when it
    holds `CACHE_LIMIT`)."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= CACHE_LIMIT:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + CACHE_SECONDS, value)


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, master: KeyRing, config: WebhooksConfig,
                 metrics: Metrics) -> None:
        self.pool, self.master, self.config, self.metrics = pool, master, config, metrics
        self._stopping = False
        self._active = 0  # deliveries being attempted right now
        self._leased = 0  # claimed and not yet attempted to the end
        self._freed = asyncio.Event()
        self._recording: set[asyncio.Task[None]] = set()
        # one keep-alive session per checked (host, port, addresses): connections are reused,
        # and a host whose addresses change gets a new session after a new check
        self._sessions: dict[tuple[str, tuple[str, ...]], aiohttp.ClientSession] = {}
        self._targets = _Recent()  # url -> (host, checked addresses)
        self._unsealed = _Recent()  # (sealed, context) -> secret

    def stop(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _session(self, host: str, addresses: list[str]) -> aiohttp.ClientSession:
        key = (host, tuple(addresses))
        session = self._sessions.get(key)
        if session is None or session.closed:
            stale = [k for k in self._sessions if k[0] == host]
            for old in stale:
                asyncio.ensure_future(self._sessions.pop(old).close())  # noqa: RUF006
            connector = aiohttp.TCPConnector(resolver=ssrf.PinnedResolver(host, addresses),
                                             limit_per_host=self.config.workers,
                                             ttl_dns_cache=None, use_dns_cache=False)
            timeout = aiohttp.ClientTimeout(total=self.config.attempt_timeout)
            session = self._sessions[key] = aiohttp.ClientSession(connector=connector,
                                                                  timeout=timeout)
        return session

    async def run(self) -> None:
        """Claim into a queue that `workers` long-lived workers drain; claim more as they free
        up (no round waits for its slowest delivery). At most `CLAIM_FACTOR * workers`
        deliveries are leased at a time; on stop, every leased one is still attempted."""
        queue: asyncio.Queue[asyncpg.Record] = asyncio.Queue()
        successes: list[dict[str, Any]] = []
        workers = [asyncio.create_task(self._work(queue, successes))
                   for _ in range(self.config.workers)]
        try:
            await self._claim_into(queue, successes)
            await queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        await asyncio.gather(*self._recording)
        await self._record_successes(self._take(successes))

    async def _claim_into(self, queue: asyncio.Queue[asyncpg.Record],
                          successes: list[dict[str, Any]]) -> None:
        while not self._stopping:
            room = CLAIM_FACTOR * self.config.workers - self._leased
            if room < BATCH_FACTOR * self.config.workers:  # enough queued: wait for some to end
                self._freed.clear()
                await self._freed.wait()
                continue
            try:
                async with self.pool.acquire() as conn:
                    rows = await queries.claim(conn, room, self.config.lease_seconds)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("claim failed", extra={"error": str(exc)[:200]})
                await asyncio.sleep(1)
                continue
            if not rows:
                await self._record_successes(self._take(successes))
                await asyncio.sleep(self.config.poll_seconds)
                continue
            self._leased += len(rows)
            for row in rows:
                queue.put_nowait(row)

    @staticmethod
    def _take(successes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        taken = successes[:]
        successes.clear()
        return taken

    async def _work(self, queue: asyncio.Queue[asyncpg.Record],
                    successes: list[dict[str, Any]]) -> None:
        while True:
            row = await queue.get()
            self._active += 1
            try:
                with request_context(events.request_id_of(row["payload"])):
                    await self._attempt(row, successes)
            finally:
                self._active -= 1
                self._leased -= 1
                self._freed.set()
                queue.task_done()
            # in groups under load, at once when nothing else is in flight (a trickle of events);
            # recorded beside the workers, which go on delivering meanwhile
            if len(successes) >= BATCH_FACTOR * self.config.workers or self._active == 0:
                recording = asyncio.create_task(self._record_successes(self._take(successes)))
                self._recording.add(recording)
                recording.add_done_callback(self._recording.discard)

    async def _attempt(self, row: asyncpg.Record, successes: list[dict[str, Any]]) -> None:
        try:
            await self.deliver(row, successes)
        except Exception:  # the lease runs out and the delivery is attempted again
            log.exception("delivery attempt failed", extra={"delivery": str(row["id"])})

    async def _record_successes(self, successes: list[dict[str, Any]]) -> None:
        """Successful attempts, in one statement. If this fails the leases run out and the
        deliveries are sent again: at least once, as receivers are told to expect."""
        if not successes:
            return
        try:
            async with self.pool.acquire() as conn:
                await queries.succeeded(conn, successes)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("successes not recorded: %s", str(exc)[:200])

    async def deliver(self, row: asyncpg.Record,
                      successes: list[dict[str, Any]] | None = None) -> str:
        """One attempt, settled; a success is appended to `successes` for the caller to record
        with others when it gives a list, else recorded at once."""
        started, moment = time.perf_counter(), datetime.now(UTC)
        status_code, error, shown, headers = None, None, None, None
        try:
            secrets = self._secrets(row)
            host, addresses = await self._target(row["url"])
            status_code, shown, headers = await self._post(row, secrets, host, addresses)
        except ssrf.Refused as exc:
            error = f"refused: {exc}"
        except crypto.SealError as exc:  # e.g. its master key was removed: say so, retry later
            error = f"secret unavailable: {exc}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = failure(exc)
        latency = time.perf_counter() - started
        self.metrics.latency.observe(latency)
        result = await self._settle(row, moment, latency, status_code, error, shown, headers,
                                    successes)
        log.debug("delivery attempted", extra={
            "delivery": str(row["id"]), "endpoint": str(row["endpoint_id"]), "result": result,
            "status_code": status_code, "attempt": row["attempts"]})
        return result

    def _secrets(self, row: asyncpg.Record) -> list[str]:
        """The endpoint's live secrets, unsealed once per sealed value (a rotation seals a new
        one, so a cached secret is never stale)."""
        context = secret_context(row["org_id"], row["endpoint_id"])
        return [self._unseal(sealed, context) for sealed in row["secrets"]]

    def _unseal(self, sealed: bytes, context: bytes) -> str:
        secret: str | None = self._unsealed.get((sealed, context))
        if secret is None:
            secret = crypto.open_sealed(self.master, sealed, context).decode()
            self._unsealed.put((sealed, context), secret)
        return secret

    async def _target(self, url: str) -> tuple[str, list[str]]:
        """Host and checked addresses for `url` (Refused if not allowed); a passed check is
        reused for `CACHE_SECONDS`, a refusal is checked again next time."""
        cached: tuple[str, list[str]] | None = self._targets.get(url)
        if cached is not None:
            return cached
        host, port = ssrf.check_url(url, self.config.https_only)
        addresses = await ssrf.resolve_checked(host, port, self.config.allow_nets,
                                               self.config.resolve)
        self._targets.put(url, (host, addresses))
        return host, addresses

    async def _post(self, row: asyncpg.Record, secrets: list[str], host: str,
                    addresses: list[str]) -> tuple[int, str | None, Any]:
        headers = signing.outbound_headers(secrets, f"msg_{row['id']}", int(time.time()),
                                           row["payload"])
        headers["User-Agent"] = "Argus-Webhooks/1"
        session = self._session(host, addresses)
        async with session.post(row["url"], data=row["payload"], headers=headers,
                                allow_redirects=False) as response:
            body = await _head(response.content, excerpt.READ_BYTES)
            shown = excerpt.excerpt(body, response.headers.get("Content-Type"),
                                    response.charset)
            return response.status, shown, response.headers

    async def _settle(self, row: asyncpg.Record, moment: datetime, latency: float,
                      status_code: int | None, error: str | None, shown: str | None,
                      headers: Any, successes: list[dict[str, Any]] | None) -> str:
        ok = status_code is not None and 200 <= status_code < 300
        result = "succeeded" if ok else "gone" if status_code == 410 else "failed"
        attempt = {
            "org_id": row["org_id"], "delivery_id": row["id"], "n": row["attempts"],
            "started_at": moment, "status_code": status_code,
            "latency_ms": int(latency * 1000), "error": error, "response_body": shown,
            "endpoint_id": row["endpoint_id"]}
        if ok:
            if successes is None:
                await self._record_successes([attempt])
            else:
                successes.append(attempt)
            self.metrics.results.labels(result).inc()
            return result
        async with db.tenant_tx(self.pool, row["org_id"]) as conn:
            await queries.record_attempt(conn, attempt)
            if status_code == 410:
                await queries.finish(conn, row["org_id"], row["id"], "cancelled", None)
                await self._disable(conn, row, "the endpoint answered 410 Gone")
            else:
                result = await self._retry_or_give_up(conn, row, headers)
        self.metrics.results.labels(result).inc()
        return result

    async def _retry_or_give_up(self, conn: queries.Conn, row: asyncpg.Record,
                                headers: Any) -> str:
        failing_since = await queries.mark_failing(conn, row["org_id"], row["endpoint_id"])
        if datetime.now(UTC) - failing_since > timedelta(days=self.config.disable_after_days):
            await self._disable(conn, row, "failing for 5 days")
        if row["attempts"] > len(self.config.schedule):
            await queries.finish(conn, row["org_id"], row["id"], "exhausted", None)
            return "exhausted"
        delay = next_delay(row["attempts"], self.config.schedule, retry_after_of(headers),
                           self.config.retry_after_cap)
        await queries.finish(conn, row["org_id"], row["id"], "pending",
                             datetime.now(UTC) + timedelta(seconds=delay))
        return "failed"

    async def _disable(self, conn: queries.Conn, row: asyncpg.Record, reason: str) -> None:
        await queries.disable(conn, row["org_id"], row["endpoint_id"], reason)
        await record(conn, SERVICE, Ctx(), ENDPOINT_DISABLED,
                     actor=("system", "webhooks"), resource=("endpoint", str(row["endpoint_id"])),
                     org_id=row["org_id"], data={"reason": reason})

    async def refresh_metrics(self) -> None:
        async with self.pool.acquire() as conn:
            stats = await queries.queue_stats(conn)
        self.metrics.depth.set(stats["pending"])
        self.metrics.oldest.set(stats["oldest_seconds"])
        self.metrics.disabled.set(stats["disabled"])
