"""End-user access tokens, as every service checks them: EdDSA JWTs from auth, verified against
auth's public keys (JWKS, cached, refetched on an unknown `kid`), and a revocation set shared
over a NATS KV bucket so a revoked session or a signed-out user stops working on every service
at once rather than when the 15-minute token expires."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoKeysError

from argus_shared.errors import Problem

log = logging.getLogger("argus.access")
ALGORITHM = "EdDSA"
REVOCATIONS_BUCKET = "argus_revocations"
REVOCATION_TTL = 2 * 3600  # longer than any access token lives
CACHE_SIZE = 10_000
LEEWAY = 5
ACCESS_COOKIE = "__Host-argus_access"


@dataclass(frozen=True)
class AccessClaims:
    sub: str  # the user id
    sid: str  # the session id
    org: str | None
    role: str | None
    amr: tuple[str, ...]
    auth_time: int
    iat: int
    exp: int

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AccessClaims:
        return cls(
            sub=str(payload["sub"]), sid=str(payload["sid"]), org=payload.get("org"),
            role=payload.get("role"), amr=tuple(payload.get("amr", ())),
            auth_time=int(payload["auth_time"]), iat=int(payload["iat"]),
            exp=int(payload["exp"]),
        )

    def fresh(self, within: int, now: float | None = None) -> bool:
        """Authenticated (password or second factor) within the last `within` seconds."""
        return (time.time() if now is None else now) - self.auth_time <= within


ACCESS_CLAIMS = web.RequestKey("access_claims", AccessClaims)
KeyLookup = Callable[[str], Awaitable[Ed25519PublicKey | None]]


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    key = jwt.algorithms.OKPAlgorithm.from_jwk(dict(jwk))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class JwksCache:
    """Public keys by `kid` from a JWKS URL; an unknown `kid` triggers at most one refetch per
    `min_refetch` seconds, so forged kids cannot hammer auth."""

    def __init__(self, url: str, fetch: Callable[[str], Awaitable[dict[str, Any]]],
                 min_refetch: float = 10.0) -> None:
        self.url, self.fetch, self.min_refetch = url, fetch, min_refetch
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self, kid: str) -> Ed25519PublicKey | None:
        if kid in self.keys:
            return self.keys[kid]
        async with self._lock:
            if kid not in self.keys and time.monotonic() - self.fetched_at >= self.min_refetch:
                await self.refresh()
        return self.keys.get(kid)

    async def refresh(self) -> None:
        document = await self.fetch(self.url)
        self.keys = {
            jwk["kid"]: public_key_from_jwk(jwk)
            for jwk in document.get("keys", [])
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk
        }
        self.fetched_at = time.monotonic()


class Revocations:
    """Revoked sessions (`sid.<id>`), users signed out everywhere (`user.<id>` = time), members
    removed from an org (`member.<org>.<user>` = time) and deleted orgs (`org.<org>` = time),
    kept in a NATS KV bucket and mirrored locally by a watcher."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.users: dict[str, float] = {}
        self.members: dict[tuple[str, str], float] = {}  # (org, user) removed at
        self.orgs: dict[str, float] = {}  # org deleted at
        self._task: asyncio.Task[None] | None = None
        self._kv: Any = None
        self._stopping = False
        self.ready = asyncio.Event()

    @staticmethod
    async def bucket(js: JetStreamContext) -> Any:
        try:
            return await js.key_value(REVOCATIONS_BUCKET)
        except BucketNotFoundError:
            return await js.create_key_value(KeyValueConfig(
                bucket=REVOCATIONS_BUCKET, ttl=REVOCATION_TTL, history=1,
                storage=StorageType.FILE,
            ))

    async def start(self, js: JetStreamContext) -> None:
        self._kv = await self.bucket(js)
        self._task = asyncio.create_task(self._watch(), name="revocations-watch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5)

    async def stop(self) -> None:
        self._stopping = True  # a cancellation swallowed inside a library still ends the loop
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while not self._stopping:
            try:
                watcher = await self._kv.watchall()
                async for entry in watcher:
                    if self._stopping:
                        return
                    if entry is None:  # initial values delivered
                        self.ready.set()
                        continue
                    self._apply(entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except NoKeysError:
                self.ready.set()
            except Exception as exc:
                log.warning("revocation watch restarting", extra={"error": str(exc)[:200]})
                await asyncio.sleep(1)

    def _apply(self, key: str, value: bytes | None, operation: Any) -> None:
        kind, _, ident = key.partition(".")
        deleted = operation is not None and str(operation).endswith(("DEL", "PURGE"))
        if kind == "sid":
            (self.sessions.discard if deleted else self.sessions.add)(ident)
        elif kind == "user":
            self._set(self.users, ident, None if deleted else value)
        elif kind == "member":
            org, _, user_id = ident.partition(".")
            self._set(self.members, (org, user_id), None if deleted else value)
        elif kind == "org":
            self._set(self.orgs, ident, None if deleted else value)

    @staticmethod
    def _set(table: dict[Any, float], key: Any, value: bytes | None) -> None:
        if value:
            table[key] = float(value.decode())
        else:
            table.pop(key, None)

    def revoked(self, claims: AccessClaims) -> bool:
        if claims.sid in self.sessions:
            return True
        for since in (self.users.get(claims.sub),
                      self.members.get((claims.org, claims.sub)) if claims.org else None,
                      self.orgs.get(claims.org) if claims.org else None):
            if since is not None and claims.iat <= since:
                return True
        return False

    @staticmethod
    async def revoke_session(js: JetStreamContext, session_id: str) -> None:
        kv = await Revocations.bucket(js)
        await kv.put(f"sid.{session_id}", b"1")

    @staticmethod
    async def revoke_user(js: JetStreamContext, user_id: str, at: float | None = None) -> None:
        """Every token of the user issued up to `at` (default now) stops working."""
        kv = await Revocations.bucket(js)
        await kv.put(f"user.{user_id}", str(int(time.time() if at is None else at)).encode())


async def revoke_org(js: JetStreamContext, org_id: str, at: float | None = None) -> None:
    """A deleted org: its org-scoped tokens issued up to now and every one of its API keys stop
    working everywhere."""
    kv = await Revocations.bucket(js)
    await kv.put(f"org.{org_id}", str(int(time.time() if at is None else at)).encode())


async def revoke_membership(js: JetStreamContext, org_id: str, user_id: str,
                            at: float | None = None) -> None:
    """Tokens of `user_id` scoped to `org_id`, issued up to now, stop working everywhere."""
    kv = await Revocations.bucket(js)
    await kv.put(f"member.{org_id}.{user_id}",
                 str(int(time.time() if at is None else at)).encode())


class AccessVerifier:
    def __init__(self, lookup: KeyLookup, *, issuer: str, audience: str,
                 revocations: Revocations, clock: Callable[[], float] = time.time) -> None:
        self.lookup, self.issuer, self.audience, self.clock = lookup, issuer, audience, clock
        self.revocations = revocations
        self.cache: OrderedDict[bytes, AccessClaims] = OrderedDict()
        self.use_cache = True

    async def verify(self, token: str) -> AccessClaims:
        digest = hashlib.sha256(token.encode()).digest()
        claims = self.cache.get(digest) if self.use_cache else None
        if claims is None or claims.exp <= self.clock():
            claims = await self._verify_signature(token)
            if self.use_cache:
                self._remember(digest, claims)
        if self.revocations.revoked(claims):
            raise unauthenticated("the session was revoked")
        return claims

    async def _verify_signature(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("malformed access token") from None
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise unauthenticated("access token algorithm or key id not accepted")
        key = await self.lookup(header["kid"])
        if key is None:
            raise unauthenticated("access token signed by an unknown key")
        try:
            payload = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "sid", "auth_time"],
                         "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            claims = AccessClaims.from_payload(payload)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise unauthenticated("access token refused") from None
        now = self.clock()  # times are judged on our clock (tests move it)
        if claims.exp <= now - LEEWAY:
            raise unauthenticated("access token expired")
        if claims.iat > now + LEEWAY or claims.exp <= claims.iat:
            raise unauthenticated("access token times are not valid")
        return claims

    def _remember(self, digest: bytes, claims: AccessClaims) -> None:
        self.cache[digest] = claims
        if len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)


def unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, title="Unauthenticated",
                   headers={"WWW-Authenticate": 'Bearer realm="argus"'})


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(ACCESS_COOKIE)


@dataclass(frozen=True)
class Principal:
    """Who calls a user route: a signed-in user, or an API key of one org's project."""

    kind: str  # "user" or "api_key"
    id: str
    org: str | None
    role: str | None = None
    scopes: tuple[str, ...] = ()
    auth_time: int | None = None
    project: str | None = None

    @classmethod
    def of_user(cls, claims: AccessClaims) -> Principal:
        return cls("user", claims.sub, claims.org, claims.role, (), claims.auth_time)

    @property
    def sub(self) -> str:
        return f"{self.kind}:{self.id}"


PRINCIPAL = web.RequestKey("principal", Principal)
API_KEY_PREFIX = "argus_sk_"
API_KEY_REVOKED_SUBJECT = "argus.cache.api_key_revoked"
API_KEY_CACHE_SECONDS = 30.0


class ApiKeys:
    """API-key introspection answers (from auth over NATS), cached for
    `API_KEY_CACHE_SECONDS` and dropped at once when auth announces a revocation."""

    def __init__(self, call: Callable[[str], Awaitable[dict[str, Any]]],
                 revocations: Revocations | None = None) -> None:
        self.call = call
        self.revocations = revocations
        self.entries: dict[bytes, tuple[float, dict[str, Any]]] = {}
        self._sub: Any = None

    async def start(self, nc: Any) -> None:
        async def forget(msg: Any) -> None:
            self.forget(msg.data.decode())

        self._sub = await nc.subscribe(API_KEY_REVOKED_SUBJECT, cb=forget)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def lookup(self, secret: str) -> dict[str, Any]:
        digest = hashlib.sha256(secret.encode()).digest()
        hit = self.entries.get(digest)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        answer = await self.call(secret)
        self.entries[digest] = (time.monotonic() + API_KEY_CACHE_SECONDS, answer)
        return answer

    def forget(self, key_id: str) -> None:
        for digest, (_, answer) in list(self.entries.items()):
            if answer.get("id") == key_id:
                del self.entries[digest]

    async def principal(self, secret: str) -> Principal:
        from argus_shared.nats import RpcError

        try:
            answer = await self.lookup(secret)
        except RpcError as exc:
            if exc.status == 404:
                raise unauthenticated("the API key is not valid") from None
            raise Problem(503, "API keys cannot be checked right now") from None
        if self.revocations is not None and answer["org_id"] in self.revocations.orgs:
            raise unauthenticated("the API key is not valid")  # its org was deleted
        return Principal("api_key", answer["id"], answer["org_id"], None,
                         tuple(answer["scopes"]), None, answer["project_id"])


def api_key_of(request: web.Request) -> str | None:
    given = request.headers.get("X-API-Key")
    if given:
        return given.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(API_KEY_PREFIX):
        return token.strip()
    return None
