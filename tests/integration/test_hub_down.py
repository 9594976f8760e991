"""The *hub down* drill on real nodes: a star loses its hub mid-payment and nobody's money waits.

The drill checks itself as it goes; the checks below read the nodes' channel balances (msat)
and bitcoind (sat) again on their own.
"""

from __future__ import annotations

import io

from bitcoin.core import CTransaction

from regtest.cluster import Cluster
from regtest.demo import Narrator
from regtest.hub_drills import (
    DAVE_FEE_BASE_MSAT,
    HELD_MSAT,
    HUB_FEE_BASE_MSAT,
    PAYMENT_MSAT,
    TO_SELF_DELAY,
    fee_msat,
    hub_down,
)


def test_hub_down_mid_payment_routes_around_completes_in_flight_and_lets_a_leaf_exit(
        cluster: Cluster) -> None:
    """With the hub killed mid-payment: Alice (hub only) cannot pay and loses nothing, Bob pays
    round the hub through Dave for Dave's exact fee, the held HTLC completes after the hub's
    restart with the hub's exact fee, and Bob's lone force-close pays him his balance to the
    sat after to_self_delay."""
    out = hub_down(cluster, Narrator(io.StringIO()), tag="-t")
    hub_fee = fee_msat(HUB_FEE_BASE_MSAT, PAYMENT_MSAT)
    assert hub_fee == 3000
    assert out.via_hub_fee_msat == {"alice": hub_fee, "bob": hub_fee}
    assert out.around_fee_msat == fee_msat(DAVE_FEE_BASE_MSAT, PAYMENT_MSAT) == 7000
    assert out.held_fee_msat == fee_msat(HUB_FEE_BASE_MSAT, HELD_MSAT) == 4000
    before, down, after = out.before_kill_msat, out.hub_down_msat, out.after_restart_msat
    # the hub pushed 500,000 sat to each leaf; Alice and Bob each paid Carol through it
    assert before["hub-alice"] == (500_000_000 + PAYMENT_MSAT + hub_fee,
                                   500_000_000 - PAYMENT_MSAT - hub_fee)
    assert before["hub-carol"] == (500_000_000 - 2 * PAYMENT_MSAT, 500_000_000 + 2 * PAYMENT_MSAT)
    assert before["bob-dave"] == (1_000_000_000, 0)
    # while the hub was down: only the second path moved
    assert down["bob-dave"] == (1_000_000_000 - PAYMENT_MSAT - 7000, PAYMENT_MSAT + 7000)
    assert down["dave-carol"] == (1_000_000_000 - PAYMENT_MSAT, PAYMENT_MSAT)
    # after the restart: the held HTLC completed on both hub channels, for the hub's fee
    assert after["hub-alice"][1] == before["hub-alice"][1] - HELD_MSAT - 4000
    assert after["hub-carol"][1] == before["hub-carol"][1] + HELD_MSAT
    hub_total = sum(after[k][0] for k in ("hub-alice", "hub-bob", "hub-carol", "hub-dave"))
    assert hub_total == 4 * 500_000_000 + 2 * hub_fee + 4000
    assert out.bob_exit_msat == after["hub-bob"][1] == 500_000_000 - PAYMENT_MSAT - hub_fee
    chain = cluster.miner
    commitment = CTransaction.deserialize(chain.get_transaction(out.commitment_txid))
    sweep = CTransaction.deserialize(chain.get_transaction(out.sweep_txid))
    bob_sat = out.bob_exit_msat // 1000
    assert bob_sat == 479_997
    assert bob_sat in [int(o.nValue) for o in commitment.vout]
    assert sweep.vin[0].nSequence == TO_SELF_DELAY
    sweep_fee = bob_sat - sum(int(o.nValue) for o in sweep.vout)
    assert 0 < sweep_fee < 1000
    assert out.bob_wallet_delta_sat == bob_sat - sweep_fee
