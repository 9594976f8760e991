"""make bench's network pieces on real node processes: exact amounts through forwarders, and a
classroom of nodes whose memory is read from /proc."""

from __future__ import annotations

from bench.network import HOP_PAYMENT_MSAT, measure_classroom, measure_hops
from regtest.cluster import Cluster


def test_hop_bench_pays_exact_amounts_through_one_forwarder(cluster: Cluster) -> None:
    """Through one forwarder (default policy 1000 msat + 1 ppm) ten payments give the payee
    exactly ten amounts and cost the payer 1002 msat each; a longer route is either measured
    with the same exactness or reported with the payer's reason."""
    runs = measure_hops(cluster, print, count=5)
    assert [r.hops for r in runs] == [1, 2, 4]
    one = runs[0]
    assert one.refusal == ""
    assert one.payee_gain_msat == 10 * HOP_PAYMENT_MSAT
    assert one.fee_msat == 1000 + HOP_PAYMENT_MSAT // 1_000_000
    assert one.one_per_second is not None and one.one_per_second > 0
    for run in runs[1:]:
        if run.refusal:
            assert run.one_per_second is None and run.payee_gain_msat == 0
        else:
            assert run.payee_gain_msat == 10 * HOP_PAYMENT_MSAT
            assert run.fee_msat == run.hops * (1000 + HOP_PAYMENT_MSAT // 1_000_000)


def test_classroom_of_six_nodes_pays_through_a_forwarder_and_reports_memory(
        cluster: Cluster) -> None:
    """Six nodes in a line on one bitcoind: the payment class00 -> class01 -> class02
    succeeds and every node's VmRSS is read (a Python node is above 10 MB)."""
    run = measure_classroom(cluster, print, count=6)
    assert (run.nodes, run.channels, run.payment_status) == (6, 5, "succeeded")
    assert len(run.rss_kb) == 6 and min(run.rss_kb) > 10 * 1024
