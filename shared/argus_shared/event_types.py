"""Every event type Argus emits, in one registry: emitters name these constants (never a string
literal), the outbox refuses a type that is not here or not the emitting service's, the audit
`action=` filter and webhook `event_types` are checked against it, and `docs/events.md` is
rendered from it (`argus events`; a test keeps the committed page current)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from argus_shared.errors import Problem


class EventType(str):
    """The name itself (so it compares, hashes and encodes as the string it is; it is also the
    tail of its NATS subject, `argus.events.<service>.<name>`), with the one service that emits
    it, the type of resource it names and what happened."""

    service: str
    resource: str
    summary: str

    def __new__(cls, name: str, service: str, resource: str, summary: str) -> EventType:
        made = super().__new__(cls, name)
        made.service, made.resource, made.summary = service, resource, summary
        return made

    @property
    def name(self) -> str:
        return str.__str__(self)


CATALOGUE: dict[str, EventType] = {}


def _declare(service: str, name: str, resource: str, summary: str) -> EventType:
    assert name not in CATALOGUE, name
    CATALOGUE[name] = EventType(name, service, resource, summary)
    return CATALOGUE[name]


def lookup(name: str) -> EventType | None:
    return CATALOGUE.get(name)


def emitted_by(event_type: EventType | str, service: str) -> EventType:
    """The registered type, if `service` is the one that emits it; else ValueError."""
    found = CATALOGUE.get(str(event_type))
    if found is None:
        raise ValueError(f"{event_type} is not a registered event type (argus_shared.event_types)")
    if found.service != service:
        raise ValueError(f"{found.name} is emitted by {found.service}, not {service}")
    return found


def closest(name: str) -> list[str]:
    """Registered names a mistyped one was probably meant to be."""
    return difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.6)


def require_known(names: Iterable[str], field: str, wildcard: bool = False) -> None:
    """422 naming the first name that is not a registered type (nor `*`, when allowed)."""
    for name in names:
        if name in CATALOGUE or (wildcard and name == "*"):
            continue
        hint = closest(name)
        raise Problem(422, f"{field}: {name!r} is not an event type"
                      + (f" (did you mean {' or '.join(hint)}?)" if hint else "")
                      + "; the catalogue is docs/events.md", title="Unknown event type",
                      type="urn:argus:problem:unknown-event-type")


# auth --------------------------------------------------------------------------------------------
A = "auth"
USER_SIGNED_UP = _declare(A, "auth.user.signed_up", "user", "An account was created (unverified)")
USER_EMAIL_VERIFIED = _declare(A, "auth.user.email_verified", "user",
                               "An account's email was verified")
USER_DEACTIVATED = _declare(A, "auth.user.deactivated", "user",
                            "An account was deactivated (its deletion was requested)")
USER_PURGED = _declare(A, "auth.user.purged", "user", "An account's data was removed from auth")
LOGIN_SUCCEEDED = _declare(A, "auth.login.succeeded", "session",
                           "A login succeeded and opened a session")
LOGIN_FAILED = _declare(A, "auth.login.failed", "user",
                        "A login failed (wrong password or code; `data.reason` says which)")
LOGIN_LOCKED = _declare(A, "auth.login.locked", "user",
                        "A login was refused because the account is locked for a while")
LOGIN_MFA_REQUIRED = _declare(A, "auth.login.mfa_required", "user",
                              "A password was right and a second factor was asked for")
PASSWORD_RESET_REQUESTED = _declare(A, "auth.password.reset_requested", "user",
                                    "A password reset was mailed")
PASSWORD_RESET = _declare(A, "auth.password.reset", "user",
                          "A password was reset (every session ended)")
PASSWORD_CHANGED = _declare(A, "auth.password.changed", "user", "A password was changed")
EMAIL_CHANGE_REQUESTED = _declare(A, "auth.email.change_requested", "user",
                                  "A new email was asked for and a confirmation mailed to it")
EMAIL_CHANGED = _declare(A, "auth.email.changed", "user", "An account's email was changed")
SESSION_REVOKED = _declare(A, "auth.session.revoked", "session", "A session was ended")
SESSIONS_REVOKED = _declare(A, "auth.sessions.revoked", "user",
                            "Several sessions of a user were ended at once")
SESSION_ORG_SWITCHED = _declare(A, "auth.session.org_switched", "session",
                                "A session took an org as its active org")
SESSION_ORG_SCOPE_CHANGED = _declare(
    A, "auth.session.org_scope_changed", "session",
    "A session's role in its org changed, or the org scope ended, after a membership change")
REFRESH_TOKEN_REUSED = _declare(A, "auth.refresh_token.reused", "session",
                                "A rotated refresh token came back: every session was ended")
REAUTH_SUCCEEDED = _declare(A, "auth.reauth.succeeded", "session", "A step-up succeeded")
REAUTH_FAILED = _declare(A, "auth.reauth.failed", "session", "A step-up failed")
MFA_ENABLED = _declare(A, "auth.mfa.enabled", "user", "TOTP was enrolled and confirmed")
MFA_DISABLED = _declare(A, "auth.mfa.disabled", "user", "TOTP was disabled")
API_KEY_CREATED = _declare(A, "auth.api_key.created", "api_key",
                           "An API key was issued (or a rotation issued its successor)")
API_KEY_REVOKED = _declare(A, "auth.api_key.revoked", "api_key", "An API key was revoked")
API_KEYS_PURGED = _declare(A, "auth.api_keys.purged", "org",
                           "A deleted org's API keys were removed")
IDENTITY_LINKED = _declare(A, "auth.identity.linked", "identity",
                           "A federated identity (an OIDC provider's issuer and subject) was "
                           "linked to an account, at a first SSO sign-in or by its user")
IDENTITY_UNLINKED = _declare(A, "auth.identity.unlinked", "identity",
                             "A federated identity was unlinked from its account")
SSO_REFUSED = _declare(A, "auth.sso.refused", "provider",
                       "An SSO sign-in, link or step-up was refused (`data.reason` says why)")

# tenant-api --------------------------------------------------------------------------------------
T = "tenant-api"
ORG_CREATED = _declare(T, "org.created", "org", "An org was created")
ORG_UPDATED = _declare(T, "org.updated", "org", "An org's name, plan or policies changed")
ORG_DELETED = _declare(T, "org.deleted", "org",
                       "An org was deleted (every service purges its share)")
ORG_PURGED = _declare(T, "org.purged", "org",
                      "A deleted org's members, invitations and projects were removed")
MEMBER_ADDED = _declare(T, "org.member.added", "user", "Someone joined the org")
MEMBER_ROLE_CHANGED = _declare(T, "org.member.role_changed", "user", "A member's role changed")
MEMBER_REMOVED = _declare(T, "org.member.removed", "user", "A member left or was removed")
INVITATION_CREATED = _declare(T, "org.invitation.created", "invitation",
                              "Someone was invited to the org")
INVITATION_REVOKED = _declare(T, "org.invitation.revoked", "invitation",
                              "An invitation was revoked")
INVITATION_RESENT = _declare(T, "org.invitation.resent", "invitation",
                             "An invitation was mailed again with a new token and expiry "
                             "(the old token stops working)")
PROJECT_CREATED = _declare(T, "project.created", "project", "A project was created")
PROJECT_DELETED = _declare(T, "project.deleted", "project", "A project was deleted")
WALLET_DEPOSIT = _declare(T, "wallet.deposit", "ledger_entry", "Money was added to the wallet")
WALLET_CHARGE = _declare(T, "wallet.charge", "ledger_entry", "The wallet was charged")
WALLET_MISMATCH = _declare(T, "wallet.mismatch", "wallet",
                           "Reconciliation found a balance that is not the sum of its entries")
USER_DELETION_REQUESTED = _declare(T, "user.deletion_requested", "user",
                                   "A user asked for their account to be deleted")
SCIM_TOKEN_CREATED = _declare(T, "scim.token.created", "scim_token",
                              "A SCIM bearer token was issued for the org (or rotated)")
SCIM_TOKEN_REVOKED = _declare(T, "scim.token.revoked", "scim_token", "A SCIM token was revoked")
SCIM_USER_CREATED = _declare(T, "scim.user.created", "scim_user",
                             "The org's identity provider provisioned a user")
SCIM_USER_UPDATED = _declare(T, "scim.user.updated", "scim_user",
                             "A provisioned user changed (attributes, or activated/deactivated)")
SCIM_USER_DELETED = _declare(T, "scim.user.deleted", "scim_user",
                             "A provisioned user was deleted (deprovisioned)")
SCIM_GROUP_CREATED = _declare(T, "scim.group.created", "scim_group", "A SCIM group was pushed")
SCIM_GROUP_UPDATED = _declare(T, "scim.group.updated", "scim_group",
                              "A SCIM group was renamed or its members changed")
SCIM_GROUP_DELETED = _declare(T, "scim.group.deleted", "scim_group", "A SCIM group was deleted")
SCIM_ROLES_MAPPED = _declare(T, "scim.roles.mapped", "org",
                             "Which SCIM group names give which role changed")
SSO_CONNECTION_SET = _declare(T, "sso.connection.set", "sso_connection",
                              "The org's OIDC connection was created or changed")
SSO_CONNECTION_DELETED = _declare(T, "sso.connection.deleted", "sso_connection",
                                  "The org's OIDC connection was removed")
SSO_DOMAIN_ADDED = _declare(T, "sso.domain.added", "sso_domain",
                            "An email domain was claimed (its TXT record value issued)")
SSO_DOMAIN_VERIFIED = _declare(T, "sso.domain.verified", "sso_domain",
                               "An email domain's DNS TXT record proved the org owns it")
SSO_DOMAIN_REMOVED = _declare(T, "sso.domain.removed", "sso_domain",
                              "An email domain was removed from the org")

# audit -------------------------------------------------------------------------------------------
AUDIT_LOG_VIEWED = _declare("audit", "audit.log.viewed", "audit_log",
                            "The org's audit log was read, exported or verified")

# webhooks ----------------------------------------------------------------------------------------
W = "webhooks"
ENDPOINT_CREATED = _declare(W, "webhooks.endpoint.created", "endpoint", "An endpoint was added")
ENDPOINT_UPDATED = _declare(W, "webhooks.endpoint.updated", "endpoint", "An endpoint changed")
ENDPOINT_DELETED = _declare(W, "webhooks.endpoint.deleted", "endpoint", "An endpoint was removed")
ENDPOINT_SECRET_ROTATED = _declare(W, "webhooks.endpoint.secret_rotated", "endpoint",
                                   "An endpoint's signing secret was rotated")
ENDPOINT_DISABLED = _declare(W, "webhooks.endpoint.disabled", "endpoint",
                             "An endpoint was disabled after failing for too long")
INBOUND_RECEIVED = _declare(W, "webhooks.inbound.received", "inbound_event",
                            "A verified webhook from a provider arrived")

# files -------------------------------------------------------------------------------------------
F = "files"
FILE_UPLOADED = _declare(F, "file.uploaded", "file", "A file was stored")
FILE_DELETED = _declare(F, "file.deleted", "file", "A file was deleted (its data key destroyed)")
FILES_USER_PURGED = _declare(F, "file.user_purged", "user",
                             "A deleted account's files were shredded")
FILES_ORG_PURGED = _declare(F, "file.org_purged", "org", "A deleted org's files were shredded")


def render_markdown() -> str:
    lines = ["# Event types", "",
             "Every event Argus emits, from `shared/argus_shared/event_types.py` (rendered by "
             "`argus events`; do not edit by hand). Subjects are "
             "`argus.events.<service>.<type>`; the envelope is described in the README. Use "
             "these names in the audit `action=` filter and in webhook `event_types` (`*` for "
             "all).", ""]
    for service in ("auth", "tenant-api", "audit", "webhooks", "files"):
        lines += [f"## {service}", "", "| type | resource | what happened |", "|---|---|---|"]
        lines += [f"| `{t.name}` | {t.resource} | {t.summary} |"
                  for t in CATALOGUE.values() if t.service == service]
        lines.append("")
    return "\n".join(lines)
