"""make bench's network pieces on real node processes: exact amounts through forwarders over
announced channels, gossip completing every graph, and a classroom ring whose memory is read
from /proc."""

from __future__ import annotations

from bench.network import HOP_PAYMENT_MSAT, measure_classroom, measure_hops
from regtest.cluster import Cluster


def test_hop_bench_pays_exact_amounts_through_one_two_and_four_forwarders(
        cluster: Cluster) -> None:
    """Over an announced line, ten payments through each of 1, 2 and 4 forwarders (default
    policy 1000 msat + 1 ppm each) give the payee exactly ten amounts, and the payer pays
    each forwarder its fee on what that forwarder sends on."""
    runs = measure_hops(cluster, print, count=5)
    assert [r.hops for r in runs] == [1, 2, 4]
    for run in runs:
        assert run.refusal == ""
        assert run.payee_gain_msat == 10 * HOP_PAYMENT_MSAT
        assert run.one_per_second is not None and run.one_per_second > 0
        assert run.many_per_second is not None and run.many_per_second > 0
    # 2,000,000 msat on: 1000 + 2 msat at the last forwarder, then 1000 + 2 on 2,001,002...
    assert [r.fee_msat for r in runs] == [1002, 2 * 1002, 4 * 1002]


def test_classroom_ring_of_six_completes_its_graphs_pays_across_and_reports_memory(
        cluster: Cluster) -> None:
    """Six nodes in an announced ring on one bitcoind: every graph completes after the 6th
    confirmation, class00 pays class03 (halfway round, 2 forwarders) and every node's VmRSS is
    read (a Python node is above 10 MB)."""
    run = measure_classroom(cluster, print, count=6)
    assert (run.nodes, run.channels, run.payment_status, run.forwarders) == \
        (6, 6, "succeeded", 2)
    assert 0 < run.graph_s < 300
    assert len(run.rss_kb) == 6 and min(run.rss_kb) > 10 * 1024
