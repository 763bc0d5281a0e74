"""Strict request parsing: bodies read in chunks up to a limit, decoded into msgspec types.

Types are declared with `forbid_unknown_fields=True` (use `Strict` as the base), so an unknown
field, a wrong type or a value outside its `Meta` constraints is a 422 naming the field, and a
body past the limit is a 413 as soon as the limit is crossed: it is never buffered whole.

Text that cannot be text is a 400 before any type is looked at: a body that is not UTF-8
(invalid or overlong sequences, encoded surrogates), one that starts with a byte order mark, a
JSON string with an unpaired surrogate escape (`"\\ud800"`), or a query string whose
percent-encoding is not UTF-8. Text that decodes but has characters its field has no use for
(NUL and other controls) is a 422 from the field's type: declare string fields with the types
below (`SingleLine`, `Text`, `Name`, `UrlText`, `TokenText`, `UuidText`; emails are
`argus_shared.emails.EmailText`), never as a bare `str`.
"""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from aiohttp import web

from argus_shared.errors import Problem

# Python's `$` also matches before a final "\n", so every pattern ends with `$(?!\n)`: the
# string's true end for Python, and plain `$` for ECMA-262 readers of the OpenAPI document.
END = r"$(?!\n)"
# C0 controls (NUL, TAB, LF, CR, ESC...), DEL and C1 controls; lone surrogates (which no UTF-8
# text can hold: PostgreSQL and every encoder refuse them)
_CONTROLS = r"\x00-\x1f\x7f-\x9f\ud800-\udfff"
# ...and in one line of text also the Unicode line and paragraph separators and the bidi
# embeddings, overrides and isolates (they make a name read as something it is not)
_LAYOUT = r"\u2028\u2029\u202a-\u202e\u2066-\u2069"
SINGLE_LINE_PATTERN = rf"^[^{_CONTROLS}{_LAYOUT}]*{END}"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]*" + END
URL_PATTERN = rf"^[^\s{_CONTROLS}{_LAYOUT}]*{END}"
TOKEN_PATTERN = rf"^[\x21-\x7e]*{END}"
UUID_PATTERN = (r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                + END)
NOT_SINGLE_LINE = re.compile(rf"[{_CONTROLS}{_LAYOUT}]")
NOT_URL = re.compile(rf"[\s{_CONTROLS}{_LAYOUT}]")

SingleLine = Annotated[str, msgspec.Meta(
    pattern=SINGLE_LINE_PATTERN,
    description="one line of text: no control characters (NUL, tab, CR, LF, DEL, C1), line "
                "or paragraph separators, or bidi embeddings, overrides and isolates")]
"""One line of text (names, slugs, query filters): refuses every C0 control including TAB, CR
and LF, DEL, the C1 controls, U+2028/U+2029 and the bidi embedding, override and isolate
characters (U+202A-U+202E, U+2066-U+2069), which can make a name display as another. Other
Unicode is welcome."""

Text = Annotated[str, msgspec.Meta(
    pattern=TEXT_PATTERN,
    description="free text: tab, line feed and carriage return are allowed, no other control "
                "character (NUL, ESC, DEL, C1)")]
"""Free text (descriptions): may span lines and be indented, so TAB, LF and CR are kept; every
other C0 control (NUL, ESC, ...), DEL and the C1 controls are refused. Bidi formatting
characters are kept, as right-to-left prose legitimately uses them."""

Name = Annotated[SingleLine, msgspec.Meta(min_length=1, max_length=100)]
"""A display name: `SingleLine`, 1 to 100 characters."""

UrlText = Annotated[str, msgspec.Meta(
    pattern=URL_PATTERN, description="a URL: no whitespace or control characters")]
"""A URL as text: no whitespace at all (spaces are percent-encoded in a URL; CR and LF would
split a request line) and nothing `SingleLine` refuses. Whether it parses is the caller's check."""

TokenText = Annotated[str, msgspec.Meta(
    pattern=TOKEN_PATTERN, description="an opaque token: visible ASCII characters only")]
"""An opaque value this service handed out (tokens, cursors): visible ASCII only."""

UuidText = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN,
                                       description="a UUID in its canonical form")]

EXPLAINED = {
    SINGLE_LINE_PATTERN: "one line of text without control characters, line separators or "
                         "bidi overrides",
    TEXT_PATTERN: "text without control characters other than tab, CR and LF",
    URL_PATTERN: "a URL without whitespace or control characters",
    TOKEN_PATTERN: "visible ASCII characters only",
    UUID_PATTERN: "a UUID",
}

T = TypeVar("T")
JSON_TYPES = ("application/json", "application/problem+json")
CHUNK = 64 * 1024
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
BOMS = ((codecs.BOM_UTF8, "a UTF-8 byte order mark"),
        (codecs.BOM_UTF32_LE, "a UTF-32 byte order mark"),
        (codecs.BOM_UTF32_BE, "a UTF-32 byte order mark"),
        (codecs.BOM_UTF16_LE, "a UTF-16 byte order mark"),
        (codecs.BOM_UTF16_BE, "a UTF-16 byte order mark"))
# a \uXXXX escape preceded by an even number of backslashes (so it is an escape, not text)
_ESCAPE = r"(?<!\\)(?:\\\\)*\\u"
_LONE_SURROGATE = re.compile(
    rf"{_ESCAPE}([dD][89abAB][0-9a-fA-F]{{2}})(?!\\u[dD][c-fC-F])"
    rf"|(?<!\\u[dD][89abAB][0-9a-fA-F]{{2}}){_ESCAPE}([dD][c-fC-F][0-9a-fA-F]{{2}})".encode())


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for request bodies: unknown fields are an error."""


def too_large(limit: int) -> Problem:
    return Problem(413, f"the request body is larger than {limit} bytes", limit=limit)


def undecodable(text: str) -> bool:
    """Whether `text` holds lone surrogates: bytes that were not UTF-8, kept by a
    surrogateescape decode (aiohttp decodes headers, multipart ones too, that way)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unreadable_request(request: web.Request) -> Problem | None:
    """A 400 for a request whose headers are not UTF-8 (aiohttp would hand them on with lone
    surrogates, which no database or encoder takes) or whose path percent-decodes to something
    that is not UTF-8 or has control characters; None for every other request."""
    headers = request.headers
    if not all(map(str.isascii, headers.values())):
        for name, value in headers.items():
            if undecodable(value):
                return Problem(400, f"the {name} header is not UTF-8", title="Malformed request")
    path = request.rel_url.raw_path
    if "%" in path:
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return Problem(400, "the path is not UTF-8 once percent-decoded",
                           title="Malformed request")
        if NOT_SINGLE_LINE.search(decoded):
            return Problem(400, "the path has control characters", title="Malformed request")
    return None


def malformed(detail: str) -> Problem:
    return Problem(400, detail, title="Malformed request body")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 the moment it passes `limit` (declared or streamed)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def decode(raw: bytes, type_: type[T]) -> T:
    """`raw` JSON as `type_`: 400 if it is not UTF-8 JSON text, 422 if it does not fit."""
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise Problem(422, explained(str(exc)), title="Invalid request body") from None
    except msgspec.DecodeError as exc:
        raise malformed(not_json_text(raw) or f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:  # msgspec decodes strings with Python's codec
        raise malformed(not_json_text(raw) or "the body is not UTF-8") from None


def not_json_text(raw: bytes) -> str | None:
    """Why `raw` cannot be JSON text at all (RFC 8259 section 8), or None."""
    for bom, what in BOMS:
        if raw.startswith(bom):
            return f"the body starts with {what}: send UTF-8 JSON without one"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
    lone = _LONE_SURROGATE.search(raw)
    if lone:
        escape = (lone.group(1) or lone.group(2)).decode().lower()
        return (f"a string has an unpaired surrogate escape (\\u{escape}): JSON text must "
                "encode each character outside the BMP as a surrogate pair")
    return None


def explained(message: str) -> str:
    """msgspec's message with our patterns named by what they mean."""
    for pattern, meaning in EXPLAINED.items():
        message = message.replace(f"`str` matching regex {pattern!r}", f"{meaning}")
    return message


async def parse_json(request: web.Request, type_: type[T], limit: int | None = None) -> T:
    if request.content_type not in JSON_TYPES:
        raise Problem(415, "send the body as application/json")
    raw = await read_body(request, limit or request.app[MAX_BODY_KEY])
    if not raw:
        raise Problem(400, "a JSON body is required", title="Malformed request body")
    return decode(raw, type_)


def parse_query(request: web.Request, type_: type[T]) -> T:
    """Query parameters into a Struct (strings converted to the declared types); a query whose
    percent-encoding is not UTF-8 is a 400 (it would otherwise arrive as U+FFFD)."""
    check_utf8_query(request.rel_url.raw_query_string)
    params: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise Problem(422, f"query parameter '{key}' is repeated", title="Invalid query")
        params[key] = values[0]
    try:
        return msgspec.convert(params, type=type_, strict=False)
    except msgspec.ValidationError as exc:
        raise Problem(422, explained(str(exc)), title="Invalid query") from None


def check_utf8_query(raw: str) -> None:
    # splitting UTF-8 at ASCII '&' and '=' keeps it valid, so checking the whole string will do
    if "%" not in raw:
        return
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the query string is not UTF-8 once percent-decoded: {exc.reason}",
                      title="Invalid query") from None
