"""An org's SSO connection and verified domains (owners and admins), and the internal lookup
auth uses to point password sign-in for a verified domain to SSO."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from argus_shared import db
from argus_shared.access import PRINCIPAL
from argus_shared.errors import Problem
from argus_shared.event_types import (
    SSO_CONNECTION_DELETED,
    SSO_CONNECTION_SET,
    SSO_DOMAIN_ADDED,
    SSO_DOMAIN_REMOVED,
    SSO_DOMAIN_VERIFIED,
)
from argus_shared.handlers import ctx_of, json, not_found, uuid_param
from argus_shared.outbox import record
from argus_shared.problem_types import DOMAIN_NOT_VERIFIED
from argus_shared.request import XUT_CLAIMS
from argus_shared.routing import Answer, Route
from argus_shared.validation import parse_json
from argus_shared.web import POOL_KEY, SETTINGS_KEY
from argus_tenant_api import SERVICE, queries, rpc, schemas, sso
from argus_tenant_api.config import CONFIG_KEY
from argus_tenant_api.scope import ADMIN, Scope, authorise

ORG_SSO = "/orgs/{org_id}/sso"


def _tx(request: web.Request) -> Any:
    return db.tenant_tx(request.app[POOL_KEY], uuid_param(request, "org_id"),
                        request[PRINCIPAL].id)


def _master(request: web.Request) -> Any:
    keys = request.app[SETTINGS_KEY].master_keys
    if keys is None:
        raise Problem(503, "no master key ring is configured (ARGUS_MASTER_KEYS_FILE)")
    return keys


async def _event(conn: queries.Conn, request: web.Request, scope: Scope, kind: Any,
                 resource: tuple[str, str], data: dict[str, Any] | None = None) -> None:
    await record(conn, SERVICE, ctx_of(request), kind, actor=scope.actor, resource=resource,
                 org_id=scope.org_id, data=data)


# connection -------------------------------------------------------------------------------------

async def get_connection(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        row = await queries.sso_connection(conn, scope.org_id)
    if row is None:
        raise not_found()
    return json(sso.connection_view(row))


async def put_connection(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.SsoConnection)
    keys = _master(request)
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        sealed = sso.seal_secret(keys, scope.org_id, body.client_secret)
        row = await queries.upsert_sso_connection(conn, scope.org_id, body.issuer.rstrip("/"),
                                                  body.client_id, sealed)
        await _event(conn, request, scope, SSO_CONNECTION_SET,
                     ("sso_connection", str(scope.org_id)),
                     {"issuer": row["issuer"], "client_id": row["client_id"]})
    return json(sso.connection_view(row))


async def delete_connection(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        org = await queries.org(conn, scope.org_id)
        if org is not None and org["require_sso"]:
            raise Problem(409, "the org requires SSO: turn require_sso off first",
                          title="SSO required")
        if not await queries.delete_sso_connection(conn, scope.org_id):
            raise not_found()
        await _event(conn, request, scope, SSO_CONNECTION_DELETED,
                     ("sso_connection", str(scope.org_id)))
    return web.Response(status=204)


# domains ----------------------------------------------------------------------------------------

def _domain_param(request: web.Request) -> str:
    try:
        return sso.domain_of(request.match_info["domain"])
    except Problem:
        raise not_found() from None


async def list_domains(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        rows = await queries.sso_domains(conn, scope.org_id)
    return json([sso.domain_view(r) for r in rows])


async def add_domain(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.NewDomain)
    domain = sso.domain_of(body.domain)
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        row = await queries.insert_sso_domain(conn, scope.org_id, domain, sso.new_token())
        if row is None:
            raise Problem(409, "the org has claimed this domain already", title="Domain claimed")
        await _event(conn, request, scope, SSO_DOMAIN_ADDED, ("sso_domain", domain))
    return json(sso.domain_view(row), 201)


async def verify_domain(request: web.Request) -> web.Response:
    domain = _domain_param(request)
    config = request.app[CONFIG_KEY]
    nameserver = sso.Nameserver(config.sso_nameserver, config.sso_dns_timeout_seconds)
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        before = await queries.sso_domain(conn, scope.org_id, domain)
        row = await sso.verify(conn, nameserver, scope.org_id, domain)
        if before is not None and before["verified_at"] is None:
            await _event(conn, request, scope, SSO_DOMAIN_VERIFIED, ("sso_domain", domain))
    return json(sso.domain_view(row))


async def remove_domain(request: web.Request) -> web.Response:
    domain = _domain_param(request)
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        if not await queries.delete_sso_domain(conn, scope.org_id, domain):
            raise not_found()
        await _event(conn, request, scope, SSO_DOMAIN_REMOVED, ("sso_domain", domain))
    return web.Response(status=204)


# internal ---------------------------------------------------------------------------------------

async def domain_lookup(request: web.Request) -> web.Response:
    """For auth (X-User-Token): the org that verified the domain and its connection."""
    if request[XUT_CLAIMS].iss != "auth":
        raise Problem(403, "only auth looks domains up")
    try:
        found = await rpc.domain_owner(request.app[POOL_KEY], request.match_info["domain"])
    except Problem as problem:
        raise not_found() if problem.status == 422 else problem from None
    return json(found)


S = ("sso",)
ROUTES: list[Route] = [
    Route("GET", ORG_SSO + "/connection", get_connection, "The org's OIDC connection",
          response=schemas.SsoConnectionView, roles=ADMIN, tags=S),
    Route("PUT", ORG_SSO + "/connection", put_connection,
          "Set the org's OIDC connection (the client secret is sealed, never answered)",
          body=schemas.SsoConnection, response=schemas.SsoConnectionView, roles=ADMIN, tags=S,
          responses={503: "No master key ring is configured"}),
    Route("DELETE", ORG_SSO + "/connection", delete_connection,
          "Remove the org's OIDC connection", status=204, roles=ADMIN, tags=S,
          responses={409: "The org requires SSO (turn require_sso off first)"}),
    Route("GET", ORG_SSO + "/domains", list_domains, "The org's claimed email domains",
          roles=ADMIN, tags=S),
    Route("POST", ORG_SSO + "/domains", add_domain,
          "Claim an email domain: publish the TXT record value it answers, then verify",
          body=schemas.NewDomain, response=schemas.SsoDomain, status=201, roles=ADMIN,
          tags=S, responses={409: "The org claimed the domain already"}),
    Route("POST", ORG_SSO + "/domains/{domain}/verify", verify_domain,
          "Verify a claimed domain by its DNS TXT record", response=schemas.SsoDomain,
          roles=ADMIN, tags=S, responses={
              409: "Another org verified the domain",
              422: Answer("The TXT record value is not published (yet)",
                          problems=(DOMAIN_NOT_VERIFIED,)),
              503: "The DNS lookup failed"}),
    Route("DELETE", ORG_SSO + "/domains/{domain}", remove_domain, "Remove a claimed domain",
          status=204, roles=ADMIN, tags=S),
    Route("GET", "/internal/sso/domain/{domain}", domain_lookup,
          "For auth: the org that verified an email domain, and its connection",
          auth="service", tags=S, responses={403: "The caller is not auth"}),
]
