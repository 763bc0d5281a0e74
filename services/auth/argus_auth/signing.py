"""EdDSA (Ed25519) signing keys for access tokens: kept in the database, the private half sealed
under the master key, shared by every replica. Rotation adds a key and retires the old one,
which stays in the JWKS until every token it signed has expired."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from argus_auth import queries
from argus_shared import crypto
from argus_shared.access import ALGORITHM, public_key_from_jwk
from argus_shared.settings import KeyRing

RELOAD_SECONDS = 30.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    jwk: dict[str, Any]
    retired_at: datetime | None


def _context(kid: str) -> bytes:
    return f"auth.signing_key:{kid}".encode()


def new_key(master: KeyRing) -> tuple[str, bytes, dict[str, Any]]:
    kid = f"ed-{secrets.token_hex(6)}"
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return kid, crypto.seal(master, raw, _context(kid)), jwk


class SigningKeys:
    def __init__(self, pool: asyncpg.Pool, master: KeyRing, access_ttl: int) -> None:
        self.pool, self.master, self.access_ttl = pool, master, access_ttl
        self.keys: list[SigningKey] = []
        self.loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await queries.signing_keys(conn)
            if not any(row["retired_at"] is None for row in rows):
                await queries.lock_signing_keys(conn)  # replicas starting together make one key
                rows = await queries.signing_keys(conn)
                if not any(row["retired_at"] is None for row in rows):
                    await queries.insert_signing_key(conn, *new_key(self.master))
                    rows = await queries.signing_keys(conn)
        self.keys = [self._open(row) for row in rows]
        self.loaded_at = time.monotonic()

    def _open(self, row: asyncpg.Record) -> SigningKey:
        raw = crypto.open_sealed(self.master, row["private_sealed"], _context(row["kid"]))
        return SigningKey(row["kid"], Ed25519PrivateKey.from_private_bytes(raw),
                          dict(row["public_jwk"]), row["retired_at"])

    async def rotate(self) -> str:
        kid, sealed, jwk = new_key(self.master)
        async with self.pool.acquire() as conn, conn.transaction():
            await queries.lock_signing_keys(conn)
            await queries.insert_signing_key(conn, kid, sealed, jwk)
            await queries.retire_signing_keys_except(conn, kid)
        await self.load()
        return kid

    @property
    def current(self) -> SigningKey:
        return next(key for key in self.keys if key.retired_at is None)

    def published(self, now: float | None = None) -> list[dict[str, Any]]:
        """Active keys, and retired ones whose tokens may still be alive."""
        moment = time.time() if now is None else now
        horizon = self.access_ttl + 60
        return [key.jwk for key in self.keys
                if key.retired_at is None or moment - key.retired_at.timestamp() < horizon]

    async def lookup(self, kid: str) -> Ed25519PublicKey | None:
        if time.monotonic() - self.loaded_at > RELOAD_SECONDS or not self._known(kid):
            async with self._lock:
                if time.monotonic() - self.loaded_at > 1.0:
                    await self.load()
        for jwk in self.published():
            if jwk["kid"] == kid:
                return public_key_from_jwk(jwk)
        return None

    def _known(self, kid: str) -> bool:
        return any(key.kid == kid for key in self.keys)

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.current
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
