"""X-User-Token: the identity one service passes to another over HTTP or NATS.

Format: `v1.<kid>.<base64url(claims JSON)>.<base64url(HMAC-SHA256)>`, the MAC taken over
`v1.<kid>.<claims>` with the key `kid` names, so keys rotate (current signs, previous still
verify). Claims: `sub` (principal: `user:<id>`, `api_key:<id>` or `service:<name>`), `org`,
`role`, `scopes`, `rid` (request id), `iss`, `aud`, `iat`, `exp` and, on NATS, `bh`: the SHA-256
of the message body, so a token cannot be lifted onto another message. The receiver compares MACs
in constant time and uses only the identity inside the token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import msgspec

from argus_shared import b64
from argus_shared.settings import KeyRing

HEADER = "X-User-Token"
VERSION = "v1"
MAX_TOKEN_BYTES = 4096
CLOCK_SKEW = 5  # seconds a token's iat may lie in the future


# Every reason a TokenError gives (metrics name them up front, so a first refusal counts).
REASONS = ("oversized", "malformed", "unknown_kid", "bad_signature", "wrong_audience",
           "wrong_issuer", "expired", "bad_times", "body_not_bound", "body_mismatch")


class TokenError(Exception):
    """The token is refused. `reason` is a short code safe to log (never the token itself)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claims(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    sub: str
    iss: str
    aud: str
    iat: int
    exp: int
    rid: str = ""
    org: str | None = None
    role: str | None = None
    scopes: list[str] = msgspec.field(default_factory=list)
    bh: str | None = None

    @property
    def principal_type(self) -> str:
        return self.sub.partition(":")[0]

    @property
    def principal_id(self) -> str:
        return self.sub.partition(":")[2]


@dataclass(frozen=True)
class Identity:
    """Who acts: what a signer puts in a token."""

    sub: str
    org: str | None = None
    role: str | None = None
    scopes: tuple[str, ...] = ()
    request_id: str = ""


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(Claims)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(key: bytes, signing_input: str) -> bytes:
    return hmac.digest(key, signing_input.encode(), "sha256")


def sign(
    keys: KeyRing,
    identity: Identity,
    *,
    issuer: str,
    audience: str,
    lifetime: int = 60,
    body: bytes | None = None,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims = Claims(
        sub=identity.sub,
        iss=issuer,
        aud=audience,
        iat=issued,
        exp=issued + lifetime,
        rid=identity.request_id,
        org=identity.org,
        role=identity.role,
        scopes=list(identity.scopes),
        bh=None if body is None else body_hash(body),
    )
    signing_input = f"{VERSION}.{keys.current}.{b64.encode(_encode.encode(claims))}"
    return f"{signing_input}.{b64.encode(_mac(keys.current_key, signing_input))}"


def verify(
    keys: KeyRing,
    token: str,
    *,
    audience: str,
    issuers: frozenset[str] | None = None,
    body: bytes | None = None,
    now: float | None = None,
) -> Claims:
    """Return the claims of a valid token or raise `TokenError`.

    With `body`, the token must carry `bh` and it must match. `now` lets a stream consumer judge
    expiry at the time the message was published rather than when it is read.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("oversized")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise TokenError("malformed")
    _, kid, payload, signature = parts
    key = keys.keys.get(kid)
    if key is None:
        raise TokenError("unknown_kid")
    try:
        given = b64.decode(signature)
    except ValueError:
        raise TokenError("malformed") from None
    if not hmac.compare_digest(given, _mac(key, f"{VERSION}.{kid}.{payload}")):
        raise TokenError("bad_signature")
    try:
        claims = _decode.decode(b64.decode(payload))
    except (ValueError, msgspec.DecodeError):
        raise TokenError("malformed") from None
    _check_claims(claims, audience, issuers, body, time.time() if now is None else now)
    return claims


def _check_claims(
    claims: Claims, audience: str, issuers: frozenset[str] | None, body: bytes | None, now: float
) -> None:
    if not hmac.compare_digest(claims.aud.encode(), audience.encode()):
        raise TokenError("wrong_audience")
    if issuers is not None and claims.iss not in issuers:
        raise TokenError("wrong_issuer")
    if claims.exp <= now:
        raise TokenError("expired")
    if claims.iat > now + CLOCK_SKEW or claims.exp <= claims.iat:
        raise TokenError("bad_times")
    if body is not None:
        if claims.bh is None:
            raise TokenError("body_not_bound")
        if not hmac.compare_digest(claims.bh, body_hash(body)):
            raise TokenError("body_mismatch")
