"""The one registry of API-key scopes: every scope a route names is registered (start-up
refuses any other), every registered scope opens some route, the committed catalogue page is
the registry rendered, and README and every document point to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from argus_shared import scopes
from argus_shared.cli.documents import route_table, scopes_markdown
from argus_shared.routing import Route
from argus_shared.scoping import check_declarations
from argus_shared.settings import SERVICES
from argus_shared.web import build_app
from support.web import offline_settings

ROOT = Path(__file__).resolve().parents[2]


async def handler(request: web.Request) -> web.StreamResponse:
    raise AssertionError("never called")


def test_the_committed_catalogue_is_the_registry() -> None:
    assert (ROOT / "docs" / "scopes.md").read_text() == scopes_markdown(), (
        "run: argus scopes > docs/scopes.md")


def test_every_scope_a_route_names_is_registered_and_every_one_is_used() -> None:
    named = {scope for service in SERVICES for route in route_table(service)
             for scope in route.scopes}
    assert named == set(scopes.CATALOGUE)
    for service in SERVICES:
        scopes.check_declared(route_table(service))
        for route in route_table(service):
            assert all(scopes.CATALOGUE[s].service == service for s in route.scopes), route.path


def test_an_unregistered_scope_stops_start_up() -> None:
    route = Route("GET", "/things", handler, "x", scopes=("things:read",))
    with pytest.raises(ValueError, match="unknown API-key scopes declared: things:read"):
        check_declarations([route])
    with pytest.raises(ValueError, match="things:read"):
        build_app(offline_settings("files"), [route], title="x")


def test_readme_links_both_catalogues() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/scopes.md)" in readme and "(docs/events.md)" in readme
    assert "(events.md)" in (ROOT / "docs" / "scopes.md").read_text()
