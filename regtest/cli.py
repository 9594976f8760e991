"""I/O: the ``chanlab`` command line: argument parsing and error reporting, nothing else.

Subcommands live in modules listed in ``regtest.commands.MODULES``; each has a
``register(subparsers)`` that adds its parser and sets ``handler`` (``(argparse.Namespace) -> int``)
as a default. Adding a command is adding a module name there.

Exit codes: 0 done, 1 failed, 2 the machine or the command line needs fixing (the message says
how), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import bitcoin

from channel.errors import ChanlabError
from regtest.client import run_client
from regtest.commands import MODULES
from regtest.errors import SetupError


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="chanlab",
        description="Lightning-style payment channels on Bitcoin regtest.",
        epilog="Drive a running node with: chanlab NAME COMMAND (e.g. chanlab alice channels; "
               "chanlab alice --help lists the commands).",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "docker"),
        default="local",
        help="run bitcoind as a local process (default) or in Docker",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chanlab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bitcoin.SelectParams("regtest")
    parser = build_parser()
    known: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            known.update(action.choices)
    client_name = argv[0] if argv and not argv[0].startswith("-") and argv[0] not in known \
        else None
    args = None if client_name else parser.parse_args(argv)
    try:
        if client_name is not None:
            return run_client(client_name, argv[1:])
        assert args is not None
        code: int = args.handler(args)
    except SetupError as exc:
        print(f"chanlab: {exc}", file=sys.stderr)
        return 2
    except ChanlabError as exc:
        print(f"chanlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chanlab: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
