"""SCIM 2.0 as the wire has it (RFC 7643 resources, RFC 7644 protocol): the media type, error
bodies (section 3.12), the one filter form clients use for look-ups (`attr eq "value"`),
paging, resource views and the discovery documents. No database and no HTTP server here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from argus_shared.handlers import iso
from argus_tenant_api.queries import Row

MEDIA_TYPE = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_COUNT = 200
# attributes the service owns in a user resource; everything else a client sends is kept
USER_OWN = frozenset({"schemas", "id", "meta", "groups", "active", "username", "externalid",
                      "password"})


class ScimError(Exception):
    """An RFC 7644 section 3.12 error: status, optional scimType and detail."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status),
                                "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def bad(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


def not_found() -> ScimError:
    return ScimError(404, "no such resource")


# filters ----------------------------------------------------------------------------------------

_EQ = re.compile(r'^\s*([A-Za-z][\w.:]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
# attribute (lower case) -> a fixed SQL condition on {v}; nothing from the request reaches SQL
USER_FILTERS = {"username": "lower(user_name) = lower({v})", "externalid": "external_id = {v}",
                "id": "id::text = {v}", "emails.value": "email = lower({v})"}
GROUP_FILTERS = {"displayname": "lower(display_name) = lower({v})",
                 "externalid": "external_id = {v}", "id": "id::text = {v}"}


def parse_filter(raw: str | None, allowed: dict[str, str]) -> tuple[str, str | None]:
    """(SQL condition, value) for `attr eq "value"`, ("", None) for no filter; else 400."""
    if raw is None or not raw.strip():
        return "", None
    found = _EQ.match(raw)
    if found is None:
        raise bad('only filters of the form attribute eq "value" are supported', "invalidFilter")
    attribute = found.group(1).lower().removeprefix(USER.lower() + ":")
    condition = allowed.get(attribute)
    if condition is None:
        raise bad(f"filtering on {found.group(1)} is not supported", "invalidFilter")
    return condition, re.sub(r"\\(.)", r"\1", found.group(2))


@dataclass(frozen=True)
class Page:
    start_index: int  # 1-based
    count: int

    @property
    def offset(self) -> int:
        return self.start_index - 1


def _int(raw: str | None, default: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad(f"{name} must be an integer") from None


def page_of(query: dict[str, str]) -> Page:
    """startIndex below 1 is 1, count below 0 is 0 and above the maximum the maximum (7644
    section 3.4.2.4)."""
    start = max(1, _int(query.get("startIndex"), 1, "startIndex"))
    count = min(MAX_COUNT, max(0, _int(query.get("count"), 100, "count")))
    return Page(start, count)


def list_response(total: int, page: Page, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [LIST], "totalResults": total, "itemsPerPage": len(resources),
            "startIndex": page.start_index, "Resources": resources}


# views ------------------------------------------------------------------------------------------

def _meta(row: Row, kind: str, base: str) -> dict[str, Any]:
    return {"resourceType": kind, "created": iso(row["created_at"]),
            "lastModified": iso(row["updated_at"]), "version": f'W/"{row["version"]}"',
            "location": f"{base}/{kind}s/{row['id']}"}


def user_view(row: Row, groups: list[Row], base: str) -> dict[str, Any]:
    resource = dict(row["resource"])
    schemas = [USER] + ([ENTERPRISE] if ENTERPRISE in resource else [])
    view: dict[str, Any] = {"schemas": schemas, "id": str(row["id"]),
                            "userName": row["user_name"], **resource, "active": row["active"],
                            "groups": [{"value": str(g["id"]), "display": g["display_name"],
                                        "$ref": f"{base}/Groups/{g['id']}"} for g in groups],
                            "meta": _meta(row, "User", base)}
    if row["external_id"] is not None:
        view["externalId"] = row["external_id"]
    return view


def group_view(row: Row, members: list[Row], base: str) -> dict[str, Any]:
    view: dict[str, Any] = {"schemas": [GROUP], "id": str(row["id"]),
                            "displayName": row["display_name"],
                            "members": [{"value": str(m["id"]), "display": m["user_name"],
                                         "$ref": f"{base}/Users/{m['id']}"} for m in members],
                            "meta": _meta(row, "Group", base)}
    if row["external_id"] is not None:
        view["externalId"] = row["external_id"]
    return view


# discovery (RFC 7643 sections 5-7) --------------------------------------------------------------

def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": True}, "bulk": {"supported": False, "maxOperations": 0,
                                               "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False}, "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
            "description": "A per-org SCIM token (POST /orgs/{org_id}/scim-tokens)"}],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": f"{base}/ServiceProviderConfig"},
    }


def _attribute(name: str, kind: str = "string", **more: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "multiValued": False, "required": False,
            "caseExact": False, "mutability": "readWrite", "returned": "default",
            "uniqueness": "none", **more}


def _multi(name: str, *sub: dict[str, Any], **more: Any) -> dict[str, Any]:
    return _attribute(name, "complex", multiValued=True, subAttributes=list(sub), **more)


USER_SCHEMA = {
    "id": USER, "name": "User", "description": "User Account",
    "attributes": [
        _attribute("userName", required=True, uniqueness="server"),
        _attribute("name", "complex", subAttributes=[
            _attribute(n) for n in ("formatted", "familyName", "givenName", "middleName")]),
        _attribute("displayName"), _attribute("active", "boolean"),
        _multi("emails", _attribute("value"), _attribute("type"),
               _attribute("primary", "boolean")),
        _multi("groups", _attribute("value", mutability="readOnly"),
               _attribute("display", mutability="readOnly"), mutability="readOnly"),
    ],
}
GROUP_SCHEMA = {
    "id": GROUP, "name": "Group", "description": "Group (its displayName can give a role)",
    "attributes": [
        _attribute("displayName", required=True, uniqueness="server"),
        _multi("members", _attribute("value", mutability="immutable"),
               _attribute("display", mutability="readOnly")),
    ],
}


def schemas(base: str) -> list[dict[str, Any]]:
    return [{**schema, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
             "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{schema['id']}"}}
            for schema in (USER_SCHEMA, GROUP_SCHEMA)]


def resource_types(base: str) -> list[dict[str, Any]]:
    def one(name: str, schema: str) -> dict[str, Any]:
        return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": name, "name": name, "endpoint": f"/{name}s", "schema": schema,
                "meta": {"resourceType": "ResourceType", "location":
                         f"{base}/ResourceTypes/{name}"}}

    return [one("User", USER), one("Group", GROUP)]
