"""regtest.topology: each shape's nodes, channels, pushes and fee policies, and its errors."""

from __future__ import annotations

import pytest

from regtest.topology import (
    DEFAULT_POLICY,
    ChannelPlan,
    FeePolicy,
    NodePlan,
    Topology,
    TopologyError,
    node_names,
    parse_topology,
)


def _pairs(topology: Topology) -> list[tuple[str, str]]:
    return [(c.opener, c.accepter) for c in topology.channels]


def test_names_are_people_then_numbered() -> None:
    """The first six nodes have people's names, the seventh on are node07, node08…"""
    assert node_names(8) == ("alice", "bob", "carol", "dave", "erin", "frank", "node07",
                             "node08")
    assert node_names(60)[-1] == "node60"


def test_line_opens_each_node_to_the_next_with_half_pushed() -> None:
    """line:5 is four channels alice→bob→carol→dave→erin, each pushing half its capacity."""
    line = parse_topology("line:5")
    assert line.spec == "line:5"
    assert line.names == ("alice", "bob", "carol", "dave", "erin")
    assert _pairs(line) == [("alice", "bob"), ("bob", "carol"), ("carol", "dave"),
                            ("dave", "erin")]
    for chan in line.channels:
        assert chan.capacity_sat == 1_000_000
        assert chan.push_msat == 500_000_000
        assert chan.opener_msat == 500_000_000
    assert all(n.policy == DEFAULT_POLICY and n.label == n.name for n in line.nodes)


def test_star_leaves_open_to_the_hub() -> None:
    """star:4 makes alice the hub; bob, carol and dave each open one channel to her."""
    star = parse_topology("star:4", capacity_sat=200_000)
    assert _pairs(star) == [("bob", "alice"), ("carol", "alice"), ("dave", "alice")]
    assert {c.push_msat for c in star.channels} == {100_000_000}
    assert "alice" not in star.openers()


def test_ring_closes_the_line() -> None:
    """ring:3 is alice→bob→carol→alice: three channels, each node opens exactly one."""
    ring = parse_topology("ring:3")
    assert _pairs(ring) == [("alice", "bob"), ("bob", "carol"), ("carol", "alice")]
    assert {name: len(chans) for name, chans in ring.openers().items()} == \
        {"alice": 1, "bob": 1, "carol": 1}


def test_odd_capacity_pushes_the_floor_of_half() -> None:
    """An odd capacity pushes floor(capacity_msat / 2); the opener keeps the other msat."""
    (chan,) = parse_topology("line:2", capacity_sat=100_001).channels
    assert chan.push_msat == 50_000_500
    assert chan.opener_msat == 50_000_500
    assert chan.push_msat + chan.opener_msat == 100_001_000


def test_bolt7_example_has_the_specs_nodes_channels_and_policies() -> None:
    """bolt7-example: A,B,C,D as alice..dave; B and D each join A and C; the spec's fees."""
    example = parse_topology("bolt7-example")
    assert [(n.label, n.name) for n in example.nodes] == [
        ("A", "alice"), ("B", "bob"), ("C", "carol"), ("D", "dave")]
    ends = {frozenset((c.opener, c.accepter)) for c in example.channels}
    assert ends == {frozenset(p) for p in (("alice", "bob"), ("bob", "carol"),
                                           ("alice", "dave"), ("dave", "carol"))}
    policies = {n.label: n.policy for n in example.nodes}
    assert policies == {
        "A": FeePolicy(fee_base_msat=100, fee_proportional_millionths=1000,
                       cltv_expiry_delta=10),
        "B": FeePolicy(fee_base_msat=200, fee_proportional_millionths=2000,
                       cltv_expiry_delta=20),
        "C": FeePolicy(fee_base_msat=300, fee_proportional_millionths=3000,
                       cltv_expiry_delta=30),
        "D": FeePolicy(fee_base_msat=400, fee_proportional_millionths=4000,
                       cltv_expiry_delta=40),
    }
    assert sorted(len(c) for c in example.openers().values()) == [1, 1, 1, 1]


def test_spec_text_is_case_and_space_tolerant() -> None:
    """' LINE:3 ' and 'BOLT7-Example' parse like their lower-case forms."""
    assert parse_topology(" LINE:3 ").spec == "line:3"
    assert parse_topology("BOLT7-Example").spec == "bolt7-example"


@pytest.mark.parametrize(("spec", "message"), [
    ("line:1", "line:N needs 2 to 60 nodes, got 1"),
    ("star:2", "star:N needs 3 to 60 nodes, got 2"),
    ("ring:2", "ring:N needs 3 to 60 nodes, got 2"),
    ("ring:61", "ring:N needs 3 to 60 nodes, got 61"),
    ("line:five", "line:N needs a whole number of nodes, got 'five'"),
    ("mesh:4", "unknown topology 'mesh:4': use line:N, star:N, ring:N or bolt7-example"),
    ("line", "unknown topology 'line': use line:N, star:N, ring:N or bolt7-example"),
])
def test_bad_specs_say_what_is_accepted_in_one_line(spec: str, message: str) -> None:
    """Each bad spec raises TopologyError with exactly one line saying what would do."""
    with pytest.raises(TopologyError) as caught:
        parse_topology(spec)
    assert str(caught.value) == message


def test_limits_are_accepted() -> None:
    """The smallest and largest counts of each shape parse, with N-1 or N channels."""
    assert len(parse_topology("line:2").channels) == 1
    assert len(parse_topology("star:3").channels) == 2
    assert len(parse_topology("ring:60").channels) == 60
    assert len(parse_topology("line:60").nodes) == 60


@pytest.mark.parametrize("capacity_sat", [0, 19_999, 16_777_216])
def test_capacity_out_of_range_is_refused(capacity_sat: int) -> None:
    """A capacity peers would refuse (too small, or 2**24 sat and up) is refused up front."""
    with pytest.raises(TopologyError) as caught:
        parse_topology("line:3", capacity_sat=capacity_sat)
    assert str(caught.value) == ("--capacity-sat must be 20000 to 16777215 sat (BOLT 2's "
                                 f"limit without large channels), got {capacity_sat}")


def test_capacity_limits_are_accepted() -> None:
    """20,000 sat and 2**24 - 1 sat are both valid capacities."""
    assert parse_topology("line:2", capacity_sat=20_000).channels[0].capacity_sat == 20_000
    assert parse_topology("line:2", capacity_sat=16_777_215).channels[0].push_msat == \
        8_388_607_500


def test_records_refuse_inconsistent_plans() -> None:
    """A self-channel, an over-push, a duplicate pair or a stranger end are refused."""
    policy = DEFAULT_POLICY
    with pytest.raises(TopologyError, match="two ends"):
        ChannelPlan(opener="alice", accepter="alice", capacity_sat=1, push_msat=0)
    with pytest.raises(TopologyError, match=r"outside 0\.\.capacity"):
        ChannelPlan(opener="alice", accepter="bob", capacity_sat=1, push_msat=1001)
    nodes = (NodePlan(name="alice", label="alice", policy=policy),
             NodePlan(name="bob", label="bob", policy=policy))
    twice = (ChannelPlan(opener="alice", accepter="bob", capacity_sat=10, push_msat=0),
             ChannelPlan(opener="bob", accepter="alice", capacity_sat=10, push_msat=0))
    with pytest.raises(TopologyError, match="two channels between the same nodes"):
        Topology(spec="x", nodes=nodes, channels=twice)
    with pytest.raises(TopologyError, match="carol is not a node"):
        Topology(spec="x", nodes=nodes, channels=(
            ChannelPlan(opener="alice", accepter="carol", capacity_sat=10, push_msat=0),))
    with pytest.raises(TopologyError, match="cltv_expiry_delta must fit in 16 bits"):
        FeePolicy(fee_base_msat=0, fee_proportional_millionths=0, cltv_expiry_delta=65536)


def test_json_round_trip() -> None:
    """A topology written to network.json reads back equal, policies included."""
    for spec in ("line:3", "star:5", "ring:7", "bolt7-example"):
        topology = parse_topology(spec, capacity_sat=250_000)
        assert Topology.from_json(topology.to_json()) == topology
