"""``Lab`` builds a small public network by hand: announced channels, complete graphs, a
payment routed over gossip with the forwarder's announced fee to the msat."""

from __future__ import annotations

from chanlab import Lab
from regtest.network_graph import direction_policy, forward_fee_msat

PAYMENT_MSAT = 40_000_000


def test_lab_channels_announced_by_hand_route_a_payment_through_the_middle_node() -> None:
    """alice-bob and bob-carol opened with announce=True: wait_for_graphs returns with every
    channel public in alice's graph, and alice pays carol through bob, who gains exactly the
    fee his channel_update announces for bob-carol."""
    with Lab() as lab:
        alice, bob, carol = lab.nodes("alice", "bob", "carol")
        lab.channel(alice, bob, 500_000, announce=True)
        lab.channel(bob, carol, 500_000, announce=True)
        took = lab.factory.wait_for_graphs([alice, bob, carol], timeout=60)
        assert took < 60
        graph = alice.graph_info()
        public = [c for c in graph["channels"] if c["public"]]
        assert len(public) == 2
        (bob_carol,) = [c for c in public if {c["node_1"], c["node_2"]} ==
                        {bob.node_id, carol.node_id}]
        policy = direction_policy(graph, bob_carol["short_channel_id"], bob.node_id)
        assert policy is not None
        fee = forward_fee_msat(policy, PAYMENT_MSAT)
        assert fee == 1000 + 40   # the default policy: 1000 msat + 1 ppm

        before = bob.balance().offchain_msat
        paid = alice.pay(carol.invoice(PAYMENT_MSAT))
        assert paid.fee_msat == fee
        assert carol.balance().offchain_msat == PAYMENT_MSAT
        lab.wait_for(lambda: bob.balance().offchain_msat == before + fee,
                     what="bob to settle the forward with his fee")
