"""What tenant-api answers over NATS request-reply."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import asyncpg

from argus_shared import db, xut
from argus_shared.crypto import SealError
from argus_shared.errors import Problem
from argus_shared.nats import RpcError
from argus_shared.settings import KeyRing
from argus_tenant_api import queries, sso

log = logging.getLogger("argus.tenant_api.rpc")
SSO_REQUIRED_REASON = "sso-required"


def _uuid(payload: Any, name: str) -> UUID:
    value = payload.get(name) if isinstance(payload, dict) else None
    try:
        return UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise RpcError(400, f"send {name} as a UUID") from None


def _optional_uuid(payload: Any, name: str) -> UUID | None:
    present = isinstance(payload, dict) and payload.get(name) is not None
    return _uuid(payload, name) if present else None


def _session(payload: Any) -> sso.Session:
    """`idp` (the issuer the session signed in through; absent or null: not federated) and
    `amr` (its authentication methods), as auth sends them."""
    idp, amr = payload.get("idp"), payload.get("amr", [])
    if idp is not None and (not isinstance(idp, str) or len(idp) > 500):
        raise RpcError(400, "send idp as the issuer string or null")
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr) or len(amr) > 20:
        raise RpcError(400, "send amr as a list of strings")
    return sso.Session(idp, tuple(amr))


async def membership(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    """auth's question before it mints an org-scoped token (org switch, refresh, step-up) or
    issues an API key: the caller's role in an org as it is now, the org's MFA policy and,
    when `project_id` is sent, whether the org has that project.

    Request: {"user_id", "org_id", "project_id"?, "idp"?: issuer or null, "amr"?: [...]}.
    Answer: {"role", "require_mfa", "mfa_roles", "project"?, "require_sso", "sso_issuer",
    "sso_session", "mfa_from_idp"}; `require_mfa` is false when the org counts the IdP's MFA
    (`mfa_from_idp`). Errors: 404 not a member; 403 `sso-required: ...` when the org requires
    SSO and `idp` is not its connection's issuer (owners exempt)."""
    user_id, org_id = _uuid(payload, "user_id"), _uuid(payload, "org_id")
    project_id = _optional_uuid(payload, "project_id")
    session = _session(payload)
    if claims.sub != f"user:{user_id}":
        raise RpcError(403, "a membership is looked up for the user who asks")
    async with db.tenant_tx(pool, org_id, user_id) as conn:
        role = await queries.role_of(conn, org_id, user_id)
        org = await queries.org(conn, org_id)
        has_project = project_id is not None and \
            await queries.project(conn, org_id, project_id) is not None
        if role is None or org is None:
            raise RpcError(404, "not a member")
        try:
            policy = await sso.policy_for(conn, org, role, session)
        except Problem as problem:
            raise RpcError(403, f"{SSO_REQUIRED_REASON}: {problem.detail}") from None
    answer = {"role": role, "require_mfa": org["require_mfa"] and not policy["mfa_from_idp"],
              "mfa_roles": ["owner", "admin"], **policy}
    if project_id is not None:
        answer["project"] = has_project
    return answer


async def sso_domain(pool: asyncpg.Pool, claims: xut.Claims, payload: Any) -> dict[str, Any]:
    """`{"domain"}` -> the org that verified it and its connection, for auth (password sign-in
    for such a domain is pointed to SSO): {"org_id", "issuer", "client_id", "require_sso"};
    404 when no org has verified the domain with a connection."""
    domain = payload.get("domain") if isinstance(payload, dict) else None
    if not isinstance(domain, str):
        raise RpcError(400, "send domain as a string")
    try:
        found = await domain_owner(pool, domain)
    except Problem as problem:
        raise RpcError(problem.status, problem.detail or problem.title) from None
    return found


async def domain_owner(pool: asyncpg.Pool, raw: str) -> dict[str, Any]:
    domain = sso.domain_of(raw)
    async with pool.acquire() as conn:
        row = await queries.sso_domain_owner(conn, domain)
    if row is None:
        raise Problem(404, "no org has verified this domain")
    return {"domain": domain, "org_id": str(row["org_id"]), "issuer": row["issuer"],
            "client_id": row["client_id"], "require_sso": row["require_sso"]}


async def sso_connection(pool: asyncpg.Pool, keys: KeyRing | None, claims: xut.Claims,
                         payload: Any) -> dict[str, Any]:
    """For auth alone (it runs the code flow): `{"org_id"}` -> the org's connection with its
    client secret opened: {"org_id", "issuer", "client_id", "client_secret"}; 404 for none."""
    if claims.iss != "auth":
        raise RpcError(403, "only auth reads connection secrets")
    if keys is None:
        raise RpcError(503, "no master key ring is configured")
    org_id = _uuid(payload, "org_id")
    async with db.tenant_tx(pool, org_id) as conn:
        row = await queries.sso_connection(conn, org_id)
        org = await queries.org(conn, org_id)
    if row is None or org is None:
        raise RpcError(404, "no SSO connection")
    try:
        secret = sso.open_secret(keys, org_id, row["client_secret"])
    except SealError:
        log.error("an SSO client secret does not open", extra={"org_id": str(org_id)})
        raise RpcError(500, "the connection's client secret does not open") from None
    return {"org_id": str(org_id), "issuer": row["issuer"], "client_id": row["client_id"],
            "client_secret": secret}
