"""The problem types (RFC 9457 `type`) Argus answers besides `about:blank`, each declared once:
its URI, the status it comes with and what it tells the client. Routes name the ones they can
answer (`Route(responses={...: Answer(..., problems=...)})`, or derived from the declaration
in `argus_shared.openapi`), so each OpenAPI document lists them per response; a test keeps
every `urn:argus:problem:` the code raises registered here."""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "urn:argus:problem:"


@dataclass(frozen=True)
class ProblemType:
    uri: str
    status: int
    title: str
    description: str


CATALOGUE: dict[str, ProblemType] = {}


def _declare(name: str, status: int, title: str, description: str) -> str:
    uri = PREFIX + name
    CATALOGUE[uri] = ProblemType(uri, status, title, description)
    return uri


ORG_NOT_ACTIVE = _declare(
    "org-not-active", 404, "Not found in your active org",
    "The path's org is not the access token's active org (or the token has none): switch to "
    "it (auth `POST /orgs/switch`) and use the token it returns. The same answer whether or "
    "not the org exists or you belong to it.")
ROLE_NOT_ALLOWED = _declare(
    "role-not-allowed", 403, "Forbidden",
    "Your role in the org is not one the route allows (`x-roles`).")
STEP_UP_REQUIRED = _declare(
    "step-up-required", 401, "Step-up required",
    "The action needs a sign-in within the last 5 minutes: re-authenticate (auth "
    "`POST /reauth`) and retry with the token it returns.")
SECOND_FACTOR_REQUIRED = _declare(
    "second-factor-required", 401, "Second factor required",
    "The account has MFA: step up with a TOTP code (the password alone is not enough).")
CODE_USED = _declare(
    "code-used", 401, "Code already used",
    "That TOTP code was already used: wait for the next one (30 s).")
MFA_REQUIRED = _declare(
    "mfa-required", 403, "MFA required",
    "The org requires MFA for your role: enrol TOTP and log in with it.")
UNKNOWN_EVENT_TYPE = _declare(
    "unknown-event-type", 422, "Unknown event type",
    "A name that is not an event type of `docs/events.md`; the detail suggests the closest.")
INTEGRITY = _declare(
    "integrity", 500, "Stored object damaged",
    "The stored object failed its integrity check and is not served.")
STREAM_CAP = _declare(
    "stream-cap", 429, "Too many streams",
    "The user (or API key) or the org already holds as many concurrent live-event streams "
    "(`GET /stream`) as allowed: close one, or retry after `Retry-After` seconds.")

SSO_STATE = _declare(
    "sso-state", 400, "Sign-in not recognised",
    "The SSO callback does not belong to a sign-in this browser started: the state cookie is "
    "missing, expired or another sign-in's, or that sign-in was already completed. Start again "
    "(auth `GET /sso/{provider}/start`).")
SSO_REFUSED = _declare(
    "sso-refused", 401, "Sign-in refused",
    "The identity provider's answer failed a check (its code, the ID token's signature, "
    "issuer, audience, expiry, nonce...), or the provider refused the sign-in; the detail "
    "says which. Nothing was created.")
SSO_EMAIL_UNVERIFIED = _declare(
    "sso-email-unverified", 403, "Email not verified by the provider",
    "The identity provider does not say the email is verified: an unverified email never "
    "creates or links an account.")
SSO_DOMAIN_NOT_ALLOWED = _declare(
    "sso-domain-not-allowed", 403, "Email domain not allowed",
    "This provider signs in only emails of the domains it is configured for.")
SSO_LINK_REQUIRED = _declare(
    "sso-link-required", 409, "Sign in with your password to link",
    "An account with this email exists: sign in with its password, then link the provider "
    "from the account (auth `POST /sso/{provider}/link`). Nothing was linked.")
IDENTITY_IN_USE = _declare(
    "identity-in-use", 409, "Identity linked elsewhere",
    "That provider identity is already linked to another account.")
LAST_SIGN_IN_METHOD = _declare(
    "last-sign-in-method", 409, "Last way to sign in",
    "The account has no password and no other identity: set a password or link another "
    "provider before unlinking this one.")
IDP_UNAVAILABLE = _declare(
    "idp-unavailable", 502, "Identity provider unavailable",
    "The identity provider did not answer (discovery, keys or token endpoint): try again.")
SSO_REQUIRED = _declare(
    "sso-required", 403, "SSO required",
    "The org requires signing in through its own SSO connection (`issuer` names it): sign in "
    "through that identity provider, then switch to the org. Owners are exempt (break-glass).")
DOMAIN_NOT_VERIFIED = _declare(
    "domain-not-verified", 422, "Domain not verified",
    "The domain does not publish the TXT record value the org was given "
    "(`argus-verify=<token>`) at the configured nameserver yet: publish it and verify again.")


def check_known(uris: list[str] | tuple[str, ...]) -> None:
    unknown = sorted(set(uris) - set(CATALOGUE) - {"about:blank"})
    if unknown:
        raise ValueError(f"unregistered problem types: {', '.join(unknown)}")
