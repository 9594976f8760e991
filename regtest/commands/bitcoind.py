"""I/O: ``chanlab bitcoind where`` and ``chanlab bitcoind install``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from regtest import provision
from regtest.bitcoind_binary import BitcoindBinary, ensure_bitcoind, locate_bitcoind


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("bitcoind", help="find or provision the bitcoind chanlab uses")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    where = actions.add_parser("where", help="say which bitcoind would be used, and why")
    where.set_defaults(handler=_where)
    install = actions.add_parser(
        "install", help="provision bitcoind into chanlab's cache unless a usable one is found"
    )
    install.add_argument(
        "--force", action="store_true", help="discard chanlab's cached bitcoind and provision again"
    )
    install.set_defaults(handler=_install)


def _describe(binary: BitcoindBinary) -> str:
    lines = [
        f"bitcoind:    {binary.bitcoind}",
        f"version:     {binary.version_line}",
        f"why:         {binary.reason}",
    ]
    if binary.bitcoin_cli is not None:
        lines.append(f"bitcoin-cli: {binary.bitcoin_cli}")
    return "\n".join(lines)


def _where(args: argparse.Namespace) -> int:
    located = locate_bitcoind()
    if located.binary is not None:
        print(_describe(located.binary))
        if located.notes:
            print(f"checked:     {'; '.join(located.notes)}")
        return 0
    print(f"no bitcoind yet ({'; '.join(located.notes)})")
    if located.cache_broken is not None:
        print(f"chanlab's cache {located.cache} is broken: {located.cache_broken}")
    why_not = provision.unsupported_reason()
    if why_not is None:
        print(
            f"`chanlab bitcoind install` (or `make demo`) will provision one into {located.cache}"
        )
    else:
        print(f"chanlab cannot provision one here: {why_not}")
        print("install Bitcoin Core >= 25 and set BITCOIND=/path/to/bitcoind, or use Docker")
    return 1


def _install(args: argparse.Namespace) -> int:
    if args.force:
        provision.wipe(provision.cache_dir())
    binary = ensure_bitcoind(progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(_describe(binary))
    return 0
