"""`argus audit verify FILE.ndjson`: recompute the hash chains of an audit export
(`GET /orgs/{org}/audit/export.ndjson`) from that file alone (docs/audit-chain.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Failed(Exception):
    """One line for stderr, and the exit code: 1 a chain that does not hold (or the audit
    package missing), 2 input that cannot be read or is not an export."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit trail")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="verify the hash chains of an NDJSON export")
    verify.add_argument("file",
                        help="the export (GET /orgs/{org}/audit/export.ndjson); - for stdin")
    verify.add_argument("--checkpoint-key", metavar="HEX",
                        help="the Ed25519 public key of GET /checkpoint-key, to check the"
                             " signature of retention checkpoints")


def run(args: argparse.Namespace) -> None:
    try:
        from argus_audit import export
    except ImportError:
        raise Failed("argus audit needs the argus-audit package", 1) from None
    key = _public_key(args.checkpoint_key)
    try:
        verified = export.verify_lines(_lines(args.file), key)
    except export.Broken as exc:
        raise Failed(f"{args.file}: {exc}", 1) from None
    except export.Malformed as exc:
        raise Failed(f"{args.file}: {exc}", 2) from None
    print(verified.summary())


def _public_key(text: str | None) -> Any:
    if text is None:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise Failed("--checkpoint-key: not an Ed25519 public key in hex (64 digits)", 2) \
            from None


def _lines(name: str) -> Iterator[bytes]:
    try:
        with sys.stdin.buffer if name == "-" else Path(name).open("rb") as file:
            yield from file
    except OSError as exc:
        raise Failed(f"{name}: cannot be read: {exc.strerror or exc}", 2) from None
