"""End-user access tokens, as every service checks them: EdDSA JWTs from auth, verified against
auth's public keys (JWKS, cached, refetched on an unknown `kid`), and a revocation set shared
over a NATS KV bucket so a revoked session or a signed-out user stops working on every service
at once rather than when the 15-minute token expires."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
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
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)

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
    iat: float  # to the microsecond, so a revocation is judged on either side of it exactly
    exp: int
    idp: str | None = None  # the issuer of the provider the session signed in through (SSO)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AccessClaims:
        return cls(
            sub=str(payload["sub"]), sid=str(payload["sid"]), org=payload.get("org"),
            role=payload.get("role"), amr=tuple(payload.get("amr", ())),
            auth_time=int(payload["auth_time"]), iat=float(payload["iat"]),
            exp=int(payload["exp"]), idp=payload.get("idp"),
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


@dataclass(frozen=True)
class MemberChange:
    """The latest change of one membership: when (`at`), and the role it left (`role`; None
    once the member was removed). `known` is False for an entry that carries no role."""

    at: float
    role: str | None
    known: bool = True

    def encode(self) -> bytes:
        return json.dumps({"at": self.at, "role": self.role}).encode()

    @classmethod
    def decode(cls, value: bytes) -> MemberChange:
        text = value.decode()
        if not text.lstrip().startswith("{"):
            return cls(float(text), None, known=False)
        fields = json.loads(text)
        return cls(float(fields["at"]), fields.get("role"))


class Revocations:
    """Revoked sessions (`sid.<id>`), users signed out everywhere (`user.<id>` = time), changed
    memberships (`member.<org>.<user>` = a `MemberChange`) and deleted orgs (`org.<org>` =
    time), kept in a NATS KV bucket and mirrored locally by a watcher.

    A token is refused when its session is revoked, when it was issued at or before a
    revocation of its user, org or membership, and when it carries a role in an org other than
    the one its membership last changed to: so a token minted from a membership read just
    before a change (a refresh racing a removal) is refused too, whenever it was issued.
    Staleness: a change reaches this mirror as fast as the KV watcher delivers it
    (milliseconds); times are the changing service's wall clock, to the microsecond."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.users: dict[str, float] = {}
        self.members: dict[tuple[str, str], MemberChange] = {}  # (org, user)
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
        try:
            if kind == "sid":
                (self.sessions.discard if deleted else self.sessions.add)(ident)
            elif kind == "user":
                _set(self.users, ident, None if deleted or not value else _time(value))
            elif kind == "member":
                org, _, user_id = ident.partition(".")
                change = None if deleted or not value else MemberChange.decode(value)
                _set(self.members, (org, user_id), change)
            elif kind == "org":
                _set(self.orgs, ident, None if deleted or not value else _time(value))
        except (ValueError, KeyError, TypeError):
            log.warning("revocation entry not understood", extra={"key": key[:200]})

    def revoked(self, claims: AccessClaims) -> bool:
        if claims.sid in self.sessions:
            return True
        since = self.users.get(claims.sub)
        if since is not None and claims.iat <= since:
            return True
        if claims.org is None:
            return False
        since = self.orgs.get(claims.org)
        if since is not None and claims.iat <= since:
            return True
        change = self.members.get((claims.org, claims.sub))
        return change is not None and (
            claims.iat <= change.at or (change.known and claims.role != change.role))

    @staticmethod
    async def revoke_session(js: JetStreamContext, session_id: str) -> None:
        kv = await Revocations.bucket(js)
        await kv.put(f"sid.{session_id}", b"1")

    @staticmethod
    async def revoke_user(js: JetStreamContext, user_id: str, at: float | None = None) -> None:
        """Every token of the user issued up to `at` (default now) stops working."""
        at = time.time() if at is None else at
        await _put_newer(await Revocations.bucket(js), f"user.{user_id}", at, _stamp(at))


def _set(table: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _time(value: bytes) -> float:
    return float(value.decode())


def _stamp(at: float) -> bytes:
    return repr(float(at)).encode()


def _at_of(key: str, value: bytes) -> float:
    return MemberChange.decode(value).at if key.startswith("member.") else _time(value)


async def _put_newer(kv: Any, key: str, at: float, value: bytes, attempts: int = 5) -> None:
    """Write `value` unless the entry already records a change at or after `at`: writers on
    several replicas (and an event redelivered late) can never move a revocation backwards."""
    for _ in range(attempts):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None:
                await kv.create(key, value)
            elif entry.value and _at_of(key, entry.value) >= at:
                return
            else:
                await kv.update(key, value, last=entry.revision)
            return
        except KeyWrongLastSequenceError:
            continue  # another writer got in first: read again
    raise RuntimeError(f"revocation {key} not written after {attempts} attempts")


async def revoke_org(js: JetStreamContext, org_id: str, at: float | None = None) -> None:
    """A deleted org: its org-scoped tokens issued up to now and every one of its API keys stop
    working everywhere."""
    at = time.time() if at is None else at
    await _put_newer(await Revocations.bucket(js), f"org.{org_id}", at, _stamp(at))


async def revoke_membership(js: JetStreamContext, org_id: str, user_id: str,
                            role: str | None, at: float | None = None) -> None:
    """A membership changed to `role` (None: removed): tokens of `user_id` scoped to `org_id`
    issued up to `at` (default now), and any carrying another role, stop working everywhere."""
    change = MemberChange(time.time() if at is None else at, role)
    await _put_newer(await Revocations.bucket(js), f"member.{org_id}.{user_id}", change.at,
                     change.encode())


def issued_at(now: float) -> float:
    """A token's `iat`: the time to the microsecond, rounded down, so it never claims to be
    later than it was."""
    return math.floor(now * 1_000_000) / 1_000_000


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
        if not math.isfinite(claims.iat) or claims.iat > now + LEEWAY or \
                claims.exp <= claims.iat:
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
