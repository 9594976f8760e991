"""I/O: a lab network at a glance: every node's id, balances, graph and channels, asked in
parallel.

``network_status`` asks each node of the home's network (``network.json``) for ``info``,
``balance``, ``graph-info`` (compared with the network: complete, or how much is missing)
and ``channels`` over its control socket and matches every recorded channel to its
two ends' answers (``channel_statuses``, pure); ``render_status`` prints it as two tables, every
amount with its unit. A node that does not answer is shown as not running, its numbers as "-".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from channel.errors import ChanlabError
from regtest.control import call_node
from regtest.network_graph import graph_gaps
from regtest.network_record import ChannelRecord, NetworkRecord, expected_graph, load_network

__all__ = [
    "CLOSED_STATES",
    "ChannelEnd",
    "ChannelStatus",
    "NetworkStatus",
    "NodeStatus",
    "channel_statuses",
    "gather_channels",
    "gather_peers",
    "network_status",
    "parallel",
    "render_status",
]

CLOSED_STATES = frozenset({"closing", "force_closing", "closed"})   # a channel's, as listed
_PARALLEL = 8                 # control calls in flight at once (2 cores; nodes are processes)
_T = TypeVar("_T")
_R = TypeVar("_R")


def parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``fn`` over ``items`` on a few threads (control calls block on sockets); results in
    order; the first exception is raised after all finished."""
    with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]


# -- status --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """One node at a glance; the numbers are None while the node does not answer."""

    name: str
    label: str
    running: bool
    node_id: str | None
    onchain_sat: int | None
    offchain_msat: int | None
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    # what its graph lacks of the network (empty: complete); None while it does not answer
    graph_gaps: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "running": self.running,
                "node_id": self.node_id, "onchain_sat": self.onchain_sat,
                "offchain_msat": self.offchain_msat, "fee_base_msat": self.fee_base_msat,
                "fee_proportional_millionths": self.fee_proportional_millionths,
                "cltv_expiry_delta": self.cltv_expiry_delta,
                "graph_complete": None if self.graph_gaps is None else not self.graph_gaps,
                "graph_gaps": None if self.graph_gaps is None else list(self.graph_gaps)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnd:
    """One end's view of a channel: its state and both balances as it sees them."""

    node: str
    state: str          # the node's channel state, "unreachable" or "missing"
    local_msat: int | None
    remote_msat: int | None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "local_msat": self.local_msat,
                "remote_msat": self.remote_msat}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatus:
    """A channel of the network: its plan, its id, and its two ends (opener first)."""

    record: ChannelRecord
    ends: tuple[ChannelEnd, ChannelEnd]

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "ends": [e.to_json() for e in self.ends]}


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkStatus:
    spec: str
    started_bitcoind: bool
    nodes: tuple[NodeStatus, ...]
    channels: tuple[ChannelStatus, ...]

    def to_json(self) -> dict[str, Any]:
        return {"topology": self.spec, "started_bitcoind": self.started_bitcoind,
                "nodes": [n.to_json() for n in self.nodes],
                "channels": [c.to_json() for c in self.channels]}


def gather_channels(home: Path, names: Iterable[str]) -> dict[str, list[dict[str, Any]] | None]:
    def one(name: str) -> list[dict[str, Any]] | None:
        try:
            return [dict(c) for c in call_node(name, "channels", home=home, timeout_s=10)]
        except (ChanlabError, OSError):
            return None

    names = list(names)
    return dict(zip(names, parallel(one, names), strict=True))


def gather_peers(home: Path, names: Iterable[str]
                  ) -> dict[str, tuple[str, list[str]] | None]:
    """Each node's id and connected peers' ids (None: the node does not answer)."""
    def one(name: str) -> tuple[str, list[str]] | None:
        try:
            info = call_node(name, "info", home=home, timeout_s=10)
        except (ChanlabError, OSError):
            return None
        return str(info["node_id"]), [str(p) for p in info["peers"]]

    names = list(names)
    return dict(zip(names, parallel(one, names), strict=True))


def _same_channel(rec: ChannelRecord, listed: dict[str, Any]) -> bool:
    """Is the node's ``channels`` entry ``listed`` the recorded channel (by id, or funding)?"""
    if rec.channel_id and listed.get("channel_id") == rec.channel_id:
        return True
    outpoint = listed.get("funding_outpoint") or ""
    return bool(rec.funding_txid) and str(outpoint).startswith(f"{rec.funding_txid}:")


def channel_statuses(record: NetworkRecord,
                     channels: dict[str, list[dict[str, Any]] | None]) -> list[ChannelStatus]:
    """Each recorded channel's two ends, from every node's ``channels`` answer (None: silent)."""
    out = []
    for rec in record.channels:
        ends = []
        for name in (rec.plan.opener, rec.plan.accepter):
            listed = channels.get(name)
            if listed is None:
                ends.append(ChannelEnd(node=name, state="unreachable", local_msat=None,
                                       remote_msat=None))
                continue
            found = next((c for c in listed if _same_channel(rec, c)), None)
            if found is None:
                ends.append(ChannelEnd(node=name, state="missing", local_msat=None,
                                       remote_msat=None))
            else:
                ends.append(ChannelEnd(node=name, state=str(found["state"]),
                                       local_msat=found.get("local_msat"),
                                       remote_msat=found.get("remote_msat")))
        out.append(ChannelStatus(record=rec, ends=(ends[0], ends[1])))
    return out


def network_status(home: Path) -> NetworkStatus:
    """Ask every node of the network for its id, balances, graph and channels (in
    parallel)."""
    record = load_network(home)
    names = record.topology.names
    Answers = tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]

    def node(name: str) -> Answers:
        try:
            info = dict(call_node(name, "info", home=home, timeout_s=10))
        except (ChanlabError, OSError):
            return None, None, None
        found: list[dict[str, Any] | None] = []
        for cmd in ("balance", "graph-info"):
            try:
                found.append(dict(call_node(name, cmd, home=home, timeout_s=10)))
            except (ChanlabError, OSError):
                found.append(None)  # it runs, but cannot answer this (bitcoind down?)
        return info, found[0], found[1]

    answers = dict(zip(names, parallel(node, names), strict=True))
    ids = {name: str(info["node_id"]) for name, (info, _, _) in answers.items()
           if info is not None}
    channels = channel_statuses(record, gather_channels(home, names))
    # a channel closed on chain leaves every graph: it is not missing
    closed = {c.record.channel_id or "" for c in channels
              if any(end.state in CLOSED_STATES for end in c.ends)}
    # the whole network's ids are needed to say which nodes a graph lacks
    expected = expected_graph(record, ids, closed=closed) if len(ids) == len(names) else None
    nodes = []
    for plan in record.topology.nodes:
        info, balance, graph = answers[plan.name]
        policy = plan.policy
        nodes.append(NodeStatus(
            name=plan.name, label=plan.label, running=info is not None,
            node_id=None if info is None else str(info["node_id"]),
            onchain_sat=None if balance is None else int(balance["onchain_sat"]),
            offchain_msat=None if balance is None else int(balance["offchain_msat"]),
            fee_base_msat=policy.fee_base_msat,
            fee_proportional_millionths=policy.fee_proportional_millionths,
            cltv_expiry_delta=policy.cltv_expiry_delta,
            graph_gaps=None if graph is None or expected is None else
            tuple(graph_gaps(expected, graph))))
    return NetworkStatus(spec=record.topology.spec, started_bitcoind=record.started_bitcoind,
                         nodes=tuple(nodes), channels=tuple(channels))


def _amount(value: int | None, unit: str) -> str:
    return "-" if value is None else f"{value:,} {unit}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def render_status(status: NetworkStatus) -> str:
    """The status as two aligned tables, every amount with its unit."""
    bitcoind = "started with the network" if status.started_bitcoind else "the home's own"
    running = sum(1 for n in status.nodes if n.running)
    head = f"network {status.spec}: {running} of {len(status.nodes)} nodes running " \
           f"(bitcoind: {bitcoind})"
    if not running:
        head += "; `chanlab network start` starts it again"
    lines = [head, ""]
    rows = [["node", "label", "running", "node id", "on-chain", "off-chain", "graph",
             "fee policy"]]
    for n in status.nodes:
        graph = "-" if n.graph_gaps is None else \
            "complete" if not n.graph_gaps else f"{len(n.graph_gaps)} missing"
        rows.append([n.name, n.label, "yes" if n.running else "NO",
                     (n.node_id or "-")[:16], _amount(n.onchain_sat, "sat"),
                     _amount(n.offchain_msat, "msat"), graph,
                     f"{n.fee_base_msat} msat + {n.fee_proportional_millionths} ppm, "
                     f"cltv_expiry_delta {n.cltv_expiry_delta}"])
    lines += _table(rows)
    lines.append("")
    rows = [["channel", "capacity", "end", "state", "local", "remote"]]
    for c in status.channels:
        label = f"{c.record.plan.opener} -> {c.record.plan.accepter}"
        for i, end in enumerate(c.ends):
            rows.append([label if i == 0 else "",
                         _amount(c.record.plan.capacity_sat, "sat") if i == 0 else "",
                         end.node, end.state, _amount(end.local_msat, "msat"),
                         _amount(end.remote_msat, "msat")])
    lines += _table(rows)
    return "\n".join(lines)
