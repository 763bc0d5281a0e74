"""`argus gateway render compose|k8s`: the nginx configuration of a deployment, rendered from
the gateway table (argus_shared.gateway_rules) that `argus up`'s gateway runs on.

    argus gateway render compose > deploy/nginx/argus.conf
    argus gateway render k8s > deploy/k8s/base/gateway.nginx.conf
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from argus_shared.gateway_nginx import FORMS, render


def add_parser(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="the gateway's nginx configurations")
    actions = gateway.add_subparsers(dest="action", required=True)
    rendering = actions.add_parser(
        "render", help="print the nginx configuration of a deployment",
        description="; ".join(f"{name}: {form.path}" for name, form in FORMS.items()),
    )
    rendering.add_argument("form", choices=sorted(FORMS))


def run(args: argparse.Namespace) -> None:
    sys.stdout.write(render(args.form))
