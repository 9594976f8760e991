"""I/O: the ``chanlab`` command line: argument parsing and error reporting, nothing else.

Subcommands live in modules listed in ``regtest.commands.COMMANDS``; each has a
``register(subparsers)`` that adds its parser and sets ``handler`` (``(argparse.Namespace) -> int``)
as a default. Adding a command is adding a module name there. Only the module of the command
being run is imported (an idle node daemon stays small).

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
from regtest.commands import COMMANDS
from regtest.errors import SetupError


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser, with every registered subcommand (``only``: just that one)."""
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
    for command, module in COMMANDS.items():
        if only is None or command == only:
            importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chanlab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bitcoin.SelectParams("regtest")
    first = argv[0] if argv and not argv[0].startswith("-") else None
    client_name = first if first is not None and first not in COMMANDS else None
    args = None if client_name else build_parser(only=first).parse_args(argv)
    try:
        if client_name is not None:
            from regtest.client import run_client  # the client of a running node
            return run_client(client_name, argv[1:])
        assert args is not None
        args.command_line = argv   # what `--detach` re-runs in the background
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
