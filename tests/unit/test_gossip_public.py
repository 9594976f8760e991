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
    GossipTimestampFilter,
    NodeAnnouncement,
    ShortChannelId,
    check_channel_announcement,
    sign_node_announcement,
)
from channel.gossip_io import node_identity
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
from channel.wire import REGTEST_CHAIN_HASH, WarningMessage, our_features
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
        super().complete(node_id, fx)   # end_of_batch adds to fx.outgoing: record after
        for peer_id, message in fx.outgoing:
            self.sent.append((node_id, peer_id, message))
        manager = self.managers[node_id]
        for peer_id in manager.public.peers_with_relays():   # what gossip_io's tasks send
            for raw in manager.public.take_relays(peer_id, 1000):
                self.sent.append((node_id, peer_id, decode_message(raw)))
                self.queue.append((node_id, peer_id, raw))
        self.kv[node_id].update(fx.kv)
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
        nodes = [m for m in graph_messages(manager.graph) if isinstance(m, NodeAnnouncement)]
        assert [n.features for n in nodes] == [our_features().to_bytes()] * 2
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
    bucket = carol.public._budget(bob.node_id)
    bucket.tokens = 0.0
    bucket.at = 1000.0
    carol.public.on_gossip(carol, bob.node_id, announcement, fx)
    assert carol.public.take_lookups() == []
    assert "too many chain lookups" in carol.public.notes[-1]


def test_a_slow_reader_gets_at_most_the_relay_queue_cap(gnet: GossipNet,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer's gossip waits in a bounded queue: a replay larger than the cap keeps the first
    messages, drops the rest with one note, and the queue accepts again once drained."""
    bob, carol, _ = _relayed_announcement(gnet)   # Bob's graph: 1 channel, 2 updates, 2 nodes
    monkeypatch.setattr(gossip_public, "MAX_RELAY_QUEUE", 3)
    fx = Effects()
    everything = GossipTimestampFilter(chain_hash=REGTEST_CHAIN_HASH, first_timestamp=0,
                                       timestamp_range=0xFFFFFFFF)
    bob.public.on_gossip(bob, carol.node_id, everything, fx)
    queued = [type(decode_message(raw)).__name__
              for raw in bob.public.take_relays(carol.node_id, 100)]
    assert queued == ["ChannelAnnouncement", "ChannelUpdate", "ChannelUpdate"]
    assert bob.public.notes == [f"peer {carol.node_id.hex()[:16]} reads its gossip too "
                                "slowly: 3 messages wait, newer ones are dropped"]
    bob.public.on_gossip(bob, carol.node_id, everything, fx)
    assert len(bob.public.take_relays(carol.node_id, 100)) == 3


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
        assert not manager.graph.has_public_channel(alice.node_id)
    later = sign_node_announcement(node_key=PrivateKey(hashlib.sha256(b"alice").digest()),
                                   timestamp=4_000_000_000, alias="alice again")
    fx = Effects()
    bob.handle_message(alice.node_id, later, fx)   # no announced channel left: not kept
    assert bob.graph.node_aliases.get(alice.node_id) != "alice again"
    assert fx.outgoing == [] == bob.public.take_relays(alice.node_id, 100)


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


def test_gossip_queries_are_answered_and_foreign_gossip_fails_nothing(
        gnet: GossipNet) -> None:
    """query_channel_range gets the public scids in range (encoding 0), and
    query_short_channel_ids the channel's announcement, both updates, both nodes and the end
    marker; a zlib-encoded query and a node_announcement of a node with no channel get
    nothing, and the channel stays open."""
    bob, carol, announcement = _relayed_announcement(gnet)
    gnet.connect(bob, carol)
    scid = bytes(announcement.scid)
    chain = REGTEST_CHAIN_HASH
    fx = Effects()
    carol.handle_message(bob.node_id, decode_message(
        bytes.fromhex("0107") + chain + (0).to_bytes(4, "big") + (1000).to_bytes(4, "big")),
        fx)
    assert carol.public.take_relays(bob.node_id, 100) == [
        bytes.fromhex("0108") + chain + (0).to_bytes(4, "big") + (1000).to_bytes(4, "big")
        + b"\x01" + (9).to_bytes(2, "big") + b"\x00" + scid]

    fx = Effects()
    carol.handle_message(bob.node_id, decode_message(
        bytes.fromhex("0105") + chain + (9).to_bytes(2, "big") + b"\x00" + scid), fx)
    answered = [decode_message(raw) for raw in carol.public.take_relays(bob.node_id, 100)]
    assert [type(m).__name__ for m in answered] == [
        "ChannelAnnouncement", "ChannelUpdate", "ChannelUpdate", "NodeAnnouncement",
        "NodeAnnouncement", "ReplyShortChannelIdsEnd"]
    assert answered[0] == announcement
    assert encode_message(answered[-1]) == bytes.fromhex("0106") + chain + b"\x01"

    fx = Effects()
    stranger_key = PrivateKey(hashlib.sha256(b"stranger").digest())
    stranger = sign_node_announcement(node_key=stranger_key, timestamp=5, alias="stranger")
    zlib_query = decode_message(bytes.fromhex("0105") + chain + (9).to_bytes(2, "big")
                                + b"\x01" + scid)
    for message in (zlib_query, stranger):
        carol.handle_message(bob.node_id, message, fx)
    assert fx.outgoing == [] == carol.public.take_relays(bob.node_id, 100)
    assert stranger_key.pubkey not in carol.graph.node_aliases
    assert all(h.channel.state is ChannelState.NORMAL for h in bob.handles.values())


def test_the_timestamp_filter_goes_only_to_peers_with_gossip_queries(gnet: GossipNet) -> None:
    """A peer that negotiated gossip_queries is asked for all gossip (first_timestamp 0, the
    whole range); one that did not gets no gossip_timestamp_filter it may not know."""
    alice, bob = gnet.add("alice"), gnet.add("bob")
    fx = Effects()
    alice.peer_connected(bob.node_id, fx, gossip_queries=True)
    assert [encode_message(m) for _, m in fx.outgoing] == [
        bytes.fromhex("0109") + REGTEST_CHAIN_HASH + bytes(4) + b"\xff" * 4]
    fx = Effects()
    alice.peer_connected(bob.node_id, fx, gossip_queries=False)
    assert fx.outgoing == []


def test_announcement_signatures_are_sent_again_after_a_reconnection(gnet: GossipNet) -> None:
    """Signatures sent while the peer is gone are lost with the connection; after the
    reconnection both sides send theirs again and the channel is announced."""
    carol, dave = gnet.add("carol"), gnet.add("dave")
    gnet.connect(carol, dave)
    gnet.announce(carol, dave, tx_index=2, depth=5)
    for manager in (carol, dave):
        manager.block_connected(HEIGHT + 1, [], reorg=False)
        fx = Effects()
        manager.dirty_monitors(fx)
        gnet.complete(manager.node_id, fx)
    assert sum(isinstance(m, AnnouncementSignatures) for _, _, m in gnet.sent) == 2
    gnet.queue.clear()   # the connection dropped with both signatures in flight
    for x, y in ((carol, dave), (dave, carol)):
        x.peer_disconnected(y.node_id)
    assert carol.graph.public_channels() == []
    gnet.connect(carol, dave)
    assert sum(isinstance(m, AnnouncementSignatures) for _, _, m in gnet.sent) == 4
    for manager in (carol, dave):
        assert _complete(manager.graph, 1, 2)


def test_a_channel_found_spent_after_a_restart_is_forgotten(gnet: GossipNet) -> None:
    """A restored channel whose funding output the chain reports spent (closed while the node
    was down) leaves the graph and its rows, and no later block spend is watched for it."""
    bob, carol, announcement = _relayed_announcement(gnet)
    gnet.connect(bob, carol)
    assert len(carol.graph.public_channels()) == 1
    fx = Effects()
    carol.public.channel_gone(carol, announcement.scid, fx)
    key = bytes(announcement.scid).hex()
    assert carol.graph.public_channels() == []
    assert (f"{GOSSIP_KV_PREFIX}c:{key}", "") in fx.kv
    assert carol.public.funding_outpoints == {}


@pytest.mark.parametrize(("host", "port", "addresses"), [
    ("127.0.0.1", 9735, bytes.fromhex("017f0000012607")),
    ("0.0.0.0", 9735, b""),
    ("localhost", 9735, b""),
    ("::1", 9735, b""),
])
def test_our_node_announcement_names_a_routable_ipv4_listen_address_only(
        host: str, port: int, addresses: bytes) -> None:
    """BOLT 7 address descriptor type 1 for an IPv4 listen address; nothing for 0.0.0.0, a
    host name or IPv6 (not announced by chanlab); the alias is the node's name."""
    identity = node_identity("carol", host, port, b"\x02" * 33)
    assert (identity.alias, identity.addresses) == ("carol", addresses)
    assert identity.rgb_color == hashlib.sha256(b"\x02" * 33).digest()[:3]


def test_the_cli_open_announce_reaches_the_node_as_the_table_names_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``chanlab alice open PEER 500000 --announce`` sends ``announce: True``; a plain
    ``open`` keeps today's default, a private channel."""
    from regtest import client
    sent: list[dict[str, object]] = []

    def fake_call(name: str, cmd: str, args: dict[str, object]) -> object:
        sent.append(args)
        return {"ok": 1}

    monkeypatch.setattr(client, "call_node", fake_call)
    peer = "02" + "ab" * 32
    assert client.run_client("alice", ["open", peer, "500000", "--announce"]) == 0
    assert client.run_client("alice", ["open", peer, "500000"]) == 0
    assert [args["announce"] for args in sent] == [True, False]


def test_graph_info_for_people_names_nodes_fees_and_completeness(gnet: GossipNet) -> None:
    """``chanlab NAME graph-info`` without --json: a line per node, the channel with each
    side's fee and delta, and whether the public graph is complete."""
    from regtest.client_views import human_answer
    alice, bob = gnet.add("alice"), gnet.add("bob")
    gnet.connect(alice, bob)
    gnet.announce(alice, bob, tx_index=1)
    text = human_answer("graph-info", graph_report(alice.graph)).split("\n")
    first, second = sorted([("alice", alice.node_id), ("bob", bob.node_id)],
                           key=lambda named: named[1])
    assert text[0] == f"node {first[0]:<16} {first[1].hex()[:16]}…  no address"
    assert text[2] == f"channel {HEIGHT - 5}x1x0 {first[0]} - {second[0]}, 1,000,000 sat"
    assert text[3:5] == [f"  {first[0]} charges 1000 msat + 1 ppm, cltv delta 40",
                         f"  {second[0]} charges 1000 msat + 1 ppm, cltv delta 40"]
    assert text[-1] == ("public graph complete: 1 of 1 public channels with both updates, "
                        "2 node announcements")


def test_damaged_rows_cost_their_gossip_not_the_restore(gnet: GossipNet) -> None:
    """A row that is not hex, or not a gossip message, is skipped; the others rebuild."""
    alice, bob = gnet.add("alice"), gnet.add("bob")
    gnet.connect(alice, bob)
    gnet.announce(alice, bob, tx_index=1)
    rows = {k[len(GOSSIP_KV_PREFIX):]: v for k, v in gnet.kv[alice.node_id].items()
            if k.startswith(GOSSIP_KV_PREFIX)}
    rows["n:zz"] = "not hex"
    rows["u:" + "ab" * 9] = "0102ffff"
    restored = NetworkGraph(REGTEST_CHAIN_HASH)
    restored.replay(restore_records(rows))
    assert graph_messages(restored) == graph_messages(alice.graph)


@pytest.mark.parametrize(("first", "span", "expected"), [
    (0, 0xFFFFFFFF, ["ChannelAnnouncement", "ChannelUpdate", "ChannelUpdate",
                     "NodeAnnouncement", "NodeAnnouncement"]),
    (0xFFFFFFF0, 15, ["ChannelAnnouncement"]),    # after every timestamp we hold
    (0xFFFFFFFF, 0, []),                          # BOLT 7's "no gossip, thanks"
])
def test_a_filter_replays_what_its_range_admits(gnet: GossipNet, first: int, span: int,
                                                 expected: list[str]) -> None:
    """A gossip_timestamp_filter gets the stored gossip whose timestamps fall in its range
    (announcements go with any range that is not the opt-out), read without decoding."""
    bob, carol, _ = _relayed_announcement(gnet)
    fx = Effects()
    bob.public.on_gossip(bob, carol.node_id, GossipTimestampFilter(
        chain_hash=REGTEST_CHAIN_HASH, first_timestamp=first, timestamp_range=span), fx)
    assert [type(decode_message(raw)).__name__
            for raw in bob.public.take_relays(carol.node_id, 100)] == expected


def test_whole_graph_answers_are_rationed_per_peer(gnet: GossipNet) -> None:
    """A peer re-sending filters gets REPLAY_BURST replays, then none until time passes."""
    bob, carol, _ = _relayed_announcement(gnet)
    everything = GossipTimestampFilter(chain_hash=REGTEST_CHAIN_HASH, first_timestamp=0,
                                       timestamp_range=0xFFFFFFFF)
    replays = []
    for _ in range(gossip_public.REPLAY_BURST + 2):
        bob.public.on_gossip(bob, carol.node_id, everything, Effects())
        replays.append(len(bob.public.take_relays(carol.node_id, 100)))
    assert replays == [5] * gossip_public.REPLAY_BURST + [0, 0]
    bob.public._clock = lambda: 1000.0 + gossip_public.REPLAY_EVERY_S
    bob.public.on_gossip(bob, carol.node_id, everything, Effects())
    assert len(bob.public.take_relays(carol.node_id, 100)) == 5
