"""Request and response types of the files service (strict: unknown fields are refused).
Uploads are raw bodies or multipart/form-data, so they have no JSON body type."""

from __future__ import annotations

from typing import Annotated

import msgspec

from argus_shared.validation import SingleLine, Strict, TokenText

Name = Annotated[SingleLine, msgspec.Meta(min_length=1, max_length=255)]


class UploadQuery(Strict):
    name: Name | None = None


class PageQuery(Strict):
    cursor: Annotated[TokenText, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


class FileView(msgspec.Struct):
    id: str
    org_id: str
    owner_id: str
    path: str
    name: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    created_at: str


class FilePage(msgspec.Struct):
    files: list[FileView]
    next_cursor: str | None


class Purged(msgspec.Struct):
    shredded: int
