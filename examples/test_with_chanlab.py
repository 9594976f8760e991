"""A downstream project's tests on real chanlab nodes: only the fixtures of chanlab's plugin.

Run with plain ``pytest`` once chanlab is installed (``pip install chanlab`` or a path to it):
no conftest, no setup. Each test gets fresh nodes on the session's private regtest bitcoind.
"""

from __future__ import annotations

import pytest

from chanlab import Bitcoind, NodeError, NodeFactory, WaitFor

CHANNEL_SAT = 500_000
PAYMENT_MSAT = 25_000_000
WALLET_SAT = 1_000_000


def test_force_close_pays_each_wallet_its_balance_minus_fees(
        bitcoind: Bitcoind, node_factory: NodeFactory, wait_for: WaitFor) -> None:
    """After a payment and a force-close, each wallet gets its channel balance minus the fees
    of the transactions that paid it, to the satoshi."""
    alice = node_factory.get_node("alice", funds_sat=WALLET_SAT)
    bob = node_factory.get_node("bob")
    channel = alice.open_channel(bob, CHANNEL_SAT, confirm=True)   # mined; normal on both sides
    assert channel.state == "normal" and channel.local_msat == CHANNEL_SAT * 1000

    alice.pay(bob.invoice(PAYMENT_MSAT, description="coffee"))
    assert alice.channel(channel).local_msat == CHANNEL_SAT * 1000 - PAYMENT_MSAT
    assert bob.balance().offchain_msat == PAYMENT_MSAT

    closing = alice.force_close(channel)
    bitcoind.generate_block(1)
    commitment = bitcoind.tx(closing.commitment_txid)

    # Bob's to_remote is his at once; his node sweeps it into his wallet.
    to_remote = commitment.output_paying(PAYMENT_MSAT // 1000)
    bob_sweep = wait_for(lambda: bitcoind.spending_tx(commitment.txid, to_remote.vout),
                         what="Bob's node to sweep its to_remote")
    bitcoind.generate_block(1)
    wait_for(lambda: bob.balance().onchain_sat > 0, what="Bob's wallet to see its sweep")
    assert bob.balance().onchain_sat == to_remote.value_sat - bob_sweep.fee_sat

    # Alice's to_local is her balance minus the commitment's fee (the opener pays it), locked
    # for to_self_delay blocks; then her node sweeps it.
    to_local = commitment.output_paying(
        CHANNEL_SAT - PAYMENT_MSAT // 1000 - commitment.fee_sat)
    bitcoind.generate_block(closing.to_self_delay)
    alice_sweep = wait_for(lambda: bitcoind.spending_tx(commitment.txid, to_local.vout),
                           what="Alice's node to sweep its to_local")
    bitcoind.generate_block(1)
    assert channel.funding_txid is not None
    change_sat = WALLET_SAT - CHANNEL_SAT - bitcoind.tx(channel.funding_txid).fee_sat
    wait_for(lambda: alice.balance().onchain_sat > change_sat,
             what="Alice's wallet to see her sweep")
    assert alice.balance().onchain_sat == change_sat + to_local.value_sat - alice_sweep.fee_sat


def test_a_killed_node_comes_back_with_its_channel(node_factory: NodeFactory) -> None:
    """kill -9 of the payee, then restart: its channel is normal with the same balance, and
    payments go on."""
    alice, bob = node_factory.line_graph(2, fundamount=CHANNEL_SAT)
    alice.pay(bob.invoice(PAYMENT_MSAT))

    bob.kill()
    with pytest.raises(NodeError, match="not running"):
        bob.info()
    bob.restart()

    (channel,) = bob.channels()
    assert channel.state == "normal" and channel.local_msat == PAYMENT_MSAT
    alice.pay(bob.invoice(PAYMENT_MSAT))
    assert bob.channel(channel).local_msat == 2 * PAYMENT_MSAT


def test_a_payment_crosses_an_announced_line(node_factory: NodeFactory,
                                            wait_for: WaitFor) -> None:
    """With wait_for_announce=True every node knows the whole line: the first node pays the
    last through the middle one, which keeps exactly the fee the payer was charged."""
    alice, bob, carol = node_factory.line_graph(3, fundamount=CHANNEL_SAT,
                                                wait_for_announce=True)
    before = bob.balance().offchain_msat
    paid = alice.pay(carol.invoice(PAYMENT_MSAT))
    # bob's default policy, as his channel_update announces it: 1000 msat + 1 ppm
    assert paid.fee_msat == 1000 + PAYMENT_MSAT // 1_000_000
    assert carol.balance().offchain_msat == PAYMENT_MSAT
    wait_for(lambda: bob.balance().offchain_msat == before + paid.fee_msat,
             what="bob to settle his side of the forward")
