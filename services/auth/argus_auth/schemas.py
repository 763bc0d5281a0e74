"""Request and response types of the auth API (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from argus_shared import scopes
from argus_shared.emails import EmailText
from argus_shared.validation import END, Name, Strict, TokenText, UuidText

Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
AnyPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Token = Annotated[TokenText, msgspec.Meta(min_length=16, max_length=128)]
Code = Annotated[str, msgspec.Meta(min_length=6, max_length=32,
                                   pattern=r"^[0-9A-Za-z -]+" + END)]
# a registered scope (argus_shared.scopes): any other name is a 422
Scope = Literal[scopes.NAMES]  # type: ignore[valid-type]


class SignUp(Strict):
    email: EmailText
    password: Password


class EmailOnly(Strict):
    email: EmailText


class TokenOnly(Strict):
    token: Token


class Login(Strict):
    email: EmailText
    password: AnyPassword


class MfaLogin(Strict):
    mfa_token: Token
    code: Code | None = None
    recovery_code: Code | None = None


class Refresh(Strict):
    refresh_token: Token | None = None  # or the refresh cookie


class Reauth(Strict):
    password: AnyPassword | None = None
    code: Code | None = None


class ResetPassword(Strict):
    token: Token
    new_password: Password


class ChangePassword(Strict):
    new_password: Password


class ChangeEmail(Strict):
    new_email: EmailText


class CodeOnly(Strict):
    code: Code


class SwitchOrg(Strict):
    org_id: UuidText


class NewApiKey(Strict):
    name: Name
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=20)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class RotateApiKey(Strict):
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)] = 0


class Accepted(msgspec.Struct):
    status: str


class Tokens(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    session_id: str


class MfaRequired(msgspec.Struct):
    mfa_required: bool
    mfa_token: str


class SessionView(msgspec.Struct):
    id: str
    created_at: str
    last_used_at: str
    ip: str | None
    user_agent: str | None
    current: bool


class TotpEnrolment(msgspec.Struct):
    secret: str
    otpauth_uri: str


class RecoveryCodes(msgspec.Struct):
    recovery_codes: list[str]
    other_sessions: int


class ApiKeyView(msgspec.Struct):
    id: str
    project_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    rotated_from_id: str | None


class ApiKeyCreated(msgspec.Struct):
    key: str
    api_key: ApiKeyView


# single sign-on ---------------------------------------------------------------------------------

ReturnTo = Annotated[str, msgspec.Meta(max_length=1024)]


class SsoStartQuery(Strict):
    return_to: ReturnTo | None = None


class SsoStart(Strict):
    return_to: ReturnTo | None = None


class SsoCallbackQuery(msgspec.Struct, kw_only=True):
    """What a provider sends back (others it adds, such as `session_state`, are ignored)."""

    state: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    code: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    error_description: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    iss: Annotated[str, msgspec.Meta(max_length=512)] | None = None  # RFC 9207


class SsoDiscoverQuery(Strict):
    email: EmailText


class SsoDiscovered(msgspec.Struct):
    provider: str
    start: str
    require_sso: bool


class SsoProviderView(msgspec.Struct):
    name: str
    display_name: str
    issuer: str
    start: str


class SsoAuthorization(msgspec.Struct):
    authorization_url: str


class IdentityView(msgspec.Struct):
    id: str
    provider: str
    issuer: str
    subject: str
    email: str | None
    created_at: str
    last_used_at: str


class SsoLogout(msgspec.Struct):
    end_session_url: str | None
