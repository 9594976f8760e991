"""Four chanlab node processes in a line, A - B - C - D, with announced channels (BOLT 7).

Every channel is opened with ``announce``; at the funding's 6th confirmation the ends
exchange ``announcement_signatures`` and every node learns, through gossip relayed by its
neighbours, all three channels (both directions' ``channel_update``) and all four
``node_announcement``\\ s. C restarts alone (its peers stopped) and finds its graph on disk.
A then pays D over B and C, routed from its graph; each forwarder keeps exactly the fee its
public ``channel_update`` announces.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from regtest.cluster import Cluster, NodeProcess
from regtest.wait import wait_for

FUNDING_SAT = 1_000_000
PAYMENT_MSAT = 10_000_000
POLICIES = {"b": ("1000", "100", "40"), "c": ("3000", "250", "30")}  # base, ppm, cltv delta


def _start(cluster: Cluster, role: str, funds_sat: int = 0) -> NodeProcess:
    node = NodeProcess(cluster, f"{role}-{secrets.token_hex(3)}", allow_cheating=False,
                       to_self_delay=10)
    if role in POLICIES:
        base, ppm, delta = POLICIES[role]
        node.start_args = ["--fee-base-msat", base, "--fee-proportional-millionths", ppm,
                           "--cltv-expiry-delta", delta]
    node.start()
    cluster.nodes[node.name] = node
    if funds_sat:
        cluster.fund(node, funds_sat)
    return node


def _complete(node: NodeProcess) -> bool:
    """The node's graph holds 3 public channels with both updates and 4 announced nodes."""
    report = node.call("graph-info")
    return (report["public_channels"], report["public_channels_with_both_updates"],
            report["node_announcements"], report["complete"]) == (3, 3, 4, True)


def _policy_from(node: NodeProcess, towards: NodeProcess) -> dict[str, Any]:
    """The policy ``node`` announced for forwarding over its channel with ``towards``."""
    me, peer = node.node_id, towards.node_id
    for channel in node.call("graph-info")["channels"]:
        if {channel["node_1"], channel["node_2"]} == {me, peer} and channel["public"]:
            policy = channel["policy_1"] if channel["node_1"] == me else channel["policy_2"]
            assert policy is not None
            return dict(policy)
    raise AssertionError(f"{node.name} knows no public channel with {towards.name}")


def _fee_msat(policy: dict[str, Any], amount_msat: int) -> int:
    """BOLT 7 "HTLC Fees"."""
    return int(policy["fee_base_msat"]) + \
        amount_msat * int(policy["fee_proportional_millionths"]) // 1_000_000


def test_four_nodes_learn_the_whole_graph_by_gossip_and_pay_across_it(
        cluster: Cluster) -> None:
    """On A-B-C-D with announced channels every node's graph becomes complete after the 6th
    confirmation, C's graph survives a restart with no peer up, and A pays D through B and C
    with each forwarder gaining exactly its announced fee."""
    a = _start(cluster, "a", funds_sat=3_000_000)
    b = _start(cluster, "b", funds_sat=3_000_000)
    c = _start(cluster, "c", funds_sat=3_000_000)
    d = _start(cluster, "d")
    txids: dict[str, str] = {}
    for opener, peer, name in ((a, b, "ab"), (b, c, "bc"), (c, d, "cd")):
        cluster.connect(opener, peer)
        opened = opener.call("open", peer_id=peer.node_id, amount_sat=FUNDING_SAT,
                             announce=True)
        assert opened["announce"] is True
        txids[name] = str(opened["funding_txid"])
    cluster.mine(1)
    for (left, right), txid in zip(((a, b), (b, c), (c, d)), txids.values(), strict=True):
        for node in (left, right):
            cluster.wait_channel_state(node, txid, "normal")
    nodes = (a, b, c, d)
    cluster.mine(4)
    time.sleep(1.0)   # 5 confirmations: nothing may be announced yet
    assert [n.call("graph-info")["public_channels"] for n in nodes] == [0, 0, 0, 0]

    cluster.mine(1)
    sixth_block = time.monotonic()
    for node in nodes:
        wait_for(lambda node=node: _complete(node), timeout=30,
                 what=f"{node.name}'s graph to hold the whole line")
    print(f"complete graph on 4 nodes {time.monotonic() - sixth_block:.2f} s after the 6th "
          f"block")

    # C alone: its peers are down, so what it knows came from its database
    for node in (b, d, c):
        node.stop()
    c.start()
    assert c.call("info")["peers"] == []
    assert _complete(c)
    for node in (b, d):
        node.start()
    for left, right in ((a, b), (b, c), (c, d)):
        wait_for(lambda left=left, right=right: right.node_id in left.call("info")["peers"],
                 timeout=30, what=f"{left.name} to reconnect to {right.name}")
    for (left, right), txid in zip(((a, b), (b, c), (c, d)), txids.values(), strict=True):
        for node in (left, right):
            cluster.wait_channel_state(node, txid, "normal")

    fee_b = _fee_msat(_policy_from(b, c), PAYMENT_MSAT + _fee_msat(_policy_from(c, d),
                                                                     PAYMENT_MSAT))
    fee_c = _fee_msat(_policy_from(c, d), PAYMENT_MSAT)
    assert (fee_b, fee_c) == (1000 + 10_005_500 * 100 // 1_000_000, 3000 + 2500)

    def forwarder_msat(node: NodeProcess, left: str, right: str) -> int:
        return int(cluster.channel(node, txids[left])["local_msat"]) + \
            int(cluster.channel(node, txids[right])["local_msat"])

    before = (forwarder_msat(b, "ab", "bc"), forwarder_msat(c, "bc", "cd"),
              int(cluster.channel(d, txids["cd"])["local_msat"]))
    invoice = d.call("invoice", amount_msat=PAYMENT_MSAT)["invoice"]
    result = a.call("pay", invoice=invoice, timeout_s=30)
    assert result["status"] == "succeeded", result
    assert result["fee_msat"] == fee_b + fee_c

    def settled() -> bool:
        return all(cluster.channel(n, txids[k])["htlcs"] == 0
                   for n, k in ((a, "ab"), (b, "ab"), (b, "bc"), (c, "bc"), (c, "cd"),
                                (d, "cd")))

    wait_for(settled, timeout=15, what="every channel to settle")
    after = (forwarder_msat(b, "ab", "bc"), forwarder_msat(c, "bc", "cd"),
             int(cluster.channel(d, txids["cd"])["local_msat"]))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == \
        (fee_b, fee_c, PAYMENT_MSAT)
