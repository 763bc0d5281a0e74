"""Access tokens, JWKS, refresh rotation with reuse detection, sessions and revocation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from argus_shared import b64
from argus_shared.access import AccessVerifier, JwksCache, Revocations
from argus_shared.errors import Problem
from argus_shared.nats import connect
from support.auth_service import PASSWORD, AuthService
from support.infra import Infra


async def jwks(service: AuthService) -> dict[str, Any]:
    async with service.http.get(service.url("/.well-known/jwks.json")) as response:
        assert response.status == 200
        return await response.json()


async def test_access_tokens_verify_with_an_independent_jose_library(
    service: AuthService
) -> None:
    _, tokens = await service.logged_in()
    keys = KeySet.import_key_set(await jwks(service))  # type: ignore[arg-type]  # JSON as served
    decoded = jose_jwt.decode(tokens["access_token"], keys, algorithms=["EdDSA"])
    assert decoded.header["alg"] == "EdDSA" and decoded.header["kid"]
    claims = decoded.claims
    assert claims["iss"] == "argus-auth" and claims["aud"] == "argus"
    # iat to the microsecond (a NumericDate may be fractional, RFC 7519 section 2), exp whole
    assert isinstance(claims["exp"], int) and 899 < claims["exp"] - claims["iat"] <= 900
    assert claims["sid"] == tokens["session_id"] and claims["amr"] == ["pwd"]
    assert {"sub", "auth_time"} <= set(claims)


def forge(claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(claims, "x" * 32, algorithm="HS256", headers=header)


@pytest.mark.parametrize("attack", ["alg_none", "hs256_with_public_key", "wrong_audience",
                                    "wrong_issuer", "expired", "tampered", "garbage"])
async def test_forged_or_stale_access_tokens_are_refused(
    service: AuthService, attack: str
) -> None:
    _, tokens = await service.logged_in()
    good = tokens["access_token"]
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    signing = service.auth.signing
    now = int(time.time())
    token = {
        "alg_none": _alg_none(claims, header["kid"]),
        "hs256_with_public_key": forge(claims, kid=header["kid"]),
        "wrong_audience": signing.sign({**claims, "aud": "someone-else"}),
        "wrong_issuer": signing.sign({**claims, "iss": "evil"}),
        "expired": signing.sign({**claims, "iat": now - 3600, "exp": now - 1800}),
        "tampered": _tamper(good),
        "garbage": "not.a.jwt",
    }[attack]
    status, problem = await service.call("GET", "/me", token)
    assert status == 401, attack
    assert problem["status"] == 401


def _alg_none(claims: dict[str, Any], kid: str) -> str:
    head = b64.encode(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{head}.{b64.encode(json.dumps(claims).encode())}."


def _tamper(token: str) -> str:
    head, body, sig = token.split(".")
    claims = jwt.utils.base64url_decode(body)
    changed = claims.replace(b'"amr":["pwd"]', b'"amr":["otp"]')
    return ".".join((head, jwt.utils.base64url_encode(changed).decode(), sig))


async def test_refresh_rotates_and_reuse_revokes_every_session(service: AuthService) -> None:
    email, first = await service.logged_in()
    status, second, _ = await service.post("/login", {"email": email, "password": PASSWORD})
    assert status == 200
    status, rotated, _ = await service.post("/token/refresh",
                                            {"refresh_token": first["refresh_token"]})
    assert status == 200 and rotated["refresh_token"] != first["refresh_token"]
    assert (await service.call("GET", "/me", rotated["access_token"]))[0] == 200
    service.clock.advance(service.auth.config.refresh_grace + 1)
    # the stolen, already rotated token comes back: every session of the user ends
    status, _, _ = await service.post("/token/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 401
    await asyncio.sleep(0.3)  # the revocation travels through NATS KV
    for tokens in (rotated, second):
        assert (await service.call("GET", "/me", tokens["access_token"]))[0] == 401
        status, _, _ = await service.post("/token/refresh",
                                          {"refresh_token": tokens["refresh_token"]})
        assert status == 401


async def test_a_double_submit_within_the_grace_window_gets_the_same_successor(
    service: AuthService
) -> None:
    _, tokens = await service.logged_in()
    body = {"refresh_token": tokens["refresh_token"]}
    (s1, a, _), (s2, b, _) = await asyncio.gather(service.post("/token/refresh", body),
                                                  service.post("/token/refresh", body))
    assert s1 == s2 == 200
    assert a["refresh_token"] == b["refresh_token"]
    status, _, _ = await service.post("/token/refresh", {"refresh_token": a["refresh_token"]})
    assert status == 200  # the family is intact


async def test_refresh_tokens_expire_after_30_days(service: AuthService) -> None:
    _, tokens = await service.logged_in()
    service.clock.advance(30 * 24 * 3600 + 1)
    status, _, _ = await service.post("/token/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 401


async def test_sessions_are_listed_and_revoked(service: AuthService) -> None:
    email, one = await service.logged_in()
    _, two, _ = await service.post("/login", {"email": email, "password": PASSWORD},
                                   headers={"User-Agent": "second-device/1.0"})
    status, listed = await service.call("GET", "/sessions", one["access_token"])
    assert status == 200 and len(listed) == 2
    assert {s["current"] for s in listed} == {True, False}
    assert "second-device/1.0" in {s["user_agent"] for s in listed}
    status, _ = await service.call("DELETE", f"/sessions/{two['session_id']}",
                                   one["access_token"])
    assert status == 204
    await asyncio.sleep(0.3)
    assert (await service.call("GET", "/me", two["access_token"]))[0] == 401
    assert (await service.call("GET", "/me", one["access_token"]))[0] == 200
    # another user's session id is simply not found
    _, stranger = await service.logged_in()
    status, _ = await service.call("DELETE", f"/sessions/{stranger['session_id']}",
                                   one["access_token"])
    assert status == 404


async def test_a_revoked_session_stops_working_on_every_service_at_once(
    service: AuthService, infra: Infra
) -> None:
    """Another service verifies tokens from the published JWKS and honours revocations."""
    _, tokens = await service.logged_in()
    nc = await connect(infra.nats_url, "other-service")
    revocations = Revocations()
    await revocations.start(nc.jetstream())

    async def fetch(url: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return await response.json()

    other = AccessVerifier(JwksCache(service.url("/.well-known/jwks.json"), fetch),
                           issuer="argus-auth", audience="argus", revocations=revocations)
    try:
        claims = await other.verify(tokens["access_token"])
        assert claims.sid == tokens["session_id"]
        assert (await service.call("POST", "/logout", tokens["access_token"]))[0] == 204
        for _ in range(50):
            if claims.sid in revocations.sessions:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(Problem) as refused:
            await other.verify(tokens["access_token"])  # cached, but revoked
        assert refused.value.status == 401
    finally:
        await revocations.stop()
        await nc.close()


async def test_signing_key_rotation_keeps_old_tokens_valid_until_they_expire(
    service: AuthService
) -> None:
    _, before = await service.logged_in()
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    new_kid = await service.auth.signing.rotate()
    kids = {key["kid"] for key in (await jwks(service))["keys"]}
    assert {old_kid, new_kid} <= kids
    _, after = await service.logged_in()
    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid
    assert (await service.call("GET", "/me", before["access_token"]))[0] == 200
    later = time.time() + service.auth.config.access_ttl + 120
    assert old_kid not in {k["kid"] for k in service.auth.signing.published(later)}
