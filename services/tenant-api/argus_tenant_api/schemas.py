"""Request and response types of tenant-api (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from argus_shared.emails import EmailText
from argus_shared.validation import (
    END,
    SINGLE_LINE_PATTERN,
    TOKEN_PATTERN,
    URL_PATTERN,
    Name,
    Strict,
    Text,
    TokenText,
)

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?" + END)]
Plan = Literal["free", "pro", "team", "enterprise"]
Role = Literal["owner", "admin", "member", "viewer"]
InviteRole = Literal["admin", "member", "viewer"]
MAX_CENTS = 100_000_000_00  # 100 million in the currency's major unit
Cents = Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)]


class NewOrg(Strict):
    name: Name
    slug: Slug


class OrgChanges(Strict):
    name: Name | None = None
    plan: Plan | None = None
    require_mfa: bool | None = None
    audit_retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    require_sso: bool | None = None
    sso_mfa_from_idp: bool | None = None


class RoleChange(Strict):
    role: Role


class NewInvitation(Strict):
    email: EmailText
    role: InviteRole


class AcceptInvitation(Strict):
    token: Annotated[TokenText, msgspec.Meta(min_length=20, max_length=100)]


class Invitation(msgspec.Struct):
    id: str
    email: str
    role: str
    expires_at: str
    accepted_at: str | None
    revoked_at: str | None


class IssuedInvitation(msgspec.Struct):
    """An invitation with its new token (shown once) and whether it was mailed (false: the
    invitation stands all the same; resend it)."""

    token: str
    invitation: Invitation
    mailed: bool


class RoleMappings(Strict):
    """SCIM group display name (case-insensitive) -> the role its members get."""

    mappings: Annotated[dict[Annotated[str, msgspec.Meta(min_length=1, max_length=256,
                                                         pattern=SINGLE_LINE_PATTERN)],
                             InviteRole], msgspec.Meta(max_length=100)]


# https (plain http only on loopback), and then a URL's characters (no spaces or controls)
ISSUER_PATTERN = (r"^(?=https://|http://(?:127\.0\.0\.1|localhost|\[::1\])[:/])"
                  + URL_PATTERN.removeprefix("^"))
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=TOKEN_PATTERN)]


class SsoConnection(Strict):
    """An org's OIDC connection: its IdP's issuer (https, or http on loopback for tests), the
    client registered there, and its secret (sealed at rest, never answered back)."""

    issuer: Annotated[str, msgspec.Meta(min_length=8, max_length=500, pattern=ISSUER_PATTERN)]
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=500,
                                           pattern=TOKEN_PATTERN)]
    client_secret: Secret


class SsoConnectionView(msgspec.Struct):
    issuer: str
    client_id: str
    client_secret_set: bool
    created_at: str
    updated_at: str


class NewDomain(Strict):
    domain: Annotated[str, msgspec.Meta(min_length=3, max_length=253,
                                        pattern=SINGLE_LINE_PATTERN)]


class TxtRecord(msgspec.Struct):
    name: str
    type: str
    value: str


class SsoDomain(msgspec.Struct):
    """A claimed email domain: publish `txt_record` at `name`, then verify."""

    domain: str
    verified: bool
    verified_at: str | None
    created_at: str
    txt_record: TxtRecord


class NewProject(Strict):
    name: Name


class Money(Strict):
    amount_cents: Cents
    description: Annotated[Text, msgspec.Meta(max_length=200)] = ""


class EntriesQuery(Strict):
    cursor: Annotated[TokenText, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class Org(msgspec.Struct):
    org_id: str
    name: str
    slug: str
    plan: str
    require_mfa: bool
    audit_retention_days: int | None
    require_sso: bool
    sso_mfa_from_idp: bool


class Entry(msgspec.Struct):
    id: str
    kind: str
    amount_cents: int
    description: str
    created_at: str


class Wallet(msgspec.Struct):
    balance_cents: int
