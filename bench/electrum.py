"""I/O: payment latency between chanlab and Electrum, beside chanlab to chanlab.

Two chanlab node processes (``lat1``, ``lat2``) and one Electrum wallet (``erin``, with its
ElectrumX) on the bench's bitcoind. ``lat1`` opens a channel to ``lat2`` and one to ``erin``
(pushing half, so Erin can pay back); after one warm-up payment per direction, each timed
payment is one command on the payer, from this process, until it reports success: chanlab's
``pay`` on its control socket, Electrum's ``lnpay`` over its JSON-RPC. Invoices are made
before the clock starts. Latency, not throughput: one payment at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.figures import Figure, Goal, summarize
from regtest.cluster import Cluster, NodeProcess
from regtest.electrum import ElectrumWallet, ElectrumX
from regtest.electrum_provision import ensure_electrum
from regtest.errors import RegtestError
from regtest.wait import wait_for

__all__ = ["LATENCY_PAYMENT_SAT", "PaymentLatency", "electrum_figures", "measure_latencies"]

LATENCY_PAYMENT_SAT = 10_000
CHANNEL_SAT = 1_000_000
ELECTRUM_MIN_DEPTH = 3      # Electrum as fundee waits for 3 confirmations
SECTION = "payment latency, chanlab and Electrum"
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentLatency:
    """One direction's timed payments, in milliseconds."""

    name: str
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return summarize(self.samples_ms)[0]


def _timed_ms(pay: Callable[[], None]) -> float:
    started = time.perf_counter()
    pay()
    return (time.perf_counter() - started) * 1e3


def _chanlab_pays(payer: NodeProcess, invoice: str) -> None:
    answer = payer.call("pay", invoice=invoice)
    if answer["status"] != "succeeded":
        raise RegtestError(f"{payer.name} could not pay: {answer.get('reason')}")


def _electrum_pays(payer: ElectrumWallet, invoice: str) -> None:
    payment = payer.lnpay(invoice, timeout=30)
    if not payment.success:
        raise RegtestError(f"Electrum could not pay: {payment.log}")


def _invoice(node: NodeProcess) -> str:
    return str(node.call("invoice", amount_msat=LATENCY_PAYMENT_SAT * 1000)["invoice"])


def measure_latencies(cluster: Cluster, erin: ElectrumWallet, *,
                      rounds: int) -> list[PaymentLatency]:
    """Open the two channels, then time ``rounds`` payments per direction (after a warm-up)."""
    lat1 = cluster.start_node("lat1", funds_sat=3 * CHANNEL_SAT)
    lat2 = cluster.start_node("lat2")
    cluster.open_channel(lat1, lat2, CHANNEL_SAT)
    lat1.call("connect", peer=erin.address())
    opened = lat1.call("open", peer_id=erin.node_id(), amount_sat=CHANNEL_SAT,
                       push_msat=CHANNEL_SAT // 2 * 1000, anchors=False)
    funding = str(opened["funding_txid"])
    wait_for(lambda: funding in cluster.bitcoind.rpc.getrawmempool(), timeout=30,
             what="the funding transaction to Erin in the mempool")
    cluster.mine(ELECTRUM_MIN_DEPTH)
    cluster.wait_channel_state(lat1, funding, "normal", timeout=60)
    wait_for(lambda: any(c.state == "OPEN" and c.channel_point.txid_hex == funding
                         for c in erin.list_channels()),
             timeout=60, what="Erin's channel OPEN")
    def to_lat2() -> Callable[[], None]:
        invoice = _invoice(lat2)
        return lambda: _chanlab_pays(lat1, invoice)

    def to_erin() -> Callable[[], None]:
        invoice = erin.add_request(LATENCY_PAYMENT_SAT).bolt11
        return lambda: _chanlab_pays(lat1, invoice)

    def to_lat1() -> Callable[[], None]:
        invoice = _invoice(lat1)
        return lambda: _electrum_pays(erin, invoice)

    out: list[PaymentLatency] = []
    for name, prepare in (("chanlab -> chanlab", to_lat2), ("chanlab -> Electrum", to_erin),
                          ("Electrum -> chanlab", to_lat1)):
        prepare()()                                     # warm-up: routes, caches, first use
        samples = tuple(_timed_ms(prepare()) for _ in range(rounds))
        out.append(PaymentLatency(name=name, samples_ms=samples))
    return out


def electrum_figures(cluster: Cluster, say: Say, *, rounds: int) -> list[Figure]:
    """Provision Electrum (cached), run ElectrumX and one wallet, measure, stop them."""
    try:
        install = ensure_electrum(progress=lambda line: say(f"  {line}"))
    except RegtestError as exc:
        return [Figure(section=SECTION, name="Electrum", value=None, unit="ms", how="",
                       note=f"Electrum not available: {exc}")]
    say(f"Electrum {install.electrum_version}, ElectrumX {install.electrumx_version}; "
        f"{LATENCY_PAYMENT_SAT:,} sat per payment; each timed from this process until the "
        "payer's command reports success (chanlab `pay` on its control socket, Electrum "
        "`lnpay` over JSON-RPC); invoices made before the clock starts; one warm-up each")
    server = ElectrumX(install, rpc_url=cluster.bitcoind.rpc_url,
                       cookie_path=cluster.bitcoind.cookie_path,
                       home=cluster.home / "electrumx")
    server.start()
    erin = ElectrumWallet(install, home=cluster.home / "erin", server=server.server)
    try:
        erin.start()
        results = measure_latencies(cluster, erin, rounds=rounds)
    finally:
        erin.stop()
        server.stop()
    figures = []
    for result in results:
        median, low, high = summarize(result.samples_ms)
        say(f"{result.name:<20} median {median:7.1f} ms  (min {low:.1f}, max {high:.1f}, "
            f"{len(result.samples_ms)} payments)")
        figures.append(Figure(section=SECTION, name=f"one payment, {result.name}",
                              value=median, unit="ms", goal=Goal.AT_MOST,
                              how=f"median of {len(result.samples_ms)} ({low:.1f}-{high:.1f} ms)"))
    return figures
