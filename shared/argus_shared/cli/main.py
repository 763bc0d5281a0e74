"""The `argus` command: run the suite on this machine and look after it.

Every failure is one line on stderr and a non-zero exit (2: bad configuration or usage,
1: something it depends on is unavailable), never a traceback. `test` and `lint` hand their
arguments to pytest and ruff as they are (`./argus test` and `./argus lint` do the same).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from argus_shared.backup_seal import BackupSealError
from argus_shared.cli import (
    audit,
    backup,
    bench,
    demo,
    drill,
    events,
    gateway,
    prune,
    restore,
    seal,
    status,
    up,
)
from argus_shared.cli.infra import Infrastructure, migrate_all
from argus_shared.devsecrets import KEYRINGS, ensure_dev_secrets, rotate_keyring
from argus_shared.embedded import EmbeddedError
from argus_shared.migrate import MigrationError
from argus_shared.runner import StartupError
from argus_shared.settings import ConfigError, Env

PASSED_ON = ("test", "lint")  # their arguments go to pytest and ruff untouched


class _Formatter(argparse.HelpFormatter):
    """The commands as a list, without argparse's line of their metavar above it."""

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            return text.split("\n", 1)[1]
        return text


def _parser() -> argparse.ArgumentParser:
    env = Env()
    parser = argparse.ArgumentParser(
        prog="argus", description=__doc__.splitlines()[0], formatter_class=_Formatter,
        epilog="`argus help <command>` (or `argus <command> --help`) describes one command.",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(env.str("ARGUS_DATA_DIR", ".argus") or ".argus"),
        help="where embedded servers, dev secrets and logs live (ARGUS_DATA_DIR; .argus)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                                     title="commands")
    run = commands.add_parser("up", help="run the whole suite on this machine")
    run.add_argument("--port", type=int, default=env.int("ARGUS_GATEWAY_PORT", 8080, 1, 65535),
                     help="gateway port (ARGUS_GATEWAY_PORT; 8080)")
    run.add_argument("--service-port-base", type=int,
                     default=env.int("ARGUS_SERVICE_PORT_BASE", 8101, 1, 65530),
                     help="first of five service ports (ARGUS_SERVICE_PORT_BASE; 8101)")
    _infra_ports(run, env)
    run.add_argument("--replicas", type=int, default=env.int("ARGUS_REPLICAS", 1, 1, 8),
                     choices=range(1, 9), metavar="N",
                     help="processes of every service, taken in turn by the gateway "
                     "(ARGUS_REPLICAS; 1)")
    run.add_argument("--archive", type=Path, default=env.str("ARGUS_WAL_ARCHIVE") or None,
                     help="archive WAL continuously into DIR/wal, sealed (ARGUS_WAL_ARCHIVE)")
    mig = commands.add_parser("migrate", help="create roles and schemas, apply migrations")
    _infra_ports(mig, env)
    keys = commands.add_parser("keys", help="development secrets under <data-dir>/secrets")
    key_commands = keys.add_subparsers(dest="action", required=True)
    key_commands.add_parser("init", help="create any missing secret (never overwrites)")
    key_commands.add_parser("list", help="list key rings and their key ids (never the keys)")
    rotate = key_commands.add_parser("rotate", help="put a new current key first in a key ring")
    rotate.add_argument("ring", choices=KEYRINGS)
    audit.add_parser(commands)
    gateway.add_parser(commands)
    events.add_parser(commands)
    status.add_parser(commands)
    backup.add_parser(commands)
    backups = restore.add_parsers(commands)
    prune.add_parser(backups)
    seal.add_parser(backups)
    drill.add_parser(commands)
    bench.add_parser(commands)
    demo.add_parser(commands)
    commands.add_parser("test", help="run the tests (pytest, given its arguments)")
    commands.add_parser("lint", help="check the code: ruff check, then mypy (given arguments: "
                        "ruff check with them)")
    helping = commands.add_parser("help", help="describe every command, or one")
    helping.add_argument("topic", nargs="?", metavar="command")
    return parser


def _help(parser: argparse.ArgumentParser, topic: str | None) -> None:
    if topic is None:
        parser.print_help()
        return
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = commands.choices.get(topic)
    if chosen is None:
        parser.error(f"no command {topic!r} (choose from {', '.join(commands.choices)})")
    chosen.print_help()


def _passed_on(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """`test` or `lint` and what follows it, untouched, after any global --data-dir."""
    index = 0
    while index < len(argv):
        if argv[index] == "--data-dir":
            index += 2
        elif argv[index].startswith("--data-dir="):
            index += 1
        else:
            break
    if index < len(argv) and argv[index] in PASSED_ON:
        return argv[index], list(argv[index + 1:])
    return None


def _run_tool(command: str, args: list[str]) -> None:
    """Replace this process with pytest, or ruff and then mypy, from this environment."""
    if command == "test":
        argv = [sys.executable, "-m", "pytest", *args]
    else:
        ruff = [_beside_python("ruff"), "check", *args]
        if args:  # ruff with what was given
            argv = ruff
        else:  # the whole check: ruff, then the type checker (pyproject.toml's configuration)
            sys.stdout.flush()
            if subprocess.run(ruff, check=False).returncode != 0:
                raise SystemExit(1)
            argv = [_beside_python("mypy")]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 - a fixed program of this environment, no shell


def _beside_python(tool: str) -> str:
    path = Path(sys.executable).parent / tool
    if not path.exists():
        _fail(f"{tool} is not installed beside {sys.executable}; run ./argus lint", 1)
    return str(path)


def _infra_ports(parser: argparse.ArgumentParser, env: Env) -> None:
    parser.add_argument("--pg-port", type=int, default=env.int("ARGUS_PG_PORT", 55432, 1, 65535),
                        help="embedded PostgreSQL port (ARGUS_PG_PORT; 55432)")
    parser.add_argument("--nats-port", type=int,
                        default=env.int("ARGUS_NATS_PORT", 54222, 1, 65535),
                        help="embedded NATS port (ARGUS_NATS_PORT; 54222)")


def _keys(args: argparse.Namespace) -> None:
    store = ensure_dev_secrets(args.data_dir / "secrets")
    if args.action == "rotate":
        kid = rotate_keyring(store, args.ring)
        print(f"{args.ring}: new current key {kid}; restart the services to use it")
    elif args.action == "list":
        for ring in KEYRINGS:
            kids = list(store.keyring(ring).keys)
            also = f", also {', '.join(kids[1:])}" if kids[1:] else ""
            print(f"{ring}: current {kids[0]}{also}")
    else:
        print(f"secrets in {store.directory}")


def _migrate(args: argparse.Namespace) -> None:
    infra = Infrastructure.from_env(args.data_dir, args.pg_port, args.nats_port, need_nats=False)
    try:
        applied = asyncio.run(migrate_all(infra))
    finally:
        infra.stop()
    for service, names in applied.items():
        print(f"{service}: " + (", ".join(names) if names else "up to date"))


def main(argv: Sequence[str] | None = None) -> None:
    given = list(sys.argv[1:] if argv is None else argv)
    passed_on = _passed_on(given)
    if passed_on is not None:
        _run_tool(*passed_on)
    parser = _parser()
    args = parser.parse_args(given)
    try:
        if args.command == "help":
            _help(parser, args.topic)
        elif args.command == "status":
            status.run(args)
        elif args.command == "keys":
            _keys(args)
        elif args.command == "migrate":
            _migrate(args)
        elif args.command == "audit":
            audit.run(args)
        elif args.command == "gateway":
            gateway.run(args)
        elif args.command in ("events", "scopes"):
            events.run(args)
        elif args.command == "backup":
            backup.take(args)
        elif args.command == "restore":
            restore.restore(args)
        elif args.command == "drill":
            drill.drill(args)
        elif args.command == "bench":
            bench.run(args)
        elif args.command == "demo":
            demo.run(args)
        elif args.command == "backups" and args.action == "prune":
            prune.prune(args)
        elif args.command == "backups" and args.action == "seal-wal":
            seal.run(args)
        elif args.command == "backups":
            restore.list_backups(args)
        else:
            up.run(args)
    except audit.Failed as exc:
        _fail(str(exc), exc.code)
    except (status.Unavailable, backup.BackupFailed, restore.RestoreFailed,
            BackupSealError, drill.DrillFailed, bench.BenchFailed,
            demo.DemoFailed) as exc:
        _fail(str(exc), 1)
    except (ConfigError, EmbeddedError) as exc:
        _fail(str(exc), 2)
    except (StartupError, MigrationError) as exc:
        _fail(str(exc), 1)
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(f"{type(exc).__name__}: {exc}".splitlines()[0], 1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _fail(message: str, code: int) -> None:
    print(f"argus: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
