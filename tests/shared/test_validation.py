"""Malformed text, on the shared stack over a real socket: bodies that are not UTF-8 JSON text,
lone surrogates, byte order marks, NUL and other controls in the shared text types, query
strings, paths and headers. Every refusal is a 4xx problem document and nothing is written."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiohttp import web

from argus_shared.routing import Route
from argus_shared.validation import (
    Name,
    SingleLine,
    Strict,
    Text,
    TokenText,
    UrlText,
    UuidText,
    parse_json,
    parse_query,
)
from support.web import capture, serve

writes: list[object] = []


class NewNote(Strict):
    name: Name
    body: Text = ""


class NoteQuery(Strict):
    q: SingleLine | None = None


async def create_note(request: web.Request) -> web.Response:
    note = await parse_json(request, NewNote)
    writes.append(note)
    return web.json_response({"name": note.name, "body": note.body}, status=201)


async def find_notes(request: web.Request) -> web.Response:
    query = parse_query(request, NoteQuery)
    writes.append(query)
    return web.json_response({"q": query.q})


async def get_note(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["note_id"]})


ROUTES = [
    Route("POST", "/notes", create_note, "Create", auth="public", body=NewNote, status=201),
    Route("GET", "/notes", find_notes, "Find", auth="public", query=NoteQuery),
    Route("GET", "/notes/{note_id}", get_note, "Read", auth="public"),
]


@pytest.fixture(autouse=True)
def no_writes() -> None:
    writes.clear()


async def post(body: bytes) -> tuple[int, str, dict[str, Any], list[str]]:
    """Status, content type, problem body and any unhandled-error log lines."""
    async with capture("argus.errors") as logged, serve(ROUTES) as (base, http):
        async with http.post(f"{base}/notes", data=body,
                             headers={"Content-Type": "application/json"}) as r:
            answer = (r.status, r.content_type, await r.json(content_type=None))
    return (*answer, [rec.getMessage() for rec in logged.records])


@pytest.mark.parametrize(("body", "mentions"), [
    (b'{"name": "\xff"}', "not UTF-8 (invalid start byte at byte 10)"),
    (b'{"name": "\xc0\xaf"}', "not UTF-8"),  # overlong "/"
    (b'{"name": "\xe0\x80\xaf"}', "not UTF-8"),  # overlong "/", three bytes
    (b'{"name": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as UTF-8
    (b'{"name": "\xe2\x82"}', "not UTF-8"),  # truncated sequence
    (b'{"\xff": "x"}', "not UTF-8"),
    (b'{"name": "x", "body": "\xf8\x88\x80\x80\x80"}', "not UTF-8"),  # five-byte form
    (b'\xef\xbb\xbf{"name": "x"}', "UTF-8 byte order mark"),
    (b'\xff\xfe{\x00"\x00n\x00', "UTF-16 byte order mark"),
    (b'{"name": "\\ud800"}', "unpaired surrogate escape (\\ud800)"),
    (b'{"name": "\\uDBFFx"}', "unpaired surrogate escape (\\udbff)"),
    (b'{"name": "\\udc00"}', "unpaired surrogate escape (\\udc00)"),
    (b'{"name": "a\\ud800\\u0041"}', "unpaired surrogate escape (\\ud800)"),
])
async def test_bodies_that_are_not_utf8_json_text_are_400_saying_why(
    body: bytes, mentions: str
) -> None:
    status, content_type, problem, errors = await post(body)
    assert (status, content_type) == (400, "application/problem+json")
    assert mentions in problem["detail"], problem
    assert writes == [] and errors == []  # no traceback per request


async def test_a_surrogate_pair_and_plain_unicode_are_text() -> None:
    status, _, note, _ = await post('{"name": "\\ud83d\\ude00 café ✓", "body": "a\\\\ud800"}'
                                    .encode())
    assert status == 201 and note == {"name": "😀 café ✓", "body": "a\\ud800"}


@pytest.mark.parametrize("name", [
    "a\x00b", "tab\there", "line\nbreak", "trailing newline\n", "cr\r", "esc\x1b[31m", "del\x7f",
    "c1\x85", "sep\u2028", "para\u2029", "\u202eevil.exe", "iso\u2066late",
])
async def test_a_name_with_control_characters_is_422_naming_the_field(name: str) -> None:
    status, content_type, problem, errors = await post(msgspec.json.encode({"name": name}))
    assert (status, content_type) == (422, "application/problem+json")
    assert problem["detail"] == (
        "Expected one line of text without control characters, line separators or bidi "
        "overrides - at `$.name`")
    assert writes == [] and errors == []


@pytest.mark.parametrize("body", ["a\x00b", "bell\x07", "esc\x1b", "del\x7f", "c1\x9b"])
async def test_free_text_refuses_controls_other_than_tab_cr_lf(body: str) -> None:
    status, _, problem, _ = await post(msgspec.json.encode({"name": "n", "body": body}))
    assert status == 422 and "`$.body`" in problem["detail"]
    assert writes == []


async def test_free_text_keeps_tabs_line_breaks_and_bidi_marks() -> None:
    text = "first line\r\n\tindented\n\u05e9\u05dc\u05d5\u05dd \u2067abc\u2069 \u200f"
    status, _, note, _ = await post(msgspec.json.encode({"name": "n", "body": text}))
    assert status == 201 and note["body"] == text


def accepts(type_: Any, value: str) -> bool:
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError:
        return False
    return True


@pytest.mark.parametrize(("type_", "good", "bad"), [
    (UrlText, ["https://example.com/hook?x=1#y", "http://[::1]:8080/p%20q"],
     ["http://example.com/a b", "http://example.com/\r\nX: y", "http://example.com\n",
      "http://e\x00.com/", "http://e.com/\t", "http://e.com/\u3000"]),
    (TokenText, ["argus_rt_AbC-_09.~"], ["tok en", "tok\x00", "tøken", "tok\n"]),
    (UuidText, ["123e4567-e89b-12d3-a456-426614174000"],
     ["123e4567-e89b-12d3-a456-426614174000\n", "123e4567e89b12d3a456426614174000"]),
])
def test_the_shared_text_types(type_: Any, good: list[str], bad: list[str]) -> None:
    assert [v for v in good if not accepts(type_, v)] == []
    assert [v for v in bad if accepts(type_, v)] == []


async def get(path: str) -> tuple[int, str, Any]:
    async with serve(ROUTES) as (base, http):
        async with http.get(f"{base}{path}") as r:
            return r.status, r.content_type, await r.json(content_type=None)


@pytest.mark.parametrize(("query", "status"), [
    ("q=%00", 422), ("q=a%0Ab", 422), ("q=%1B", 422), ("q=%E2%80%AE", 422),
    ("q=%FF", 400), ("q=%C0%AF", 400), ("q=%ED%A0%80", 400), ("q=ok&x%FF=1", 400),
])
async def test_query_strings_with_controls_or_not_utf8_are_refused(query: str,
                                                                   status: int) -> None:
    got, content_type, problem = await get(f"/notes?{query}")
    assert (got, content_type, problem["status"]) == (status, "application/problem+json", status)
    assert writes == []


async def test_a_percent_encoded_utf8_query_is_text() -> None:
    assert await get("/notes?q=caf%C3%A9%20%E2%9C%93") == (200, "application/json",
                                                            {"q": "café ✓"})


@pytest.mark.parametrize("path", ["/notes/a%00b", "/notes/a%0Ab", "/notes/%FF",
                                  "/notes/%C0%AF", "/notes/%E2%80%AE"])
async def test_paths_with_controls_or_not_utf8_are_400(path: str) -> None:
    status, content_type, problem = await get(path)
    assert (status, content_type, problem["title"]) == (400, "application/problem+json",
                                                        "Malformed request")


async def raw_request(base: str, head: bytes) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b"Connection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_a_header_that_is_not_utf8_is_400() -> None:
    async with capture("argus.errors") as logged, serve(ROUTES) as (base, _):
        answer = await raw_request(base, b"GET /notes?q=x HTTP/1.1\r\nHost: a\r\n"
                                         b"User-Agent: caf\xe9\r\n")
        fine = await raw_request(base, b"GET /notes?q=x HTTP/1.1\r\nHost: a\r\n"
                                       b"User-Agent: caf\xc3\xa9\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in head
    assert msgspec.json.decode(body)["detail"] == "the User-Agent header is not UTF-8"
    assert fine.startswith(b"HTTP/1.1 200 ")
    assert len(writes) == 1 and logged.records == []
