"""Kill -9 of the forwarder in the middle of a route while 50 payments are in flight at once.

Alice - Bob - Carol, Bob forwarding with his default policy (1000 msat + 1 ppm). Alice sends 50
payments to Carol with ``pay --no-wait`` (all in flight together, unlike the one-at-a-time
stream of test_forwarding_nodes.py); Bob is killed with SIGKILL while they pass and restarted.
Every payment must end succeeded or failed at Alice (none pending), and the balances of both
channels must account for exactly the succeeded ones, to the msat, on both ends.
"""

from __future__ import annotations

import secrets

from channel.errors import ChanlabError
from channel.gossip import ShortChannelId
from regtest.cluster import Cluster, NodeProcess
from regtest.wait import wait_for

PAYMENTS = 50
AMOUNT_MSAT = 3_000_000
FEE_MSAT = 1000 + AMOUNT_MSAT // 1_000_000     # Bob's default policy (BOLT 7 "HTLC Fees")


def _node(cluster: Cluster, role: str, funds_sat: int = 0) -> NodeProcess:
    node = NodeProcess(cluster, f"{role}-{secrets.token_hex(3)}", allow_cheating=False,
                       to_self_delay=10).start()
    cluster.nodes[node.name] = node
    if funds_sat:
        cluster.fund(node, funds_sat)
    return node


def _status(node: NodeProcess) -> dict[str, str]:
    return {row["payment_hash"]: row["status"] for row in node.call("payments")
            if row["direction"] == "sent"}


def test_fifty_payments_in_flight_through_a_killed_forwarder_all_resolve_exactly(
        cluster: Cluster) -> None:
    """After Bob's kill -9 and restart, each of 50 concurrent payments is succeeded, failed
    back, or refused at once (no route while Bob was down) at Alice, none pending; no HTLC is
    left, both ends of each channel agree, and Carol gained exactly succeeded x 3,000,000 msat
    while Bob gained exactly succeeded x 1003 msat."""
    alice = _node(cluster, "alice", 2_000_000)
    bob = _node(cluster, "bob", 2_000_000)
    carol = _node(cluster, "carol")
    ab = str(cluster.open_channel(alice, bob, 1_000_000)["funding_txid"])
    bc = str(cluster.open_channel(bob, carol, 1_000_000)["funding_txid"])

    def local(node: NodeProcess, txid: str) -> int:
        return int(cluster.channel(node, txid)["local_msat"])

    def hint_ready() -> bool:
        """Carol knows Bob's fee under the real scid: her invoices' hints carry it."""
        scids = {str(ShortChannelId.from_bytes(bytes.fromhex(c["short_channel_id"])))
                 for c in carol.call("forwarding")["channels"] if c["short_channel_id"]}
        return any(c["short_channel_id"] in scids and
                   (c["policy_1"] if c["node_1"] == bob_id else c["policy_2"]) is not None
                   for c in carol.call("graph-info")["channels"])

    bob_id = bob.node_id
    wait_for(hint_ready, timeout=30, what="Carol to know Bob's policy under the real scid")
    probe = alice.call("pay", invoice=carol.call("invoice", amount_msat=AMOUNT_MSAT)["invoice"],
                       timeout_s=30.0)
    assert probe["status"] == "succeeded" and probe["fee_msat"] == FEE_MSAT, probe

    def settled() -> bool:
        for txid, left, right in ((ab, alice, bob), (bc, bob, carol)):
            a, b = cluster.channel(left, txid), cluster.channel(right, txid)
            if not (a["state"] == b["state"] == "normal" and a["htlcs"] == b["htlcs"] == 0 and
                    a["local_msat"] == b["remote_msat"]):
                return False
        return True

    wait_for(settled, timeout=15, what="the probe to settle")
    start = (local(alice, ab), local(bob, ab) + local(bob, bc), local(carol, bc))
    invoices = [carol.call("invoice", amount_msat=AMOUNT_MSAT) for _ in range(PAYMENTS)]
    hashes: set[str] = set()     # payments Alice sent: the others she refused at once
    refused = 0
    for number, invoice in enumerate(invoices):
        answer = alice.call("pay", invoice=invoice["invoice"], wait=False)
        if answer["status"] == "failed":   # no route while Bob is down: nothing sent
            refused += 1
        else:
            hashes.add(str(invoice["payment_hash"]))
        if number == PAYMENTS // 2:
            bob.kill()    # mid-stream: some payments are through, some in flight, some not sent
    bob.start()

    def relinked() -> bool:
        peers = bob.call("info")["peers"]
        for other in (alice, carol):
            if other.node_id not in peers:
                try:
                    other.call("connect", peer=bob.address)
                except ChanlabError:
                    pass
        return alice.node_id in peers and carol.node_id in peers

    wait_for(relinked, timeout=30, what="Bob to be back with Alice and Carol")
    wait_for(settled, timeout=60, what="every HTLC resolved after Bob's restart")
    wait_for(lambda: all(_status(alice).get(h) in ("succeeded", "failed") for h in hashes),
             timeout=60, what="every payment to end succeeded or failed at Alice")
    statuses = _status(alice)
    succeeded = sum(1 for h in hashes if statuses[h] == "succeeded")
    failed = sum(1 for h in hashes if statuses[h] == "failed")
    assert succeeded + failed + refused == PAYMENTS and succeeded > 0
    assert local(carol, bc) - start[2] == succeeded * AMOUNT_MSAT
    assert local(bob, ab) + local(bob, bc) - start[1] == succeeded * FEE_MSAT
    assert start[0] - local(alice, ab) == succeeded * (AMOUNT_MSAT + FEE_MSAT)
    assert bob.call("forwarding")["in_flight"] == []
    print(f"{succeeded} succeeded, {failed} failed back, {refused} refused at once")
    # the route goes on forwarding after the restart
    after = alice.call("pay", invoice=carol.call("invoice", amount_msat=AMOUNT_MSAT)["invoice"],
                       timeout_s=30.0)
    assert after["status"] == "succeeded"
