"""``chanlab tower ...``: run a watchtower daemon and operate it.

I/O. ``chanlab tower start --name NAME`` runs the daemon in the foreground; its home is
``$CHANLAB_HOME/towers/NAME/`` (``tower_key`` mode 0600, ``tower.db``, ``tower.json`` with its
``tower_id@host:port``, ``control.sock``, ``tower.log``). It shares the regtest bitcoind of
``$CHANLAB_HOME/bitcoind.json`` and watches it through ZMQ ``rawtx`` (backed by polling).

Registration is by the operator: the tower stores blobs only for client keys registered with
``chanlab tower register NAME CLIENT`` (a node name or a node id: a chanlab node's tower
client key is its node id, which the BOLT 8 handshake authenticates). A node is pointed at the
tower with ``chanlab node start --tower ADDRESS`` or ``chanlab NODE add-tower ADDRESS``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from channel.control_api import TOWER_COMMANDS
from channel.tower_server import TowerServer, TowerSettings
from regtest.chain import BitcoindChain, BitcoindEndpoint
from regtest.control import (
    call_tower,
    daemon_logging,
    load_endpoint,
    node_address,
    tower_home,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("tower", help="run and operate a watchtower")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="run a watchtower in the foreground")
    start.add_argument("--name", required=True, help="the tower's name, e.g. watchtower")
    start.add_argument("--port", type=int, default=0, help="BOLT 8 port on 127.0.0.1 (0: any)")
    start.add_argument("--bitcoind", type=Path, default=None,
                       help="bitcoind.json to use (default: $CHANLAB_HOME/bitcoind.json)")
    start.set_defaults(handler=_start)
    reg = actions.add_parser("register", help=TOWER_COMMANDS["register"].help)
    reg.add_argument("name", help="the tower")
    reg.add_argument("client", help="a chanlab node's name or a 33-byte node id in hex")
    reg.set_defaults(handler=_register)
    for action in ("info", "events", "justice", "stop"):   # help from the control API table
        p = actions.add_parser(action, help=TOWER_COMMANDS[action].help)
        p.add_argument("name", help="the tower")
        p.set_defaults(handler=_control, control=action)


def _start(args: argparse.Namespace) -> int:
    endpoint = load_endpoint(args.bitcoind)
    home = tower_home(args.name)
    home.mkdir(parents=True, exist_ok=True)
    daemon_logging(home, f"tower-{args.name}", "tower.log")
    settings = TowerSettings(name=args.name, home=home, port=args.port)
    return asyncio.run(_run(settings, endpoint))


async def _run(settings: TowerSettings, endpoint: BitcoindEndpoint) -> int:
    # The tower never uses a wallet; the name only matters if bitcoind restarts (the feed
    # reloads "its" wallet then).
    chain = BitcoindChain(endpoint, wallet=f"tower-{settings.name}")
    tower = TowerServer(settings, chain)
    await tower.start()
    tower.shell.install_signal_handlers()
    print(f"tower {settings.name} ready: {tower.address}", flush=True)
    await tower.serve_forever()
    return 0


def _client_id(text: str) -> str:
    if len(text) == 66 and all(c in "0123456789abcdef" for c in text.lower()):
        return text.lower()
    return node_address(text).split("@")[0]


def _register(args: argparse.Namespace) -> int:
    result = call_tower(args.name, "register", {"client_id": _client_id(args.client)})
    state = "registered" if result["new"] else "already registered"
    print(f"{args.client}: {state} with tower {args.name} ({result['client_id']})")
    return 0


def _control(args: argparse.Namespace) -> int:
    result = call_tower(args.name, args.control)
    if args.control == "events":
        print("\n".join(result) if result else "nothing happened yet")
    else:
        print(json.dumps(result, indent=2))
    return 0
