"""I/O: the network figures of ``make bench``: payments per second through forwarding nodes,
and the memory of each node when a classroom's 30 nodes share one bitcoind.

``measure_hops`` builds a line of six ``chanlab node start`` processes (each opens a channel to
the next) and pays from the first node to the one 1, 2 and 4 intermediate hops away: one
payment in flight (a ``pay`` control call each, the next begun when the previous returned) and
many in flight (every ``pay`` sent with ``wait=False``, timed until the payee holds them all and
every HTLC is gone from the path). A route the payer cannot find is reported with the payer's
own answer instead of a figure. ``measure_classroom`` starts 30 nodes in a line on the same
bitcoind, opens the 29 channels at once, makes one payment through one forwarder and reads each
node's ``VmRSS`` from ``/proc``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

from bench.nodes import process_rss_kb
from regtest.cluster import Cluster, NodeProcess
from regtest.wait import wait_for

__all__ = ["ClassroomRun", "HopRun", "measure_classroom", "measure_hops"]

Say = Callable[[str], None]

LINE_CHANNEL_SAT = 2_000_000
LINE_FUNDS_SAT = 2_100_000
HOP_PAYMENT_MSAT = 2_000_000       # above dust: every HTLC is an output on every commitment
CLASSROOM_CHANNEL_SAT = 200_000


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


def _open_line(cluster: Cluster, nodes: list[NodeProcess], capacity_sat: int) -> list[str]:
    """Each node opens a channel to the next, all at once; one block; all normal."""
    for a, b in pairwise(nodes):
        cluster.connect(a, b)

    def open_one(pair: tuple[NodeProcess, NodeProcess]) -> str:
        a, b = pair
        return str(a.call("open", peer_id=b.node_id, amount_sat=capacity_sat)["funding_txid"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        txids = list(pool.map(open_one, pairwise(nodes)))
    for txid in txids:   # the open answers once its funding transaction is broadcast
        cluster.miner.rpc.call("getmempoolentry", txid)
    cluster.mine(1)
    for (a, b), txid in zip(pairwise(nodes), txids, strict=True):
        for node in (a, b):
            cluster.wait_channel_state(node, txid, "normal", timeout=120)
    return txids


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
    """Payments/s through 1, 2 and 4 forwarders on a line of ``max(hops) + 2`` nodes."""
    names = [f"hop{i}" for i in range(max(hops) + 2)]
    nodes = _start_nodes(cluster, names)
    _fund_all(cluster, nodes[:-1], LINE_FUNDS_SAT)
    txids = _open_line(cluster, nodes, LINE_CHANNEL_SAT)
    time.sleep(1.0)   # each channel's update, sent again under the real scid, reaches the peer
    say(f"a line of {len(nodes)} node processes, each opening {LINE_CHANNEL_SAT:,} sat to the "
        f"next; payments of {HOP_PAYMENT_MSAT:,} msat from {names[0]}")
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
class ClassroomRun:
    """30 nodes on one bitcoind: how long they took, one payment, and each node's memory."""

    nodes: int
    channels: int
    setup_s: float
    payment_status: str
    rss_kb: tuple[int, ...]

    @property
    def mean_rss_mb(self) -> float:
        return sum(self.rss_kb) / len(self.rss_kb) / 1024

    @property
    def max_rss_mb(self) -> float:
        return max(self.rss_kb) / 1024


def measure_classroom(cluster: Cluster, say: Say, *, count: int = 30) -> ClassroomRun:
    """``count`` nodes in a line on one bitcoind; VmRSS of each once the channels are normal."""
    started = time.perf_counter()
    nodes = _start_nodes(cluster, [f"class{i:02d}" for i in range(count)])
    _fund_all(cluster, nodes[:-1], CLASSROOM_CHANNEL_SAT + 20_000)
    txids = _open_line(cluster, nodes, CLASSROOM_CHANNEL_SAT)
    setup_s = time.perf_counter() - started
    time.sleep(1.0)
    invoice = nodes[2].call("invoice", amount_msat=HOP_PAYMENT_MSAT)["invoice"]
    status = str(nodes[0].call("pay", invoice=invoice, timeout_s=30.0)["status"])
    rss = tuple(process_rss_kb(node.pid) for node in nodes)
    say(f"{count} nodes and {len(txids)} channels in a line on one bitcoind, up in "
        f"{setup_s:.0f} s; {nodes[0].name} -> {nodes[1].name} -> {nodes[2].name}: {status}")
    for node in nodes:
        node.stop()
    return ClassroomRun(nodes=count, channels=len(txids), setup_s=setup_s,
                        payment_status=status, rss_kb=rss)
