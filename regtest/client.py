"""I/O: ``chanlab NAME COMMAND ...``: drive a running node through its control socket.

Every command prints a short human summary, or the node's JSON answer with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from regtest.commands.tower import tower_address
from regtest.control import call_node, node_address

__all__ = ["run_client"]


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"chanlab {name}",
                                     description=f"commands for the running node {name!r}")
    parser.add_argument("--json", action="store_true", help="print the node's JSON answer")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    sub.add_parser("info", help="node id, address, peers")
    p = sub.add_parser("connect", help="connect to a peer (a node name or node_id@host:port)")
    p.add_argument("peer")
    p = sub.add_parser("open", help="open a channel, funded from this node's wallet")
    p.add_argument("peer", help="a node name or node id")
    p.add_argument("amount_sat", type=int)
    p.add_argument("--push-msat", type=int, default=0)
    p.add_argument("--anchors", action="store_true", help="option_anchors channel type")
    p = sub.add_parser("invoice", help="ask to be paid")
    p.add_argument("amount_msat", type=int)
    p.add_argument("--description", default="")
    p.add_argument("--hold", action="store_true",
                   help="hold invoice: keep the HTLC until `settle` or `cancel`")
    p = sub.add_parser("settle", help="fulfil the HTLCs paying a hold invoice")
    p.add_argument("payment_hash")
    p = sub.add_parser("cancel", help="fail the HTLCs paying a hold invoice")
    p.add_argument("payment_hash")
    p = sub.add_parser("pay", help="pay an invoice")
    p.add_argument("invoice")
    p.add_argument("--no-wait", action="store_true",
                   help="return once the HTLC is sent, without waiting for the outcome")
    sub.add_parser("channels", help="list channels")
    sub.add_parser("balance", help="on-chain and off-chain balances")
    p = sub.add_parser("close", help="cooperative close")
    p.add_argument("channel")
    p = sub.add_parser("force-close", help="broadcast our latest commitment")
    p.add_argument("channel")
    p = sub.add_parser("cheat", help="(regtest, --allow-cheating) broadcast a revoked commitment")
    p.add_argument("channel")
    p.add_argument("--state", type=int, required=True)
    p.add_argument("--htlc-txs", action="store_true",
                   help="also broadcast that state's HTLC-timeout/-success transactions")
    p.add_argument("--sweep", action="store_true",
                   help="also sweep that state's to_local (valid after to_self_delay)")
    p = sub.add_parser("add-tower", help="upload justice kits to a watchtower "
                                         "(a tower name or tower_id@host:port)")
    p.add_argument("tower")
    sub.add_parser("towers", help="watchtowers: connection, uploads, pending states")
    p = sub.add_parser("update-fee", help="change the commitment feerate (opener only)")
    p.add_argument("channel")
    p.add_argument("feerate_per_kw", type=int)
    sub.add_parser("stop", help="stop the node")
    return parser


def _peer_id(text: str) -> str:
    if len(text) == 66 and all(c in "0123456789abcdef" for c in text):
        return text
    return node_address(text).split("@")[0]


def run_client(name: str, argv: Sequence[str]) -> int:
    args = _parser(name).parse_args(list(argv))
    cmd: str = args.cmd
    call: dict[str, Any] = {}
    if cmd == "connect":
        call = {"peer": args.peer if "@" in args.peer else node_address(args.peer)}
    elif cmd == "open":
        call = {"peer_id": _peer_id(args.peer), "amount_sat": args.amount_sat,
                "push_msat": args.push_msat, "anchors": args.anchors}
    elif cmd == "invoice":
        call = {"amount_msat": args.amount_msat, "description": args.description,
                "hold": args.hold}
    elif cmd in ("settle", "cancel"):
        call = {"payment_hash": args.payment_hash}
    elif cmd == "pay":
        call = {"invoice": args.invoice, "wait": not args.no_wait}
    elif cmd in ("close", "force-close"):
        call = {"channel": args.channel}
    elif cmd == "add-tower":
        call = {"address": args.tower if "@" in args.tower else tower_address(args.tower)}
    elif cmd == "update-fee":
        call = {"channel": args.channel, "feerate_per_kw": args.feerate_per_kw}
    elif cmd == "cheat":
        call = {"channel": args.channel, "state": args.state, "htlc_txs": args.htlc_txs,
                "sweep": args.sweep}
    result = call_node(name, cmd, call)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_human(cmd, result))
    if cmd == "pay" and result.get("status") != "succeeded" and not args.no_wait:
        return 1
    return 0


def _human(cmd: str, result: Any) -> str:
    if cmd == "channels":
        if not result:
            return "no channels"
        lines = []
        for c in result:
            line = f"{c['channel'][:16]}  {c['state']:<18} {c['funding_sat']} sat"
            if "local_msat" in c:
                line += (f"  local {c['local_msat'] // 1000} sat"
                         f"  remote {c['remote_msat'] // 1000} sat")
            lines.append(line)
        return "\n".join(lines)
    if cmd == "invoice":
        return str(result["invoice"])
    if cmd == "pay":
        if result.get("status") == "succeeded":
            return f"paid: preimage {result['payment_preimage']}"
        return f"payment {result.get('status')}: {result.get('reason', '')}"
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    return json.dumps(result)
