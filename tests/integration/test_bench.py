"""make bench's node-side pieces on real node processes: exact balances, a real penalty."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bitcoin.core import CTransaction

from bench.nodes import (
    PAYMENT_MSAT,
    BreachRun,
    MempoolFeed,
    measure_breach,
    measure_payments,
    zmq_rawtx_endpoint,
)
from channel.bolt11 import Bolt11Invoice
from regtest.cluster import Cluster
from regtest.node import BitcoindNode
from regtest.wallet import Wallet

AMOUNT_MSAT = 2_000_000


@pytest.fixture()
def home() -> Iterator[Path]:
    """A short cluster home: control sockets live under it, and AF_UNIX paths are short."""
    path = Path(tempfile.mkdtemp(prefix="bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


def test_bench_commands_pay_exactly_and_count_failures(bitcoind: BitcoindNode, miner: Wallet,
                                                       home: Path) -> None:
    """``invoices`` makes distinct invoices of the payee; ``bench-pay`` pays them one at a time
    or batched, counts a second payment of a paid invoice as failed, and returns with the
    channel quiescent and exactly the successful payments moved."""
    with Cluster.running(bitcoind, home, miner) as cluster:
        alice = cluster.start_node(_name("alice"), funds_sat=1_500_000)
        bob = cluster.start_node(_name("bob"))
        funding_txid = str(cluster.open_channel(alice, bob, 1_000_000)["funding_txid"])

        invoices = bob.call("invoices", count=5, amount_msat=AMOUNT_MSAT)["invoices"]
        decoded = [Bolt11Invoice.decode(text) for text in invoices]
        assert {inv.payee_node_id.hex() for inv in decoded} == {bob.node_id}
        assert {inv.amount_msat for inv in decoded} == {AMOUNT_MSAT}
        assert len({inv.payment_hash for inv in decoded}) == 5

        path = home / "invoices.txt"
        path.write_text("\n".join(invoices[:2]) + "\n")
        one = alice.call("pay-pipeline", invoices_path=str(path), batch_size=1)
        assert (one["payments"], one["succeeded"], one["batch_size"]) == (2, 2, 1)
        assert 0 < one["paid_s"] <= one["settled_s"]

        path.write_text("\n".join([*invoices[2:], invoices[0]]))
        many = alice.call("pay-pipeline", invoices_path=str(path), batch_size=4)
        assert (many["payments"], many["succeeded"], many["batch_size"]) == (4, 3, 4)

        for node, bobs_side in ((bob, "local_msat"), (alice, "remote_msat")):
            chan = cluster.channel(node, funding_txid)
            assert chan["htlcs"] == 0
            assert chan[bobs_side] == 5 * AMOUNT_MSAT
        assert cluster.channel(alice, funding_txid)["local_msat"] == \
            cluster.channel(bob, funding_txid)["remote_msat"]


def test_bench_measurements_on_real_nodes(bitcoind: BitcoindNode, miner: Wallet,
                                          home: Path) -> None:
    """measure_payments reports every payment it made (its own balance check passes) and both
    nodes' CPU, and
    measure_breach sees the victim node's penalty spend the breach in the mempool, then
    confirm."""
    lines: list[str] = []
    with Cluster.running(bitcoind, home, miner) as cluster:
        pay = measure_payments(cluster, lines.append, unbatched=5, batched=400, control=2,
                               warmup=1, names=(_name("alice"), _name("bob")))
        assert (pay.unbatched.payments, pay.unbatched.succeeded) == (5, 5)
        assert (pay.batched.payments, pay.batched.succeeded, pay.batched.batch_size) == \
            (400, 400, 200)
        assert pay.payee_received_msat == (1 + 5 + 400 + 2) * PAYMENT_MSAT
        assert pay.unbatched.per_second > 0 and pay.control_per_second > 0
        # 400 payments cost both processes CPU (well over the 10 ms clock tick)
        assert pay.batched.payer_cpu_s > 0 and pay.batched.payee_cpu_s > 0
        assert pay.batched.cpu_ms == pytest.approx(
            (pay.batched.payer_cpu_s + pay.batched.payee_cpu_s) / 400 * 1e3)

        with MempoolFeed(zmq_rawtx_endpoint(bitcoind)) as feed:
            run = measure_breach(cluster, feed, lines.append, index=1, tower=None,
                                 prefix=secrets.token_hex(2))
        assert isinstance(run, BreachRun), run
        assert run.penalty_confirmed
        assert 0 < run.latency_s < 10
        penalty = CTransaction.deserialize(miner.get_transaction(run.penalty_txid))
        assert any(bytes(i.prevout.hash)[::-1].hex() == run.breach_txid for i in penalty.vin)
