"""Signatures on outbound deliveries, in the two schemes receivers already verify:

- Stripe's: `Argus-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, one `v1`
  per live secret (the key is the whole `whsec_...` string, as Stripe's verifier uses it);
- Standard Webhooks': `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
  HMAC-SHA256(base64-decoded secret, "<id>.<t>.<body>")>` (space-separated when several).

The same code verifies inbound webhooks of either scheme, with a 5-minute tolerance."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

PREFIX = "whsec_"


class BadSignature(Exception):
    """The request is forged, stale or malformed; the message says which (never the secret)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def stripe_signature(secrets_: Sequence[str], timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets_]
    return ",".join(parts)


def standard_signature(secrets_: Sequence[str], message_id: str, timestamp: int,
                       body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_standard_key(s), signed, hashlib.sha256).digest())
        .decode() for s in secrets_)


def outbound_headers(secrets_: Sequence[str], message_id: str, timestamp: int,
                     body: bytes) -> dict[str, str]:
    return {
        "Argus-Signature": stripe_signature(secrets_, timestamp, body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secrets_, message_id, timestamp, body),
        "Content-Type": "application/json",
    }


def _fresh(timestamp: str, now: float, tolerance: int) -> int:
    try:
        moment = int(timestamp)
    except ValueError:
        raise BadSignature("the timestamp is not a number") from None
    if abs(now - moment) > tolerance:
        raise BadSignature("the timestamp is outside the tolerance")
    return moment


def verify_stripe(header: str | None, body: bytes, secret: str, now: float,
                  tolerance: int = 300) -> None:
    if not header:
        raise BadSignature("no signature header")
    pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [v for k, v in pairs if k.strip() == "t"]
    given = [v for k, v in pairs if k.strip() == "v1"]
    if len(stamps) != 1 or not given:
        raise BadSignature("the signature header is malformed")
    moment = _fresh(stamps[0], now, tolerance)
    expected = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate.strip()) for candidate in given):
        raise BadSignature("no signature matches")


def verify_standard(headers: Mapping[str, str], body: bytes, secret: str, now: float,
                    tolerance: int = 300) -> str:
    message_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not message_id or not stamp or not signature:
        raise BadSignature("the webhook-* headers are missing")
    moment = _fresh(stamp, now, tolerance)
    expected = base64.b64encode(hmac.new(
        _standard_key(secret), f"{message_id}.{moment}.".encode() + body, hashlib.sha256
    ).digest()).decode()
    for candidate in signature.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value):
            return message_id
    raise BadSignature("no signature matches")
