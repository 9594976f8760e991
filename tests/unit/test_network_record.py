"""regtest.network's pure parts: network.json records, matching channels, the status table."""

from __future__ import annotations

from typing import Any

from regtest.network import (
    ChannelEnd,
    ChannelRecord,
    ChannelStatus,
    NetworkRecord,
    NetworkStatus,
    NodeStatus,
    channel_statuses,
    fill_opened,
    render_status,
)
from regtest.topology import parse_topology

TXID_AB = "11" * 32
TXID_BC = "22" * 32


def _record() -> NetworkRecord:
    topology = parse_topology("line:3", capacity_sat=200_000)
    return NetworkRecord(topology=topology, started_bitcoind=True,
                         node_pids=(("alice", 101), ("bob", 102), ("carol", 103)),
                         channels=(ChannelRecord(plan=topology.channels[0], channel_id="aa" * 32,
                                                 funding_txid=TXID_AB),
                                   ChannelRecord(plan=topology.channels[1])))


def test_record_round_trips_through_json() -> None:
    """network.json read back gives the same record: pids, flags, ids and unopened channels."""
    record = _record()
    data = record.to_json()
    assert data["node_pids"] == {"alice": 101, "bob": 102, "carol": 103}
    assert data["channels"][1] == {"opener": "bob", "accepter": "carol", "capacity_sat": 200_000,
                                   "push_msat": 100_000_000, "channel_id": None,
                                   "funding_txid": None, "short_channel_id": None}
    assert NetworkRecord.from_json(data) == record


def test_open_answers_are_matched_to_plans_per_opener_in_order() -> None:
    """Each opener's `open` answers fill its channels in plan order, whatever the others did."""
    topology = parse_topology("star:4")
    records = tuple(ChannelRecord(plan=c) for c in topology.channels)
    answers = {"dave": [{"channel_id": "d1", "funding_txid": "f-d"}],
               "bob": [{"channel_id": "b1", "funding_txid": "f-b"}],
               "carol": [{"channel_id": "c1", "funding_txid": "f-c"}]}
    filled = list(fill_opened(records, answers))
    assert [(r.plan.opener, r.channel_id, r.funding_txid) for r in filled] == [
        ("bob", "b1", "f-b"), ("carol", "c1", "f-c"), ("dave", "d1", "f-d")]


def _entry(channel_id: str, outpoint: str | None, state: str, local: int,
           remote: int) -> dict[str, Any]:
    return {"channel_id": channel_id, "funding_outpoint": outpoint, "state": state,
            "local_msat": local, "remote_msat": remote}


def test_channel_ends_found_by_id_or_funding_and_marked_when_absent() -> None:
    """An end is matched by channel_id, else by funding outpoint; a silent node is
    'unreachable' and a node without the channel 'missing'."""
    record = _record()
    record = NetworkRecord(topology=record.topology, started_bitcoind=True,
                           channels=(record.channels[0],
                                     ChannelRecord(plan=record.channels[1].plan,
                                                   channel_id="", funding_txid=TXID_BC)))
    answers: dict[str, list[dict[str, Any]] | None] = {
        "alice": [_entry("aa" * 32, f"{TXID_AB}:0", "normal", 100_000_000, 100_000_000)],
        "bob": [_entry("aa" * 32, f"{TXID_AB}:0", "normal", 100_000_000, 100_000_000),
                _entry("bb" * 32, f"{TXID_BC}:1", "awaiting_lockin", 100_000_000,
                       100_000_000),
                # a channel outside the network, funded by a txid that starts the same way
                _entry("cc" * 32, f"{TXID_BC}00:0", "normal", 1, 2)],
        "carol": None,
    }
    statuses = channel_statuses(record, answers)
    assert [(e.node, e.state) for s in statuses for e in s.ends] == [
        ("alice", "normal"), ("bob", "normal"), ("bob", "awaiting_lockin"),
        ("carol", "unreachable")]
    answers["carol"] = []
    statuses = channel_statuses(record, answers)
    assert statuses[1].ends[1] == ChannelEnd(node="carol", state="missing", local_msat=None,
                                             remote_msat=None)


def test_status_table_names_units_and_down_nodes() -> None:
    """The table prints every amount with its unit, how much of the network each graph lacks,
    and marks a node that does not answer."""
    plan = parse_topology("line:2", capacity_sat=200_000).channels[0]
    status = NetworkStatus(
        spec="line:2", started_bitcoind=False,
        nodes=(NodeStatus(name="alice", label="alice", running=True, node_id="02" + "ab" * 32,
                          onchain_sat=9_688, offchain_msat=100_000_000, fee_base_msat=1000,
                          fee_proportional_millionths=1, cltv_expiry_delta=40,
                          graph_gaps=("node bob: no node_announcement",)),
               NodeStatus(name="bob", label="bob", running=False, node_id=None,
                          onchain_sat=None, offchain_msat=None, fee_base_msat=1000,
                          fee_proportional_millionths=1, cltv_expiry_delta=40)),
        channels=(ChannelStatus(
            record=ChannelRecord(plan=plan, channel_id="aa" * 32, funding_txid=TXID_AB),
            ends=(ChannelEnd(node="alice", state="normal", local_msat=100_000_000,
                             remote_msat=100_000_000),
                  ChannelEnd(node="bob", state="unreachable", local_msat=None,
                             remote_msat=None))),))
    assert render_status(status).splitlines() == [
        "network line:2: 1 of 2 nodes running (bitcoind: the home's own)",
        "",
        "node   label  running  node id           on-chain   off-chain         graph      "
        "fee policy",
        "alice  alice  yes      02ababababababab  9,688 sat  100,000,000 msat  1 missing  "
        "1000 msat + 1 ppm, cltv_expiry_delta 40",
        "bob    bob    NO       -                 -          -                 -          "
        "1000 msat + 1 ppm, cltv_expiry_delta 40",
        "",
        "channel       capacity     end    state        local             remote",
        "alice -> bob  200,000 sat  alice  normal       100,000,000 msat  100,000,000 msat",
        "                           bob    unreachable  -                 -",
    ]
    shown = status.to_json()["nodes"]
    assert [(n["graph_complete"], n["graph_gaps"]) for n in shown] == [
        (False, ["node bob: no node_announcement"]), (None, None)]
    assert status.to_json()["channels"][0]["ends"][1] == {
        "node": "bob", "state": "unreachable", "local_msat": None, "remote_msat": None}
