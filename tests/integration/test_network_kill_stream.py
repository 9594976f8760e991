"""Kill -9 of the second of two forwarders while a stream of 50 payments crosses a 3-hop route.

Alice - Bob - Carol - Dave, every channel announced (BOLT 7) and every graph complete, so Alice
routes to Dave over public gossip alone. Alice sends Dave 50 payments with ``pay --no-wait``
(all in flight together); Carol, the forwarder next to the payee, is killed with SIGKILL half
way and restarted. Every payment must end succeeded or failed at Alice (none pending), no HTLC
may be left on the three channels, both ends of each channel must agree, and the balances must
account for exactly the succeeded payments, to the msat: Dave gained the amounts, Carol and Bob
exactly their announced fees, Alice lost the sum. The helpers are the one-forwarder version's
(test_forward_kill_stream.py).
"""

from __future__ import annotations

import itertools

from test_forward_kill_stream import _node, _outcomes, _pay_while_killing, _wait_relinked

from regtest.cluster import Cluster, NodeProcess
from regtest.network_graph import (
    direction_policy,
    expected_from_forwarding,
    forward_fee_msat,
    scid_text,
    wait_graphs_complete,
)
from regtest.wait import wait_for

PAYMENTS = 50
AMOUNT_MSAT = 3_000_000
CAPACITY_SAT = 1_000_000
ANNOUNCE_DEPTH = 6


def _announced_line(cluster: Cluster, nodes: list[NodeProcess]) -> list[str]:
    """Each node opens an announced channel to the next; 6 blocks; every graph complete."""
    txids = []
    for left, right in itertools.pairwise(nodes):
        cluster.connect(left, right)
        txids.append(str(left.call("open", peer_id=right.node_id, amount_sat=CAPACITY_SAT,
                                   announce=True)["funding_txid"]))
    wait_for(lambda: set(txids) <= set(cluster.bitcoind.rpc.getrawmempool()), timeout=30,
             what="the funding transactions in the mempool")
    cluster.mine(ANNOUNCE_DEPTH)
    for (left, right), txid in zip(itertools.pairwise(nodes), txids, strict=True):
        for node in (left, right):
            cluster.wait_channel_state(node, txid, "normal", timeout=60)
    by_name = {node.name: node for node in nodes}
    expected = expected_from_forwarding({n.name: n.node_id for n in nodes},
                                        {n.name: n.call("forwarding") for n in nodes})
    assert len(expected.channels) == 3
    wait_graphs_complete(list(by_name), lambda name: by_name[name].call("graph-info"),
                         expected, timeout_s=90)
    return txids


def test_fifty_payments_across_two_forwarders_survive_a_kill_of_the_second(
        cluster: Cluster) -> None:
    """After Carol's kill -9 and restart mid-stream, each of 50 concurrent payments Alice ->
    Bob -> Carol -> Dave is succeeded, failed back, or refused at once, none pending; no HTLC is
    left, both ends of all three channels agree, and Dave, Carol, Bob and Alice moved by
    exactly succeeded x (amount, Carol's announced fee, Bob's announced fee, their sum)."""
    alice = _node(cluster, "alice", 1_100_000)
    bob = _node(cluster, "bob", 1_100_000)
    carol = _node(cluster, "carol", 1_100_000)
    dave = _node(cluster, "dave")
    nodes = [alice, bob, carol, dave]
    ab, bc, cd = txids = _announced_line(cluster, nodes)
    channels = list(zip(itertools.pairwise(nodes), txids, strict=True))

    # the fees each forwarder announces, read from Alice's graph (where her route comes from)
    graph = alice.call("graph-info")
    scid = {txid: cluster.channel(left, txid) for (left, _), txid in channels}
    forwarding = {n.name: n.call("forwarding")["channels"] for n in (bob, carol)}

    def announced(forwarder: NodeProcess, txid: str) -> dict[str, int]:
        key = scid[txid]["channel"]
        (entry,) = [c for c in forwarding[forwarder.name] if c["channel"] == key]
        text = scid_text(str(entry["short_channel_id"]))
        policy = direction_policy(graph, text, forwarder.node_id)
        assert policy is not None, f"Alice's graph lacks {forwarder.name}'s update on {text}"
        return policy

    carol_fee = forward_fee_msat(announced(carol, cd), AMOUNT_MSAT)
    bob_fee = forward_fee_msat(announced(bob, bc), AMOUNT_MSAT + carol_fee)
    assert (bob_fee, carol_fee) == (1003, 1003)   # the default policy: 1000 msat + 1 ppm

    def local(node: NodeProcess, txid: str) -> int:
        return int(cluster.channel(node, txid)["local_msat"])

    def settled() -> bool:
        for (left, right), txid in channels:
            a, b = cluster.channel(left, txid), cluster.channel(right, txid)
            if not (a["state"] == b["state"] == "normal" and a["htlcs"] == b["htlcs"] == 0 and
                    a["local_msat"] == b["remote_msat"]):
                return False
        return True

    probe = alice.call("pay", invoice=dave.call("invoice", amount_msat=AMOUNT_MSAT)["invoice"],
                       timeout_s=30.0)
    assert probe["status"] == "succeeded" and probe["fee_msat"] == bob_fee + carol_fee, probe
    wait_for(settled, timeout=15, what="the probe to settle")

    start = {"alice": local(alice, ab), "bob": local(bob, ab) + local(bob, bc),
             "carol": local(carol, bc) + local(carol, cd), "dave": local(dave, cd)}
    invoices = [dave.call("invoice", amount_msat=AMOUNT_MSAT) for _ in range(PAYMENTS)]
    hashes, refused = _pay_while_killing(alice, invoices, carol)
    _wait_relinked(carol, (bob, dave))
    wait_for(settled, timeout=90, what="every HTLC resolved after Carol's restart")
    succeeded, failed = _outcomes(alice, hashes)
    assert succeeded + failed + refused == PAYMENTS and succeeded > 0
    now = {"alice": local(alice, ab), "bob": local(bob, ab) + local(bob, bc),
           "carol": local(carol, bc) + local(carol, cd), "dave": local(dave, cd)}
    assert {name: now[name] - start[name] for name in now} == {
        "alice": -succeeded * (AMOUNT_MSAT + bob_fee + carol_fee),
        "bob": succeeded * bob_fee, "carol": succeeded * carol_fee,
        "dave": succeeded * AMOUNT_MSAT}
    assert bob.call("forwarding")["in_flight"] == []
    assert carol.call("forwarding")["in_flight"] == []
    received = sum(1 for row in dave.call("payments")
                   if row["direction"] == "received" and row["status"] == "succeeded")
    assert received == succeeded + 1   # and the probe: Dave was paid for exactly these
    print(f"{succeeded} succeeded, {failed} failed back, {refused} refused at once")
    # the route goes on forwarding after the restart
    after = alice.call("pay", invoice=dave.call("invoice", amount_msat=AMOUNT_MSAT)["invoice"],
                       timeout_s=30.0)
    assert after["status"] == "succeeded"
