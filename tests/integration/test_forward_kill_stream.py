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
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import policy_known
from regtest.wait import wait_for

PAYMENTS = 50
AMOUNT_MSAT = 3_000_000
FEE_MSAT = 1000 + AMOUNT_MSAT // 1_000_000     # Bob's default policy (BOLT 7 "HTLC Fees")


def _node(cluster: Cluster, role: str, funds_sat: int = 0) -> NodeProcess:
    return cluster.start_node(f"{role}-{secrets.token_hex(3)}", funds_sat=funds_sat,
                              to_self_delay=10)


def _status(node: NodeProcess) -> dict[str, str]:
    return {row["payment_hash"]: row["status"] for row in node.call("payments")
            if row["direction"] == "sent"}


def _pay_while_killing(payer: NodeProcess, invoices: list[dict[str, object]],
                       victim: NodeProcess) -> tuple[set[str], int]:
    """Pay each invoice without waiting, kill -9 ``victim`` halfway (mid-stream: some payments
    through, some in flight, some not sent), then restart it. Returns the hashes ``payer``
    sent and how many it refused at once (no route while ``victim`` was down)."""
    hashes: set[str] = set()
    refused = 0
    for number, invoice in enumerate(invoices):
        answer = payer.call("pay", invoice=invoice["invoice"], wait=False)
        if answer["status"] == "failed":   # no route while the victim is down: nothing sent
            refused += 1
        else:
            hashes.add(str(invoice["payment_hash"]))
        if number == len(invoices) // 2:
            victim.kill()
    victim.start()
    return hashes, refused


def _wait_relinked(node: NodeProcess, neighbours: tuple[NodeProcess, ...]) -> None:
    """Wait until the restarted ``node`` is connected to each neighbour again (each redials)."""

    def relinked() -> bool:
        peers = node.call("info")["peers"]
        for other in neighbours:
            if other.node_id not in peers:
                try:
                    other.call("connect", peer=node.address)
                except ChanlabError:
                    pass
        return all(other.node_id in peers for other in neighbours)

    wait_for(relinked, timeout=30, what=f"{node.name} to be back with its neighbours")


def _outcomes(payer: NodeProcess, hashes: set[str]) -> tuple[int, int]:
    """Once every payment in ``hashes`` ended at ``payer``: how many succeeded, how many failed."""
    wait_for(lambda: all(_status(payer).get(h) in ("succeeded", "failed") for h in hashes),
             timeout=60, what="every payment to end succeeded or failed at the payer")
    statuses = _status(payer)
    return (sum(1 for h in hashes if statuses[h] == "succeeded"),
            sum(1 for h in hashes if statuses[h] == "failed"))


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

    wait_for(lambda: policy_known(carol, bob), timeout=30,
             what="Carol to know Bob's policy under the real scid")
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
    hashes, refused = _pay_while_killing(alice, invoices, bob)
    _wait_relinked(bob, (alice, carol))
    wait_for(settled, timeout=60, what="every HTLC resolved after Bob's restart")
    succeeded, failed = _outcomes(alice, hashes)
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
