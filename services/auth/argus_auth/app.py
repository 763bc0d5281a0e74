"""The auth service's application: wiring only."""

from __future__ import annotations

from aiohttp import web

from argus_auth.routes import ROUTES
from argus_shared.runner import service_app
from argus_shared.settings import Settings

SERVICE = "auth"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, ROUTES, title="Argus auth")
