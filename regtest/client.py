"""I/O: ``chanlab NAME COMMAND ...``: drive a running node through its control socket.

The commands, their arguments and help come from :data:`channel.control_api.NODE_COMMANDS`.

Every command prints a short human summary, or the node's JSON answer with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from channel.control_api import NODE_COMMANDS, Arg, ArgType, Resolve
from channel.errors import ChanlabError
from regtest.control import call_node, node_address, node_home, tower_address

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
        # `chanlab alice channels --json` works as well as `chanlab alice --json channels`
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print the node's JSON answer")
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


def _channel_of(name: str, text: str, *, any_state: bool) -> str:
    """A channel named by its peer's node name (``chanlab alice close bob``), when ``name``
    has exactly one channel with that peer still open (or, to draw it, exactly one at all);
    anything else is passed on as an id prefix for the node to match."""
    if not (node_home(text) / "node.json").exists():
        return text
    peer = _peer_id(text)
    with_peer = [c for c in call_node(name, "channels") if c.get("peer_id") == peer]
    mine = [c for c in with_peer
            if c.get("state") not in ("closed", "force_closing", "closing")]
    if not mine and any_state:
        mine = with_peer
    if len(mine) == 1:
        return str(mine[0]["channel"])
    if not mine:
        raise ChanlabError(f"{name} has no open channel with {text} (see `chanlab {name} "
                           "channels`)")
    raise ChanlabError(f"{name} has {len(mine)} channels with {text}: name one by the start "
                       f"of its id ({', '.join(str(c['channel'])[:12] for c in mine)})")


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
    if "channel" in call and isinstance(call["channel"], str):
        call["channel"] = _channel_of(name, call["channel"],
                                      any_state=cmd in ("graph", "channel"))
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
    elif cmd == "invoice":
        # the invoice alone on stdout, so `chanlab alice pay $(chanlab bob invoice ...)` works;
        # what a person reads beside it goes to the terminal through stderr
        text = human_answer(cmd, result).split("\n")
        print(text[0])
        print("\n".join(text[1:]), file=sys.stderr)
    else:
        print(human_answer(cmd, result))
    if cmd == "pay" and result.get("status") != "succeeded" and call.get("wait", True):
        return 1
    return 0
