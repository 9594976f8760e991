"""Three chanlab node processes in a line, Alice - Bob - Carol: Bob forwards Alice's payments.

Every node is a real ``chanlab node start`` process; Bob runs with his own fee policy
(``--fee-base-msat 2000 --fee-proportional-millionths 100 --cltv-expiry-delta 40``). Alice
pays Carol's invoices with ``pay``: she has no channel to Carol, so her route runs over the
route hint of Carol's invoice, which carries the fee and delta Bob announced to Carol in his
private ``channel_update``. Amounts are exact: Bob's balances change by exactly his fee.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channel.errors import ChanlabError
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import policy_known
from regtest.wait import wait_for

WaitFor = Callable[..., object]

FUNDING_SAT = 1_000_000
FEE_BASE_MSAT = 2000
FEE_PPM = 100
CLTV_DELTA = 40
STREAM_PAYMENT_MSAT = 1_000_000


def _fee_msat(amount_msat: int) -> int:
    """BOLT 7 "HTLC Fees" with Bob's policy."""
    return FEE_BASE_MSAT + amount_msat * FEE_PPM // 1_000_000


def _start(cluster: Cluster, role: str, *args: str, funds_sat: int = 0) -> NodeProcess:
    node = NodeProcess(cluster, f"{role}-{secrets.token_hex(3)}", allow_cheating=False,
                       to_self_delay=10)
    node.start_args = list(args)
    node.start()
    cluster.nodes[node.name] = node
    if funds_sat:
        cluster.fund(node, funds_sat)
    return node


@dataclass
class Line:
    cluster: Cluster
    alice: NodeProcess
    bob: NodeProcess
    carol: NodeProcess
    ab: str     # funding txids
    bc: str

    def hint_ready(self) -> bool:
        """Carol knows Bob's policy under the real scid: her invoices' hints carry his fee."""
        return policy_known(self.carol, self.bob)

    def local_msat(self, node: NodeProcess, funding_txid: str) -> int:
        return int(self.cluster.channel(node, funding_txid)["local_msat"])

    def bob_msat(self) -> int:
        return self.local_msat(self.bob, self.ab) + self.local_msat(self.bob, self.bc)

    def settled(self) -> bool:
        """All four channel ends normal, without HTLC, and each channel's two ends agree."""
        for txid, left, right in ((self.ab, self.alice, self.bob),
                                  (self.bc, self.bob, self.carol)):
            a, b = self.cluster.channel(left, txid), self.cluster.channel(right, txid)
            if not (a["state"] == b["state"] == "normal" and a["htlcs"] == b["htlcs"] == 0 and
                    a["local_msat"] == b["remote_msat"] and
                    a["remote_msat"] == b["local_msat"]):
                return False
        return True


def _line(cluster: Cluster) -> Line:
    alice = _start(cluster, "alice", funds_sat=2_000_000)
    bob = _start(cluster, "bob", "--fee-base-msat", str(FEE_BASE_MSAT),
                 "--fee-proportional-millionths", str(FEE_PPM),
                 "--cltv-expiry-delta", str(CLTV_DELTA), funds_sat=2_000_000)
    carol = _start(cluster, "carol")
    ab = str(cluster.open_channel(alice, bob, FUNDING_SAT)["funding_txid"])
    bc = str(cluster.open_channel(bob, carol, FUNDING_SAT)["funding_txid"])
    line = Line(cluster, alice, bob, carol, ab, bc)
    wait_for(line.hint_ready, timeout=30, what="Carol to know Bob's policy under the real scid")
    return line


def _pay(line: Line, amount_msat: int, timeout_s: float = 30.0) -> dict[str, Any]:
    invoice = line.carol.call("invoice", amount_msat=amount_msat)["invoice"]
    result: dict[str, Any] = line.alice.call("pay", invoice=invoice, timeout_s=timeout_s)
    return result


def test_bob_forwards_and_keeps_exactly_his_announced_fee(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """Three payments Alice -> Bob -> Carol succeed; per payment Carol gains the amount, Alice
    loses amount + fee and Bob's two channels together gain 2000 msat + amount * 100 / 1e6."""
    line = _line(cluster)
    policy = line.bob.call("forwarding")
    assert (policy["fee_base_msat"], policy["fee_proportional_millionths"],
            policy["cltv_expiry_delta"]) == (FEE_BASE_MSAT, FEE_PPM, CLTV_DELTA)
    for amount_msat in (1_000_000, 12_345_678, 50_000_001):
        before = (line.local_msat(line.alice, line.ab), line.bob_msat(),
                  line.local_msat(line.carol, line.bc))
        result = _pay(line, amount_msat)
        assert result["status"] == "succeeded", result
        assert result["fee_msat"] == _fee_msat(amount_msat)
        assert result["amount_msat"] == amount_msat
        wait_for(line.settled, timeout=15, what="the three nodes to settle")
        after = (line.local_msat(line.alice, line.ab), line.bob_msat(),
                 line.local_msat(line.carol, line.bc))
        assert before[0] - after[0] == amount_msat + _fee_msat(amount_msat)
        assert after[1] - before[1] == _fee_msat(amount_msat)
        assert after[2] - before[2] == amount_msat
    assert line.bob.call("forwarding")["in_flight"] == []


def _bobs_policy_seen_by_carol(line: Line) -> dict[str, Any] | None:
    bob_id = line.bob.node_id
    for channel in line.carol.call("graph-info")["channels"]:
        if bob_id in (channel["node_1"], channel["node_2"]):
            key = "policy_1" if channel["node_1"] == bob_id else "policy_2"
            return channel[key]  # type: ignore[no-any-return]
    return None


def test_carol_learns_bobs_policy_from_his_channel_update_and_keeps_it(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """Bob's private channel_update reaches Carol after channel_ready: her graph-info shows
    his fee and delta on their channel, and still does after Carol restarts."""
    line = _line(cluster)
    expected = {"fee_base_msat": FEE_BASE_MSAT, "fee_proportional_millionths": FEE_PPM,
                "cltv_expiry_delta": CLTV_DELTA, "htlc_minimum_msat": 1,
                "htlc_maximum_msat": FUNDING_SAT * 1000}
    wait_for(lambda: _bobs_policy_seen_by_carol(line) == expected, timeout=15,
             what="Carol to learn Bob's policy")
    line.carol.stop()
    line.carol.start()
    assert _bobs_policy_seen_by_carol(line) == expected


class _Stream(threading.Thread):
    """Alice pays Carol through Bob, one payment after another, until one does not succeed."""

    def __init__(self, line: Line) -> None:
        super().__init__(daemon=True)
        self.line = line
        self.succeeded = 0
        self.unresolved = 0

    def run(self) -> None:
        line = self.line
        for _ in range(200):
            try:
                invoice = line.carol.call("invoice", amount_msat=STREAM_PAYMENT_MSAT)["invoice"]
                result = line.alice.call("pay", invoice=invoice, timeout_s=3.0)
            except (ChanlabError, OSError):
                self.unresolved = 1
                return
            if result["status"] != "succeeded":
                self.unresolved = 1
                return
            self.succeeded += 1


def test_kill_9_of_the_forwarder_mid_stream_then_restart_resolves_every_payment(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """Bob is killed (SIGKILL) during a stream of payments and restarted: every HTLC is
    resolved on both channels, both ends of each channel agree to the msat, Carol's gain is a
    whole number of payments and Bob's gain is exactly that many fees."""
    line = _line(cluster)
    start = (line.local_msat(line.alice, line.ab), line.bob_msat(),
             line.local_msat(line.carol, line.bc))
    stream = _Stream(line)
    stream.start()
    wait_for(lambda: stream.succeeded >= 5, timeout=30, what="five payments through Bob")
    time.sleep(0.05)
    line.bob.kill()
    stream.join(20)
    assert not stream.is_alive()
    line.bob.start()

    def relinked() -> bool:
        peers = line.bob.call("info")["peers"]
        if line.alice.node_id not in peers:
            try:
                line.alice.call("connect", peer=line.bob.address)
            except ChanlabError:
                pass
            return False
        return line.carol.node_id in peers

    wait_for(relinked, timeout=30, what="Bob to be back with Alice and Carol")
    wait_for(line.settled, timeout=30, what="every HTLC resolved after Bob's restart")
    carol_gain = line.local_msat(line.carol, line.bc) - start[2]
    assert carol_gain % STREAM_PAYMENT_MSAT == 0
    count = carol_gain // STREAM_PAYMENT_MSAT
    assert stream.succeeded <= count <= stream.succeeded + stream.unresolved, \
        (stream.succeeded, stream.unresolved, count)
    assert line.bob_msat() - start[1] == count * _fee_msat(STREAM_PAYMENT_MSAT)
    assert start[0] - line.local_msat(line.alice, line.ab) == \
        count * (STREAM_PAYMENT_MSAT + _fee_msat(STREAM_PAYMENT_MSAT))
    assert line.bob.call("forwarding")["in_flight"] == []
    print(f"{stream.succeeded} succeeded before the kill, {count} settled in all")
    # the line goes on forwarding after the restart
    assert _pay(line, 3_000_000)["status"] == "succeeded"
