"""I/O: ``chanlab network start|status|stop``: a whole lab network in ``$CHANLAB_HOME``.

``start --topology line:5`` (or ``star:N``, ``ring:N``, ``bolt7-example``) starts the home's
bitcoind if none runs, one node process per node, funds and opens every channel announced,
mines 6 blocks and returns when all are ``normal`` and every node's graph is complete;
``status`` shows nodes, balances, graphs and channels (``--json`` for scripts);
``stop`` stops the nodes, and bitcoind if the network started it; ``start`` again (without
``--topology``) brings the same network back. See ``regtest.network``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from regtest.control import chanlab_home
from regtest.network import network_status, render_status, start_network, stop_network
from regtest.topology import DEFAULT_CAPACITY_SAT, MAX_NODES, parse_topology


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "network", help="start, show or stop a network of nodes in one command")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start", help="start nodes, fund and open the announced channels of a topology, "
                      "wait until every channel is normal and every node's graph complete")
    start.add_argument("--topology", default=None, metavar="SHAPE",
                       help=f"line:N, star:N (first node is the hub), ring:N (N up to "
                            f"{MAX_NODES}) or bolt7-example (BOLT 7's A/B/C/D with its fees); "
                            "leave it out to start this home's stopped network again")
    start.add_argument("--capacity-sat", type=int, default=DEFAULT_CAPACITY_SAT,
                       help="capacity of every channel in sat; the opener pushes half "
                            f"(default {DEFAULT_CAPACITY_SAT})")
    start.set_defaults(handler=_start)
    status = actions.add_parser("status",
                                help="nodes, balances, graphs and channels at a glance")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)
    stop = actions.add_parser(
        "stop", help="stop every node, and the bitcoind if the network started it")
    stop.set_defaults(handler=_stop)


def _say(line: str) -> None:
    print(line, flush=True)


def _start(args: argparse.Namespace) -> int:
    topology = None if args.topology is None else \
        parse_topology(args.topology, capacity_sat=args.capacity_sat)
    start_network(chanlab_home(), topology, progress=_say)
    print("see it with `chanlab network status`; stop it with `chanlab network stop`")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = network_status(chanlab_home())
    if args.json:
        json.dump(status.to_json(), sys.stdout, indent=1)
        print()
    else:
        print(render_status(status))
    return 0


def _stop(args: argparse.Namespace) -> int:
    stop_network(chanlab_home(), progress=_say)
    return 0
