"""`argus events` and `argus scopes`: the catalogues of event types
(argus_shared.event_types) and of API-key scopes (argus_shared.scopes, with the routes each
opens) as the Markdown pages committed at docs/events.md and docs/scopes.md.

    argus events > docs/events.md
    argus scopes > docs/scopes.md
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from argus_shared.event_types import render_markdown


def add_parser(commands: Any) -> None:
    commands.add_parser("events", help="print the catalogue of event types (docs/events.md)")
    commands.add_parser("scopes", help="print the catalogue of API-key scopes (docs/scopes.md)")


def run(args: argparse.Namespace) -> None:
    if args.command == "scopes":
        from argus_shared.cli.documents import scopes_markdown  # imports every service

        sys.stdout.write(scopes_markdown())
    else:
        sys.stdout.write(render_markdown())
