"""Argon2id hashing off the event loop, a sentinel for unknown accounts, and the breached-password
check through the HIBP k-anonymity range API (only 5 hex characters of the SHA-1 leave)."""

from __future__ import annotations

import hashlib
import logging
import secrets

import aiohttp

from argus_auth import hashing

log = logging.getLogger("argus.auth.passwords")
MIN_LENGTH = 8
MAX_LENGTH = 128


class Passwords:
    """Hashes and checks passwords in worker processes (`hashing`); `start` them first."""

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int, workers: int = 2) -> None:
        self.hasher = hashing.make_hasher(memory_kib, time_cost, parallelism)
        self.pool = hashing.HashingPool(workers, memory_kib, time_cost, parallelism)
        self.sentinel = self.hasher.hash(secrets.token_urlsafe(32))

    async def start(self) -> None:
        await self.pool.start()

    async def hash(self, password: str) -> str:
        return str(await self.pool.run("hash", password))

    async def verify(self, stored: str | None, password: str) -> bool:
        """Check `password`; with no account (`stored` None) the same work is done against the
        sentinel, so timing does not tell whether the account exists."""
        verified = await self.pool.run("verify", stored or self.sentinel, password)
        return verified is True and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)

    async def stop(self) -> None:
        await self.pool.stop()


class BreachCheck:
    """True when HIBP knows the password. Fails open (False, logged) when HIBP is unreachable."""

    def __init__(self, url: str | None, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    async def breached(self, session: aiohttp.ClientSession, password: str) -> bool:
        if not self.url:
            return False
        digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
        prefix, suffix = digest[:5], digest[5:]
        try:
            async with session.get(
                f"{self.url}{prefix}", headers={"Add-Padding": "true"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                response.raise_for_status()
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("breached-password check unavailable; allowing the password",
                        extra={"error": type(exc).__name__})
            return False
        for line in body.splitlines():
            candidate, _, count = line.strip().partition(":")
            if candidate == suffix and count.strip() not in ("", "0"):
                return True
        return False
