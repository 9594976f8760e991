"""The *breach in the middle* drill on real nodes: Carol breaches the forwarder Bob with HTLCs
from both sides in flight; Bob's penalty takes every output and Alice's HTLC is failed back.

The drill checks itself as it goes; the checks below read bitcoind and the nodes again.
"""

from __future__ import annotations

import io

from bitcoin.core import CTransaction

from regtest.breach_middle_drill import (
    CHANNEL_SAT,
    EXTRA_MSAT,
    HELD_MSAT,
    PAID_MSAT,
    PUSH_MSAT,
    breach_in_the_middle,
    fee_msat,
)
from regtest.cluster import Cluster
from regtest.demo import Narrator


def test_breach_in_the_middle_penalty_takes_all_and_upstream_htlc_fails_back(
        cluster: Cluster) -> None:
    """Carol's revoked commitment, both HTLCs on it, pays Bob's wallet the whole channel
    minus the fees of the breach, penalties and sweep; Alice's held payment to Carol fails back
    whole and Carol's held payment to Alice completes (exactly 60,000,000 msat to Alice), and
    Bob keeps no forward open."""
    out = breach_in_the_middle(cluster, Narrator(io.StringIO()), tag="-bm")
    chain = cluster.miner
    # Carol's revoked state: after the two payments, with both held HTLCs (hers carries Bob's
    # fee), before her extra payment to Alice
    carol_msat = CHANNEL_SAT * 1000 - PUSH_MSAT + PAID_MSAT[0] - PAID_MSAT[1] \
        - fee_msat(PAID_MSAT[1]) - HELD_MSAT[1] - fee_msat(HELD_MSAT[1])
    assert carol_msat == 589_987_000
    bob_msat = CHANNEL_SAT * 1000 - carol_msat - HELD_MSAT[0] - HELD_MSAT[1] \
        - fee_msat(HELD_MSAT[1])
    assert out.revoked_msat == (carol_msat, bob_msat)
    breach = CTransaction.deserialize(chain.get_transaction(out.breach_txid))
    breach_fee = CHANNEL_SAT - sum(int(o.nValue) for o in breach.vout)
    assert sorted(int(o.nValue) for o in breach.vout) == sorted(
        [carol_msat // 1000 - breach_fee, bob_msat // 1000, HELD_MSAT[0] // 1000,
         (HELD_MSAT[1] + fee_msat(HELD_MSAT[1])) // 1000])
    s = out.settlement
    assert s.closing_txid == out.breach_txid and s.foreign_inputs_sat == 0
    assert sum(leaf.amount_sat for leaf in s.leaves) == CHANNEL_SAT - s.total_fees_sat
    assert out.bob_wallet_delta_sat == CHANNEL_SAT - s.total_fees_sat
    assert out.upstream_status == "failed"
    assert out.bob_in_flight == []   # both forwards resolved, none left open
    alice_before = CHANNEL_SAT * 1000 - PUSH_MSAT - PAID_MSAT[0] - fee_msat(PAID_MSAT[0]) \
        + PAID_MSAT[1] + EXTRA_MSAT
    assert out.alice_bob_before_msat == (alice_before - HELD_MSAT[0] - fee_msat(HELD_MSAT[0]),
                                         CHANNEL_SAT * 1000 - alice_before - HELD_MSAT[1])
    assert out.alice_bob_after_msat == (alice_before + HELD_MSAT[1],
                                        CHANNEL_SAT * 1000 - alice_before - HELD_MSAT[1])
