"""Public gossip between channel managers wired in memory: announcing, checking, relaying."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut

from channel import gossip_public
from channel.effects import Effects
from channel.gossip import (
    AnnouncementSignatures,
    ChannelAnnouncement,
    ChannelUpdate,
    ShortChannelId,
    check_channel_announcement,
    sign_node_announcement,
)
from channel.gossip_local import graph_report
from channel.gossip_public import (
    GOSSIP_KV_PREFIX,
    FundingOutput,
    NodeIdentity,
    graph_messages,
    restore_records,
)
from channel.graph import NetworkGraph, find_route
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import decode_message, encode_message
from channel.state import ChannelState
from channel.wire import REGTEST_CHAIN_HASH, WarningMessage
from tests.unit.test_manager import FUNDING_SAT, HEIGHT, Net


@dataclass
class GossipNet(Net):
    """The in-memory net plus a chain that answers scid lookups and a kv store per node."""

    chain: dict[ShortChannelId, FundingOutput] = field(default_factory=dict)
    kv: dict[bytes, dict[str, str]] = field(default_factory=dict)
    sent: list[tuple[bytes, bytes, object]] = field(default_factory=list)

    def add(self, name: str) -> ChannelManager:
        manager = super().add(name)
        manager.public.identity = NodeIdentity(alias=name)
        manager.public._clock = lambda: 1000.0   # rate limits: time stands still
        self.kv[manager.node_id] = {}
        return manager

    def complete(self, node_id: bytes, fx: Effects) -> None:
        for peer_id, message in fx.outgoing:
            self.sent.append((node_id, peer_id, message))
        super().complete(node_id, fx)
        self.kv[node_id].update(fx.kv)
        manager = self.managers[node_id]
        for scid in manager.public.take_lookups():   # what gossip_io does, at once
            answer = Effects()
            manager.public.lookup_done(manager, scid, self.chain.get(scid), answer)
            self.complete(node_id, answer)

    def announce(self, opener: ChannelManager, peer: ChannelManager, tx_index: int,
                 depth: int = 6) -> str:
        """An announced channel whose funding tx is ``depth`` blocks deep at ``tx_index``."""
        fx = Effects()
        handle = opener.open_channel(peer.node_id, funding_sat=FUNDING_SAT, push_msat=0,
                                     anchors=False, fx=fx, announce=True)
        self.complete(opener.node_id, fx)
        self.run()
        scid = ShortChannelId(HEIGHT - depth + 1, tx_index, 0)
        chan = handle.channel
        assert chan.funding_outpoint is not None
        self.chain[scid] = FundingOutput(chan.funding_outpoint.txid_hex,
                                         chan.funding_script_pubkey, FUNDING_SAT)
        for manager in (opener, peer):
            for key, _ in manager.awaiting_lockin():
                fx = Effects()
                manager.funding_depth(key, 1, fx)
                self.complete(manager.node_id, fx)
            fx = Effects()
            manager.payer.set_short_channel_id(handle.key, scid, fx)
            self.complete(manager.node_id, fx)
        self.run()
        return handle.key

    def mine(self, height: int, txs: list[CTransaction] | None = None) -> None:
        """Every manager sees a block (the chain watcher's flight: dirty monitors)."""
        for node_id, manager in self.managers.items():
            manager.block_connected(height, txs or [], reorg=False)
            fx = Effects()
            manager.dirty_monitors(fx)
            self.complete(node_id, fx)
        self.run()


@pytest.fixture
def gnet() -> GossipNet:
    return GossipNet()


def _complete(graph: NetworkGraph, channels: int, nodes: int) -> bool:
    report = graph_report(graph)
    return (report["public_channels"], report["public_channels_with_both_updates"],
            report["node_announcements"], report["complete"]) == (channels, channels, nodes,
                                                                  True)


def test_announcement_signatures_go_out_at_six_confirmations_and_assemble(
        gnet: GossipNet) -> None:
    """At 5 confirmations nothing is announced; at the 6th block both sides exchange
    announcement_signatures and hold the same four-signature announcement, both updates
    and both node announcements."""
    alice, bob = gnet.add("alice"), gnet.add("bob")
    gnet.connect(alice, bob)
    key = gnet.announce(alice, bob, tx_index=1, depth=5)
    assert not any(isinstance(m, AnnouncementSignatures) for _, _, m in gnet.sent)
    assert alice.graph.public_channels() == [] == bob.graph.public_channels()

    gnet.mine(HEIGHT + 1)
    signatures = [(s, r) for s, r, m in gnet.sent if isinstance(m, AnnouncementSignatures)]
    assert sorted(signatures) == sorted([(alice.node_id, bob.node_id),
                                         (bob.node_id, alice.node_id)])
    for manager in (alice, bob):
        assert _complete(manager.graph, 1, 2)
        announcement = next(m for m in graph_messages(manager.graph)
                            if isinstance(m, ChannelAnnouncement))
        check_channel_announcement(announcement, chain_hash=REGTEST_CHAIN_HASH)
        assert announcement.scid == ShortChannelId(HEIGHT - 4, 1, 0)
        assert manager.graph.node_aliases == {alice.node_id: "alice", bob.node_id: "bob"}
    updates = [m for m in graph_messages(alice.graph) if isinstance(m, ChannelUpdate)]
    assert [u.message_flags for u in updates] == [1, 1]   # public: no dont_forward
    assert alice.handles[key].channel.state is ChannelState.NORMAL


def test_new_gossip_is_relayed_to_a_third_manager_and_replayed_to_a_late_one(
        gnet: GossipNet) -> None:
    """Carol, connected to Bob, learns the Alice-Bob channel through Bob (checked on chain);
    Dave, connecting later, gets the whole graph replayed on his gossip_timestamp_filter and
    can route Dave→…→Alice over it."""
    alice, bob, carol, dave = (gnet.add(n) for n in ("alice", "bob", "carol", "dave"))
    gnet.connect(alice, bob)
    gnet.connect(bob, carol)
    gnet.announce(alice, bob, tx_index=1)
    gnet.announce(bob, carol, tx_index=2)
    gnet.mine(HEIGHT + 1)
    for manager in (alice, bob, carol):
        assert _complete(manager.graph, 2, 3)

    gnet.connect(carol, dave)
    assert _complete(dave.graph, 2, 3)
    assert dave.graph.node_aliases[alice.node_id] == "alice"
    gnet.announce(carol, dave, tx_index=3)
    gnet.mine(HEIGHT + 2)
    for manager in (alice, bob, carol, dave):
        assert _complete(manager.graph, 3, 4)
    route = find_route(dave.graph, source=dave.node_id, target=alice.node_id,
                       amount_msat=1_000_000, final_cltv_expiry_delta=18)
    assert [h.node_id for h in route.hops] == [carol.node_id, bob.node_id, alice.node_id]


def test_bad_announcement_signatures_earn_a_warning_not_a_force_close(
        gnet: GossipNet) -> None:
    """A peer whose announcement_signatures do not verify gets a warning; the channel stays
    open and unannounced."""
    alice, bob = gnet.add("alice"), gnet.add("bob")
    gnet.connect(alice, bob)
    key = gnet.announce(alice, bob, tx_index=1, depth=5)
    handle = bob.handles[key]
    assert handle.channel.channel_id is not None and handle.short_channel_id is not None
    forged = AnnouncementSignatures(channel_id=handle.channel.channel_id,
                                    short_channel_id=handle.short_channel_id,
                                    node_signature=b"\x01" * 64, bitcoin_signature=b"\x01" * 64)
    fx = Effects()
    bob.handle_message(alice.node_id, forged, fx)
    warnings = [m for _, m in fx.outgoing if isinstance(m, WarningMessage)]
    assert [w.text for w in warnings] == ["announcement_signatures do not verify"]
    assert bob.public.notes[-1].endswith("announcement_signatures do not verify "
                                         "(ignored; warning sent)")
    assert handle.channel.state is ChannelState.NORMAL
    assert bob.graph.public_channels() == []
    assert fx.broadcasts == []
    gnet.mine(HEIGHT + 1)   # the real signatures at the 6th block still announce it
    assert _complete(bob.graph, 1, 2)


def _relayed_announcement(gnet: GossipNet) -> tuple[ChannelManager, ChannelManager,
                                                     ChannelAnnouncement]:
    """Alice and Bob announce a channel; Carol (not connected) and its announcement."""
    alice, bob, carol = gnet.add("alice"), gnet.add("bob"), gnet.add("carol")
    gnet.connect(alice, bob)
    gnet.announce(alice, bob, tx_index=1)
    gnet.mine(HEIGHT + 1)
    announcement = next(m for m in graph_messages(bob.graph)
                        if isinstance(m, ChannelAnnouncement))
    return bob, carol, announcement


@pytest.mark.parametrize("chain_says", ["spent", "wrong script"])
def test_an_announcement_whose_funding_output_fails_the_chain_check_is_ignored(
        gnet: GossipNet, chain_says: str) -> None:
    """A channel_announcement whose scid names a spent output, or an output that is not the
    2-of-2 of its bitcoin keys, never enters the graph; its updates are dropped with it."""
    bob, carol, announcement = _relayed_announcement(gnet)
    scid = announcement.scid
    if chain_says == "spent":
        del gnet.chain[scid]
    else:
        real = gnet.chain[scid]
        gnet.chain[scid] = FundingOutput(real.txid_hex, b"\x00\x14" + bytes(20),
                                         real.amount_sat)
    gnet.connect(bob, carol)
    assert carol.graph.channels == {}
    assert carol.graph.node_aliases == {}
    assert any(f"channel_announcement {scid}" in note for note in carol.public.notes)


def test_caps_bound_what_a_peer_can_make_us_hold(gnet: GossipNet,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the graph at its channel cap a new announcement is ignored with one note; a
    peer over its lookup budget gets no more chain lookups."""
    bob, carol, announcement = _relayed_announcement(gnet)
    monkeypatch.setattr(gossip_public, "MAX_GRAPH_CHANNELS", 0)
    fx = Effects()
    for _ in range(3):
        carol.public.on_gossip(carol, bob.node_id, announcement, fx)
    assert carol.public.take_lookups() == []
    assert carol.public.notes == [
        "gossip: the graph holds 0 channels, its cap: new ones are ignored"]

    monkeypatch.setattr(gossip_public, "MAX_GRAPH_CHANNELS", 10)
    bucket = carol.public._budgets.setdefault(bob.node_id, gossip_public._Bucket())
    bucket.tokens = 0.0
    bucket.at = 1000.0
    carol.public.on_gossip(carol, bob.node_id, announcement, fx)
    assert carol.public.take_lookups() == []
    assert "too many chain lookups" in carol.public.notes[-1]


def test_a_spent_funding_output_forgets_the_channel_and_its_rows(gnet: GossipNet) -> None:
    """A block spending an announced channel's funding output removes it from the graph and
    writes its persisted rows empty (deleted)."""
    alice, bob = gnet.add("alice"), gnet.add("bob")
    gnet.connect(alice, bob)
    key = gnet.announce(alice, bob, tx_index=1)
    gnet.mine(HEIGHT + 1)
    outpoint = alice.handles[key].channel.funding_outpoint
    assert outpoint is not None
    spend = CTransaction([CTxIn(COutPoint(outpoint.txid, outpoint.vout))],
                         [CTxOut(1000, b"\x00\x14" + bytes(20))])
    gnet.mine(HEIGHT + 2, [spend])
    scid = bytes(ShortChannelId(HEIGHT - 5, 1, 0)).hex()
    for manager in (alice, bob):
        assert manager.graph.public_channels() == []
        rows = gnet.kv[manager.node_id]
        assert rows[f"{GOSSIP_KV_PREFIX}c:{scid}"] == ""
        assert rows[f"{GOSSIP_KV_PREFIX}u:{scid}00"] == ""


def test_the_persisted_rows_rebuild_the_same_graph(gnet: GossipNet) -> None:
    """The kv rows a node wrote while learning the graph replay into an identical graph."""
    alice, bob, carol = gnet.add("alice"), gnet.add("bob"), gnet.add("carol")
    gnet.connect(alice, bob)
    gnet.connect(bob, carol)
    gnet.announce(alice, bob, tx_index=1)
    gnet.announce(bob, carol, tx_index=2)
    gnet.mine(HEIGHT + 1)
    rows = {k[len(GOSSIP_KV_PREFIX):]: v for k, v in gnet.kv[carol.node_id].items()
            if k.startswith(GOSSIP_KV_PREFIX)}
    restored = NetworkGraph(REGTEST_CHAIN_HASH)
    restored.replay(restore_records(rows))
    assert graph_messages(restored) == graph_messages(carol.graph)
    assert _complete(restored, 2, 3)


def test_gossip_queries_and_foreign_gossip_never_fail_a_channel(gnet: GossipNet) -> None:
    """Query messages are ignored; a node_announcement of a node with no channel is not
    kept; nothing is sent back and the channel stays open."""
    bob, carol, _ = _relayed_announcement(gnet)
    gnet.connect(bob, carol)
    stranger_key = PrivateKey(hashlib.sha256(b"stranger").digest())
    stranger = sign_node_announcement(node_key=stranger_key, timestamp=5, alias="stranger")
    fx = Effects()
    query = decode_message(bytes.fromhex("0107") + REGTEST_CHAIN_HASH + bytes(8))
    for message in (query, stranger):
        carol.handle_message(bob.node_id, message, fx)
    assert fx.outgoing == []
    assert stranger_key.pubkey not in carol.graph.node_aliases
    assert encode_message(query)[:2] == bytes.fromhex("0107")
