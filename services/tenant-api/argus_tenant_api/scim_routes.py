"""SCIM 2.0 endpoints (`/scim/v2/...`, authenticated by the org's SCIM token, answers and errors
in `application/scim+json`), and the org routes that manage SCIM tokens and group-to-role
mappings (owners and admins, problem+json like every other org route)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web

from argus_shared import db
from argus_shared.access import PRINCIPAL, revoke_membership
from argus_shared.errors import Problem
from argus_shared.event_types import SCIM_ROLES_MAPPED
from argus_shared.handlers import ctx_of, json, not_found, uuid_param
from argus_shared.outbox import record
from argus_shared.pages import prefix_of
from argus_shared.routing import Answers, Route
from argus_shared.validation import parse_json, read_body
from argus_shared.web import NATS_KEY, POOL_KEY, SETTINGS_KEY
from argus_tenant_api import SERVICE, invitations, queries, schemas, scim, scim_tokens
from argus_tenant_api import scim_protocol as protocol
from argus_tenant_api import scim_resources as resources
from argus_tenant_api.config import CONFIG_KEY
from argus_tenant_api.scim_protocol import MEDIA_TYPE, ScimError
from argus_tenant_api.scope import ADMIN, ROLES_KEY, authorise

ScimHandler = Callable[[web.Request], Awaitable[web.Response]]
BASE = "/scim/v2"


def scim_json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type=MEDIA_TYPE)


def scim_errors(handler: ScimHandler) -> ScimHandler:
    """SCIM routes answer RFC 7644 errors, in their media type, for every failure they know."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ScimError as error:
            headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if error.status == 401 else {}
            response = scim_json(error.body(), error.status)
            response.headers.update(headers)
            return response
        except Problem as problem:
            return scim_json(ScimError(problem.status, problem.detail or problem.title).body(),
                             problem.status)

    return wrapped


def base_url(request: web.Request) -> str:
    return f"{request.app[CONFIG_KEY].mail.public_url}{prefix_of(SERVICE)}{BASE}"


def scim_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["scim_id"])
    except ValueError:
        raise protocol.not_found() from None


async def body_of(request: web.Request) -> dict[str, Any]:
    if request.content_type not in (MEDIA_TYPE, "application/json"):
        raise ScimError(415, f"send the body as {MEDIA_TYPE}")
    return resources.decode(await read_body(request, request.app[SETTINGS_KEY].max_body_bytes))


async def in_org(request: web.Request,
                 work: Callable[[scim.Work], Awaitable[Any]]) -> Any:
    """Run `work` in the token's org transaction; then publish what it changed."""
    pool = request.app[POOL_KEY]
    caller = await scim_tokens.caller_of(request, pool)
    after = scim.After()
    async with db.tenant_tx(pool, caller.org_id) as conn:
        result = await work(scim.Work(conn, caller, ctx_of(request), after))
    js = request.app[NATS_KEY].jetstream()
    for user_id, role in after.revocations:
        request.app[ROLES_KEY].drop(caller.org_id, user_id)
        await revoke_membership(js, str(caller.org_id), str(user_id), role)
    config = request.app[CONFIG_KEY]
    for issued in after.mails:
        await invitations.send(_mailer(request), config.mail.public_url, issued)
    return result


def _mailer(request: web.Request) -> Any:
    from argus_tenant_api.routes import MAILER_KEY  # the route table imports this module

    return request.app[MAILER_KEY]


async def user_view(work: scim.Work, row: queries.Row, base: str) -> dict[str, Any]:
    groups = await queries.groups_of_scim_users(work.conn, work.caller.org_id, [row["id"]])
    return protocol.user_view(row, groups, base)


async def group_view(work: scim.Work, row: queries.Row, base: str) -> dict[str, Any]:
    found = await queries.group_members(work.conn, work.caller.org_id, [row["id"]])
    return protocol.group_view(row, found, base)


# users ------------------------------------------------------------------------------------------

@scim_errors
async def create_user(request: web.Request) -> web.Response:
    values = resources.user_values(await body_of(request))
    base = base_url(request)

    async def work(w: scim.Work) -> dict[str, Any]:
        return await user_view(w, await scim.create_user(w, values), base)

    view = await in_org(request, work)
    response = scim_json(view, 201)
    response.headers["Location"] = view["meta"]["location"]
    return response


@scim_errors
async def get_user(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)

    async def work(w: scim.Work) -> dict[str, Any]:
        row = await queries.scim_user(w.conn, w.caller.org_id, found)
        if row is None:
            raise protocol.not_found()
        return await user_view(w, row, base)

    return scim_json(await in_org(request, work))


@scim_errors
async def list_users(request: web.Request) -> web.Response:
    where, value = protocol.parse_filter(request.query.get("filter"), protocol.USER_FILTERS)
    page, base = protocol.page_of(dict(request.query)), base_url(request)

    async def work(w: scim.Work) -> dict[str, Any]:
        total, rows = await queries.scim_page(w.conn, "scim_users", w.caller.org_id, where,
                                              value, page.offset, page.count)
        groups = await queries.groups_of_scim_users(w.conn, w.caller.org_id,
                                                    [r["id"] for r in rows]) if rows else []
        views = [protocol.user_view(r, [g for g in groups if g["user_id"] == r["id"]], base)
                 for r in rows]
        return protocol.list_response(total, page, views)

    return scim_json(await in_org(request, work))


@scim_errors
async def replace_user(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)
    values = resources.user_values(await body_of(request))

    async def work(w: scim.Work) -> dict[str, Any]:
        before = await scim.locked_user(w, found)
        return await user_view(w, await scim.update_user(w, before, values), base)

    return scim_json(await in_org(request, work))


@scim_errors
async def patch_user(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)
    ops = resources.operations(await body_of(request))

    async def work(w: scim.Work) -> dict[str, Any]:
        before = await scim.locked_user(w, found)
        state = resources.patch_user(resources.user_state(before), ops)
        row = await scim.update_user(w, before, resources.user_values(state))
        return await user_view(w, row, base)

    return scim_json(await in_org(request, work))


@scim_errors
async def delete_user(request: web.Request) -> web.Response:
    found = scim_id(request)

    async def work(w: scim.Work) -> None:
        await scim.delete_user(w, found)

    await in_org(request, work)
    return web.Response(status=204)


# groups -----------------------------------------------------------------------------------------

@scim_errors
async def create_group(request: web.Request) -> web.Response:
    values = resources.group_values(await body_of(request))
    base = base_url(request)

    async def work(w: scim.Work) -> dict[str, Any]:
        return await group_view(w, await scim.create_group(w, values), base)

    view = await in_org(request, work)
    response = scim_json(view, 201)
    response.headers["Location"] = view["meta"]["location"]
    return response


@scim_errors
async def get_group(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)
    bare = "members" in request.query.get("excludedAttributes", "").lower()

    async def work(w: scim.Work) -> dict[str, Any]:
        row = await queries.scim_group(w.conn, w.caller.org_id, found)
        if row is None:
            raise protocol.not_found()
        return protocol.group_view(row, [], base) if bare else await group_view(w, row, base)

    view = await in_org(request, work)
    if bare:
        view.pop("members")
    return scim_json(view)


@scim_errors
async def list_groups(request: web.Request) -> web.Response:
    where, value = protocol.parse_filter(request.query.get("filter"), protocol.GROUP_FILTERS)
    page, base = protocol.page_of(dict(request.query)), base_url(request)
    bare = "members" in request.query.get("excludedAttributes", "").lower()

    async def work(w: scim.Work) -> dict[str, Any]:
        total, rows = await queries.scim_page(w.conn, "scim_groups", w.caller.org_id, where,
                                              value, page.offset, page.count)
        found = [] if bare else await queries.group_members(w.conn, w.caller.org_id,
                                                             [r["id"] for r in rows])
        views = [protocol.group_view(r, [m for m in found if m["group_id"] == r["id"]], base)
                 for r in rows]
        for view in views if bare else ():
            view.pop("members")
        return protocol.list_response(total, page, views)

    return scim_json(await in_org(request, work))


@scim_errors
async def replace_group(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)
    values = resources.group_values(await body_of(request))
    patch = resources.GroupPatch(display_name=values.display_name,
                                 external_id=values.external_id,
                                 replace=values.members or [], remove_all=True)

    async def work(w: scim.Work) -> dict[str, Any]:
        before = await scim.locked_group(w, found)
        return await group_view(w, await scim.change_group(w, before, patch), base)

    return scim_json(await in_org(request, work))


@scim_errors
async def patch_group(request: web.Request) -> web.Response:
    found, base = scim_id(request), base_url(request)
    patch = resources.group_patch(resources.operations(await body_of(request)))

    async def work(w: scim.Work) -> dict[str, Any]:
        before = await scim.locked_group(w, found)
        return await group_view(w, await scim.change_group(w, before, patch), base)

    return scim_json(await in_org(request, work))


@scim_errors
async def delete_group(request: web.Request) -> web.Response:
    found = scim_id(request)

    async def work(w: scim.Work) -> None:
        await scim.delete_group(w, found)

    await in_org(request, work)
    return web.Response(status=204)


# discovery --------------------------------------------------------------------------------------

@scim_errors
async def service_provider_config(request: web.Request) -> web.Response:
    await scim_tokens.caller_of(request, request.app[POOL_KEY])
    return scim_json(protocol.service_provider_config(base_url(request)))


@scim_errors
async def list_schemas(request: web.Request) -> web.Response:
    await scim_tokens.caller_of(request, request.app[POOL_KEY])
    found = protocol.schemas(base_url(request))
    return scim_json(protocol.list_response(len(found), protocol.Page(1, len(found)), found))


@scim_errors
async def list_resource_types(request: web.Request) -> web.Response:
    await scim_tokens.caller_of(request, request.app[POOL_KEY])
    found = protocol.resource_types(base_url(request))
    return scim_json(protocol.list_response(len(found), protocol.Page(1, len(found)), found))


# tokens and role mappings (org routes) ----------------------------------------------------------

def _tx(request: web.Request) -> Any:
    return db.tenant_tx(request.app[POOL_KEY], uuid_param(request, "org_id"),
                        request[PRINCIPAL].id)


async def create_token(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        issued = await scim_tokens.issue(conn, scope, ctx_of(request))
    return json(issued, 201)


async def list_tokens(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        rows = await queries.scim_tokens(conn, scope.org_id)
    return json([scim_tokens.view(r) for r in rows])


async def rotate_token(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        token_id = uuid_param(request, "token_id")
        if not await scim_tokens.revoke(conn, scope, token_id, ctx_of(request)):
            raise not_found()
        issued = await scim_tokens.issue(conn, scope, ctx_of(request), rotated_from=token_id)
    return json(issued, 201)


async def revoke_token(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        if not await scim_tokens.revoke(conn, scope, uuid_param(request, "token_id"),
                                        ctx_of(request)):
            raise not_found()
    return web.Response(status=204)


async def get_role_mappings(request: web.Request) -> web.Response:
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        found = await queries.role_mappings(conn, scope.org_id)
    return json({"mappings": found or scim.DEFAULT_MAPPINGS, "default": not found})


async def set_role_mappings(request: web.Request) -> web.Response:
    body = await parse_json(request, schemas.RoleMappings)
    mappings: dict[str, str] = {name.strip().lower(): role
                                for name, role in body.mappings.items()}
    if any(not name for name in mappings):
        raise Problem(422, "group names must not be empty")
    async with _tx(request) as conn:
        scope = await authorise(request, conn)
        await queries.set_role_mappings(conn, scope.org_id, mappings)
        await record(conn, SERVICE, ctx_of(request), SCIM_ROLES_MAPPED, actor=scope.actor,
                     resource=("org", str(scope.org_id)), org_id=scope.org_id,
                     data={"mappings": mappings})
    return json({"mappings": mappings or scim.DEFAULT_MAPPINGS, "default": not mappings})


SCIM_ANSWERS: Answers = {401: "No live SCIM token of an org (Authorization: Bearer argus_scim_...)",
                         400: "Not valid SCIM (RFC 7644 error body: scimType says why)"}
WITH_ID: Answers = {**SCIM_ANSWERS, 404: "No such resource in the token's org"}
WRITE: Answers = {**WITH_ID, 409: "userName/displayName taken, or the last owner",
                  413: "Body too large", 415: f"Not {MEDIA_TYPE} or application/json"}
CREATE: Answers = {**SCIM_ANSWERS, 409: "userName/displayName taken", 413: "Body too large",
                   415: f"Not {MEDIA_TYPE} or application/json"}
ORG_SCIM = "/orgs/{org_id}/scim-tokens"


def _scim(method: str, path: str, handler: ScimHandler, summary: str, answers: Answers,
          status: int = 200) -> Route:
    return Route(method, BASE + path, handler, summary, auth="public", tags=("scim",),
                 media_type=MEDIA_TYPE, responses=answers, status=status)


ROUTES: list[Route] = [
    _scim("POST", "/Users", create_user, "SCIM: provision a user (member or invitation)",
          CREATE, 201),
    _scim("GET", "/Users", list_users, 'SCIM: users (filter userName eq "...", startIndex, '
          "count)", SCIM_ANSWERS),
    _scim("GET", "/Users/{scim_id}", get_user, "SCIM: a user", WITH_ID),
    _scim("PUT", "/Users/{scim_id}", replace_user, "SCIM: replace a user", WRITE),
    _scim("PATCH", "/Users/{scim_id}", patch_user,
          "SCIM: patch a user (active=false deprovisions: membership removed, tokens revoked)",
          WRITE),
    _scim("DELETE", "/Users/{scim_id}", delete_user, "SCIM: delete (deprovision) a user",
          {**WITH_ID, 409: "The org's last owner"}, 204),
    _scim("POST", "/Groups", create_group, "SCIM: push a group (its name can give a role)",
          CREATE, 201),
    _scim("GET", "/Groups", list_groups, 'SCIM: groups (filter displayName eq "...")',
          SCIM_ANSWERS),
    _scim("GET", "/Groups/{scim_id}", get_group, "SCIM: a group", WITH_ID),
    _scim("PUT", "/Groups/{scim_id}", replace_group, "SCIM: replace a group", WRITE),
    _scim("PATCH", "/Groups/{scim_id}", patch_group, "SCIM: rename, add or remove members",
          WRITE),
    _scim("DELETE", "/Groups/{scim_id}", delete_group, "SCIM: delete a group", WITH_ID, 204),
    _scim("GET", "/ServiceProviderConfig", service_provider_config,
          "SCIM: what this service provider supports", SCIM_ANSWERS),
    _scim("GET", "/Schemas", list_schemas, "SCIM: the User and Group schemas", SCIM_ANSWERS),
    _scim("GET", "/ResourceTypes", list_resource_types, "SCIM: the resource types",
          SCIM_ANSWERS),
    Route("POST", ORG_SCIM, create_token, "Create a SCIM token (shown once)", status=201,
          roles=ADMIN, tags=("scim",)),
    Route("GET", ORG_SCIM, list_tokens, "SCIM tokens (prefix only)", roles=ADMIN,
          tags=("scim",)),
    Route("POST", ORG_SCIM + "/{token_id}/rotate", rotate_token,
          "Rotate a SCIM token: a new one (shown once); the old one stops working now",
          status=201, roles=ADMIN, tags=("scim",)),
    Route("DELETE", ORG_SCIM + "/{token_id}", revoke_token, "Revoke a SCIM token", status=204,
          roles=ADMIN, tags=("scim",)),
    Route("GET", "/orgs/{org_id}/scim-role-mappings", get_role_mappings,
          "Which SCIM group names give which role", roles=ADMIN, tags=("scim",)),
    Route("PUT", "/orgs/{org_id}/scim-role-mappings", set_role_mappings,
          "Set which SCIM group names give which role (empty: the defaults)",
          body=schemas.RoleMappings, roles=ADMIN, tags=("scim",),
          responses={422: "An empty group name"}),
]
