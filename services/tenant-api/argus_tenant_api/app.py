"""The tenant-api service's application: wiring only."""

from __future__ import annotations

from aiohttp import web

from argus_shared.runner import service_app
from argus_shared.settings import Settings
from argus_tenant_api.routes import ROUTES

SERVICE = "tenant-api"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, ROUTES, title="Argus tenant-api")
