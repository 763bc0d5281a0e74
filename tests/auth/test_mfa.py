"""TOTP and recovery codes, step-up, password reset and change."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pyotp

from support.auth_service import PASSWORD, AuthService


def code_at(secret: str, moment: float) -> str:
    return pyotp.TOTP(secret).at(int(moment))


async def enrolled(service: AuthService) -> tuple[str, dict[str, Any], str, list[str]]:
    email, tokens = await service.logged_in()
    status, enrolment, _ = await service.post("/mfa/totp", token=tokens["access_token"])
    assert status == 201 and enrolment["otpauth_uri"].startswith("otpauth://totp/")
    secret = enrolment["secret"]
    status, body, _ = await service.post("/mfa/totp/confirm",
                                         {"code": code_at(secret, service.clock.now)},
                                         token=tokens["access_token"])
    assert status == 200, body
    assert len(body["recovery_codes"]) == 10 and len(set(body["recovery_codes"])) == 10
    return email, tokens, secret, body["recovery_codes"]


async def mfa_challenge(service: AuthService, email: str) -> str:
    status, body, _ = await service.post("/login", {"email": email, "password": PASSWORD})
    assert status == 200 and body["mfa_required"] is True and "access_token" not in body
    return body["mfa_token"]


async def test_totp_login_and_each_code_only_once(service: AuthService) -> None:
    email, _, secret, _ = await enrolled(service)
    service.clock.advance(30)
    code = code_at(secret, service.clock.now)
    status, tokens, _ = await service.post("/login/mfa", {"mfa_token": await mfa_challenge(
        service, email), "code": code})
    assert status == 200 and tokens["access_token"]
    status, replayed, _ = await service.post("/login/mfa", {"mfa_token": await mfa_challenge(
        service, email), "code": code})
    assert status == 401  # a replayed code is refused, and says why
    assert replayed["title"] == "Code already used" and "next one" in replayed["detail"]
    status, wrong, _ = await service.post("/login/mfa", {"mfa_token": await mfa_challenge(
        service, email), "code": "000000" if code != "000000" else "111111"})
    assert status == 401 and wrong["title"] == "Unauthenticated"
    service.clock.advance(60)
    # a clock one step behind the phone: the next step's code is accepted
    status, _, _ = await service.post("/login/mfa", {"mfa_token": await mfa_challenge(
        service, email), "code": code_at(secret, service.clock.now + 30)})
    assert status == 200


async def test_codes_outside_the_drift_window_are_refused(service: AuthService) -> None:
    email, _, secret, _ = await enrolled(service)
    service.clock.advance(300)
    for offset in (-90, 90):
        status, _, _ = await service.post("/login/mfa", {
            "mfa_token": await mfa_challenge(service, email),
            "code": code_at(secret, service.clock.now + offset)})
        assert status == 401


async def test_recovery_codes_work_once(service: AuthService) -> None:
    email, _, _, codes = await enrolled(service)
    body = {"mfa_token": await mfa_challenge(service, email), "recovery_code": codes[0]}
    status, _, _ = await service.post("/login/mfa", body)
    assert status == 200
    status, _, _ = await service.post("/login/mfa", {
        "mfa_token": await mfa_challenge(service, email), "recovery_code": codes[0]})
    assert status == 401


async def test_a_challenge_dies_after_five_wrong_codes(service: AuthService) -> None:
    email, _, secret, _ = await enrolled(service)
    challenge = await mfa_challenge(service, email)
    for _ in range(5):
        await service.post("/login/mfa", {"mfa_token": challenge, "code": "000000"})
    service.clock.advance(30)
    status, _, _ = await service.post("/login/mfa", {
        "mfa_token": challenge, "code": code_at(secret, service.clock.now)})
    assert status == 401


async def test_the_totp_secret_is_encrypted_at_rest(service: AuthService) -> None:
    email, _, secret, codes = await enrolled(service)
    async with service.auth.pool.acquire() as conn:
        sealed = await conn.fetchval(
            "select secret_sealed from totp_factors f join users u on u.id = f.user_id"
            " where u.email = $1", email)
        stored_codes = await conn.fetch(
            "select code_hash from recovery_codes r join users u on u.id = r.user_id"
            " where u.email = $1", email)
    assert secret.encode() not in sealed
    assert len(stored_codes) == 10
    assert all(code.encode() not in row["code_hash"] for row in stored_codes for code in codes)


async def test_disabling_mfa_needs_a_fresh_step_up(service: AuthService) -> None:
    _, tokens, secret, _ = await enrolled(service)
    service.clock.advance(6 * 60)
    status, problem = await service.call("DELETE", "/mfa/totp", tokens["access_token"])
    assert status == 401 and problem["title"] == "Step-up required"
    status, _, _ = await service.post("/reauth", {"password": "wrong password"},
                                      token=tokens["access_token"])
    assert status == 401
    status, fresh, _ = await service.post("/reauth", {"code": code_at(secret,
                                                                      service.clock.now)},
                                          token=tokens["access_token"])
    assert status == 200
    status, body = await service.call("DELETE", "/mfa/totp", fresh["access_token"])
    assert status == 200 and "revoke-others" in body["end_other_sessions"]


async def test_password_reset_is_single_use_and_ends_every_session(service: AuthService) -> None:
    email, tokens = await service.logged_in()
    await service.post("/password/forgot", {"email": email})
    token = service.token_from_mail(email)
    new_password = "a whole new password"
    status, _, _ = await service.post("/password/reset", {"token": token,
                                                          "new_password": new_password})
    assert status == 200
    assert (await service.post("/password/reset", {"token": token,
                                                   "new_password": new_password}))[0] == 400
    status, _, _ = await service.post("/token/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 401
    assert (await service.post("/login", {"email": email, "password": PASSWORD}))[0] == 401
    assert (await service.post("/login", {"email": email, "password": new_password}))[0] == 200


async def test_reset_tokens_expire_after_an_hour(service: AuthService) -> None:
    email, _ = await service.logged_in()
    await service.post("/password/forgot", {"email": email})
    service.clock.advance(3601)
    status, _, _ = await service.post("/password/reset", {
        "token": service.token_from_mail(email), "new_password": "another new password"})
    assert status == 400


async def test_changing_the_password_needs_step_up(service: AuthService) -> None:
    email, tokens = await service.logged_in()
    service.clock.advance(301)
    body = {"new_password": "changed password 1"}
    status, _, _ = await service.post("/password/change", body, token=tokens["access_token"])
    assert status == 401
    _, fresh, _ = await service.post("/reauth", {"password": PASSWORD},
                                     token=tokens["access_token"])
    status, _, _ = await service.post("/password/change", body, token=fresh["access_token"])
    assert status == 200
    assert (await service.post("/login", {"email": email, "password": body["new_password"]}))[
        0] == 200


async def test_changing_email_needs_step_up_and_confirmation(service: AuthService) -> None:
    _, tokens = await service.logged_in()
    new_email = f"moved{uuid.uuid4().hex[:8]}@example.com"
    service.clock.advance(301)
    status, _, _ = await service.post("/email/change", {"new_email": new_email},
                                      token=tokens["access_token"])
    assert status == 401
    _, fresh, _ = await service.post("/reauth", {"password": PASSWORD},
                                     token=tokens["access_token"])
    status, _, _ = await service.post("/email/change", {"new_email": new_email},
                                      token=fresh["access_token"])
    assert status == 202
    status, _, _ = await service.post("/email/confirm",
                                      {"token": service.token_from_mail(new_email)})
    assert status == 200
    assert (await service.post("/login", {"email": new_email, "password": PASSWORD}))[0] == 200


async def test_an_mfa_account_steps_up_with_its_factor_never_the_password_alone(
    service: AuthService
) -> None:
    _, tokens, secret, _ = await enrolled(service)
    token = tokens["access_token"]
    service.clock.advance(6 * 60)
    status, problem, _ = await service.post("/reauth", {"password": PASSWORD}, token=token)
    assert status == 401 and problem["title"] == "Second factor required"
    assert (await service.call("DELETE", "/mfa/totp", token))[0] == 401  # still not fresh
    service.clock.advance(30)
    status, _, _ = await service.post("/reauth", {
        "password": "wrong password", "code": code_at(secret, service.clock.now)}, token=token)
    assert status == 401
    status, fresh, _ = await service.post("/reauth", {"code": code_at(secret, service.clock.now)},
                                          token=token)
    assert status == 200
    assert jwt.decode(fresh["access_token"], options={"verify_signature": False})["amr"] == [
        "otp"]
    service.clock.advance(30)
    status, both, _ = await service.post("/reauth", {
        "password": PASSWORD, "code": code_at(secret, service.clock.now)}, token=token)
    assert status == 200
    assert jwt.decode(both["access_token"], options={"verify_signature": False})["amr"] == [
        "pwd", "otp"]


async def test_an_account_without_mfa_steps_up_with_its_password(service: AuthService) -> None:
    _, tokens = await service.logged_in()
    status, _, _ = await service.post("/reauth", {"code": "123456"},
                                      token=tokens["access_token"])
    assert status == 422
    status, fresh, _ = await service.post("/reauth", {"password": PASSWORD},
                                          token=tokens["access_token"])
    assert status == 200
    assert jwt.decode(fresh["access_token"], options={"verify_signature": False})["amr"] == [
        "pwd"]
