"""regtest.network_graph: when a node's graph is complete, what it lacks, and the fee a
forwarder announces."""

from __future__ import annotations

from typing import Any

import pytest

from regtest.network_graph import (
    ExpectedChannel,
    ExpectedGraph,
    GraphIncomplete,
    direction_policy,
    expected_from_forwarding,
    forward_fee_msat,
    graph_gaps,
    scid_text,
    wait_graphs_complete,
)
from regtest.network_record import ChannelRecord, NetworkRecord, expected_graph
from regtest.topology import parse_topology

ALICE, BOB, CAROL = "02" + "aa" * 32, "03" + "bb" * 32, "02" + "cc" * 32
EXPECTED = ExpectedGraph(
    node_ids=(("alice", ALICE), ("bob", BOB), ("carol", CAROL)),
    channels=(ExpectedChannel(short_channel_id="103x1x0", ends=("alice", "bob")),
              ExpectedChannel(short_channel_id="103x2x1", ends=("bob", "carol"))))


def _policy(base: int, ppm: int, delta: int) -> dict[str, int]:
    return {"fee_base_msat": base, "fee_proportional_millionths": ppm,
            "cltv_expiry_delta": delta, "htlc_minimum_msat": 1,
            "htlc_maximum_msat": 990_000_000}


def _channel(scid: str, a: str, b: str, *, public: bool = True,
             policies: tuple[dict[str, int] | None, dict[str, int] | None] = (
                 _policy(1000, 1, 40), _policy(1000, 1, 40))) -> dict[str, Any]:
    node_1, node_2 = sorted((a, b))
    return {"short_channel_id": scid, "node_1": node_1, "node_2": node_2,
            "capacity_sat": 1_000_000, "public": public,
            "policy_1": policies[0], "policy_2": policies[1]}


def _node(node_id: str, alias: str = "x") -> dict[str, Any]:
    return {"node_id": node_id, "alias": alias, "addresses": []}


def _complete() -> dict[str, Any]:
    return {"nodes": [_node(ALICE), _node(BOB), _node(CAROL)],
            "channels": [_channel("103x1x0", ALICE, BOB), _channel("103x2x1", BOB, CAROL)]}


def test_a_graph_with_every_channel_update_and_node_is_complete() -> None:
    """Both channels public with both updates and all three nodes announced: no gap."""
    assert graph_gaps(EXPECTED, _complete()) == []


def test_each_missing_piece_is_named_with_who_should_have_sent_it() -> None:
    """An unannounced channel, a missing update (named by its sender), a node without its
    node_announcement and a channel between the wrong nodes are each one phrase."""
    graph = _complete()
    # bob-carol still private (its peers' updates only); alice-bob lacks bob's update
    graph["channels"] = [
        _channel("103x1x0", ALICE, BOB, policies=(_policy(1, 1, 1), None)
                 if ALICE < BOB else (None, _policy(1, 1, 1))),
        _channel("103x2x1", BOB, CAROL, public=False)]
    graph["nodes"] = [_node(ALICE), _node(BOB, alias=""), _node(CAROL)]
    assert graph_gaps(EXPECTED, graph) == [
        "channel 103x1x0 (alice-bob): no channel_update from bob",
        "channel 103x2x1 (bob-carol): no channel_announcement",
        "node bob: no node_announcement"]
    graph = _complete()
    graph["channels"][1] = _channel("103x2x1", ALICE, CAROL)
    assert graph_gaps(EXPECTED, graph) == [
        "channel 103x2x1 (bob-carol): announced between other nodes"]


def test_an_explicit_announced_flag_decides_over_alias_and_addresses() -> None:
    """A node entry saying announced: false is missing even with an alias; one with only an
    address counts as announced."""
    graph = _complete()
    graph["nodes"] = [{**_node(ALICE), "announced": False},
                      {"node_id": BOB, "alias": "", "addresses": ["127.0.0.1:9735"]},
                      {**_node(CAROL, alias=""), "announced": True}]
    assert graph_gaps(EXPECTED, graph) == ["node alice: no node_announcement"]


def test_scid_text_reads_the_eight_wire_bytes() -> None:
    """Block 103, transaction 1, output 0 is 0x000067 000001 0000; anything not 8 bytes is
    refused."""
    assert scid_text("0000670000010000") == "103x1x0"
    assert scid_text("ffffffffffffffff") == "16777215x16777215x65535"
    with pytest.raises(ValueError, match="8 bytes"):
        scid_text("00006700000100")


def test_bolt7_example_fees_are_the_specs_and_read_per_direction() -> None:
    """B's policy (200 msat + 2000 ppm) on 10,000,000 msat is 20,200 msat; the policy is
    read for the direction leaving the named node."""
    b_policy, c_policy = _policy(200, 2000, 20), _policy(300, 3000, 30)
    ordered = (b_policy, c_policy) if BOB < CAROL else (c_policy, b_policy)
    graph = {"nodes": [], "channels": [_channel("103x2x1", BOB, CAROL, policies=ordered)]}
    assert direction_policy(graph, "103x2x1", BOB) == b_policy
    assert direction_policy(graph, "103x2x1", CAROL) == c_policy
    assert direction_policy(graph, "103x2x1", ALICE) is None
    assert direction_policy(graph, "999x1x0", BOB) is None
    assert forward_fee_msat(b_policy, 10_000_000) == 20_200
    assert forward_fee_msat(_policy(1000, 1, 40), 999_999) == 1000   # rounded down


def test_waiting_returns_once_every_node_is_complete() -> None:
    """A node whose graph completes on its third answer is waited for; a node complete at
    once is asked once only."""
    asked: dict[str, int] = {"alice": 0, "bob": 0}

    def graph_of(name: str) -> dict[str, Any] | None:
        asked[name] += 1
        if name == "bob" and asked[name] < 3:
            return None if asked[name] == 1 else {"nodes": [], "channels": []}
        return _complete()

    took = wait_graphs_complete(["alice", "bob"], graph_of, EXPECTED, timeout_s=10)
    assert asked == {"alice": 1, "bob": 3}
    assert 0 <= took < 10


def test_a_time_out_names_each_node_and_what_it_lacks() -> None:
    """After the time-out the error is one line naming each incomplete node and its first
    three gaps, then how many more, then the hint."""
    def graph_of(name: str) -> dict[str, Any] | None:
        if name == "carol":
            return None
        return _complete() if name == "alice" else {"nodes": [], "channels": []}

    with pytest.raises(GraphIncomplete) as failed:
        wait_graphs_complete(["alice", "bob", "carol"], graph_of, EXPECTED, timeout_s=0.2,
                             hint="see the logs")
    assert str(failed.value) == (
        "every node's graph was not complete after 0 s (channels announced, both "
        "channel_updates, every node_announcement): bob lacks channel 103x1x0 (alice-bob): "
        "no channel_announcement; channel 103x2x1 (bob-carol): no channel_announcement; "
        "node alice: no node_announcement; and 2 more. carol lacks its graph-info (it does "
        "not answer); see the logs")


def test_expected_graph_from_forwarding_keeps_confirmed_channels_between_the_nodes() -> None:
    """Each channel between two of the nodes is expected once (both ends list it), under its
    scid in BLOCKxTXxOUT; a channel to an outsider or without a scid yet is left out."""
    outsider = "02" + "ee" * 32
    forwarding = {
        "alice": {"channels": [{"peer_id": BOB, "short_channel_id": "0000670000010000"},
                               {"peer_id": outsider, "short_channel_id": "0000680000010000"}]},
        "bob": {"channels": [{"peer_id": ALICE, "short_channel_id": "0000670000010000"},
                             {"peer_id": CAROL, "short_channel_id": None}]},
        "carol": {"channels": [{"peer_id": BOB, "short_channel_id": None}]}}
    expected = expected_from_forwarding({"alice": ALICE, "bob": BOB, "carol": CAROL},
                                        forwarding)
    assert expected == ExpectedGraph(
        node_ids=(("alice", ALICE), ("bob", BOB), ("carol", CAROL)),
        channels=(ExpectedChannel(short_channel_id="103x1x0", ends=("alice", "bob")),))


def test_a_network_record_expects_its_channels_once_their_scids_are_known() -> None:
    """expected_graph takes the record's channels that have a short channel id, with their
    planned ends, and the nodes at their ends by id (carol's channel has no scid yet)."""
    topology = parse_topology("line:3")
    record = NetworkRecord(topology=topology, started_bitcoind=False, channels=(
        ChannelRecord(plan=topology.channels[0], short_channel_id="103x1x0"),
        ChannelRecord(plan=topology.channels[1])))
    assert expected_graph(record, {"alice": ALICE, "bob": BOB, "carol": CAROL}) == \
        ExpectedGraph(node_ids=(("alice", ALICE), ("bob", BOB)),
                      channels=(ExpectedChannel(short_channel_id="103x1x0",
                                                ends=("alice", "bob")),))


def test_a_closed_channel_and_the_nodes_left_without_one_are_not_expected() -> None:
    """Closing alice-bob leaves bob-carol expected, with bob and carol only: alice has no
    public channel left, so no node_announcement of hers is waited for."""
    topology = parse_topology("line:3")
    record = NetworkRecord(topology=topology, started_bitcoind=False, channels=(
        ChannelRecord(plan=topology.channels[0], channel_id="ab", short_channel_id="103x1x0"),
        ChannelRecord(plan=topology.channels[1], channel_id="bc", short_channel_id="103x2x0")))
    ids = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    assert expected_graph(record, ids, closed={"ab"}) == ExpectedGraph(
        node_ids=(("bob", BOB), ("carol", CAROL)),
        channels=(ExpectedChannel(short_channel_id="103x2x0", ends=("bob", "carol")),))
