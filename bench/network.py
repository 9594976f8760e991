"""I/O: the network figures of ``make bench``: payments per second through forwarding nodes,
how long gossip takes to complete every graph, and a classroom's 30 nodes on one bitcoind.

Every channel here is announced (BOLT 7, ``open --announce``) and every payer routes over the
public graph its node learnt by gossip. ``measure_hops`` builds a line of six ``chanlab node
start`` processes and pays from the first node to the one 1, 2 and 4 intermediate hops away:
one payment in flight (a ``pay`` control call each, the next begun when the previous returned)
and many in flight (every ``pay`` sent with ``wait=False``, timed until the payee holds them all
and every HTLC is gone from the path). ``measure_graph_time`` opens a 10-node line, mines 5
blocks, then times from the 6th confirmation (the block that makes the channels announceable)
until every node's ``graph-info`` holds every channel with both updates and every node.
``measure_classroom`` starts 30 nodes in a ring on the same bitcoind, announces the 30 channels,
times the graphs complete, pays across the ring (to the node halfway round, 14 forwarders) and
reads each node's ``VmRSS`` from ``/proc``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

from bench.nodes import process_rss_kb
from regtest.cluster import Cluster, NodeProcess
from regtest.network_graph import expected_from_forwarding, wait_graphs_complete
from regtest.wait import wait_for

__all__ = ["ClassroomRun", "GraphRun", "HopRun", "measure_classroom", "measure_graph_time",
           "measure_hops"]

Say = Callable[[str], None]

ANNOUNCE_DEPTH = 6                 # BOLT 7: announcement_signatures once the funding is 6 deep
LINE_CHANNEL_SAT = 2_000_000
LINE_FUNDS_SAT = 2_100_000
HOP_PAYMENT_MSAT = 2_000_000       # above dust: every HTLC is an output on every commitment
CLASSROOM_CHANNEL_SAT = 200_000
GRAPH_TIMEOUT_S = 300.0            # 30 nodes on 2 shared cores: generous, the figure is the point


@dataclass(frozen=True, slots=True, kw_only=True)
class HopRun:
    """Payments from the line's first node through ``hops`` forwarders: rates, or why not."""

    hops: int
    one_per_second: float | None
    many_per_second: float | None
    payments: int
    payee_gain_msat: int
    fee_msat: int                 # paid by the payer per payment (the forwarders' fees)
    refusal: str                  # the payer's answer when no route was found


def _start_nodes(cluster: Cluster, names: list[str]) -> list[NodeProcess]:
    def one(name: str) -> NodeProcess:
        node = NodeProcess(cluster, name, allow_cheating=False, to_self_delay=10).start(60.0)
        return node

    with ThreadPoolExecutor(max_workers=4) as pool:
        nodes = list(pool.map(one, names))
    for node in nodes:
        cluster.nodes[node.name] = node
    return nodes


def _fund_all(cluster: Cluster, nodes: list[NodeProcess], amount_sat: int) -> None:
    """One miner payment to each node, one block, then wait until every wallet trusts it."""
    for node in nodes:
        cluster.miner.send_to_address(node.wallet.new_address(), amount_sat)
    cluster.mine(1)
    wallets = [node.wallet for node in nodes]
    wait_for(lambda: all(w.balances().trusted_sat >= amount_sat for w in wallets), timeout=60,
             what="every node's funds to confirm")


def _open_announced(cluster: Cluster, pairs: list[tuple[NodeProcess, NodeProcess]],
                    capacity_sat: int) -> list[str]:
    """Each pair's first node opens an announced channel to the second, all at once; mined 5
    deep (one block short of announcement); all normal. Funding txids in pair order."""
    for a, b in pairs:
        cluster.connect(a, b)

    def open_one(pair: tuple[NodeProcess, NodeProcess]) -> str:
        a, b = pair
        return str(a.call("open", peer_id=b.node_id, amount_sat=capacity_sat,
                          announce=True)["funding_txid"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        txids = list(pool.map(open_one, pairs))
    for txid in txids:   # the open answers once its funding transaction is broadcast
        cluster.miner.rpc.call("getmempoolentry", txid)
    cluster.mine(ANNOUNCE_DEPTH - 1)
    for (a, b), txid in zip(pairs, txids, strict=True):
        for node in (a, b):
            cluster.wait_channel_state(node, txid, "normal", timeout=120)
    return txids


def _announce_and_time(cluster: Cluster, nodes: list[NodeProcess]) -> float:
    """Mine the 6th confirmation; seconds from then until every node's graph is complete."""
    expected = expected_from_forwarding({n.name: n.node_id for n in nodes},
                                        {n.name: n.call("forwarding") for n in nodes})
    by_name = {node.name: node for node in nodes}
    started = time.perf_counter()
    cluster.mine(1)
    wait_graphs_complete(list(by_name), lambda name: by_name[name].call("graph-info"),
                         expected, timeout_s=GRAPH_TIMEOUT_S)
    return time.perf_counter() - started


def _local_msat(cluster: Cluster, node: NodeProcess, txid: str) -> int:
    return int(cluster.channel(node, txid)["local_msat"])


def _quiet(cluster: Cluster, path: list[tuple[NodeProcess, str]]) -> bool:
    return all(int(cluster.channel(node, txid)["htlcs"]) == 0 for node, txid in path)


def _wait_quiet(cluster: Cluster, path: list[tuple[NodeProcess, str]],
                payee: tuple[NodeProcess, str, int] | None = None) -> None:
    """Until no HTLC is left on the path (and the payee holds ``payee[2]`` msat)."""
    def done() -> bool:
        if payee is not None and _local_msat(cluster, payee[0], payee[1]) != payee[2]:
            return False
        return _quiet(cluster, path)

    wait_for(done, timeout=120, max_interval=0.05, what="the payments to settle")


def measure_hops(cluster: Cluster, say: Say, *, count: int,
                 hops: tuple[int, ...] = (1, 2, 4)) -> list[HopRun]:
    """Payments/s through 1, 2 and 4 forwarders on an announced line of ``max(hops) + 2``
    nodes."""
    names = [f"hop{i}" for i in range(max(hops) + 2)]
    nodes = _start_nodes(cluster, names)
    _fund_all(cluster, nodes[:-1], LINE_FUNDS_SAT)
    txids = _open_announced(cluster, list(pairwise(nodes)), LINE_CHANNEL_SAT)
    took = _announce_and_time(cluster, nodes)
    say(f"an announced line of {len(nodes)} node processes, each opening "
        f"{LINE_CHANNEL_SAT:,} sat to the next (every graph complete {took:.1f} s after the "
        f"6th confirmation); payments of {HOP_PAYMENT_MSAT:,} msat from {names[0]}")
    runs: list[HopRun] = []
    payer = nodes[0]
    for forwarders in hops:
        payee = nodes[forwarders + 1]
        into_payee = txids[forwarders]
        path = [(n, t) for n, t in zip(nodes[:forwarders + 1], txids, strict=False)]
        probe = payer.call("pay", invoice=payee.call(
            "invoice", amount_msat=HOP_PAYMENT_MSAT)["invoice"], timeout_s=30.0)
        if probe["status"] != "succeeded":
            runs.append(HopRun(hops=forwarders, one_per_second=None, many_per_second=None,
                               payments=0, payee_gain_msat=0, fee_msat=0,
                               refusal=str(probe.get("reason", probe["status"]))))
            say(f"{forwarders} forwarder(s): no payment: {runs[-1].refusal}")
            continue
        fee = int(probe["fee_msat"])
        _wait_quiet(cluster, path)
        start_msat = _local_msat(cluster, payee, into_payee)
        invoices = [payee.call("invoice", amount_msat=HOP_PAYMENT_MSAT)["invoice"]
                    for _ in range(2 * count)]
        started = time.perf_counter()
        for invoice in invoices[:count]:
            if payer.call("pay", invoice=invoice, timeout_s=30.0)["status"] != "succeeded":
                raise RuntimeError(f"a payment through {forwarders} forwarder(s) failed")
        one = count / (time.perf_counter() - started)
        _wait_quiet(cluster, path)
        started = time.perf_counter()
        for invoice in invoices[count:]:
            payer.call("pay", invoice=invoice, wait=False)
        _wait_quiet(cluster, path, payee=(payee, into_payee,
                                          start_msat + 2 * count * HOP_PAYMENT_MSAT))
        many = count / (time.perf_counter() - started)
        gain = _local_msat(cluster, payee, into_payee) - start_msat
        runs.append(HopRun(hops=forwarders, one_per_second=one, many_per_second=many,
                           payments=2 * count, payee_gain_msat=gain, fee_msat=fee, refusal=""))
        say(f"{forwarders} forwarder(s): one in flight {one:6.1f} payments/s, {count} in flight "
            f"{many:6.1f} payments/s; {names[forwarders + 1]} gained {gain:,} msat = "
            f"{2 * count} x {HOP_PAYMENT_MSAT:,}; fee {fee:,} msat per payment")
    for node in nodes:
        node.stop()
    return runs


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphRun:
    """An announced line: how long from the 6th confirmation until every graph was
    complete."""

    nodes: int
    channels: int
    graph_s: float


def measure_graph_time(cluster: Cluster, say: Say, *, count: int = 10) -> GraphRun:
    """``count`` nodes in an announced line; seconds from the 6th confirmation of their
    funding transactions until every node's graph holds every channel and node."""
    nodes = _start_nodes(cluster, [f"gossip{i:02d}" for i in range(count)])
    _fund_all(cluster, nodes[:-1], CLASSROOM_CHANNEL_SAT + 20_000)
    txids = _open_announced(cluster, list(pairwise(nodes)), CLASSROOM_CHANNEL_SAT)
    took = _announce_and_time(cluster, nodes)
    say(f"{count} nodes, {len(txids)} announced channels in a line: every graph complete "
        f"{took:.1f} s after the 6th confirmation ({len(txids)} channel_announcements, "
        f"{2 * len(txids)} channel_updates, {count} node_announcements at each node)")
    for node in nodes:
        node.stop()
    return GraphRun(nodes=count, channels=len(txids), graph_s=took)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassroomRun:
    """30 nodes in a ring on one bitcoind: set-up, gossip, one payment across, memory."""

    nodes: int
    channels: int
    setup_s: float
    graph_s: float
    payment_status: str
    forwarders: int
    rss_kb: tuple[int, ...]

    @property
    def mean_rss_mb(self) -> float:
        return sum(self.rss_kb) / len(self.rss_kb) / 1024

    @property
    def max_rss_mb(self) -> float:
        return max(self.rss_kb) / 1024


def measure_classroom(cluster: Cluster, say: Say, *, count: int = 30) -> ClassroomRun:
    """``count`` nodes in an announced ring on one bitcoind: the time to start, fund and open
    everything, the time until every graph is complete, one payment to the node halfway
    round, and the VmRSS of each node afterwards."""
    started = time.perf_counter()
    nodes = _start_nodes(cluster, [f"class{i:02d}" for i in range(count)])
    _fund_all(cluster, nodes, CLASSROOM_CHANNEL_SAT + 20_000)
    pairs = [*pairwise(nodes), (nodes[-1], nodes[0])]
    txids = _open_announced(cluster, pairs, CLASSROOM_CHANNEL_SAT)
    setup_s = time.perf_counter() - started
    graph_s = _announce_and_time(cluster, nodes)
    payee = nodes[count // 2]   # the farthest node: both ways round are count // 2 hops
    invoice = payee.call("invoice", amount_msat=HOP_PAYMENT_MSAT)["invoice"]
    answer = nodes[0].call("pay", invoice=invoice, timeout_s=60.0)
    status = str(answer["status"])
    attempts = answer.get("attempts") or [{"route": []}]
    forwarders = max(0, len(attempts[-1]["route"]) - 1)
    rss = tuple(process_rss_kb(node.pid) for node in nodes)
    say(f"{count} nodes and {len(txids)} announced channels in a ring on one bitcoind, up in "
        f"{setup_s:.0f} s; every graph complete {graph_s:.1f} s after the 6th confirmation; "
        f"{nodes[0].name} -> {payee.name} through {forwarders} forwarders: {status}")
    for node in nodes:
        node.stop()
    return ClassroomRun(nodes=count, channels=len(txids), setup_s=setup_s, graph_s=graph_s,
                        payment_status=status, forwarders=forwarders, rss_kb=rss)
