"""The network graph (BOLT 7) and the pathfinder over it.

Pure. A ``NetworkGraph`` holds what gossip taught us: announced channels with their capacity,
each direction's ``channel_update`` policy, and announced nodes with their addresses. Private
channels (our own, and BOLT 11 route hints) are added as edges that were never gossiped.
The graph persists as the raw gossip it was built from (``records`` / ``from_records``), so
a restarted node replays the same checks it applied the first time.

``find_route`` is Dijkstra run backwards from the payee, the way BOLT 7's fee rule asks for
it: the amount each node must receive is known only once the fees of every node after it are
added. The cost of an edge is the fee it charges plus a price on the blocks its
``cltv_expiry_delta`` locks the amount up (LND's risk factor); every check a forwarder
applies (BOLT 4/7: enabled, ``htlc_minimum_msat`` ≤ amount ≤ ``htlc_maximum_msat``, capacity,
and what we know of its liquidity) is applied here, so a found route is one every hop accepts.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from channel.codec import MAX_MSAT
from channel.errors import ChanlabError, InvalidGossip, RejectedUpdate
from channel.forwarding import ChannelPolicy
from channel.gossip import (
    GOSSIP_MESSAGES,
    ChannelAnnouncement,
    ChannelUpdate,
    NodeAnnouncement,
    ShortChannelId,
    check_channel_update,
    check_node_announcement,
    decode_ipv4_addresses,
)
from channel.onion import MAX_ROUTE_HOPS
from channel.route import Route, RouteHop
from channel.wire import decode_with

if TYPE_CHECKING:   # invoices' hints only: BOLT 11 waits for an invoice (idle node RSS)
    from channel.bolt11 import RouteHintHop

__all__ = [
    "GraphChannel",
    "NetworkGraph",
    "NoRoute",
        "find_route",
    "policy_of_update",
]

#: BOLT 4's recommended ceiling on the total CLTV a payment may lock up.
MAX_TOTAL_CLTV: Final = 2016
#: LND's default: one block of lock-up costs 15 parts per billion of the amount.
RISK_PARTS_PER_BILLION: Final = 15


class NoRoute(RejectedUpdate):
    """No route can carry this payment: tell the payer which constraint stopped it."""


def policy_of_update(update: ChannelUpdate) -> ChannelPolicy:
    """The forwarding policy a ``channel_update`` announces for its direction."""
    return ChannelPolicy(fee_base_msat=update.fee_base_msat,
                         fee_proportional_millionths=update.fee_proportional_millionths,
                         cltv_expiry_delta=update.cltv_expiry_delta,
                         htlc_minimum_msat=update.htlc_minimum_msat,
                         htlc_maximum_msat=update.htlc_maximum_msat, enabled=not update.disabled)


@dataclass(frozen=True, slots=True)
class GraphChannel:
    """A channel between ``node_1`` < ``node_2``; ``policies[d]`` is set by ``node_{d+1}``."""

    short_channel_id: ShortChannelId
    node_1: bytes
    node_2: bytes
    capacity_sat: int | None
    policies: tuple[ChannelPolicy | None, ChannelPolicy | None] = (None, None)
    public: bool = True
    timestamps: tuple[int, int] = (0, 0)  # of the channel_update behind each policy

    def policy_from(self, node_id: bytes) -> ChannelPolicy | None:
        """The policy ``node_id`` applies to what it forwards over this channel."""
        return self.policies[0] if node_id == self.node_1 else self.policies[1]

    def other(self, node_id: bytes) -> bytes:
        return self.node_2 if node_id == self.node_1 else self.node_1


@dataclass
class NetworkGraph:
    """What we know of the network. Mutable: gossip and payment failures update it."""

    chain_hash: bytes
    channels: dict[ShortChannelId, GraphChannel] = field(default_factory=dict)
    node_addresses: dict[bytes, list[tuple[str, int]]] = field(default_factory=dict)
    node_aliases: dict[bytes, str] = field(default_factory=dict)
    _raw: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    # node id -> its channels' scids: a node_announcement's "has a channel" check in O(1),
    # not a walk over every channel (gossip from strangers pays for each message)
    _by_node: dict[bytes, set[ShortChannelId]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for scid, channel in self.channels.items():
            self._index(scid, channel)

    def _index(self, scid: ShortChannelId, channel: GraphChannel | None) -> None:
        """Set ``scid``'s entry to ``channel`` (None: remove it), keeping ``_by_node``."""
        # replaced in place, not popped: callers may be iterating over the channels
        old = self.channels.get(scid) if channel is not None else self.channels.pop(scid, None)
        if old is not None:
            for node in (old.node_1, old.node_2):
                scids = self._by_node.get(node, set())
                scids.discard(scid)
                if not scids:
                    self._by_node.pop(node, None)
        if channel is not None:
            self.channels[scid] = channel
            for node in (channel.node_1, channel.node_2):
                self._by_node.setdefault(node, set()).add(scid)

    def has_public_channel(self, node_id: bytes) -> bool:
        """Whether ``node_id`` has an announced channel (BOLT 7's condition for keeping its
        ``node_announcement``)."""
        return any(self.channels[s].public for s in self._by_node.get(node_id, ()))

    # --- learning ------------------------------------------------------------------------

    def add_announced_channel(self, announcement: ChannelAnnouncement,
                              capacity_sat: int) -> bool:
        """Add a channel whose announcement the caller checked (signatures and funding output).

        Returns False when it was known already.
        """
        scid = announcement.scid
        if scid in self.channels and self.channels[scid].public:
            return False
        self._index(scid, GraphChannel(scid, announcement.node_id_1, announcement.node_id_2,
                                       capacity_sat))
        self._raw[("c", bytes(scid))] = (capacity_sat.to_bytes(8, "big")
                                         + _typed(announcement))
        return True

    def add_private_channel(self, scid: ShortChannelId, node_a: bytes, node_b: bytes, *,
                            capacity_sat: int | None,
                            policy_from_a: ChannelPolicy | None = None,
                            policy_from_b: ChannelPolicy | None = None) -> None:
        """An edge that was never gossiped: one of our channels, or a BOLT 11 route hint."""
        node_1, node_2 = sorted((node_a, node_b))
        first_is_a = node_1 == node_a
        policies = (policy_from_a, policy_from_b) if first_is_a else (policy_from_b,
                                                                       policy_from_a)
        self._index(scid, GraphChannel(scid, node_1, node_2, capacity_sat, policies,
                                       public=False))

    def apply_update(self, update: ChannelUpdate) -> bool:
        """Apply a ``channel_update`` (checked here); False when stale, unknown or invalid.

        Used both for gossip and for the ``channel_update`` a failing hop puts in its error.
        """
        channel = self.channels.get(update.scid)
        if channel is None:
            return False
        if channel.policies[update.direction] is not None \
                and channel.timestamps[update.direction] >= update.timestamp:
            return False   # stale: known before paying for a signature check (gossip floods)
        signer = channel.node_1 if update.direction == 0 else channel.node_2
        try:
            check_channel_update(update, chain_hash=self.chain_hash, node_id=signer)
        except InvalidGossip:
            return False
        policies = list(channel.policies)
        policies[update.direction] = policy_of_update(update)
        stamps = list(channel.timestamps)
        stamps[update.direction] = update.timestamp
        self.channels[update.scid] = GraphChannel(
            channel.short_channel_id, channel.node_1, channel.node_2, channel.capacity_sat,
            (policies[0], policies[1]), channel.public, (stamps[0], stamps[1]))
        if channel.public:
            key = bytes(update.scid) + bytes([update.direction])
            self._raw[("u", key)] = _typed(update)
        return True

    def add_node(self, announcement: NodeAnnouncement) -> bool:
        """Apply a ``node_announcement`` for a node that has an announced channel."""
        if announcement.node_id not in self._by_node:
            return False  # BOLT 7: ignore nodes we know no channel of
        try:
            check_node_announcement(announcement)
        except InvalidGossip:
            return False
        previous = self._raw.get(("n", announcement.node_id))
        if previous is not None:
            known = decode_with(GOSSIP_MESSAGES, previous)
            if isinstance(known, NodeAnnouncement) and known.timestamp >= announcement.timestamp:
                return False
        self.node_addresses[announcement.node_id] = decode_ipv4_addresses(announcement.addresses)
        self.node_aliases[announcement.node_id] = announcement.alias_text
        self._raw[("n", announcement.node_id)] = _typed(announcement)
        return True

    def remove_channel(self, scid: ShortChannelId) -> None:
        """Forget a closed channel (its funding output was spent)."""
        self._index(scid, None)
        self._raw = {k: v for k, v in self._raw.items()
                     if not (k[0] in "cu" and k[1][:8] == bytes(scid))}

    # --- reading -------------------------------------------------------------------------

    def nodes(self) -> set[bytes]:
        return {n for c in self.channels.values() for n in (c.node_1, c.node_2)}

    def public_channels(self) -> list[GraphChannel]:
        return [c for c in self.channels.values() if c.public]

    def is_complete(self) -> bool:
        """Every announced channel has both directions' policies."""
        return all(None not in c.policies for c in self.public_channels())

    def records(self) -> list[bytes]:
        """The raw gossip this graph was built from, in replay order."""
        order = {"c": 0, "u": 1, "n": 2}
        return [raw for (kind, _), raw in sorted(self._raw.items(),
                                                 key=lambda item: (order[item[0][0]],
                                                                   item[0][1]))]

    def typed_records(self) -> list[bytes]:
        """``records()`` as the typed messages a peer receives (no capacity prefix)."""
        return [raw[8:] if _is_channel_record(raw) else raw for raw in self.records()]

    def gossip_of(self, scid: ShortChannelId) -> list[bytes]:
        """The typed gossip of public channel ``scid``: its announcement, then each
        direction's update held (empty when unknown)."""
        key = bytes(scid)
        found = [self._raw.get(("c", key)), self._raw.get(("u", key + b"\x00")),
                 self._raw.get(("u", key + b"\x01"))]
        if found[0] is None:
            return []
        return [found[0][8:]] + [raw for raw in found[1:] if raw is not None]

    def node_gossip(self, node_id: bytes) -> bytes | None:
        """The typed ``node_announcement`` of ``node_id`` held, if any."""
        return self._raw.get(("n", node_id))

    @classmethod
    def from_records(cls, chain_hash: bytes, records: Iterable[bytes]) -> NetworkGraph:
        """Rebuild from ``records()`` (each update and node re-checked)."""
        graph = cls(chain_hash)
        graph.replay(records)
        return graph

    def replay(self, records: Iterable[bytes]) -> None:
        """Apply ``records()`` of another graph to this one (each update and node
        re-checked): a restarted node's persisted gossip over its private channels."""
        for raw in records:
            try:
                message = decode_with(GOSSIP_MESSAGES,
                                      raw[8:] if _is_channel_record(raw) else raw)
            except ChanlabError:
                continue   # a damaged row costs its gossip, not the node's start
            if isinstance(message, ChannelAnnouncement):
                self.add_announced_channel(message, int.from_bytes(raw[:8], "big"))
            elif isinstance(message, ChannelUpdate):
                self.apply_update(message)
            elif isinstance(message, NodeAnnouncement):
                self.add_node(message)


def _typed(message: ChannelAnnouncement | ChannelUpdate | NodeAnnouncement) -> bytes:
    return message.TYPE.to_bytes(2, "big") + message.encode()


def _is_channel_record(raw: bytes) -> bool:
    """Channel records carry an 8-byte capacity before the typed announcement (type 256)."""
    return len(raw) > 10 and raw[8:10] == ChannelAnnouncement.TYPE.to_bytes(2, "big")


# --- pathfinding -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class _Label:
    cost: int
    hops: int
    amount_msat: int  # what must arrive at this node
    cltv_delta: int  # blocks from this node's incoming HTLC down to the payee's final expiry


def find_route(graph: NetworkGraph, *, source: bytes, target: bytes, amount_msat: int,
               final_cltv_expiry_delta: int,
               route_hints: Iterable[Iterable[RouteHintHop]] = (),
               liquidity_msat: Mapping[tuple[ShortChannelId, bytes], int] | None = None,
               excluded_channels: Iterable[ShortChannelId] = (),
               excluded_nodes: Iterable[bytes] = ()) -> Route:
    """The cheapest route from ``source`` to ``target`` that every hop on it would accept.

    The amounts and expiries follow from the route (``channel.route.route_amounts``), with
    the payer charging itself nothing: the policy of hop 0 (our own channel) is ignored there.

    ``liquidity_msat[(scid, from_node)]`` caps what a direction can carry (our own channels'
    spendable balance; what a failure taught us). ``route_hints`` add the payee's private
    channels (BOLT 11 ``r``). Raises ``NoRoute`` naming why when there is none.
    """
    if amount_msat <= 0:
        raise NoRoute("the amount must be positive")
    if source == target:
        raise NoRoute("cannot route a payment to ourselves")
    edges = _incoming_edges(graph, route_hints, target)
    banned_channels = set(excluded_channels)
    banned_nodes = set(excluded_nodes) - {source, target}
    liquidity = liquidity_msat or {}
    best: dict[bytes, _Label] = {target: _Label(0, 0, amount_msat, final_cltv_expiry_delta)}
    next_hop: dict[bytes, tuple[ShortChannelId, bytes]] = {}
    policy_used: dict[bytes, ChannelPolicy] = {}
    queue: list[tuple[_Label, bytes]] = [(best[target], target)]
    done: set[bytes] = set()
    while queue:
        label, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        if node == source:
            break
        for scid, from_node, policy, capacity_sat in edges.get(node, ()):
            if scid in banned_channels or from_node in banned_nodes or from_node in done:
                continue
            if policy is None or not policy.enabled or label.hops >= MAX_ROUTE_HOPS:
                continue
            carried = label.amount_msat  # the HTLC over this channel, from_node → node
            if carried < policy.htlc_minimum_msat:
                continue
            if carried > policy.htlc_maximum_msat:
                continue
            if capacity_sat is not None and carried > capacity_sat * 1000:
                continue
            if carried > liquidity.get((scid, from_node), carried):
                continue
            # The payer charges itself nothing and adds no delay of its own.
            fee = 0 if from_node == source else policy.fee_msat(carried)
            delta = 0 if from_node == source else policy.cltv_expiry_delta
            cltv = label.cltv_delta + delta
            if cltv > MAX_TOTAL_CLTV:
                continue
            risk = carried * delta * RISK_PARTS_PER_BILLION // 1_000_000_000
            candidate = _Label(label.cost + fee + risk + 1, label.hops + 1, carried + fee, cltv)
            known = best.get(from_node)
            if known is None or candidate < known:
                best[from_node] = candidate
                next_hop[from_node] = (scid, node)
                policy_used[from_node] = policy
                heapq.heappush(queue, (candidate, from_node))
    if source not in next_hop:
        raise NoRoute(f"no route to {target.hex()[:16]}… can carry {amount_msat:,} msat")
    return _walk(source, target, next_hop, policy_used)


def _walk(source: bytes, target: bytes, next_hop: dict[bytes, tuple[ShortChannelId, bytes]],
          policy_used: dict[bytes, ChannelPolicy]) -> Route:
    """The route as ``channel.route`` wants it: each hop with the policy of its channel."""
    hops: list[RouteHop] = []
    node = source
    while node != target:
        scid, to_node = next_hop[node]
        policy = policy_used[node]
        hops.append(RouteHop(node_id=to_node, short_channel_id=bytes(scid),
                             fee_base_msat=policy.fee_base_msat,
                             fee_proportional_millionths=policy.fee_proportional_millionths,
                             cltv_expiry_delta=policy.cltv_expiry_delta))
        node = to_node
    return Route(hops=tuple(hops))


_Edge = tuple[ShortChannelId, bytes, ChannelPolicy | None, int | None]


def _incoming_edges(graph: NetworkGraph, route_hints: Iterable[Iterable[RouteHintHop]],
                    target: bytes) -> dict[bytes, list[_Edge]]:
    """For each node, the channels into it: (scid, from_node, from_node's policy, capacity)."""
    edges: dict[bytes, list[_Edge]] = {}
    for channel in graph.channels.values():
        for from_node in (channel.node_1, channel.node_2):
            to_node = channel.other(from_node)
            edges.setdefault(to_node, []).append(
                (channel.short_channel_id, from_node, channel.policy_from(from_node),
                 channel.capacity_sat))
    for hint in route_hints:
        entries = list(hint)
        for i, entry in enumerate(entries):
            # BOLT 11: each entry's channel leads to the next entry's node, the last to the payee.
            to_node = entries[i + 1].pubkey if i + 1 < len(entries) else target
            policy = ChannelPolicy(
                fee_base_msat=entry.fee_base_msat,
                fee_proportional_millionths=entry.fee_proportional_millionths,
                cltv_expiry_delta=entry.cltv_expiry_delta, htlc_minimum_msat=0,
                htlc_maximum_msat=MAX_MSAT)  # a hint states no limits: the payee knows best
            edges.setdefault(to_node, []).append(
                (ShortChannelId.from_bytes(entry.short_channel_id), entry.pubkey, policy, None))
    return edges
