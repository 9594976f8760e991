"""Private channels' channel_update between peers (BOLT 7, bolt-notes §9), in memory."""

from __future__ import annotations

import dataclasses
import hashlib

from test_manager import Net

from channel.effects import Effects
from channel.forwarder import NodePolicy
from channel.gossip import MESSAGE_FLAG_DONT_FORWARD, ChannelUpdate, ShortChannelId
from channel.gossip_local import PEER_UPDATE_KV_PREFIX, graph_report
from channel.graph import NetworkGraph
from channel.manager import ChannelManager
from channel.messages import decode_message
from channel.payer import local_short_channel_id
from channel.wire import REGTEST_CHAIN_HASH


def _line() -> tuple[Net, ChannelManager, ChannelManager, str]:
    net = Net()
    alice, bob = net.add("alice"), net.add("bob")
    bob.forwarder.policy = NodePolicy(fee_base_msat=2000, fee_proportional_millionths=100,
                                      cltv_expiry_delta=40)
    net.connect(alice, bob)
    key = net.open(alice, bob)
    return net, alice, bob, key


def test_each_end_learns_the_other_ends_policy_after_channel_ready() -> None:
    """After the open, Alice's graph holds Bob's direction of their channel with Bob's fees
    (2000 msat + 100 ppm, delta 40), under the channel's alias scid, and vice versa."""
    _net, alice, bob, key = _line()
    scid = ShortChannelId.from_bytes(local_short_channel_id(alice.handles[key]))
    channel = alice.graph.channels[scid]
    assert not channel.public and channel.capacity_sat == 1_000_000
    bob_policy = channel.policy_from(bob.node_id)
    assert bob_policy is not None
    assert (bob_policy.fee_base_msat, bob_policy.fee_proportional_millionths,
            bob_policy.cltv_expiry_delta, bob_policy.htlc_maximum_msat) == \
        (2000, 100, 40, 1_000_000_000)
    alice_policy = bob.graph.channels[scid].policy_from(alice.node_id)
    assert alice_policy is not None and alice_policy.fee_base_msat == 1000
    report = graph_report(alice.graph)
    assert [c["short_channel_id"] for c in report["channels"]] == [str(scid)]
    assert {n["node_id"] for n in report["nodes"]} == {alice.node_id.hex(), bob.node_id.hex()}


def test_our_update_is_private_and_signed_for_our_direction() -> None:
    """The update Bob sends has dont_forward and must_be_one set (message_flags 0x03) and
    Bob's direction bit; sent once per connection, again after a reconnection."""
    net, alice, bob, key = _line()
    fx = Effects()
    bob.gossip.send_updates([bob.handles[key]], bob.forwarder.policy, fx)
    assert fx.outgoing == []   # already sent on this connection
    alice.peer_disconnected(bob.node_id)
    bob.peer_disconnected(alice.node_id)
    fx = Effects()
    bob.peer_connected(alice.node_id, fx)
    net.complete(bob.node_id, fx)
    sent = []
    while net.queue:
        sender, receiver, raw = net.queue.popleft()
        message = decode_message(raw)
        if isinstance(message, ChannelUpdate):
            sent.append((sender, message))
        fx = Effects()
        net.managers[receiver].handle_message(sender, message, fx,
                                              fresh_script=net.scripts[receiver])
        net.complete(receiver, fx)
    [(sender, update)] = [(s, u) for s, u in sent if s == bob.node_id]
    assert update.message_flags == 0x01 | MESSAGE_FLAG_DONT_FORWARD == 0x03
    assert update.direction == (0 if bob.node_id < alice.node_id else 1)


def test_updates_not_signed_by_the_peer_or_for_another_channel_are_ignored() -> None:
    """Alice ignores Bob's update re-sent by Carol, and an update for an unknown scid; a
    re-played older update does not replace the newer one."""
    net, alice, bob, key = _line()
    carol = net.add("carol")
    handle = bob.handles[key]
    update = bob.gossip.channel_update(handle, bob.forwarder.policy)
    assert update is not None
    fx = Effects()
    assert not alice.gossip.on_peer_update(alice.graph, alice.handles.values(), carol.node_id,
                                           update, fx)
    other = dataclasses.replace(update, short_channel_id=bytes(8))
    assert not alice.gossip.on_peer_update(alice.graph, alice.handles.values(), bob.node_id,
                                           other, fx)
    assert fx.kv == []
    newer = bob.gossip.channel_update(handle, bob.forwarder.policy)
    assert newer is not None and newer.timestamp > update.timestamp
    assert alice.gossip.on_peer_update(alice.graph, alice.handles.values(), bob.node_id,
                                       newer, fx)
    assert not alice.gossip.on_peer_update(alice.graph, alice.handles.values(), bob.node_id,
                                           update, fx)   # older than what Alice has
    assert [k for k, _ in fx.kv] == [PEER_UPDATE_KV_PREFIX + update.short_channel_id.hex()]


def test_the_peers_update_is_persisted_and_replayed_into_a_new_graph() -> None:
    """The kv row written with Bob's update rebuilds Alice's graph after a restart."""
    _net, alice, bob, key = _line()
    update = bob.gossip.channel_update(bob.handles[key], bob.forwarder.policy)
    assert update is not None
    fx = Effects()
    assert alice.gossip.on_peer_update(alice.graph, alice.handles.values(), bob.node_id,
                                       update, fx)
    graph = NetworkGraph(REGTEST_CHAIN_HASH)
    assert alice.gossip.restore(graph, alice.handles.values(), [v for _, v in fx.kv]) == 1
    policy = graph.channels[update.scid].policy_from(bob.node_id)
    assert policy is not None and policy.fee_base_msat == 2000
    assert hashlib.sha256(bytes.fromhex(fx.kv[0][1])).digest() == \
        hashlib.sha256(b"\x01\x02" + update.encode()).digest()
