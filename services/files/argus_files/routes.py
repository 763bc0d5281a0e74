"""The files service's route table: thin handlers that parse, call the domain, respond.

Objects live under `/objects/<org>/<owner>/<object>` (behind the gateway: `/files/objects/...`);
the owner is the user (or API key) whose namespace holds them. Every service also serves
/healthz, /readyz, /metrics, /openapi.json and /internal/whoami (argus_shared.runner).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aiohttp import web

from argus_files import deletion, downloads, queries, schemas, sources, uploads
from argus_files.scope import ADMIN, OWNER, READ, WRITE, namespace_scope, org_scope, upload_scope
from argus_files.store import STORE_KEY, view
from argus_shared import db
from argus_shared.errors import Problem
from argus_shared.handlers import ctx_of, json, not_found, uuid_param
from argus_shared.problem_types import INTEGRITY
from argus_shared.routing import Answer, Answers, Header, Route, Tagged
from argus_shared.validation import parse_query

READ_SCOPES = ("files:read",)
WRITE_SCOPES = ("files:write",)


async def upload(request: web.Request) -> web.Response:
    scope = upload_scope(request)
    store = request.app[STORE_KEY]
    query = parse_query(request, schemas.UploadQuery)
    source = await sources.source_of(request, store.config.max_bytes, query.name)
    row = await uploads.store_upload(store, scope, source, ctx_of(request))
    found = view(row)
    return json(found, 201, {"Location": f"/objects/{found['path']}"})


async def download(request: web.Request) -> web.StreamResponse:
    scope = namespace_scope(request, write=False)
    store = request.app[STORE_KEY]
    row = await _stored(request, scope.org_id, scope.namespace)
    return await downloads.serve(store, row, request)


async def metadata(request: web.Request) -> web.Response:
    scope = namespace_scope(request, write=False)
    return json(view(await _stored(request, scope.org_id, scope.namespace)))


async def _stored(request: web.Request, org_id: UUID, owner_id: UUID) -> object:
    object_id = uuid_param(request, "object_id")
    async with db.tenant_tx(request.app[STORE_KEY].pool, org_id) as conn:
        row = await queries.stored(conn, org_id, owner_id, object_id)
    if row is None:
        raise not_found()
    return row


async def delete_object(request: web.Request) -> web.Response:
    scope = namespace_scope(request, write=True)
    object_id = uuid_param(request, "object_id")
    rows = await deletion.shred(request.app[STORE_KEY], scope.org_id, scope.namespace, object_id,
                                actor=scope.actor, ctx=ctx_of(request))
    if not rows:
        raise not_found()
    return web.Response(status=204)


async def list_namespace(request: web.Request) -> web.Response:
    scope = namespace_scope(request, write=False)
    return await _page(request, scope.org_id, scope.namespace)


async def list_org(request: web.Request) -> web.Response:
    scope = org_scope(request)
    return await _page(request, scope.org_id, None)


async def _page(request: web.Request, org_id: UUID, owner_id: UUID | None) -> web.Response:
    query = parse_query(request, schemas.PageQuery)
    after = _cursor(query.cursor) if query.cursor else None
    async with db.tenant_tx(request.app[STORE_KEY].pool, org_id) as conn:
        rows = await queries.page(conn, org_id, owner_id, after, query.limit)
    last = rows[-1] if len(rows) == query.limit else None
    cursor = f"{last['created_at'].isoformat()}_{last['id']}" if last else None
    return json({"files": [view(r) for r in rows], "next_cursor": cursor})


def _cursor(raw: str) -> tuple[datetime, UUID]:
    moment, _, ident = raw.rpartition("_")
    try:
        return datetime.fromisoformat(moment), UUID(ident)
    except ValueError:
        raise Problem(422, "the cursor is not one this service gave out",
                      title="Invalid query") from None


async def purge_namespace(request: web.Request) -> web.Response:
    scope = namespace_scope(request, write=True)
    rows = await deletion.shred(request.app[STORE_KEY], scope.org_id, scope.namespace, None,
                                actor=scope.actor, ctx=ctx_of(request))
    return json({"shredded": len(rows)})


async def purge_org(request: web.Request) -> web.Response:
    scope = org_scope(request)
    rows = await deletion.shred(request.app[STORE_KEY], scope.org_id, None, None,
                                actor=scope.actor, ctx=ctx_of(request))
    return json({"shredded": len(rows)})


ORG = "/objects/{org_id}"
NAMESPACE = ORG + "/{user_id}"
OBJECT = NAMESPACE + "/{object_id}"
T: Tagged = {"tags": ("files",)}
# what handlers answer besides what their declarations imply (argus_shared.openapi)
UPLOAD: Answers = {
    201: Answer("Stored", headers={"Location": "the new file's path"}),
    400: "A malformed multipart body, or a file name that is not UTF-8",
    403: "Not your own namespace (an API key's is `<org>/<key id>`)",
    409: "The namespace was purged while the upload streamed in",
    413: "The file is larger than the limit",
    415: "A type (judged from the bytes) that is not accepted, or a multipart body that is not "
         "multipart/form-data",
    422: "A file name with control characters, or longer than 255 characters",
}
DOWNLOAD: Answers = {
    206: Answer("One byte range of the file", headers={"Content-Range": "the range sent"}),
    416: Answer("The range is malformed or outside the file",
               headers={"Content-Range": "`bytes */<size>`"}),
    500: Answer("The stored object failed its integrity check and is not served",
                problems=(INTEGRITY,)),
}
CURSOR: Answers = {422: "The cursor is not one this service gave out"}
RANGE = (Header("Range", "One `bytes=` range (several, or another unit: the whole file)"),
         Header("If-Range", "The file's ETag: the range only if the file is still that one"))
ROUTES: list[Route] = [
    Route("POST", NAMESPACE, upload, "Upload a file into your own namespace (raw body with "
          "?name=, or multipart/form-data with one part named 'file'); streamed, size-limited, "
          "type checked from the bytes, encrypted at rest", query=schemas.UploadQuery,
          response=schemas.FileView, status=201, roles=WRITE, scopes=WRITE_SCOPES,
          responses=UPLOAD, **T),
    Route("GET", NAMESPACE, list_namespace, "The files of one namespace (cursor pages)",
          query=schemas.PageQuery, response=schemas.FilePage, roles=READ, scopes=READ_SCOPES,
          responses=CURSOR, **T),
    Route("DELETE", NAMESPACE, purge_namespace,
          "Delete every file of one namespace (data keys destroyed first)",
          response=schemas.Purged, roles=WRITE, **T),
    Route("GET", OBJECT, download, "Download a file (streamed, Range requests, as an "
          "attachment)", roles=READ, scopes=READ_SCOPES, media_type="*/*", responses=DOWNLOAD,
          headers=RANGE, **T),
    Route("GET", OBJECT + "/meta", metadata, "A file's metadata", response=schemas.FileView,
          roles=READ, scopes=READ_SCOPES, **T),
    Route("DELETE", OBJECT, delete_object, "Delete a file (its data key is destroyed first)",
          status=204, roles=WRITE, scopes=WRITE_SCOPES,
          responses={403: "An API key deletes only in its own namespace"}, **T),
    Route("GET", ORG, list_org, "Every file of the org, for owners and admins (cursor pages)",
          query=schemas.PageQuery, response=schemas.FilePage, roles=ADMIN, scopes=READ_SCOPES,
          responses=CURSOR, **T),
    Route("DELETE", ORG, purge_org, "Delete every file of the org (owners)",
          response=schemas.Purged, roles=OWNER, **T),
]
