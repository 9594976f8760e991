"""Our own channels' gossip: the ``channel_update`` each end sends its peer, and the graph.

Pure. BOLT 7 lets a node send the ``channel_update`` of a private channel straight to its
peer, with ``dont_forward`` set (bolt-notes §9): that is how the peer learns our fee and
``cltv_expiry_delta`` for the route hints of its invoices. Once a channel is usable (both
``channel_ready``), each end sends its update once per connection; the peer's update is
checked against the peer's node id and put into the node's
:class:`~channel.graph.NetworkGraph` as a private edge. The raw updates received are what
the node persists (kv ``peer_update:<scid>``) and replays at start (:meth:`restore`).
The clock (UNIX seconds, for the update's ``timestamp``) is injectable (tests fix it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from channel.effects import ChannelHandle, Effects
from channel.errors import InvalidGossip
from channel.gossip import (
    GOSSIP_MESSAGES,
    ChannelUpdate,
    ShortChannelId,
    check_channel_update,
    sign_channel_update,
)
from channel.gossip_kv import PEER_UPDATE_KV_PREFIX
from channel.graph import NetworkGraph
from channel.keys import PrivateKey
from channel.node_policy import NodePolicy
from channel.payer import local_short_channel_id
from channel.state import ChannelState
from channel.wire import decode_with

__all__ = ["PEER_UPDATE_KV_PREFIX", "LocalGossip", "graph_report"]


def _scid_of(handle: ChannelHandle) -> bytes | None:
    """The scid our update names: the real one once known, else the alias."""
    if handle.channel.funding_outpoint is None:
        return None
    return local_short_channel_id(handle)


class LocalGossip:
    """Sends our channels' updates to their peers; takes the peers' updates into the graph."""

    def __init__(self, *, node_secret: bytes, chain_hash: bytes,
                 clock: Callable[[], int] = lambda: int(time.time())) -> None:
        self._node_key = PrivateKey(node_secret)
        self.node_id = self._node_key.pubkey
        self.chain_hash = chain_hash
        self._clock = clock
        # channel key -> the scid our update named, sent on this connection
        self._sent: dict[str, bytes] = {}
        self._last_timestamp = 0
        # real scids of our channels now announced (channel.gossip_public): their updates are
        # public gossip, without dont_forward
        self.public_scids: set[bytes] = set()

    def channel_update(self, handle: ChannelHandle, policy: NodePolicy) -> ChannelUpdate | None:
        """Our ``channel_update`` for ``handle`` (private: ``dont_forward``; announced:
        public), or None before the channel is usable."""
        scid = _scid_of(handle)
        chan = handle.channel
        if scid is None or chan.state is not ChannelState.NORMAL:
            return None
        # strictly increasing per channel (BOLT 7), even within one second
        timestamp = max(self._clock(), self._last_timestamp + 1)
        self._last_timestamp = timestamp
        channel_policy = policy.for_channel(handle)
        return sign_channel_update(
            node_key=self._node_key, chain_hash=self.chain_hash,
            short_channel_id=ShortChannelId.from_bytes(scid), timestamp=timestamp,
            direction=0 if self.node_id < handle.peer_id else 1, disabled=False,
            cltv_expiry_delta=channel_policy.cltv_expiry_delta,
            htlc_minimum_msat=channel_policy.htlc_minimum_msat,
            fee_base_msat=channel_policy.fee_base_msat,
            fee_proportional_millionths=channel_policy.fee_proportional_millionths,
            htlc_maximum_msat=channel_policy.htlc_maximum_msat,
            dont_forward=scid not in self.public_scids)

    def failure_update(self, handle: ChannelHandle, policy: NodePolicy) -> bytes:
        """Our update for ``handle`` as an UPDATE failure carries it (BOLT 4: with its
        ``0x0102`` type), or nothing before the channel is usable."""
        update = self.channel_update(handle, policy)
        return b"" if update is None else update.TYPE.to_bytes(2, "big") + update.encode()

    def send_updates(self, handles: Iterable[ChannelHandle], policy: NodePolicy,
                     fx: Effects) -> None:
        """Send the update of each usable channel among ``handles`` not yet sent to its peer
        on this connection."""
        for handle in handles:
            if self._sent.get(handle.key) == _scid_of(handle):
                continue   # sent already (a real scid learnt later makes a new one)
            update = self.channel_update(handle, policy)
            if update is not None:
                self._sent[handle.key] = update.short_channel_id
                fx.send(handle.peer_id, update)

    def peer_disconnected(self, handles: Iterable[ChannelHandle]) -> None:
        for handle in handles:
            self._sent.pop(handle.key, None)

    def on_peer_update(self, graph: NetworkGraph, handles: Iterable[ChannelHandle],
                       peer_id: bytes, update: ChannelUpdate, fx: Effects | None) -> bool:
        """A ``channel_update`` from ``peer_id``: for one of our channels with it, signed by
        it, newer than what we have: into the graph (and ``fx``'s kv); else ignored."""
        ours = [h for h in handles if h.peer_id == peer_id]
        handle = next((h for h in ours if update.short_channel_id == _scid_of(h)), None)
        if handle is None and not update.short_channel_id[0] & 0x80:
            # a real scid the peer learnt before us: one of our channels with it not placed yet
            handle = next((h for h in ours if h.short_channel_id is None and
                           h.channel.state is ChannelState.NORMAL), None)
        if handle is None or update.direction != (0 if peer_id < self.node_id else 1):
            return False   # not our channel with this peer, or not the peer's direction
        try:
            check_channel_update(update, chain_hash=self.chain_hash, node_id=peer_id)
        except InvalidGossip:
            return False
        scid = update.scid
        if scid not in graph.channels:
            graph.add_private_channel(scid, self.node_id, peer_id,
                                      capacity_sat=handle.channel.funding_sat)
        if not graph.apply_update(update):
            return False
        if fx is not None:
            fx.kv.append((PEER_UPDATE_KV_PREFIX + update.short_channel_id.hex(),
                          (update.TYPE.to_bytes(2, "big") + update.encode()).hex()))
        return True

    def restore(self, graph: NetworkGraph, handles: Iterable[ChannelHandle],
                stored: Iterable[str]) -> int:
        """Replay the peers' updates persisted by :meth:`on_peer_update`; how many applied."""
        known = list(handles)
        applied = 0
        for text in stored:
            message = decode_with(GOSSIP_MESSAGES, bytes.fromhex(text))
            if isinstance(message, ChannelUpdate):
                for handle in known:
                    if self.on_peer_update(graph, known, handle.peer_id, message, None):
                        applied += 1
                        break
        return applied


def graph_report(graph: NetworkGraph) -> dict[str, Any]:
    """The ``graph-info`` answer: nodes, and channels with each direction's policy."""
    def policy(p: Any) -> dict[str, int] | None:
        return None if p is None else {
            "fee_base_msat": p.fee_base_msat,
            "fee_proportional_millionths": p.fee_proportional_millionths,
            "cltv_expiry_delta": p.cltv_expiry_delta, "htlc_minimum_msat": p.htlc_minimum_msat,
            "htlc_maximum_msat": p.htlc_maximum_msat}
    public = graph.public_channels()
    both = sum(1 for c in public if None not in c.policies)
    announced = {c for c in graph.node_aliases if any(c in (p.node_1, p.node_2) for p in public)}
    return {
        "nodes": [{"node_id": n.hex(), "alias": graph.node_aliases.get(n, ""),
                   "addresses": [f"{h}:{p}" for h, p in graph.node_addresses.get(n, [])],
                   "announced": n in graph.node_aliases}
                  for n in sorted(graph.nodes())],
        # a caller can tell the public graph is complete: every announced channel has both
        # directions' updates and every node on them its node_announcement
        "public_channels": len(public), "public_channels_with_both_updates": both,
        "node_announcements": len(announced),
        "complete": both == len(public) and
        len(announced) == len({n for c in public for n in (c.node_1, c.node_2)}),
        "channels": [{"short_channel_id": str(c.short_channel_id),
                      "node_1": c.node_1.hex(), "node_2": c.node_2.hex(),
                      "capacity_sat": c.capacity_sat, "public": c.public,
                      "policy_1": policy(c.policies[0]), "policy_2": policy(c.policies[1])}
                     for c in graph.channels.values()]}
