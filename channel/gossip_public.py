"""Public gossip (BOLT 7): announcing our channels, checking and relaying everyone's.

Pure. :class:`PublicGossip` is the manager's gossip half for announced channels:

* **announcing** — a channel opened with ``announce_channel`` (``channel_flags`` bit 0) whose
  funding tx is 6 blocks deep sends ``announcement_signatures`` (node and bitcoin signatures
  over the ``channel_announcement`` digest); with the peer's, the full announcement is
  assembled, checked, added to the graph and sent, with our public ``channel_update`` and our
  ``node_announcement``. A peer's bad signature earns a ``warning``, never a force-close.
* **receiving** — a ``channel_announcement`` from anyone is checked (chain, four signatures)
  and then its funding output must be looked up on chain: that lookup is I/O, so this module
  only queues "look this scid up" (:meth:`take_lookups`) and takes the answer
  (:meth:`lookup_done`); the node's :mod:`channel.gossip_io` does the RPC. Updates and node
  announcements arriving while their channel's lookup is out are held (bounded) and applied
  after it.
* **relaying** — new valid gossip goes to the other peers that sent a
  ``gossip_timestamp_filter`` admitting it; a new filter replays the graph in its range.
* **bounds** — a token bucket per peer on announcements that need a lookup, a cache of
  lookups by scid, caps on channels, nodes, pending lookups and held messages.

Every change to the public graph is written as kv rows (``gossip:<kind>:<key>`` = raw
message, hex) in the flight that made it: the graph then survives a restart with the same
durability as the channel state it was learnt with, and a deletion is an empty value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bitcoin.core import CTransaction

from channel.effects import ChannelHandle, Effects
from channel.errors import InvalidGossip
from channel.gossip import (
    GOSSIP_MESSAGES,
    MESSAGE_FLAG_DONT_FORWARD,
    AnnouncementSignatures,
    ChannelAnnouncement,
    ChannelUpdate,
    GossipQuery,
    GossipTimestampFilter,
    NodeAnnouncement,
    QueryChannelRange,
    QueryShortChannelIds,
    ShortChannelId,
    announcement_digest,
    check_channel_announcement,
    check_funding_output,
    sign_announcement,
    sign_node_announcement,
    unsigned_channel_announcement,
    with_channel_announcement_signatures,
)
from channel.gossip_kv import ANNOUNCE_KV_PREFIX, GOSSIP_KV_PREFIX
from channel.graph import NetworkGraph
from channel.keys import PrivateKey, verify
from channel.messages import encode_message
from channel.state import ChannelState
from channel.wire import Message, WarningMessage, decode_with, our_features

if TYPE_CHECKING:
    from channel.manager import ChannelManager

__all__ = [
    "ANNOUNCE_CHANNEL",
    "ANNOUNCE_KV_PREFIX",
    "GOSSIP_KV_PREFIX",
    "MAX_GRAPH_CHANNELS",
    "MAX_GRAPH_NODES",
    "PUBLIC_GOSSIP_TYPES",
    "FundingOutput",
    "NodeIdentity",
    "PublicGossip",
    "graph_messages",
    "restore_records",
]

#: BOLT 2 ``open_channel`` ``channel_flags`` bit 0: the opener wants the channel announced
ANNOUNCE_CHANNEL: Final = 0x01
#: BOLT 7: no channel_announcement before the funding tx has 6 confirmations
ANNOUNCE_DEPTH: Final = 6
#: what a stranger's gossip can make us hold at most
MAX_GRAPH_CHANNELS: Final = 5_000
MAX_GRAPH_NODES: Final = 5_000
#: gossip waiting for one peer's relay task: a whole graph at its caps fits
MAX_RELAY_QUEUE: Final = 3 * MAX_GRAPH_CHANNELS + MAX_GRAPH_NODES
MAX_PENDING_LOOKUPS: Final = 64      # scids waiting for the chain (all peers together)
MAX_LOOKUP_CACHE: Final = 4096       # answers kept by scid (oldest forgotten first)
MAX_HELD_PER_SCID: Final = 4         # channel_updates waiting for their channel's lookup
MAX_HELD_NODES: Final = 256          # node_announcements waiting for a channel of theirs
#: per peer: announcements needing a chain lookup, per second after a burst
LOOKUPS_PER_S: Final = 5.0
LOOKUP_BURST: Final = 50
MAX_BUDGETS: Final = 1024            # peers whose lookup budget is remembered
MAX_NOTES: Final = 20                # log lines per flight about bad gossip
#: per peer: answers that may hold the whole graph (replays on a filter, query answers)
REPLAY_BURST: Final = 3
REPLAY_EVERY_S: Final = 10.0
#: what the manager hands to :meth:`PublicGossip.on_gossip`: BOLT 7's messages and queries
PUBLIC_GOSSIP_TYPES: Final = (AnnouncementSignatures, ChannelAnnouncement, ChannelUpdate,
                              NodeAnnouncement, GossipTimestampFilter, GossipQuery)
#: BOLT 7 gossip_timestamp_filter asking for everything from the start of time
ALL_GOSSIP_RANGE: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FundingOutput:
    """What the chain says about the output a scid names: None fields when there is none."""

    txid_hex: str
    script_pubkey: bytes
    amount_sat: int


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What our ``node_announcement`` says: alias, colour, BOLT 7 address descriptors."""

    alias: str
    rgb_color: bytes = b"\x33\x99\xff"
    addresses: bytes = b""


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``rate`` tokens a second, bursts of ``burst`` (by default the chain
    lookups' LOOKUPS_PER_S and LOOKUP_BURST)."""

    tokens: float = float(LOOKUP_BURST)
    at: float = 0.0
    rate: float = LOOKUPS_PER_S
    burst: int = LOOKUP_BURST

    def take(self, now: float) -> bool:
        if self.at:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class _Pending:
    """An announcement whose funding output is being looked up, and what waits for it."""

    peer_id: bytes
    announcement: ChannelAnnouncement
    updates: list[tuple[bytes, ChannelUpdate]] = field(default_factory=list)


def _typed(message: ChannelAnnouncement | ChannelUpdate | NodeAnnouncement) -> bytes:
    return message.TYPE.to_bytes(2, "big") + message.encode()


def restore_records(kv: dict[str, str]) -> list[bytes]:
    """The graph's raw records from the ``gossip:`` kv rows (``kv`` keyed without the
    prefix), in replay order: channels, then updates, then nodes; deleted rows skipped."""
    order = {"c": 0, "u": 1, "n": 2}
    rows = sorted((order[k[0]], k, v) for k, v in kv.items() if v and k[:1] in order)
    out = []
    for _, _, value in rows:
        try:
            out.append(bytes.fromhex(value))
        except ValueError:
            continue   # a damaged row costs its gossip, not the node's start
    return out


class PublicGossip:
    """Announced channels of ours, and the network's gossip through this node."""

    def __init__(self, *, node_secret: bytes, chain_hash: bytes,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], int] = lambda: int(time.time())) -> None:
        self._node_key = PrivateKey(node_secret)
        self.node_id = self._node_key.pubkey
        self.chain_hash = chain_hash
        self._clock = clock              # rate limits
        self._wall_clock = wall_clock    # node_announcement timestamps
        self.identity: NodeIdentity | None = None   # set by the node: alias, address
        self.announced: set[str] = set()        # keys of channels opened to be announced
        self._sigs_sent: set[str] = set()       # ... whose signatures went out on this connection
        self._published: set[str] = set()       # ... whose update and node went out since start
        self._their_sigs: dict[str, AnnouncementSignatures] = {}
        self.filters: dict[bytes, GossipTimestampFilter] = {}
        self._pending: dict[ShortChannelId, _Pending] = {}
        self._lookups: list[ShortChannelId] = []
        self._cache: dict[ShortChannelId, FundingOutput | None] = {}
        self._held_nodes: dict[bytes, tuple[bytes, NodeAnnouncement]] = {}
        self._budgets: dict[bytes, _Bucket] = {}
        self._replay_budgets: dict[bytes, _Bucket] = {}
        self.funding_outpoints: dict[tuple[str, int], ShortChannelId] = {}
        self._spent: list[ShortChannelId] = []
        self._last_node_timestamp = 0
        self._capped = False
        self.notes: list[str] = []   # warnings for the node's log (MAX_NOTES until drained)
        self.notes_suppressed = 0
        # what strangers' gossip cost: chain lookups started, refused over a peer's budget,
        # announcements rejected (bad signatures, funding output not the 2-of-2)
        self.counters = {"lookups": 0, "over_budget": 0, "rejected": 0}
        self._relays: dict[bytes, deque[bytes]] = {}   # peer -> encoded gossip to send
        self._overflowed: set[bytes] = set()

    # -- our channels ------------------------------------------------------------------------

    def mark_announced(self, key: str, fx: Effects) -> None:
        """Channel ``key`` was opened with ``announce_channel``: announce it once deep."""
        self.announced.add(key)
        fx.kv.append((ANNOUNCE_KV_PREFIX + key, "1"))

    def peer_connected(self, m: ChannelManager, peer_id: bytes, fx: Effects, *,
                       gossip_queries: bool) -> None:
        """BOLT 7: ask a peer that negotiated ``gossip_queries`` for its gossip (everything:
        a fresh node learns the whole graph); send our signatures again."""
        if gossip_queries:   # others would not know the message (pyln's plain peers)
            fx.send(peer_id, GossipTimestampFilter(
                chain_hash=self.chain_hash, first_timestamp=0,
                timestamp_range=ALL_GOSSIP_RANGE))
        for handle in m.handles_of(peer_id):
            self._sigs_sent.discard(handle.key)

    def peer_disconnected(self, peer_id: bytes) -> None:
        self.filters.pop(peer_id, None)
        self._relays.pop(peer_id, None)   # a reconnection's filter asks for it all again
        self._overflowed.discard(peer_id)

    def tick(self, m: ChannelManager, fx: Effects) -> None:
        """Send ``announcement_signatures`` for our announced channels now deep enough (and
        assemble those whose peer's arrived); forget channels whose funding was spent."""
        for key in sorted(self.announced):
            handle = m.handles.get(key)
            if handle is None or not self._deep(handle, m.height) or \
                    handle.peer_id not in m.connected:
                continue
            if self._is_public(m.graph, handle):
                if key not in self._published:   # e.g. after a restart: fresh update, node
                    self._publish_ours(m, handle, fx)
                continue
            if key not in self._sigs_sent:
                self._send_signatures(m, handle, fx)
            theirs = self._their_sigs.get(key)
            if theirs is not None:
                self._assemble(m, handle, theirs, fx)
        for scid in self._spent:
            self._forget(m.graph, scid, fx)
        self._spent.clear()

    def _deep(self, handle: ChannelHandle, height: int) -> bool:
        scid = handle.short_channel_id
        return scid is not None and handle.channel.state is ChannelState.NORMAL and \
            height - ShortChannelId.from_bytes(scid).block_height + 1 >= ANNOUNCE_DEPTH

    def _unsigned(self, m: ChannelManager, handle: ChannelHandle) -> ChannelAnnouncement:
        chan = handle.channel
        assert handle.short_channel_id is not None and chan.counterparty_params is not None
        return unsigned_channel_announcement(
            chain_hash=self.chain_hash,
            short_channel_id=ShortChannelId.from_bytes(handle.short_channel_id),
            node_id_a=self.node_id, node_id_b=handle.peer_id,
            bitcoin_key_a=chan.keys.funding_key.pubkey,
            bitcoin_key_b=chan.counterparty_params.basepoints.funding_pubkey.data)

    def _send_signatures(self, m: ChannelManager, handle: ChannelHandle, fx: Effects) -> None:
        """BOLT 7 "The announcement_signatures Message": our half of the announcement."""
        node_sig, bitcoin_sig = sign_announcement(self._unsigned(m, handle),
                                                  node_key=self._node_key,
                                                  funding_key=handle.channel.keys.funding_key)
        assert handle.channel.channel_id is not None and handle.short_channel_id is not None
        fx.send(handle.peer_id, AnnouncementSignatures(
            channel_id=handle.channel.channel_id, short_channel_id=handle.short_channel_id,
            node_signature=node_sig, bitcoin_signature=bitcoin_sig))
        self._sigs_sent.add(handle.key)

    def on_announcement_signatures(self, m: ChannelManager, peer_id: bytes,
                                   msg: AnnouncementSignatures, fx: Effects) -> None:
        """The peer's half: checked (a bad one is a ``warning``, the channel lives on), kept
        until ours is sent, then the announcement is assembled."""
        handle = m.handle_for(peer_id, msg.channel_id)
        if handle is None or handle.key not in self.announced:
            self._warn(peer_id, "announcement_signatures for a channel not to be announced",
                       fx)
            return
        if handle.short_channel_id is not None and \
                msg.short_channel_id != handle.short_channel_id:
            self._warn(peer_id, f"announcement_signatures name scid "
                       f"{ShortChannelId.from_bytes(msg.short_channel_id)}, the funding tx is "
                       f"at {ShortChannelId.from_bytes(handle.short_channel_id)}", fx)
            return
        if handle.short_channel_id is not None:
            digest = announcement_digest(self._unsigned(m, handle))
            chan = handle.channel
            assert chan.counterparty_params is not None
            if not verify(peer_id, digest, msg.node_signature) or not verify(
                    chan.counterparty_params.basepoints.funding_pubkey.data, digest,
                    msg.bitcoin_signature):
                self._warn(peer_id, "announcement_signatures do not verify", fx)
                return
        self._their_sigs[handle.key] = msg
        if not self._deep(handle, m.height):
            return   # ours goes with the 6th block (tick), the announcement with it
        if handle.key not in self._sigs_sent:
            # BOLT 7: respond to the first announcement_signatures after a reconnection
            self._send_signatures(m, handle, fx)
        self._assemble(m, handle, msg, fx)

    def _is_public(self, graph: NetworkGraph, handle: ChannelHandle) -> bool:
        if handle.short_channel_id is None:
            return False
        known = graph.channels.get(ShortChannelId.from_bytes(handle.short_channel_id))
        return known is not None and known.public

    def _warn(self, peer_id: bytes, text: str, fx: Effects) -> None:
        self._note(f"peer {peer_id.hex()[:16]}: {text} (ignored; warning sent)")
        fx.send(peer_id, WarningMessage.with_text(bytes(32), text[:500]))

    def _assemble(self, m: ChannelManager, handle: ChannelHandle,
                  theirs: AnnouncementSignatures, fx: Effects) -> None:
        """Both halves: the announcement, our update and node announcement, to everyone."""
        if self._is_public(m.graph, handle):
            return
        unsigned = self._unsigned(m, handle)
        node_sig, bitcoin_sig = sign_announcement(unsigned, node_key=self._node_key,
                                                  funding_key=handle.channel.keys.funding_key)
        announcement = with_channel_announcement_signatures(
            with_channel_announcement_signatures(
                unsigned, node_id=self.node_id, node_signature=node_sig,
                bitcoin_signature=bitcoin_sig),
            node_id=handle.peer_id, node_signature=theirs.node_signature,
            bitcoin_signature=theirs.bitcoin_signature)
        try:
            check_channel_announcement(announcement, chain_hash=self.chain_hash)
        except InvalidGossip as exc:
            self._warn(handle.peer_id, f"the channel_announcement does not verify: {exc}", fx)
            return
        outpoint = handle.channel.funding_outpoint
        assert outpoint is not None
        self._add_channel(m.graph, announcement, FundingOutput(
            outpoint.txid_hex, b"", handle.channel.funding_sat), outpoint.vout, fx)
        self._relay(announcement, None, fx, m.connected)
        self._publish_ours(m, handle, fx)

    def _publish_ours(self, m: ChannelManager, handle: ChannelHandle, fx: Effects) -> None:
        """Our public ``channel_update`` for an announced channel, and our node."""
        self._published.add(handle.key)
        assert handle.short_channel_id is not None
        m.gossip.public_scids.add(handle.short_channel_id)
        update = m.gossip.channel_update(handle, m.forwarder.policy)
        if update is not None:
            self._take_update(m.graph, update, None, fx, m.connected)
        self._announce_node(m, fx)

    def _announce_node(self, m: ChannelManager, fx: Effects) -> None:
        """Our ``node_announcement`` (BOLT 7: only once we have an announced channel)."""
        if self.identity is None:
            return
        timestamp = max(self._wall_clock(), self._last_node_timestamp + 1)
        self._last_node_timestamp = timestamp
        ours = sign_node_announcement(node_key=self._node_key, timestamp=timestamp,
                                      alias=self.identity.alias,
                                      rgb_color=self.identity.rgb_color,
                                      features=our_features().to_bytes(),   # BOLT 9 node
                                      addresses=self.identity.addresses)
        self._take_node(m.graph, ours, None, fx, m.connected)

    # -- anyone's gossip ---------------------------------------------------------------------

    def on_gossip(self, m: ChannelManager, peer_id: bytes, message: object,
                  fx: Effects) -> ChannelUpdate | None:
        """A gossip message from ``peer_id``; a ``channel_update`` that is not public gossip
        comes back, for the private path (:mod:`channel.gossip_local`)."""
        if isinstance(message, GossipTimestampFilter):
            if message.chain_hash == self.chain_hash:
                self.filters[peer_id] = message
                # a replay costs the whole graph: a peer re-sending filters spends its budget
                if self._replays(peer_id).take(self._clock()):
                    self._replay(m.graph, peer_id, message, fx)
        elif isinstance(message, ChannelAnnouncement):
            self._on_channel_announcement(m, peer_id, message, fx)
        elif isinstance(message, ChannelUpdate):
            return None if self._on_channel_update(m, peer_id, message, fx) else message
        elif isinstance(message, NodeAnnouncement):
            self._on_node_announcement(m, peer_id, message, fx)
        elif isinstance(message, AnnouncementSignatures):
            self.on_announcement_signatures(m, peer_id, message, fx)
        elif isinstance(message, QueryChannelRange | QueryShortChannelIds):
            from channel.gossip_queries import answer_query
            if self._replays(peer_id).take(self._clock()):   # an answer may be the graph
                for reply in answer_query(m.graph, self.chain_hash, message):
                    self._enqueue_raw(peer_id, reply)
        # replies to queries (262, 264): we send no queries, so they are ignored
        return None

    def _on_channel_announcement(self, m: ChannelManager, peer_id: bytes,
                                 msg: ChannelAnnouncement, fx: Effects) -> None:
        scid = msg.scid
        known = m.graph.channels.get(scid)
        if (known is not None and known.public) or scid in self._pending:
            return
        try:
            check_channel_announcement(msg, chain_hash=self.chain_hash)
        except InvalidGossip as exc:
            self.counters["rejected"] += 1
            self._note(f"peer {peer_id.hex()[:16]}: {exc} (ignored)")
            return
        if self._full(m.graph):
            return
        if scid in self._cache:
            self._accept(m, peer_id, msg, self._cache[scid], fx)
            return
        if len(self._pending) >= MAX_PENDING_LOOKUPS or \
                not self._budget(peer_id).take(self._clock()):
            self.counters["over_budget"] += 1
            self._note(f"peer {peer_id.hex()[:16]}: channel_announcement {scid} dropped: "
                       "too many chain lookups at once")
            return
        self._pending[scid] = _Pending(peer_id, msg)
        self._lookups.append(scid)
        self.counters["lookups"] += 1

    def _replays(self, peer_id: bytes) -> _Bucket:
        """The peer's budget of whole-graph answers (filters, queries): a few at once, then
        one every REPLAY_EVERY_S; an honest peer sends one filter per connection."""
        bucket = self._replay_budgets.get(peer_id)
        if bucket is None:
            bucket = self._replay_budgets[peer_id] = _Bucket(
                tokens=float(REPLAY_BURST), rate=1 / REPLAY_EVERY_S, burst=REPLAY_BURST)
            while len(self._replay_budgets) > MAX_BUDGETS:
                del self._replay_budgets[next(iter(self._replay_budgets))]
        return bucket

    def _budget(self, peer_id: bytes) -> _Bucket:
        """The peer's lookup budget; kept across its reconnections (a reconnection does not
        refill it), for MAX_BUDGETS peers at most (the oldest forgotten)."""
        bucket = self._budgets.get(peer_id)
        if bucket is None:
            bucket = self._budgets[peer_id] = _Bucket()
            while len(self._budgets) > MAX_BUDGETS:
                del self._budgets[next(iter(self._budgets))]
        return bucket

    def take_lookups(self) -> list[ShortChannelId]:
        """The scids whose funding output the node must look up on chain now."""
        lookups, self._lookups = self._lookups, []
        return lookups

    def lookup_done(self, m: ChannelManager, scid: ShortChannelId,
                    output: FundingOutput | None, fx: Effects, *, failed: bool = False,
                    ) -> None:
        """The chain's answer for ``scid`` (None: no such unspent output; ``failed``: the
        chain could not be asked, so the answer is not remembered)."""
        if not failed and (output is not None or scid.block_height <= m.height):
            # "no such output" in a block we have not seen yet may change: not remembered
            self._cache[scid] = output
            while len(self._cache) > MAX_LOOKUP_CACHE:
                del self._cache[next(iter(self._cache))]
        pending = self._pending.get(scid)
        if pending is not None:
            self._accept(m, pending.peer_id, pending.announcement, output, fx)
        self._pending.pop(scid, None)

    def _accept(self, m: ChannelManager, peer_id: bytes, msg: ChannelAnnouncement,
                output: FundingOutput | None, fx: Effects) -> None:
        try:
            check_funding_output(msg, None if output is None else output.script_pubkey,
                                 spent=False)
        except InvalidGossip as exc:
            self.counters["rejected"] += 1
            self._note(f"peer {peer_id.hex()[:16]}: {exc} (ignored)")
            self._pending.pop(msg.scid, None)
            return
        assert output is not None
        self._add_channel(m.graph, msg, output, msg.scid.output_index, fx)
        self._relay(msg, peer_id, fx, m.connected)
        waiting = self._pending.pop(msg.scid, None)
        for source, update in waiting.updates if waiting is not None else []:
            self._take_update(m.graph, update, source, fx, m.connected)
        for node_id in (msg.node_id_1, msg.node_id_2):
            held = self._held_nodes.pop(node_id, None)
            if held is not None:
                self._take_node(m.graph, held[1], held[0], fx, m.connected)

    def _add_channel(self, graph: NetworkGraph, msg: ChannelAnnouncement,
                     output: FundingOutput, vout: int, fx: Effects) -> None:
        graph.add_announced_channel(msg, output.amount_sat)
        self.funding_outpoints[(output.txid_hex, vout)] = msg.scid
        key = bytes(msg.scid).hex()
        fx.kv.append((f"{GOSSIP_KV_PREFIX}c:{key}",
                      (output.amount_sat.to_bytes(8, "big") + _typed(msg)).hex()))
        fx.kv.append((f"{GOSSIP_KV_PREFIX}o:{key}", f"{output.txid_hex}:{vout}"))

    def _on_channel_update(self, m: ChannelManager, peer_id: bytes, msg: ChannelUpdate,
                           fx: Effects) -> bool:
        scid = msg.scid
        pending = self._pending.get(scid)
        if pending is not None:
            if len(pending.updates) < MAX_HELD_PER_SCID:
                pending.updates.append((peer_id, msg))
            return True
        known = m.graph.channels.get(scid)
        if known is None or not known.public:
            return False   # a private channel of ours, perhaps: gossip_local decides
        self._take_update(m.graph, msg, peer_id, fx, m.connected)
        return True

    def _take_update(self, graph: NetworkGraph, msg: ChannelUpdate, source: bytes | None,
                     fx: Effects, connected: Iterable[bytes]) -> None:
        if not graph.apply_update(msg):
            return   # stale, invalid or unknown: nothing to relay
        key = (msg.short_channel_id + bytes([msg.direction])).hex()
        fx.kv.append((f"{GOSSIP_KV_PREFIX}u:{key}", _typed(msg).hex()))
        if not msg.message_flags & MESSAGE_FLAG_DONT_FORWARD:
            self._relay(msg, source, fx, connected)

    def _on_node_announcement(self, m: ChannelManager, peer_id: bytes, msg: NodeAnnouncement,
                              fx: Effects) -> None:
        if msg.node_id not in m.graph.node_aliases and \
                len(m.graph.node_aliases) >= MAX_GRAPH_NODES:
            self._cap_note(f"{MAX_GRAPH_NODES} nodes")
            return
        if any(msg.node_id in (p.announcement.node_id_1, p.announcement.node_id_2)
               for p in self._pending.values()):
            if len(self._held_nodes) < MAX_HELD_NODES:
                self._held_nodes[msg.node_id] = (peer_id, msg)
            return
        self._take_node(m.graph, msg, peer_id, fx, m.connected)

    def _take_node(self, graph: NetworkGraph, msg: NodeAnnouncement, source: bytes | None,
                   fx: Effects, connected: Iterable[bytes]) -> None:
        if not graph.has_public_channel(msg.node_id):
            return   # BOLT 7: only nodes with an announced channel
        if not graph.add_node(msg):
            return
        fx.kv.append((f"{GOSSIP_KV_PREFIX}n:{msg.node_id.hex()}", _typed(msg).hex()))
        self._relay(msg, source, fx, connected)

    def _note(self, text: str) -> None:
        """A line for the node's log; a flood of bad gossip writes MAX_NOTES lines per
        flight, then a count (``notes_suppressed``), not one line per message."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_suppressed += 1

    def _full(self, graph: NetworkGraph) -> bool:
        if len(graph.channels) < MAX_GRAPH_CHANNELS:   # private ones count too: O(1)
            return False
        self._cap_note(f"{MAX_GRAPH_CHANNELS} channels")
        return True

    def _cap_note(self, what: str) -> None:
        if not self._capped:   # one line, not one per message
            self._capped = True
            self._note(f"gossip: the graph holds {what}, its cap: new ones are ignored")

    # -- relaying ----------------------------------------------------------------------------

    def _relay(self, msg: ChannelAnnouncement | ChannelUpdate | NodeAnnouncement,
               source: bytes | None, fx: Effects, connected: Iterable[bytes]) -> None:
        """To each connected peer but ``source`` whose filter admits ``msg``; our own gossip
        (``source`` None) to every connected peer (BOLT 7 allows it without a filter)."""
        for peer_id in connected:
            if peer_id == source:
                continue
            wanted = self.filters.get(peer_id)
            if source is None or (wanted is not None and _admits(wanted, msg)):
                self._enqueue(peer_id, msg)

    def _enqueue(self, peer_id: bytes, msg: Message) -> None:
        self._enqueue_raw(peer_id, encode_message(msg))

    def _enqueue_raw(self, peer_id: bytes, encoded: bytes) -> None:
        """Gossip for ``peer_id`` waits here, encoded, until the node's relay task for that
        peer takes it (:meth:`take_relays`): a peer that reads slowly delays only its own
        gossip, never a flight of the chain watcher or of another peer. Bounded: beyond
        MAX_RELAY_QUEUE the peer misses gossip (one note), as BOLT 7 gossip is best effort."""
        queue = self._relays.setdefault(peer_id, deque())
        if len(queue) >= MAX_RELAY_QUEUE:
            if peer_id not in self._overflowed:
                self._overflowed.add(peer_id)
                self._note(f"peer {peer_id.hex()[:16]} reads its gossip too slowly: "
                           f"{MAX_RELAY_QUEUE} messages wait, newer ones are dropped")
            return
        queue.append(encoded)

    def peers_with_relays(self) -> list[bytes]:
        return [p for p, q in self._relays.items() if q]

    def take_relays(self, peer_id: bytes, limit: int) -> list[bytes]:
        """Up to ``limit`` encoded gossip messages for ``peer_id``, oldest first."""
        queue = self._relays.get(peer_id)
        if not queue:
            return []
        batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if not queue:
            self._overflowed.discard(peer_id)
        return batch

    def _replay(self, graph: NetworkGraph, peer_id: bytes, wanted: GossipTimestampFilter,
                fx: Effects) -> None:
        """BOLT 7: on a new filter, send the gossip we hold within its range (as stored:
        a timestamp is read at its offset, nothing is decoded again)."""
        for typed in graph.typed_records():
            if _admits_raw(wanted, typed):
                self._enqueue_raw(peer_id, typed)

    # -- the chain ---------------------------------------------------------------------------

    def block_connected(self, txs: Iterable[CTransaction]) -> None:
        """Channels whose funding output a tx of this block spends are forgotten at the next
        :meth:`tick` (chanlab does no splicing: BOLT 7's 72-block grace would only keep a
        dead channel in routes)."""
        if not self.funding_outpoints:
            return
        for tx in txs:
            for tx_in in tx.vin:
                spent = (bytes(tx_in.prevout.hash)[::-1].hex(), tx_in.prevout.n)
                scid = self.funding_outpoints.pop(spent, None)
                if scid is not None:
                    self._spent.append(scid)

    def channel_gone(self, m: ChannelManager, scid: ShortChannelId, fx: Effects) -> None:
        """The chain says ``scid``'s funding output is spent (a block we did not watch,
        e.g. while the node was down): forget the channel."""
        for outpoint in [o for o, s in self.funding_outpoints.items() if s == scid]:
            del self.funding_outpoints[outpoint]
        if scid in m.graph.channels:
            self._forget(m.graph, scid, fx)

    def _forget(self, graph: NetworkGraph, scid: ShortChannelId, fx: Effects) -> None:
        graph.remove_channel(scid)
        key = bytes(scid).hex()
        for row in (f"c:{key}", f"o:{key}", f"u:{key}00", f"u:{key}01"):
            fx.kv.append((GOSSIP_KV_PREFIX + row, ""))   # an empty value: deleted
        self._note(f"gossip: channel {scid} closed on chain: forgotten")

    def restore(self, graph: NetworkGraph, kv: dict[str, str], announced: Iterable[str],
                public_scids: set[bytes]) -> None:
        """At start: the persisted graph (``kv``: the ``gossip:`` rows without the prefix)
        and which of our channels are to be announced."""
        graph.replay(restore_records(kv))
        for key, value in kv.items():
            if key.startswith("o:") and value:
                txid, _, vout = value.partition(":")
                self.funding_outpoints[(txid, int(vout))] = \
                    ShortChannelId.from_bytes(bytes.fromhex(key[2:]))
        public_scids.update(bytes(c.short_channel_id) for c in graph.channels.values()
                            if c.public)
        self.announced.update(announced)


def _admits_raw(wanted: GossipTimestampFilter, typed: bytes) -> bool:
    """:func:`_admits` for a stored message (``type ‖ payload``), and never a private update
    (``dont_forward``). Offsets: BOLT 7 ``channel_update`` timestamp after signature,
    chain_hash and scid; ``node_announcement``'s after signature and features."""
    kind = int.from_bytes(typed[:2], "big")
    if kind == ChannelAnnouncement.TYPE:
        return wanted.timestamp_range > 0
    if kind == ChannelUpdate.TYPE:
        at = 2 + 64 + 32 + 8
        if typed[at + 4] & MESSAGE_FLAG_DONT_FORWARD:
            return False
    elif kind == NodeAnnouncement.TYPE:
        at = 2 + 64 + 2 + int.from_bytes(typed[66:68], "big")
    else:
        return False
    return wanted.admits(int.from_bytes(typed[at:at + 4], "big"))


def _admits(wanted: GossipTimestampFilter,
            msg: ChannelAnnouncement | ChannelUpdate | NodeAnnouncement) -> bool:
    """A channel_announcement has no timestamp: it goes with any filter that is not the
    BOLT 7 opt-out (``first_timestamp`` 0xFFFFFFFF, range 0)."""
    if isinstance(msg, ChannelAnnouncement):
        return wanted.timestamp_range > 0
    return wanted.admits(msg.timestamp)


def graph_messages(graph: NetworkGraph,
                   ) -> list[ChannelAnnouncement | ChannelUpdate | NodeAnnouncement]:
    """The public graph as the gossip messages that built it, in the order a peer needs them
    (announcements, updates, nodes); private updates (``dont_forward``) left out."""
    out: list[ChannelAnnouncement | ChannelUpdate | NodeAnnouncement] = []
    for raw in graph.records():
        is_channel = len(raw) > 10 and raw[8:10] == ChannelAnnouncement.TYPE.to_bytes(2, "big")
        msg = decode_with(GOSSIP_MESSAGES, raw[8:] if is_channel else raw)
        if isinstance(msg, ChannelUpdate) and msg.message_flags & MESSAGE_FLAG_DONT_FORWARD:
            continue
        if isinstance(msg, ChannelAnnouncement | ChannelUpdate | NodeAnnouncement):
            out.append(msg)
    return out
