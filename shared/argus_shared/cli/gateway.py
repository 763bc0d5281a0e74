"""`argus gateway render compose|k8s|openapi`: the nginx configuration of a deployment,
rendered from the gateway table (argus_shared.gateway_rules) that `argus up`'s gateway runs on,
and the gateway's own `/openapi.json` (every service's document in one, which nginx serves as
a file), rendered from the route tables.

    argus gateway render compose > deploy/nginx/argus.conf
    argus gateway render k8s > deploy/k8s/base/gateway.nginx.conf
    argus gateway render openapi > deploy/openapi.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from argus_shared.gateway_nginx import FORMS, render
from argus_shared.gateway_rules import OPENAPI_FILE

OPENAPI = "openapi"


def add_parser(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="the gateway's nginx configurations")
    actions = gateway.add_subparsers(dest="action", required=True)
    rendering = actions.add_parser(
        "render", help="print the nginx configuration of a deployment, or the gateway's "
                       "OpenAPI document",
        description="; ".join([*(f"{name}: {form.path}" for name, form in FORMS.items()),
                               f"{OPENAPI}: {OPENAPI_FILE}"]),
    )
    rendering.add_argument("form", choices=sorted([*FORMS, OPENAPI]))


def run(args: argparse.Namespace) -> None:
    if args.form == OPENAPI:
        from argus_shared.cli.documents import gateway_document  # imports every service
        from argus_shared.openapi import dumps

        sys.stdout.write(dumps(gateway_document()))
    else:
        sys.stdout.write(render(args.form))
