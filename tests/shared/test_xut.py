"""X-User-Token: each way of forging or misusing a token is refused."""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path

import pytest

from argus_shared import xut
from argus_shared.settings import KeyRing, format_keyring

NOW = 1_800_000_000.0
ALICE = xut.Identity(sub="user:alice", org="org-1", role="admin", request_id="req-1")


def ring(*kids: str) -> KeyRing:
    return KeyRing.parse(format_keyring({kid: secrets.token_bytes(32) for kid in kids}), "test")


KEYS = ring("k2", "k1")


def token(keys: KeyRing = KEYS, **kwargs: object) -> str:
    args: dict[str, object] = {"issuer": "auth", "audience": "files", "now": NOW}
    args.update(kwargs)
    return xut.sign(keys, ALICE, **args)  # type: ignore[arg-type]


def test_valid_token_round_trips_the_identity() -> None:
    claims = xut.verify(KEYS, token(), audience="files", issuers=frozenset({"auth"}), now=NOW + 1)
    assert (claims.sub, claims.org, claims.role, claims.rid) == (
        "user:alice",
        "org-1",
        "admin",
        "req-1",
    )
    assert claims.exp - claims.iat == 60


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"audience": "webhooks"}, "wrong_audience"),
        ({"issuers": frozenset({"tenant-api"})}, "wrong_issuer"),
        ({"now": NOW + 60}, "expired"),
        ({"now": NOW - 30}, "bad_times"),
    ],
)
def test_claims_are_enforced(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"audience": "files", "now": NOW + 1}
    args.update(kwargs)
    with pytest.raises(xut.TokenError) as caught:
        xut.verify(KEYS, token(), **args)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def _swap_claims(tok: str, **changes: object) -> str:
    version, kid, payload, mac = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join((version, kid, forged, mac))


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: _swap_claims(t, role="owner"),
        lambda t: _swap_claims(t, org="org-2"),
        lambda t: _swap_claims(t, exp=NOW + 10_000),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: token(keys=ring("k2")),  # same kid, another key
    ],
)
def test_tampered_tokens_fail_the_mac(forge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(xut.TokenError) as caught:
        xut.verify(KEYS, forge(token()), audience="files", now=NOW + 1)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "malformed"),
        ("v1.k2.e30", "malformed"),
        ("v0.k2.e30.AAAA", "malformed"),
        ("v1.k2.e30.!!!", "malformed"),
        ("v1.nope.e30.AAAA", "unknown_kid"),
        ("v1.k2." + "A" * 5000 + ".AAAA", "oversized"),
    ],
)
def test_malformed_tokens_are_refused(bad: str, reason: str) -> None:
    with pytest.raises(xut.TokenError) as caught:
        xut.verify(KEYS, bad, audience="files", now=NOW)
    assert caught.value.reason == reason


def test_rotation_previous_key_verifies_and_dropped_key_does_not() -> None:
    old = ring("k1")
    issued_before_rotation = token(keys=old)
    rotated = KeyRing.parse(
        format_keyring({"k2": secrets.token_bytes(32), "k1": old.keys["k1"]}), "t"
    )
    assert xut.verify(rotated, issued_before_rotation, audience="files", now=NOW).sub == ALICE.sub
    assert token(keys=rotated).split(".")[1] == "k2"  # new tokens use the new current key
    dropped = ring("k3", "k2")
    with pytest.raises(xut.TokenError, match="unknown_kid"):
        xut.verify(dropped, issued_before_rotation, audience="files", now=NOW)


def test_body_binding_for_nats_messages() -> None:
    body = b'{"id": "evt-1"}'
    bound = token(body=body)
    assert xut.verify(KEYS, bound, audience="files", body=body, now=NOW).bh == xut.body_hash(body)
    with pytest.raises(xut.TokenError, match="body_mismatch"):
        xut.verify(KEYS, bound, audience="files", body=b'{"id": "evt-2"}', now=NOW)
    with pytest.raises(xut.TokenError, match="body_not_bound"):
        xut.verify(KEYS, token(), audience="files", body=body, now=NOW)


def test_token_repr_of_keyring_never_shows_keys() -> None:
    assert base64.urlsafe_b64encode(KEYS.current_key).decode()[:10] not in repr(KEYS)


def test_every_refusal_reason_is_named_up_front() -> None:
    """Metrics create a series per reason before the first refusal; a reason raised but not in
    REASONS would start its series at 1, and increase() would never see that first one."""
    source = Path(xut.__file__).read_text()
    raised = set(re.findall(r'TokenError\("(\w+)"\)', source))
    assert raised == set(xut.REASONS)
