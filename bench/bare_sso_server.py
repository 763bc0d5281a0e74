"""The baseline of bench/sso_signin.py: a bare authlib relying party in aiohttp, nothing else:
`/start` redirects to the provider (state, nonce and PKCE verifier kept in memory),
`/callback` exchanges the code and verifies the ID token with the same authlib-based client
auth uses (argus_auth.oidc), and answers 200. No cookie, database, account or session.

    python bench/bare_sso_server.py --port PORT --issuer URL --client-id ID --secret S \
        --redirect-uri URI
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from argus_auth.oidc import OidcClient
from argus_auth.sso_providers import SsoConfig, make_provider

CLIENT = web.AppKey("client", OidcClient)
PENDING = web.AppKey("pending", dict)
REDIRECT_URI = web.AppKey("redirect_uri", str)


async def start(request: web.Request) -> web.Response:
    client = request.app[CLIENT]
    sent = await client.authorization(request.app[REDIRECT_URI])
    request.app[PENDING][sent.state] = sent
    raise web.HTTPFound(sent.url)


async def callback(request: web.Request) -> web.Response:
    sent = request.app[PENDING].pop(request.query.get("state", ""), None)
    if sent is None:
        raise web.HTTPBadRequest(text="unknown state")
    client = request.app[CLIENT]
    tokens = await client.exchange(request.query["code"], request.app[REDIRECT_URI],
                                   sent.code_verifier)
    verified = await client.verify(tokens, sent.nonce)
    return web.json_response({"sub": verified.subject})


def make_app(args: Any) -> web.Application:
    app = web.Application()
    app[REDIRECT_URI] = args.redirect_uri
    app[PENDING] = {}

    async def http_context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            provider = make_provider("bare", "oidc", client_id=args.client_id,
                                     client_secret=args.secret, issuer=args.issuer)
            app[CLIENT] = OidcClient(provider, SsoConfig(), http)
            yield

    app.cleanup_ctx.append(http_context)
    app.router.add_get("/start", start)
    app.router.add_get("/callback", callback)
    app.router.add_get("/healthz", healthz)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--issuer", "--client-id", "--secret", "--redirect-uri"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parsed = parser.parse_args()
    web.run_app(make_app(parsed), host="127.0.0.1", port=parsed.port, print=None,
                access_log=None)
