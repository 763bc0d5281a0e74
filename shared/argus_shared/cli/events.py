"""`argus events`: the catalogue of event types (argus_shared.event_types) as the Markdown page
committed at docs/events.md.

    argus events > docs/events.md
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from argus_shared.event_types import render_markdown


def add_parser(commands: Any) -> None:
    commands.add_parser("events", help="print the catalogue of event types (docs/events.md)")


def run(args: argparse.Namespace) -> None:
    sys.stdout.write(render_markdown())
