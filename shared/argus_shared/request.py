"""Typed keys for what the shared middlewares store on a request."""

from __future__ import annotations

from aiohttp import web

from argus_shared import xut

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
XUT_CLAIMS = web.RequestKey("xut_claims", xut.Claims)
