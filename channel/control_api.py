"""The control API of the node and of the tower: every command, its arguments and its answer.

One table per daemon (:data:`NODE_COMMANDS`, :data:`TOWER_COMMANDS`) drives the daemon's
dispatcher (which checks each request against it), the ``chanlab NAME ...`` command line (which
builds its argparse parser from it) and the Python client used by the cluster and the tests
(which checks its arguments before sending). A command is added here, once.

Wire format: one JSON object per line, ``{"cmd": "...", "args": {...}}``; the answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``. Every request gets an
answer: garbage, an unknown command and bad arguments are answered with an error, too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from channel.errors import ChanlabError

__all__ = [
    "NODE_COMMANDS",
    "TOWER_COMMANDS",
    "Arg",
    "ArgType",
    "BadControlRequest",
    "Command",
    "Resolve",
    "check_args",
    "error_answer",
    "ok_answer",
    "parse_request",
]


class BadControlRequest(ChanlabError):
    """A control request that is not JSON, names no known command, or has bad arguments."""


class ArgType(Enum):
    """The JSON type of an argument."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"
    STR_LIST = "list of str"


class Resolve(Enum):
    """How the command line turns what a person typed into the argument's value."""

    NONE = "none"
    NODE_ADDRESS = "node address"   # a node name -> node_id@host:port
    NODE_ID = "node id"             # a node name -> node id
    TOWER_ADDRESS = "tower address"  # a tower name -> tower_id@host:port


_REQUIRED: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg:
    """One argument: its name on the wire, its type, its default (none: required)."""

    name: str
    type: ArgType
    help: str = ""
    default: Any = _REQUIRED
    cli_name: str = ""          # positional name / flag on the command line if not ``name``
    cli_invert: bool = False    # a bool shown as ``--no-...`` (default True on the wire)
    cli_hidden: bool = False    # not offered on the command line
    cli_only: bool = False      # read by the command line itself, never sent to the node
    resolve: Resolve = Resolve.NONE

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def accepts(self, value: Any) -> bool:
        if self.type is ArgType.BOOL:
            return isinstance(value, bool)
        if self.type is ArgType.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        if self.type is ArgType.FLOAT:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.type is ArgType.STR:
            return isinstance(value, str)
        return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One control command: its name, what it does, its arguments and its answer's shape."""

    name: str
    help: str
    args: tuple[Arg, ...] = ()
    answer: str = ""            # the shape of ``result``, for people and docs
    cli: bool = True            # offered by ``chanlab NAME ...``


def _table(*commands: Command) -> dict[str, Command]:
    return {c.name: c for c in commands}


_CHANNEL = Arg(name="channel", type=ArgType.STR,
               help="channel key or channel id, or any unique start of either")
_HASH = Arg(name="payment_hash", type=ArgType.STR, help="hex payment hash")
_TIMEOUT = Arg(name="timeout_s", type=ArgType.FLOAT, default=60.0, cli_hidden=True)

NODE_COMMANDS: dict[str, Command] = _table(
    Command(name="info", help="node id, address, peers, chain view (fresh or stale)",
            answer="{name, node_id, address, chain, height, peers: [hex], channels: int, "
                   "chain_view: {state, reason, detail, since, since_s}}"),
    Command(name="connect", help="connect to a peer (a node name or node_id@host:port)",
            args=(Arg(name="peer", type=ArgType.STR, resolve=Resolve.NODE_ADDRESS),),
            answer="{connected: node_id}"),
    Command(name="open", help="open a channel, funded from this node's wallet",
            args=(Arg(name="peer_id", type=ArgType.STR, cli_name="peer",
                      help="a node name or node id", resolve=Resolve.NODE_ID),
                  Arg(name="amount_sat", type=ArgType.INT),
                  Arg(name="push_msat", type=ArgType.INT, default=0),
                  Arg(name="anchors", type=ArgType.BOOL, default=False,
                      help="option_anchors channel type (also chosen when the peer "
                           "requires it)"),
                  Arg(name="announce", type=ArgType.BOOL, default=False,
                      help="a public channel (BOLT 7): announced to the network once its "
                           "funding tx has 6 confirmations")),
            answer="{channel, channel_id, funding_txid, funding_sat, announce}"),
    Command(name="invoice", help="ask to be paid: a BOLT 11 invoice (lnbcrt… on regtest)",
            args=(Arg(name="amount_msat", type=ArgType.INT),
                  Arg(name="description", type=ArgType.STR, default=""),
                  Arg(name="hold", type=ArgType.BOOL, default=False,
                      help="hold invoice: keep the HTLC until `settle` or `cancel`")),
            answer="{invoice, payment_hash, amount_msat, hold, expires_at, "
                   "min_final_cltv_expiry_delta, route_hints: [[{node_id, short_channel_id}]]}"),
    Command(name="invoices", help="COUNT invoices of AMOUNT_MSAT each, stored at once",
            args=(Arg(name="count", type=ArgType.INT), Arg(name="amount_msat", type=ArgType.INT),
                  Arg(name="description", type=ArgType.STR, default="")),
            answer="{invoices: [str]}", cli=False),
    Command(name="settle", help="fulfil the HTLCs paying a hold invoice", args=(_HASH,),
            answer="{payment_hash, decision, channels: int}"),
    Command(name="cancel", help="fail the HTLCs paying a hold invoice", args=(_HASH,),
            answer="{payment_hash, decision, channels: int}"),
    Command(name="pay", help="pay a BOLT 11 invoice, over a channel or a route",
            args=(Arg(name="invoice", type=ArgType.STR), _TIMEOUT,
                  Arg(name="wait", type=ArgType.BOOL, default=True, cli_name="no-wait",
                      cli_invert=True, help="return once the HTLC is sent, without waiting "
                                            "for the outcome")),
            answer="{status: succeeded|failed|pending, payment_hash, payment_preimage?, "
                   "amount_msat?, fee_msat?, reason?, failure_code?, failure?, hop_index?, "
                   "node_id?, attempts?: [{route, route_text, fee_msat, reason?, "
                   "failure_code?, hop_index?, node_id?}]}"),
    Command(name="pay-batch", help="pay several invoices to one peer in one commitment_signed",
            args=(Arg(name="invoices", type=ArgType.STR_LIST),), answer="[pay answer]",
            cli=False),
    Command(name="pay-pipeline",
            help="pay the invoices of a file (one a line) in batches of BATCH_SIZE HTLCs per "
                 "commitment_signed, one batch in flight, timed by the node's clock",
            args=(Arg(name="invoices_path", type=ArgType.STR),
                  Arg(name="batch_size", type=ArgType.INT, default=1), _TIMEOUT),
            answer="{payments, succeeded, batch_size, paid_s, settled_s, "
                   "holder_commitment_number}", cli=False),
    Command(name="forwarding", help="our forwarding policy, channel scids, forwards in flight",
            answer="{fee_base_msat, fee_proportional_millionths, cltv_expiry_delta, "
                   "channels: [{channel, peer_id, short_channel_id, alias}], "
                   "in_flight: [{incoming, outgoing, payment_hash, amount_msat, fee_msat, "
                   "preimage_known}]}"),
    Command(name="graph-info", help="the network as this node knows it: nodes, and channels "
                                    "with each direction's fees and cltv delta",
            answer="{nodes: [{node_id, alias, addresses, announced}], channels: "
                   "[{short_channel_id, node_1, node_2, capacity_sat, public, policy_1?, "
                   "policy_2?}], public_channels: int, public_channels_with_both_updates: "
                   "int, node_announcements: int, complete: bool, gossip: {lookups, "
                   "over_budget, rejected}}"),
    Command(name="channels", help="list channels",
            answer="[{channel, peer_id, state, channel_id, funding_sat, funding_outpoint, "
                   "opener, commitment_format, to_self_delay, local_msat?, remote_msat?, "
                   "htlcs?, holder_commitment_number?, counterparty_commitment_number?, "
                   "closing_txid?}]"),
    Command(name="payments", help="payments sent and received: status, amount, fees",
            answer="[{payment_hash, direction: sent|received, status, amount_msat, "
                   "fee_msat?, description?, failure?, route?: [node_id], route_text?, "
                   "attempts?}]"),
    Command(name="trace", help="the BOLT messages sent and received, decoded field by field",
            args=(Arg(name="limit", type=ArgType.INT, default=50,
                      help="how many of the latest messages (0: all kept)"),
                  Arg(name="since", type=ArgType.INT, default=0, cli_hidden=True),
                  Arg(name="follow", type=ArgType.BOOL, default=False, cli_only=True,
                      help="keep printing new messages as they come (Ctrl-C stops)")),
            answer="[{seq, time, direction: sent|received, peer_id, data}]"),
    Command(name="channel-facts", help="what the node knows of a channel's transactions",
            args=(_CHANNEL,), cli=False,
            answer="{channel, channel_id, peer_id, opener, funding_txid, funding_vout, "
                   "funding_sat, funding_tx?, holder_basepoints, counterparty_basepoints, "
                   "commitments: [...], transactions: [{txid, raw, height, broadcast}], "
                   "holder_scripts}"),
    Command(name="graph", help="draw a channel's transactions as SVG (or Graphviz dot)",
            args=(_CHANNEL,
                  Arg(name="output", type=ArgType.STR, default="channel.svg", cli_only=True,
                      help="where to write the picture (default channel.svg)"),
                  Arg(name="dot", type=ArgType.BOOL, default=False, cli_only=True,
                      help="write Graphviz dot instead of SVG")),
            answer="as channel-facts; the command line draws it"),
    Command(name="channel", help="a channel's outputs on chain, fees, and who may spend "
                                 "what in how many blocks",
            args=(_CHANNEL,), answer="as channel-facts; the command line prints it"),
    Command(name="balance", help="on-chain and off-chain balances",
            answer="{onchain_sat, offchain_msat}"),
    Command(name="claimable", help="what we can still get on chain, per channel",
            answer="[{channel, status, amount_sat, claimable_from_height, description}]"),
    Command(name="events", help="what the chain monitors noticed and did", answer="[str]"),
    Command(name="close", help="cooperative close", args=(_CHANNEL,),
            answer="{channel, closing_txid}"),
    Command(name="force-close", help="broadcast our latest commitment", args=(_CHANNEL,),
            answer="{channel, commitment_txid, to_self_delay, note?}"),
    Command(name="update-fee", help="change the commitment feerate (opener only)",
            args=(_CHANNEL, Arg(name="feerate_per_kw", type=ArgType.INT)),
            answer="{channel, feerate_per_kw}"),
    Command(name="cheat", help="(regtest, --allow-cheating) broadcast a revoked commitment",
            args=(_CHANNEL, Arg(name="state", type=ArgType.INT, cli_name="--state"),
                  Arg(name="htlc_txs", type=ArgType.BOOL, default=False,
                      help="also broadcast that state's HTLC-timeout/-success transactions"),
                  Arg(name="sweep", type=ArgType.BOOL, default=False,
                      help="also sweep that state's to_local (valid after to_self_delay)")),
            answer="{channel, state, revoked_commitment_txid, commitment?, htlc_txs?, "
                   "to_local_sweep?}"),
    Command(name="add-tower", help="upload justice kits to a watchtower "
                                   "(a tower name or tower_id@host:port)",
            args=(Arg(name="address", type=ArgType.STR, cli_name="tower",
                      resolve=Resolve.TOWER_ADDRESS),),
            answer="{tower, ...}"),
    Command(name="towers", help="watchtowers: connection, uploads, pending states",
            answer="[{tower, connected, pending, ...}]"),
    Command(name="stop", help="stop the node", answer="{stopping: true}"),
)

TOWER_COMMANDS: dict[str, Command] = _table(
    Command(name="info", help="address, clients, blobs stored, pending justice",
            answer="{name, tower_id, address, chain, scanned_height, blobs, clients, connected, "
                   "uploads, unconfirmed_justice}"),
    Command(name="register", help="allow a client (33-byte node id, hex) to store justice kits",
            args=(Arg(name="client_id", type=ArgType.STR),), answer="{client_id, new: bool}"),
    Command(name="events", help="breaches seen and justice broadcast", answer="[str]"),
    Command(name="justice", help="the justice transactions made since the start",
            answer="[{txid, status, ...}]"),
    Command(name="stop", help="stop the tower", answer="{stopping: true}"),
)


def check_args(table: dict[str, Command], cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` checked against ``cmd``'s arguments, with defaults filled in.

    Raises :class:`BadControlRequest` with a one-line message on an unknown command, a missing,
    unknown or mistyped argument."""
    command = table.get(cmd)
    if command is None:
        raise BadControlRequest(f"unknown command {cmd!r} (known: {', '.join(sorted(table))})")
    known = {a.name: a for a in command.args if not a.cli_only}
    extra = sorted(set(args) - set(known))
    if extra:
        raise BadControlRequest(f"{cmd}: unknown argument(s) {', '.join(extra)} "
                                f"(takes: {', '.join(known) or 'none'})")
    out: dict[str, Any] = {}
    for name, arg in known.items():
        if name not in args:
            if arg.required:
                raise BadControlRequest(f"{cmd}: missing argument {name} ({arg.type.value})")
            out[name] = arg.default
            continue
        value = args[name]
        if not arg.accepts(value):
            raise BadControlRequest(f"{cmd}: argument {name} must be {arg.type.value}, "
                                    f"not {type(value).__name__}")
        out[name] = float(value) if arg.type is ArgType.FLOAT else value
    return out


def parse_request(line: bytes, table: dict[str, Command]) -> tuple[str, dict[str, Any]]:
    """One request line -> (command, checked arguments); :class:`BadControlRequest` if bad."""
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadControlRequest("a control request is one JSON object on one line") from None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise BadControlRequest('a control request is {"cmd": NAME, "args": {...}}')
    args = request.get("args") or {}
    if not isinstance(args, dict):
        raise BadControlRequest("args must be a JSON object")
    cmd: str = request["cmd"]
    return cmd, check_args(table, cmd, args)


def ok_answer(result: Any) -> bytes:
    return json.dumps({"ok": True, "result": result}).encode() + b"\n"


def error_answer(text: str) -> bytes:
    one_line = " ".join(text.split())[:1000]
    return json.dumps({"ok": False, "error": one_line}).encode() + b"\n"
