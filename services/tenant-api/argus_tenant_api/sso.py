"""An org's own single sign-on, inside its tenant transaction (no HTTP here):

- its OIDC connection (issuer, client id, and the client secret sealed with AES-256-GCM under
  the master key ring, bound to the org, never answered back);
- the email domains it proves it owns: claiming one gives a TXT record value
  `argus-verify=<token>` to publish on the domain itself; verifying looks it up with dnspython
  against the configured nameserver (`ARGUS_SSO_NAMESERVER`, else the system's). A domain is
  verified for one org at most;
- `require_sso`: org tokens only for sessions that signed in through the org's connection
  (`idp` = its issuer), owners excepted (break-glass: a broken IdP never locks the org out of
  its own settings); and `sso_mfa_from_idp`: such a session whose `amr` has `mfa` counts as
  having used a second factor for the org's `require_mfa` policy (`policy_for` below)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import dns.asyncresolver
import dns.exception
import dns.resolver

from argus_shared import crypto
from argus_shared.errors import Problem
from argus_shared.handlers import iso
from argus_shared.problem_types import DOMAIN_NOT_VERIFIED, SSO_REQUIRED
from argus_shared.settings import KeyRing
from argus_tenant_api import queries

TXT_PREFIX = "argus-verify="
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")
MFA_FROM_IDP = "mfa"


def domain_of(raw: str) -> str:
    """The normal form of a domain name (lower case, no final dot; IDN as its A-labels)."""
    text = raw.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise Problem(422, "not a domain name") from None
    if not DOMAIN.match(text):
        raise Problem(422, "not a domain name (letters, digits and hyphens, two labels or more)")
    return text


def _context(org_id: UUID) -> bytes:
    return b"sso-connection-secret:" + str(org_id).encode()


def seal_secret(keys: KeyRing, org_id: UUID, secret: str) -> bytes:
    return crypto.seal(keys, secret.encode(), _context(org_id))


def open_secret(keys: KeyRing, org_id: UUID, sealed: bytes) -> str:
    return crypto.open_sealed(keys, sealed, _context(org_id)).decode()


def connection_view(row: queries.Row) -> dict[str, Any]:
    return {"issuer": row["issuer"], "client_id": row["client_id"], "client_secret_set": True,
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


def domain_view(row: queries.Row) -> dict[str, Any]:
    return {"domain": row["domain"], "verified": row["verified_at"] is not None,
            "verified_at": iso(row["verified_at"]), "created_at": iso(row["created_at"]),
            "txt_record": {"name": row["domain"], "type": "TXT",
                           "value": TXT_PREFIX + row["token"]}}


def new_token() -> str:
    return secrets.token_urlsafe(24)


# DNS --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nameserver:
    """Where TXT records are looked up: `host[:port]` (None: the system's resolvers)."""

    address: str | None
    timeout: float = 3.0

    def resolver(self) -> dns.asyncresolver.Resolver:
        if self.address is None:
            return dns.asyncresolver.Resolver()
        host, _, port = self.address.rpartition(":") if self.address.count(":") == 1 \
            else (self.address, "", "")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port) if port else 53
        return resolver


async def txt_values(nameserver: Nameserver, domain: str) -> list[str]:
    """The TXT strings published at `domain` ([] for none); Problem 503 when DNS fails."""
    try:
        answer = await nameserver.resolver().resolve(domain, "TXT", lifetime=nameserver.timeout,
                                                     search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError):
        raise Problem(503, "the DNS lookup failed; try again later",
                      headers={"Retry-After": "5"}) from None
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


async def verify(conn: queries.Conn, nameserver: Nameserver, org_id: UUID,
                 domain: str) -> queries.Row:
    """The claim verified when its TXT value is published (422 when not, 409 when another
    org verified the domain first, 404 when the org never claimed it)."""
    claim = await queries.sso_domain(conn, org_id, domain)
    if claim is None:
        raise Problem(404, "not found")
    if claim["verified_at"] is not None:
        return claim
    if await queries.sso_domain_taken(conn, domain, org_id):
        raise Problem(409, "another org has verified this domain", title="Domain taken")
    expected = TXT_PREFIX + claim["token"]
    published = await txt_values(nameserver, domain)
    if not any(crypto.equal(value.strip(), expected) for value in published):
        raise Problem(422, f"no TXT record {expected!r} at {domain} (yet): publish it and "
                      "verify again", title="Domain not verified", type=DOMAIN_NOT_VERIFIED)
    row = await queries.verify_sso_domain(conn, org_id, domain)
    if row is None:
        raise Problem(409, "another org has verified this domain", title="Domain taken")
    return row


# the policy auth asks for before it mints an org token -------------------------------------------

@dataclass(frozen=True)
class Session:
    """What auth says of the session asking: the issuer it signed in through (None: not
    federated) and its `amr`."""

    idp: str | None
    amr: tuple[str, ...]


async def policy_for(conn: queries.Conn, org: queries.Row, role: str,
                     session: Session) -> dict[str, Any]:
    """The SSO part of the membership answer, or Problem 403 `sso-required` when the org
    requires SSO and the session did not sign in through the org's connection (owners are
    exempt: break-glass)."""
    connection = await queries.sso_connection(conn, org["org_id"])
    issuer = connection["issuer"] if connection else None
    through = issuer is not None and session.idp == issuer
    if org["require_sso"] and not through and role != "owner":
        raise Problem(403, "this org requires signing in through its SSO connection",
                      title="SSO required", type=SSO_REQUIRED, issuer=issuer)
    mfa_from_idp = bool(org["sso_mfa_from_idp"] and through and MFA_FROM_IDP in session.amr)
    return {"require_sso": bool(org["require_sso"]), "sso_issuer": issuer,
            "sso_session": through, "mfa_from_idp": mfa_from_idp}
