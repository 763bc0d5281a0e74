"""The shared revocation set, judged to the microsecond and by role: a token issued a fraction
of a second before a revocation is refused and one issued a fraction after passes; a token
carrying a role its membership no longer has is refused whenever it was issued; and a late
writer never moves a revocation backwards. Real NATS KV, real Ed25519 tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from argus_shared.access import (
    AccessVerifier,
    MemberChange,
    Revocations,
    issued_at,
    revoke_membership,
)
from argus_shared.errors import Problem
from argus_shared.nats import connect
from support.infra import Infra

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
async def js(infra: Infra) -> AsyncIterator[Any]:
    nc = await connect(infra.nats_url, "test-revocations")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def revocations(js: Any) -> AsyncIterator[Revocations]:
    mirror = Revocations()
    await mirror.start(js)
    yield mirror
    await mirror.stop()


@pytest.fixture
def verifier(revocations: Revocations) -> AccessVerifier:
    async def lookup(kid: str) -> Ed25519PublicKey | None:
        return KEY.public_key() if kid == "k1" else None

    return AccessVerifier(lookup, issuer="argus-auth", audience="argus",
                          revocations=revocations)


def token(user: str, iat: float, org: str | None = None, role: str | None = None) -> str:
    claims: dict[str, Any] = {"iss": "argus-auth", "aud": "argus", "sub": user,
                              "sid": str(uuid.uuid4()), "amr": ["pwd"], "auth_time": int(iat),
                              "iat": issued_at(iat), "exp": int(iat) + 900}
    if org:
        claims["org"], claims["role"] = org, role
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"kid": "k1"})


async def accepted(verifier: AccessVerifier, token: str) -> bool:
    try:
        await verifier.verify(token)
    except Problem as exc:
        assert exc.status == 401
        return False
    return True


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the revocation never reached the mirror")


def mid_second() -> float:
    """A moment in the middle of a whole second, so that 0.2 s either side shares it."""
    now = time.time()
    return int(now) + 0.5 if now % 1 < 0.5 else int(now) + 1.5


async def test_a_user_revocation_is_judged_to_the_fraction_of_a_second(
    js: Any, revocations: Revocations, verifier: AccessVerifier
) -> None:
    user = str(uuid.uuid4())
    at = mid_second()
    before, after = token(user, at - 0.2), token(user, at + 0.2)  # both in one whole second
    await Revocations.revoke_user(js, user, at)
    await until(lambda: user in revocations.users)
    assert not await accepted(verifier, before)
    assert await accepted(verifier, after)


async def test_a_membership_change_refuses_older_tokens_and_other_roles(
    js: Any, revocations: Revocations, verifier: AccessVerifier
) -> None:
    user, org = str(uuid.uuid4()), str(uuid.uuid4())
    at = mid_second()
    old_admin = token(user, at - 0.2, org, "admin")
    new_admin = token(user, at + 0.2, org, "admin")  # minted from a membership read too early
    new_viewer = token(user, at + 0.2, org, "viewer")
    old_viewer = token(user, at - 0.2, org, "viewer")
    other_org = token(user, at + 0.2, str(uuid.uuid4()), "admin")
    await revoke_membership(js, org, user, "viewer", at)
    await until(lambda: (org, user) in revocations.members)
    assert not await accepted(verifier, old_admin)
    assert not await accepted(verifier, new_admin)
    assert not await accepted(verifier, old_viewer)
    assert await accepted(verifier, new_viewer)
    assert await accepted(verifier, other_org)
    await revoke_membership(js, org, user, None, at + 1)  # then removed
    await until(lambda: revocations.members[(org, user)].role is None)
    assert not await accepted(verifier, token(user, at + 1.2, org, "viewer"))
    assert await accepted(verifier, token(user, at + 1.2))  # no org: not a member's token


async def test_a_late_writer_never_moves_a_revocation_back(
    js: Any, revocations: Revocations
) -> None:
    user, org = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    await revoke_membership(js, org, user, "member", now)  # a re-add, published at once
    await revoke_membership(js, org, user, None, now - 5)  # the removal's event, redelivered
    await asyncio.gather(*(revoke_membership(js, org, user, "viewer", now - i / 10)
                           for i in range(1, 6)))  # racing older writers
    kv = await Revocations.bucket(js)
    entry = await kv.get(f"member.{org}.{user}")
    assert MemberChange.decode(entry.value) == MemberChange(now, "member")
    await Revocations.revoke_user(js, user, now)
    await Revocations.revoke_user(js, user, now - 60)
    assert float((await kv.get(f"user.{user}")).value) == now


async def test_an_entry_in_the_earlier_format_is_still_honoured(
    js: Any, revocations: Revocations, verifier: AccessVerifier
) -> None:
    """Entries written before roles were published hold a bare time: they refuse by time."""
    user, org = str(uuid.uuid4()), str(uuid.uuid4())
    at = mid_second()
    kv = await Revocations.bucket(js)
    await kv.put(f"member.{org}.{user}", str(int(at)).encode())
    await until(lambda: (org, user) in revocations.members)
    assert not await accepted(verifier, token(user, int(at) - 0.1, org, "admin"))
    assert await accepted(verifier, token(user, int(at) + 0.4, org, "admin"))
