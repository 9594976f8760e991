"""The network graph and the pathfinder: BOLT 7's four-node fee example, hints, exclusions."""

from __future__ import annotations

import pytest

from channel.bolt11 import RouteHintHop
from channel.forwarding import ChannelPolicy
from channel.gossip import (
    ShortChannelId,
    encode_ipv4_address,
    sign_announcement,
    sign_channel_update,
    sign_node_announcement,
    unsigned_channel_announcement,
    with_channel_announcement_signatures,
)
from channel.graph import NetworkGraph, NoRoute, find_route
from channel.keys import PrivateKey
from channel.route import Route, route_amounts
from channel.wire import REGTEST_CHAIN_HASH

KEYS = {name: PrivateKey.from_int(i + 1) for i, name in enumerate("ABCDE")}
FUNDING = {name: PrivateKey.from_int(100 + i) for i, name in enumerate("ABCDE")}
ID = {name: key.pubkey for name, key in KEYS.items()}
# BOLT 7 "Recommendations for Routing": each node's cltv_expiry_delta and fee scheme.
CLTV = {"A": 10, "B": 20, "C": 30, "D": 40, "E": 50}
FEES = {"A": (100, 1000), "B": (200, 2000), "C": (300, 3000), "D": (400, 4000),
        "E": (500, 5000)}
HEIGHT = 500


def _hops(route: Route, amount_msat: int, final_delta: int) -> list[tuple[bytes, bytes, int, int]]:
    """(node, scid, HTLC amount, HTLC expiry) per hop, as the payer will offer them."""
    amounts = route_amounts(route, amount_msat=amount_msat, final_cltv=HEIGHT + final_delta)
    return [(hop.node_id, hop.short_channel_id, a.amount_msat, a.cltv_expiry)
            for hop, a in zip(route.hops, amounts, strict=True)]


def _policy(base: int, ppm: int, delta: int) -> ChannelPolicy:
    return ChannelPolicy(fee_base_msat=base, fee_proportional_millionths=ppm,
                         cltv_expiry_delta=delta, htlc_minimum_msat=0,
                         htlc_maximum_msat=10**15)


def _announce(graph: NetworkGraph, a: str, b: str, scid: ShortChannelId,
              capacity_sat: int = 1_000_000, timestamp: int = 1) -> None:
    unsigned = unsigned_channel_announcement(
        chain_hash=REGTEST_CHAIN_HASH, short_channel_id=scid, node_id_a=ID[a],
        node_id_b=ID[b], bitcoin_key_a=FUNDING[a].pubkey, bitcoin_key_b=FUNDING[b].pubkey)
    signed = unsigned
    for name in (a, b):
        node_sig, btc_sig = sign_announcement(unsigned, node_key=KEYS[name],
                                              funding_key=FUNDING[name])
        signed = with_channel_announcement_signatures(
            signed, node_id=ID[name], node_signature=node_sig, bitcoin_signature=btc_sig)
    assert graph.add_announced_channel(signed, capacity_sat)
    for name in (a, b):
        other = b if name == a else a
        base, ppm = FEES[name]
        update = sign_channel_update(
            node_key=KEYS[name], chain_hash=REGTEST_CHAIN_HASH, short_channel_id=scid,
            timestamp=timestamp, direction=0 if ID[name] < ID[other] else 1, disabled=False,
            cltv_expiry_delta=CLTV[name], htlc_minimum_msat=1, fee_base_msat=base,
            fee_proportional_millionths=ppm, htlc_maximum_msat=capacity_sat * 1000)
        assert graph.apply_update(update)


def _bolt7_example() -> tuple[NetworkGraph, dict[str, ShortChannelId]]:
    """B and D each connect A and C (the spec's diamond)."""
    graph = NetworkGraph(REGTEST_CHAIN_HASH)
    scids = {"AB": ShortChannelId(101, 1, 0), "BC": ShortChannelId(102, 1, 0),
             "AD": ShortChannelId(103, 1, 0), "DC": ShortChannelId(104, 1, 0)}
    for pair, scid in scids.items():
        _announce(graph, pair[0], pair[1], scid)
    return graph, scids


def test_bolt7_example_a_pays_c_through_b_with_the_spec_amounts() -> None:
    """A→B→C for 4,999,999 msat: A sends 5,010,198 msat at +29 blocks, C gets 4,999,999 at +9."""
    graph, scids = _bolt7_example()
    assert graph.is_complete()
    route = find_route(graph, source=ID["A"], target=ID["C"], amount_msat=4_999_999,
                       final_cltv_expiry_delta=9)
    assert _hops(route, 4_999_999, 9) == [
        (ID["B"], bytes(scids["AB"]), 5_010_198, HEIGHT + 20 + 9),  # B's fee: 200 + 9,999
        (ID["C"], bytes(scids["BC"]), 4_999_999, HEIGHT + 9)]


def test_without_b_the_route_goes_through_d_with_its_higher_fee() -> None:
    """Excluding B (a failed node) routes A→D→C: 5,020,398 msat at +49 blocks."""
    graph, scids = _bolt7_example()
    route = find_route(graph, source=ID["A"], target=ID["C"], amount_msat=4_999_999,
                       final_cltv_expiry_delta=9,
                       excluded_nodes=[ID["B"]])
    assert _hops(route, 4_999_999, 9) == [
        (ID["D"], bytes(scids["AD"]), 5_020_398, HEIGHT + 40 + 9),
        (ID["C"], bytes(scids["DC"]), 4_999_999, HEIGHT + 9)]
    with pytest.raises(NoRoute, match="no route"):
        find_route(graph, source=ID["A"], target=ID["C"], amount_msat=4_999_999,
                   final_cltv_expiry_delta=9,
                   excluded_channels=[scids["AB"], scids["DC"]])


def test_direct_channel_costs_the_payer_nothing() -> None:
    """B→C directly: no fee and only C's final delta (the payer adds none of its own)."""
    graph, scids = _bolt7_example()
    route = find_route(graph, source=ID["B"], target=ID["C"], amount_msat=4_999_999,
                       final_cltv_expiry_delta=9)
    assert _hops(route, 4_999_999, 9) == [
        (ID["C"], bytes(scids["BC"]), 4_999_999, HEIGHT + 9)]


def test_liquidity_and_maximum_constrain_the_choice() -> None:
    """A channel without the liquidity (ours, or learnt from a failure) is routed around."""
    graph, scids = _bolt7_example()
    route = find_route(graph, source=ID["A"], target=ID["C"], amount_msat=4_999_999,
                       final_cltv_expiry_delta=9,
                       liquidity_msat={(scids["BC"], ID["B"]): 1_000_000})
    assert route.hops[0].short_channel_id == bytes(scids["AD"])
    with pytest.raises(NoRoute):
        find_route(graph, source=ID["A"], target=ID["C"], amount_msat=2_000_000_000,
                   final_cltv_expiry_delta=9)


def test_disabled_update_and_newer_timestamp_rules() -> None:
    """A newer disabling channel_update removes a direction; an older one is ignored."""
    graph, scids = _bolt7_example()
    direction = 0 if ID["B"] < ID["C"] else 1

    def update(timestamp: int, disabled: bool) -> bool:
        return graph.apply_update(sign_channel_update(
            node_key=KEYS["B"], chain_hash=REGTEST_CHAIN_HASH, short_channel_id=scids["BC"],
            timestamp=timestamp, direction=direction, disabled=disabled, cltv_expiry_delta=20,
            htlc_minimum_msat=1, fee_base_msat=200, fee_proportional_millionths=2000,
            htlc_maximum_msat=1_000_000_000))

    assert not update(1, True)  # not newer than the announced one
    assert update(2, True)
    route = find_route(graph, source=ID["A"], target=ID["C"], amount_msat=4_999_999,
                       final_cltv_expiry_delta=9)
    assert route.hops[0].short_channel_id == bytes(scids["AD"])


def test_route_hint_reaches_a_private_payee() -> None:
    """E is reachable only through C's private channel, named by a BOLT 11 route hint."""
    graph, scids = _bolt7_example()
    hint_scid = ShortChannelId(200, 3, 1)
    hint = RouteHintHop(pubkey=ID["C"], short_channel_id=bytes(hint_scid), fee_base_msat=300,
                        fee_proportional_millionths=3000, cltv_expiry_delta=30)
    route = find_route(graph, source=ID["A"], target=ID["E"], amount_msat=1_000_000,
                       final_cltv_expiry_delta=18, route_hints=[[hint]])
    # C charges 300 + 1,000,000 * 3,000 / 10^6 = 3,300; B charges 200 + 1,003,300 * 0.002.
    assert _hops(route, 1_000_000, 18) == [
        (ID["B"], bytes(scids["AB"]), 1_005_506, HEIGHT + 18 + 30 + 20),
        (ID["C"], bytes(scids["BC"]), 1_003_300, HEIGHT + 18 + 30),
        (ID["E"], bytes(hint_scid), 1_000_000, HEIGHT + 18)]


def test_graph_survives_a_restart_through_its_records() -> None:
    """records() replayed into a new graph gives the same channels, policies and nodes."""
    graph, _ = _bolt7_example()
    assert graph.add_node(sign_node_announcement(
        node_key=KEYS["B"], timestamp=7, alias="bob", addresses=encode_ipv4_address(
            "127.0.0.1", 9735)))
    again = NetworkGraph.from_records(REGTEST_CHAIN_HASH, graph.records())
    assert again.channels == graph.channels
    assert again.node_addresses == {ID["B"]: [("127.0.0.1", 9735)]}
    assert again.node_aliases == {ID["B"]: "bob"}


def test_node_announcement_without_a_channel_is_ignored() -> None:
    """BOLT 7: a node_announcement for a node with no announced channel is dropped."""
    graph, _ = _bolt7_example()
    assert not graph.add_node(sign_node_announcement(node_key=KEYS["E"], timestamp=1,
                                                     alias="eve"))
    assert ID["E"] not in graph.node_aliases


def test_twenty_hop_limit() -> None:
    """A payee 21 channels away is out of reach: an onion holds 20 hops."""
    graph = NetworkGraph(REGTEST_CHAIN_HASH)
    keys = [PrivateKey.from_int(1000 + i) for i in range(22)]
    for i in range(21):
        graph.add_private_channel(
            ShortChannelId(300 + i, 1, 0), keys[i].pubkey, keys[i + 1].pubkey,
            capacity_sat=1_000_000, policy_from_a=_policy(0, 0, 1),
            policy_from_b=_policy(0, 0, 1))
    route = find_route(graph, source=keys[0].pubkey, target=keys[20].pubkey,
                       amount_msat=1000, final_cltv_expiry_delta=9)
    assert len(route.hops) == 20
    with pytest.raises(NoRoute):
        find_route(graph, source=keys[0].pubkey, target=keys[21].pubkey, amount_msat=1000,
                   final_cltv_expiry_delta=9)
