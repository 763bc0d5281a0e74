"""tenant-api's route table: thin handlers that parse, authorise, call the domain, respond."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from argus_shared import db, emails, pages
from argus_shared.access import PRINCIPAL, revoke_membership, revoke_org
from argus_shared.db import one
from argus_shared.errors import Problem
from argus_shared.event_types import (
    INVITATION_REVOKED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    MEMBER_ROLE_CHANGED,
    ORG_CREATED,
    ORG_DELETED,
    ORG_UPDATED,
    PROJECT_CREATED,
    PROJECT_DELETED,
)
from argus_shared.handlers import ctx_of, iso, json, not_found, uuid_param
from argus_shared.mail import Mailer
from argus_shared.nats import RpcError
from argus_shared.outbox import record
from argus_shared.problem_types import STEP_UP_REQUIRED
from argus_shared.request import REQUEST_ID
from argus_shared.routing import Answer, Answers, Header, Route, Tagged
from argus_shared.validation import decode, parse_json, parse_query, read_body
from argus_shared.web import NATS_KEY, POOL_KEY, SETTINGS_KEY
from argus_tenant_api import (
    SERVICE,
    accounts,
    exports,
    invitations,
    members,
    queries,
    schemas,
    scim_routes,
    sso_routes,
    wallet,
)
from argus_tenant_api.config import CONFIG_KEY
from argus_tenant_api.dsr import DataSubjects
from argus_tenant_api.org_purge import GRACE
from argus_tenant_api.scope import (
    ADMIN,
    OWNER,
    READ,
    ROLES_KEY,
    authorise,
    authorise_read,
    require_step_up,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
DSR_KEY = web.AppKey("data_subjects", DataSubjects)
MAILER_KEY = web.AppKey("mailer", Mailer)


def org_view(row: queries.Row) -> dict[str, Any]:
    return {"org_id": str(row["org_id"]), "name": row["name"], "slug": row["slug"],
            "plan": row["plan"], "require_mfa": row["require_mfa"],
            "audit_retention_days": row["audit_retention_days"],
            "require_sso": row["require_sso"], "sso_mfa_from_idp": row["sso_mfa_from_idp"]}


def user_id_of(request: web.Request) -> UUID:
    principal = request[PRINCIPAL]
    if principal.kind != "user":
        raise Problem(403, "this needs a signed-in user, not an API key")
    return UUID(principal.id)


def tx(request: web.Request, org_id: UUID | None = None) -> Any:
    principal = request[PRINCIPAL]
    org = org_id or uuid_param(request, "org_id")
    return db.tenant_tx(request.app[POOL_KEY], org, principal.id)


# orgs -------------------------------------------------------------------------------------------

async def create_org(request: web.Request) -> web.Response:
    user_id = user_id_of(request)
    body = await parse_json(request, schemas.NewOrg)
    account = await user_account(request, user_id)
    org_id = uuid.uuid4()
    async with tx(request, org_id) as conn:
        if not await queries.insert_org(conn, org_id, body.name, body.slug):
            raise Problem(409, f"the slug {body.slug!r} is taken", title="Slug taken")
        await queries.insert_wallet(conn, org_id)
        await queries.insert_member(conn, org_id, user_id, "owner", account.get("email"))
        await record(conn, SERVICE, ctx_of(request), ORG_CREATED, actor=("user", str(user_id)),
                     resource=("org", str(org_id)), org_id=org_id, data={"slug": body.slug})
        row = one(await queries.org(conn, org_id))
    return json(org_view(row), 201)


async def my_orgs(request: web.Request) -> web.Response:
    user_id = user_id_of(request)
    async with request.app[POOL_KEY].acquire() as conn:
        rows = await queries.orgs_of_user(conn, user_id)
    return json([{"org_id": str(r["org_id"]), "name": r["name"], "slug": r["slug"],
                  "plan": r["plan"], "role": r["role"]} for r in rows])


async def get_org(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        row = one(await queries.org(conn, scope.org_id))  # a member's org exists
    return json(org_view(row))


async def update_org(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.OrgChanges)
    changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    if not changes:
        raise Problem(422, "nothing to change")
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        if "plan" in changes and scope.role != "owner":
            raise Problem(403, "only an owner changes the plan")
        if changes.get("require_sso") and await queries.sso_connection(conn, scope.org_id) is None:
            raise Problem(409, "set up the org's SSO connection before requiring SSO",
                          title="No SSO connection")
        row = await queries.update_org(conn, scope.org_id, changes)
        await record(conn, SERVICE, ctx_of(request), ORG_UPDATED, actor=scope.actor,
                     resource=("org", str(scope.org_id)), org_id=scope.org_id, data=changes)
    return json(org_view(row))


async def delete_org(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        await queries.delete_org(conn, scope.org_id)
        request.app[ROLES_KEY].drop(scope.org_id)
        purge_by = datetime.now(UTC) + GRACE
        await record(conn, SERVICE, ctx_of(request), ORG_DELETED, actor=scope.actor,
                     resource=("org", str(scope.org_id)), org_id=scope.org_id,
                     data={"purge_by": purge_by.isoformat()})
    # every org token and API key of the org stops working on every service at once; the
    # event then has each service purge what it holds (tenant-api's own share: org_purge.py)
    await revoke_org(request.app[NATS_KEY].jetstream(), str(scope.org_id))
    return web.Response(status=204)


# members ----------------------------------------------------------------------------------------

async def list_members(request: web.Request) -> web.Response:
    scope = await authorise_read(request)
    async with request.app[POOL_KEY].acquire() as conn:
        rows = await queries.members(conn, scope.org_id, scope.principal.id)
    return json([{"user_id": str(r["user_id"]), "role": r["role"], "email": r["email"],
                  "created_at": iso(r["created_at"])} for r in rows])


async def change_member(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.RoleChange)
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        target = uuid_param(request, "user_id")
        before = await members.change_role(conn, scope, target, body.role)
        request.app[ROLES_KEY].drop(scope.org_id, target)
        await record(conn, SERVICE, ctx_of(request), MEMBER_ROLE_CHANGED,
                     actor=scope.actor, resource=("user", str(target)), org_id=scope.org_id,
                     data={"from": before, "to": body.role})
    await revoke_membership(request.app[NATS_KEY].jetstream(), str(scope.org_id), str(target),
                            body.role)
    return json({"user_id": str(target), "role": body.role})


async def remove_member(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        target = uuid_param(request, "user_id")
        role = await members.remove(conn, scope, target)
        request.app[ROLES_KEY].drop(scope.org_id, target)
        await record(conn, SERVICE, ctx_of(request), MEMBER_REMOVED, actor=scope.actor,
                     resource=("user", str(target)), org_id=scope.org_id, data={"role": role})
    await revoke_membership(request.app[NATS_KEY].jetstream(), str(scope.org_id), str(target),
                            None)
    return web.Response(status=204)


# invitations ------------------------------------------------------------------------------------

def invitation_view(row: queries.Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "email": row["email"], "role": row["role"],
            "expires_at": iso(row["expires_at"]), "accepted_at": iso(row["accepted_at"]),
            "revoked_at": iso(row["revoked_at"])}


async def invite(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.NewInvitation)
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        issued = await invitations.create(conn, scope, body.email, body.role, ctx_of(request))
    return json(await mailed(request, issued), 201)


async def resend_invitation(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        issued = await invitations.renew(conn, scope, uuid_param(request, "invitation_id"),
                                         ctx_of(request))
    return json(await mailed(request, issued))


async def mailed(request: web.Request, issued: invitations.Issued) -> dict[str, Any]:
    """Once the invitation has committed: mail it, and say whether that worked (the token is
    shown here once too, for an admin who hands it over another way)."""
    sent = await invitations.send(request.app[MAILER_KEY], request.app[CONFIG_KEY].mail.public_url,
                                  issued)
    return {"token": issued.token, "invitation": invitation_view(issued.row), "mailed": sent}


async def list_invitations(request: web.Request) -> web.Response:
    scope = await authorise_read(request)
    async with request.app[POOL_KEY].acquire() as conn:
        rows = await queries.invitations(conn, scope.org_id, scope.principal.id)
    return json([invitation_view(r) for r in rows])


async def revoke_invitation(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        invitation_id = uuid_param(request, "invitation_id")
        if not await queries.revoke_invitation(conn, scope.org_id, invitation_id):
            raise not_found()
        await record(conn, SERVICE, ctx_of(request), INVITATION_REVOKED, actor=scope.actor,
                     resource=("invitation", str(invitation_id)), org_id=scope.org_id)
    return web.Response(status=204)


async def accept_invitation(request: web.Request) -> web.Response:
    user_id = user_id_of(request)
    body = await parse_json(request, schemas.AcceptInvitation)
    async with request.app[POOL_KEY].acquire() as conn:
        digest = hashlib.sha256(body.token.encode()).digest()
        found = await queries.invitation_by_token(conn, digest)
    if found is None or found["accepted_at"] or found["revoked_at"] or \
            found["expires_at"] <= datetime.now(UTC):
        raise Problem(400, "the invitation is invalid, used, revoked or expired")
    account = await user_account(request, user_id)
    if not account.get("verified") or not emails.same(account.get("email"), found["email"]):
        raise Problem(403, "sign in with the verified account of the invited email")
    async with tx(request, found["org_id"]) as conn:
        if not await queries.accept_invitation(conn, found["org_id"], found["id"]):
            raise Problem(400, "the invitation is invalid, used, revoked or expired")
        if not await queries.insert_member(conn, found["org_id"], user_id, found["role"],
                                           found["email"]):
            raise Problem(409, "you are already a member")
        await queries.link_invited(conn, found["org_id"], found["id"], user_id)
        await record(conn, SERVICE, ctx_of(request), MEMBER_ADDED,
                     actor=("user", str(user_id)), resource=("user", str(user_id)),
                     org_id=found["org_id"], data={"role": found["role"], "via": "invitation"})
    # a member removed earlier is refused by role until the new membership is published
    await revoke_membership(request.app[NATS_KEY].jetstream(), str(found["org_id"]),
                            str(user_id), found["role"])
    return json({"org_id": str(found["org_id"]), "role": found["role"]})


async def user_account(request: web.Request, user_id: UUID) -> dict[str, Any]:
    try:
        return await accounts.account_of(request.app[NATS_KEY], request.app[SETTINGS_KEY].xut_keys,
                                         user_id, request.get(REQUEST_ID))
    except RpcError:
        raise Problem(503, "accounts cannot be checked right now; try again later") from None


# projects ---------------------------------------------------------------------------------------

def project_view(row: queries.Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "created_at": iso(row["created_at"])}


async def create_project(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.NewProject)
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        assert scope.user_id is not None  # the route takes no API keys
        row = await queries.insert_project(conn, scope.org_id, uuid.uuid4(), body.name,
                                           scope.user_id)
        await record(conn, SERVICE, ctx_of(request), PROJECT_CREATED, actor=scope.actor,
                     resource=("project", str(row["id"])), org_id=scope.org_id)
    return json(project_view(row), 201)


async def list_projects(request: web.Request) -> web.Response:
    scope = await authorise_read(request)
    async with request.app[POOL_KEY].acquire() as conn:
        rows = await queries.projects(conn, scope.org_id, scope.principal.id)
    return json([project_view(r) for r in rows])


async def get_project(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        row = await queries.project(conn, scope.org_id, uuid_param(request, "project_id"))
    if row is None:
        raise not_found()
    return json(project_view(row))


async def delete_project(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        project_id = uuid_param(request, "project_id")
        if not await queries.delete_project(conn, scope.org_id, project_id):
            raise not_found()
        await record(conn, SERVICE, ctx_of(request), PROJECT_DELETED, actor=scope.actor,
                     resource=("project", str(project_id)), org_id=scope.org_id)
    return web.Response(status=204)


# wallet -----------------------------------------------------------------------------------------

async def get_wallet(request: web.Request) -> web.Response:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        row = one(await queries.wallet(conn, scope.org_id))
    return json({"balance_cents": row["balance_cents"]})


async def list_entries(request: web.Request) -> web.Response:
    query = parse_query(request, schemas.EntriesQuery)
    after = wallet.decode_cursor(query.cursor) if query.cursor else None
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        rows = await queries.entries_page(conn, scope.org_id, after, query.limit)
    next_cursor = wallet.encode_cursor(rows[-1]) if len(rows) == query.limit else None
    return json({"entries": [wallet.entry_view(r) for r in rows], "next_cursor": next_cursor})


async def deposit(request: web.Request) -> web.Response:
    return await _money(request, "deposit")


async def charge(request: web.Request) -> web.Response:
    return await _money(request, "charge")


async def _money(request: web.Request, kind: str) -> web.Response:
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not 1 <= len(key) <= 200:
        raise Problem(400, f"money requests need an {IDEMPOTENCY_HEADER} header (1-200 chars)",
                      title="Idempotency-Key required")
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json")
    raw = await read_body(request, request.app[SETTINGS_KEY].max_body_bytes)
    body = decode(raw, schemas.Money)
    endpoint = f"{request.method} {kind}"
    fingerprint = wallet.fingerprint(endpoint, raw, body)
    async with tx(request) as conn:
        scope = await authorise(request, conn)
        previous = await wallet.replayed(conn, scope, endpoint, key, fingerprint)
        if previous is not None:
            return _replay(previous)
        if kind == "charge":
            wallet.check_step_up(scope, body.amount_cents,
                                 request.app[CONFIG_KEY].step_up_threshold_cents,
                                 datetime.now(UTC).timestamp())
        result = await wallet.move(conn, scope, kind, body.amount_cents, body.description,
                                   ctx_of(request))
        response = json(result, 201)
        assert isinstance(response.body, bytes)  # json() encodes its body at once
        answer = wallet.Answer(response.status, response.body, response.content_type)
        await queries.insert_idempotency(conn, scope.org_id, endpoint, key,
                                         fingerprint.canonical, answer, result)
    return response


def _replay(answer: wallet.Answer) -> web.Response:
    """The first answer as it was sent, byte for byte."""
    return web.Response(body=answer.body, status=answer.status, headers={
        "Content-Type": answer.content_type, "Idempotent-Replayed": "true"})


# data-subject requests --------------------------------------------------------------------------

def dsr_of(request: web.Request) -> DataSubjects:
    return request.app[DSR_KEY]


async def export_my_data(request: web.Request) -> web.Response:
    user_id = user_id_of(request)
    bundle = await dsr_of(request).export(user_id, ctx_of(request).request_id or "")
    response = json(bundle)
    response.headers["Content-Disposition"] = 'attachment; filename="my-data.json"'
    return response


async def delete_my_account(request: web.Request) -> web.Response:
    user_id = user_id_of(request)
    require_step_up(request[PRINCIPAL], time.time(), "deleting your account")
    return json(await dsr_of(request).request_deletion(user_id, ctx_of(request)), 202)


async def my_deletion(request: web.Request) -> web.Response:
    found = await dsr_of(request).status(user_id_of(request))
    if found is None:
        raise not_found()
    return json(found)


# exports ----------------------------------------------------------------------------------------

async def export_ledger(request: web.Request) -> web.StreamResponse:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
    return await exports.stream_csv(
        request, request.app[POOL_KEY], scope.org_id, scope.principal.id, queries.ENTRIES_EXPORT,
        ("id", "kind", "amount_cents", "description", "actor", "created_at"), "ledger.csv")


async def export_members(request: web.Request) -> web.StreamResponse:
    async with tx(request) as conn:
        scope = await authorise(request, conn)
    return await exports.stream_csv(
        request, request.app[POOL_KEY], scope.org_id, scope.principal.id, queries.MEMBERS_EXPORT,
        ("user_id", "email", "role", "created_at"), "members.csv")


ORG = "/orgs/{org_id}"
ME: Tagged = {"tags": ("data-subject",)}
T: Tagged = {"tags": ("orgs",)}
# what handlers answer besides what their declarations imply (argus_shared.openapi)
ACCOUNTS: Answers = {503: "Accounts cannot be checked right now (auth is not answering)"}
LAST_OWNER: Answers = {409: "The last owner cannot leave or be demoted; make another owner first"}
MONEY: Answers = {
    400: f"No {IDEMPOTENCY_HEADER} header of 1-200 characters",
    422: f"The {IDEMPOTENCY_HEADER} was already used on this endpoint with another request",
    201: Answer("Moved; a replay of an earlier key answers the first answer byte for byte",
                headers={"Idempotent-Replayed": "`true` on a replayed answer"}),
}
IDEMPOTENCY = (Header(IDEMPOTENCY_HEADER, "One per money request: a retry with the same key "
                      "and request answers the first answer again, never moving twice",
                      required=True, schema={"type": "string", "minLength": 1,
                                             "maxLength": 200}),)
STEP_UP: Answers = {
    401: Answer("Step-up required: sign in again (auth POST /reauth) within 5 minutes",
                problems=(STEP_UP_REQUIRED,))}
ROUTES: list[Route] = [
    Route("POST", "/orgs", create_org, "Create an org (you become its owner)",
          body=schemas.NewOrg, response=schemas.Org, status=201,
          responses={409: "The slug is taken", **ACCOUNTS}, **T),
    Route("GET", "/orgs", my_orgs, "The orgs I belong to", **T),
    Route("GET", ORG, get_org, "An org", response=schemas.Org, roles=READ,
          scopes=("tenant:read",), **T),
    Route("PATCH", ORG, update_org, "Change an org (owners/admins; plan: owners)",
          body=schemas.OrgChanges, response=schemas.Org, roles=ADMIN,
          responses={403: "Only an owner changes the plan", 422: "Nothing to change",
                     409: "require_sso without an SSO connection"}, **T),
    Route("DELETE", ORG, delete_org, "Delete an org and schedule its purge (owner)",
          status=204, roles=OWNER, **T),
    Route("GET", ORG + "/members", list_members, "Members", roles=READ,
          scopes=("tenant:read",), tags=("members",)),
    Route("PATCH", ORG + "/members/{user_id}", change_member, "Change a member's role",
          body=schemas.RoleChange, roles=ADMIN,
          responses={403: "Only an owner grants or removes the owner role", **LAST_OWNER},
          tags=("members",)),
    Route("DELETE", ORG + "/members/{user_id}", remove_member,
          "Remove a member (owners/admins), or leave (anyone)", status=204, roles=READ,
          responses={403: "Only owners and admins remove others, and only an owner an owner",
                     **LAST_OWNER}, tags=("members",)),
    Route("POST", ORG + "/invitations", invite,
          "Invite by email: mailed with a link to accept (token shown once)",
          body=schemas.NewInvitation, response=schemas.IssuedInvitation, status=201,
          roles=ADMIN, tags=("invitations",)),
    Route("GET", ORG + "/invitations", list_invitations, "Pending and past invitations",
          roles=ADMIN, tags=("invitations",)),
    Route("DELETE", ORG + "/invitations/{invitation_id}", revoke_invitation,
          "Revoke an invitation", status=204, roles=ADMIN, tags=("invitations",)),
    Route("POST", ORG + "/invitations/{invitation_id}/resend", resend_invitation,
          "Mail an open invitation again with a new token (the old one stops working)",
          response=schemas.IssuedInvitation, roles=ADMIN,
          responses={409: "The invitation was accepted, revoked or has expired"},
          tags=("invitations",)),
    Route("POST", "/invitations/accept", accept_invitation,
          "Accept an invitation (verified account with the invited email)",
          body=schemas.AcceptInvitation,
          responses={400: "The invitation is invalid, used, revoked or expired",
                     403: "Signed in with another account than the verified invited email",
                     409: "Already a member", **ACCOUNTS}, tags=("invitations",)),
    Route("POST", ORG + "/projects", create_project, "Create a project", body=schemas.NewProject,
          status=201, roles=ADMIN, tags=("projects",)),
    Route("GET", ORG + "/projects", list_projects, "Projects", roles=READ,
          scopes=("tenant:read",), tags=("projects",)),
    Route("GET", ORG + "/projects/{project_id}", get_project, "A project", roles=READ,
          scopes=("tenant:read",), tags=("projects",)),
    Route("DELETE", ORG + "/projects/{project_id}", delete_project, "Delete a project",
          status=204, roles=ADMIN, tags=("projects",)),
    Route("GET", ORG + "/wallet", get_wallet, "The wallet balance", response=schemas.Wallet,
          roles=READ, scopes=("wallet:read",), tags=("wallet",)),
    Route("GET", ORG + "/wallet/entries", list_entries, "Ledger entries (cursor pages)",
          query=schemas.EntriesQuery, roles=READ, scopes=("wallet:read",),
          responses={400: "The cursor is not one this service gave out"}, tags=("wallet",)),
    Route("POST", ORG + "/wallet/deposits", deposit, "Deposit (Idempotency-Key required)",
          body=schemas.Money, status=201, roles=ADMIN, scopes=("wallet:write",),
          responses=MONEY, headers=IDEMPOTENCY, tags=("wallet",)),
    Route("POST", ORG + "/wallet/charges", charge,
          "Charge (Idempotency-Key; step-up above the threshold)", body=schemas.Money,
          status=201, roles=ADMIN, scopes=("wallet:write",),
          responses={**MONEY, **STEP_UP, 409: "Insufficient balance"}, headers=IDEMPOTENCY,
          tags=("wallet",)),
    Route("GET", ORG + "/exports/ledger.csv", export_ledger, "Ledger entries as CSV",
          roles=ADMIN, media_type="text/csv", tags=("exports",)),
    Route("GET", ORG + "/exports/members.csv", export_members, "Members as CSV", roles=ADMIN,
          media_type="text/csv", tags=("exports",)),
    Route("POST", "/me/export", export_my_data, "Export my data from every service", **ME),
    Route("DELETE", "/me", delete_my_account,
          "Delete my account (step-up; purged from every service within 7 days)", status=202,
          responses={**STEP_UP, 409: "You are the last owner of an org",
                     503: "The account cannot be deactivated right now"}, **ME),
    Route("GET", "/me/deletion", my_deletion, "Where my account deletion stands",
          responses={404: "No deletion was asked for"}, **ME),
    *pages.page_routes("argus_tenant_api", invitations.PAGE_SUMMARIES, invitations.PAGE_SCRIPTS),
    *scim_routes.ROUTES,
    *sso_routes.ROUTES,
]
