"""I/O: ``chanlab NAME COMMAND ...``: drive a running node through its control socket.

The commands, their arguments and help come from :data:`channel.control_api.NODE_COMMANDS`.

Every command prints a short human summary, or the node's JSON answer with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from channel.control_api import NODE_COMMANDS, Arg, ArgType, Resolve
from regtest.control import call_node, node_address, tower_address

__all__ = ["run_client"]


def _parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``chanlab NAME ...``, built from :data:`NODE_COMMANDS`."""
    parser = argparse.ArgumentParser(prog=f"chanlab {name}",
                                     description=f"commands for the running node {name!r}")
    parser.add_argument("--json", action="store_true", help="print the node's JSON answer")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    for command in NODE_COMMANDS.values():
        if not command.cli:
            continue
        p = sub.add_parser(command.name, help=command.help)
        for arg in command.args:
            if arg.cli_hidden:
                continue
            label = arg.cli_name or arg.name
            kind = _TYPES.get(arg.type, str)
            if arg.type is ArgType.BOOL:
                flag = label if label.startswith("--") else f"--{label.replace('_', '-')}"
                p.add_argument(flag, dest=arg.name, help=arg.help or None,
                               action="store_false" if arg.cli_invert else "store_true")
            elif arg.required and not label.startswith("--"):
                p.add_argument(label, metavar=label, type=kind, help=arg.help or None)
            elif arg.required:
                p.add_argument(label, dest=arg.name, type=kind, required=True,
                               help=arg.help or None)
            else:
                flags = [f"--{label.replace('_', '-')}"] + (["-o"] if label == "output" else [])
                p.add_argument(*flags, dest=arg.name, type=kind,
                               default=arg.default, help=arg.help or None)
    return parser


_TYPES: dict[ArgType, type] = {ArgType.INT: int, ArgType.FLOAT: float, ArgType.STR: str}


def _peer_id(text: str) -> str:
    if len(text) == 66 and all(c in "0123456789abcdef" for c in text):
        return text
    return node_address(text).split("@")[0]


def _resolve(arg: Arg, value: Any) -> Any:
    """What a person typed (a node or tower name, say) -> the value the node expects."""
    if arg.resolve is Resolve.NODE_ADDRESS:
        return value if "@" in value else node_address(value)
    if arg.resolve is Resolve.NODE_ID:
        return _peer_id(value)
    if arg.resolve is Resolve.TOWER_ADDRESS:
        return value if "@" in value else tower_address(value)
    return value


def run_client(name: str, argv: Sequence[str]) -> int:
    args = _parser(name).parse_args(list(argv))
    cmd: str = args.cmd
    call: dict[str, Any] = {}
    for arg in NODE_COMMANDS[cmd].args:
        if not arg.cli_hidden and not arg.cli_only:
            call[arg.name] = _resolve(arg, getattr(args, arg.cli_name.lstrip("-")
                                                   if arg.required and arg.cli_name
                                                   and arg.type is not ArgType.BOOL
                                                   else arg.name))
    # the views import the transaction graph code: loaded only for the commands drawing it
    from regtest.client_views import human_answer, show_channel, show_trace
    if cmd == "trace":
        return show_trace(name, limit=args.limit, follow=args.follow, as_json=args.json)
    result = call_node(name, cmd, call)
    if cmd in ("graph", "channel"):
        return show_channel(name, cmd, result, output=getattr(args, "output", ""),
                            dot=getattr(args, "dot", False), as_json=args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(human_answer(cmd, result))
    if cmd == "pay" and result.get("status") != "succeeded" and call.get("wait", True):
        return 1
    return 0
