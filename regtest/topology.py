"""The shape of a lab network: which nodes, which channels, which fee policies (pure).

``parse_topology("line:5")`` (or ``star:N``, ``ring:N``, ``bolt7-example``) gives a ``Topology``:
the node names in start order, the channels to open (who opens, to whom, how big, how much the
opener pushes so both ends can pay), and each node's fee policy, the fields of its
``channel_update`` (BOLT 7). ``regtest.network`` turns it into processes and channels.

Names are people's names first (alice, bob, carol, dave, erin, frank), then ``node07``,
``node08``… Each channel is opened by one end and pushes half its capacity to the other, so
payments can go either way from the start.

``bolt7-example`` is the four-node network of BOLT 7 "Recommendations for Routing"::

       B
      / \\
     A   C
      \\ /
       D

with each node advertising the same policy on every channel it forwards through:
A (alice) ``cltv_expiry_delta`` 10, 100 msat + 1000 ppm; B (bob) 20, 200 msat + 2000 ppm;
C (carol) 30, 300 msat + 3000 ppm; D (dave) 40, 400 msat + 4000 ppm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from channel.channel_params import MAX_FUNDING_SAT
from regtest.errors import RegtestError

__all__ = [
    "BOLT7_EXAMPLE",
    "DEFAULT_CAPACITY_SAT",
    "DEFAULT_POLICY",
    "MAX_NODES",
    "MIN_CAPACITY_SAT",
    "ChannelPlan",
    "FeePolicy",
    "NodePlan",
    "Topology",
    "TopologyError",
    "node_names",
    "parse_topology",
]

MAX_NODES = 60                  # a classroom on one machine; more than that is not a lab
DEFAULT_CAPACITY_SAT = 1_000_000
# below this a peer refuses the channel (its reserve, at least the dust limit, would exceed 20%
# of it) or it is too small to route anything; deployed nodes refuse under 20,000 sat too
MIN_CAPACITY_SAT = 20_000
_PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")
# the smallest N that makes each shape what its name says: a line needs two ends, a star a hub
# and two leaves (else it is a line), a ring three nodes (else two channels between one pair)
_MIN_NODES = {"line": 2, "star": 3, "ring": 3}
BOLT7_EXAMPLE = "bolt7-example"


class TopologyError(RegtestError):
    """The topology text names no shape chanlab builds, or a node count out of range."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeePolicy:
    """What a node charges to forward over any of its channels (its ``channel_update``s).

    A forwarded HTLC of ``amount_msat`` pays ``fee_base_msat + amount_msat *
    fee_proportional_millionths // 1_000_000``, and the incoming ``cltv_expiry`` must exceed
    the outgoing one by ``cltv_expiry_delta`` blocks (BOLT 7 "Recommendations for Routing").
    """

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    def __post_init__(self) -> None:
        for field, value in (("fee_base_msat", self.fee_base_msat),
                             ("fee_proportional_millionths", self.fee_proportional_millionths),
                             ("cltv_expiry_delta", self.cltv_expiry_delta)):
            if value < 0:
                raise TopologyError(f"{field} must be >= 0, got {value}")
        if self.cltv_expiry_delta > 0xFFFF:  # a u16 on the wire
            raise TopologyError(f"cltv_expiry_delta must fit in 16 bits, got "
                                f"{self.cltv_expiry_delta}")

    def to_json(self) -> dict[str, int]:
        return {"fee_base_msat": self.fee_base_msat,
                "fee_proportional_millionths": self.fee_proportional_millionths,
                "cltv_expiry_delta": self.cltv_expiry_delta}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeePolicy:
        return cls(fee_base_msat=int(data["fee_base_msat"]),
                   fee_proportional_millionths=int(data["fee_proportional_millionths"]),
                   cltv_expiry_delta=int(data["cltv_expiry_delta"]))


# 1 sat a forward plus 1 ppm, and 40 blocks to react on chain: the common defaults of
# deployed nodes, so a line or a ring costs the payer a visible but small fee per hop
DEFAULT_POLICY = FeePolicy(fee_base_msat=1000, fee_proportional_millionths=1,
                           cltv_expiry_delta=40)

# BOLT 7 "Recommendations for Routing": the spec's worked example, node by node
_BOLT7_POLICIES = (
    ("A", FeePolicy(fee_base_msat=100, fee_proportional_millionths=1000, cltv_expiry_delta=10)),
    ("B", FeePolicy(fee_base_msat=200, fee_proportional_millionths=2000, cltv_expiry_delta=20)),
    ("C", FeePolicy(fee_base_msat=300, fee_proportional_millionths=3000, cltv_expiry_delta=30)),
    ("D", FeePolicy(fee_base_msat=400, fee_proportional_millionths=4000, cltv_expiry_delta=40)),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePlan:
    """One node to start: its name (also its bitcoind wallet's), a label, its fee policy."""

    name: str
    label: str          # the spec's letter in bolt7-example, else the name itself
    policy: FeePolicy

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "policy": self.policy.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodePlan:
        return cls(name=str(data["name"]), label=str(data["label"]),
                   policy=FeePolicy.from_json(data["policy"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelPlan:
    """One channel to open: ``opener`` funds ``capacity_sat`` and pushes ``push_msat``."""

    opener: str
    accepter: str
    capacity_sat: int
    push_msat: int

    def __post_init__(self) -> None:
        if self.opener == self.accepter:
            raise TopologyError(f"a channel needs two ends, got {self.opener} twice")
        if self.capacity_sat <= 0:
            raise TopologyError(f"capacity must be positive, got {self.capacity_sat} sat")
        if not 0 <= self.push_msat <= self.capacity_sat * 1000:
            raise TopologyError(f"push_msat {self.push_msat} is outside 0..capacity "
                                f"({self.capacity_sat * 1000} msat)")

    @property
    def opener_msat(self) -> int:
        """The opener's balance once the channel is open (commitment fees are paid apart)."""
        return self.capacity_sat * 1000 - self.push_msat

    def to_json(self) -> dict[str, Any]:
        return {"opener": self.opener, "accepter": self.accepter,
                "capacity_sat": self.capacity_sat, "push_msat": self.push_msat}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelPlan:
        return cls(opener=str(data["opener"]), accepter=str(data["accepter"]),
                   capacity_sat=int(data["capacity_sat"]), push_msat=int(data["push_msat"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """A whole network to build: ``spec`` is the text it was parsed from (``line:5``)."""

    spec: str
    nodes: tuple[NodePlan, ...]
    channels: tuple[ChannelPlan, ...]

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise TopologyError(f"node names repeat in {self.spec}: {', '.join(names)}")
        for chan in self.channels:
            for end in (chan.opener, chan.accepter):
                if end not in names:
                    raise TopologyError(f"channel end {end} is not a node of {self.spec}")
        pairs = [frozenset((c.opener, c.accepter)) for c in self.channels]
        if len(set(pairs)) != len(pairs):
            raise TopologyError(f"{self.spec} opens two channels between the same nodes")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> NodePlan:
        for plan in self.nodes:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def openers(self) -> dict[str, tuple[ChannelPlan, ...]]:
        """The channels each node opens, in plan order (only nodes that open any)."""
        out: dict[str, list[ChannelPlan]] = {}
        for chan in self.channels:
            out.setdefault(chan.opener, []).append(chan)
        return {name: tuple(chans) for name, chans in out.items()}

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "nodes": [n.to_json() for n in self.nodes],
                "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        return cls(spec=str(data["spec"]),
                   nodes=tuple(NodePlan.from_json(n) for n in data["nodes"]),
                   channels=tuple(ChannelPlan.from_json(c) for c in data["channels"]))


def node_names(count: int) -> tuple[str, ...]:
    """``count`` node names: alice, bob, carol, dave, erin, frank, then node07, node08…"""
    return tuple(_PEOPLE[i] if i < len(_PEOPLE) else f"node{i + 1:02d}" for i in range(count))


def _channel(opener: str, accepter: str, capacity_sat: int) -> ChannelPlan:
    # half to each side: the opener can pay at once and so can the accepter
    return ChannelPlan(opener=opener, accepter=accepter, capacity_sat=capacity_sat,
                       push_msat=capacity_sat * 1000 // 2)


def parse_topology(spec: str, *, capacity_sat: int = DEFAULT_CAPACITY_SAT) -> Topology:
    """The network ``spec`` names: ``line:N``, ``star:N``, ``ring:N`` or ``bolt7-example``.

    ``line:N``: node i opens to node i+1. ``star:N``: the first node is the hub and each of the
    N-1 others opens a channel to it. ``ring:N``: a line whose last node opens to the first.
    Raises ``TopologyError`` with a one-line message saying what is accepted.
    """
    if not MIN_CAPACITY_SAT <= capacity_sat <= MAX_FUNDING_SAT:
        raise TopologyError(f"--capacity-sat must be {MIN_CAPACITY_SAT} to {MAX_FUNDING_SAT} "
                            f"sat (BOLT 2's limit without large channels), got {capacity_sat}")
    text = spec.strip().lower()
    if text == BOLT7_EXAMPLE:
        names = node_names(4)
        nodes = tuple(NodePlan(name=name, label=label, policy=policy)
                      for name, (label, policy) in zip(names, _BOLT7_POLICIES, strict=True))
        a, b, c, d = names
        # A-B, B-C, C-D, D-A: B and D each connect A and C, opened around the square so
        # every node funds exactly one channel
        channels = tuple(_channel(x, y, capacity_sat) for x, y in ((a, b), (b, c), (c, d),
                                                                    (d, a)))
        return Topology(spec=BOLT7_EXAMPLE, nodes=nodes, channels=channels)
    shape, sep, count_text = text.partition(":")
    if not sep or shape not in _MIN_NODES:
        raise TopologyError(f"unknown topology {spec!r}: use line:N, star:N, ring:N or "
                            f"{BOLT7_EXAMPLE}")
    try:
        count = int(count_text)
    except ValueError:
        raise TopologyError(f"{shape}:N needs a whole number of nodes, got {count_text!r}"
                            ) from None
    low = _MIN_NODES[shape]
    if not low <= count <= MAX_NODES:
        raise TopologyError(f"{shape}:N needs {low} to {MAX_NODES} nodes, got {count}")
    names = node_names(count)
    nodes = tuple(NodePlan(name=name, label=name, policy=DEFAULT_POLICY) for name in names)
    if shape == "line":
        pairs = list(itertools.pairwise(names))
    elif shape == "ring":
        pairs = list(zip(names, names[1:] + names[:1], strict=True))
    else:  # star: leaves open to the hub, so the hub needs no coins and funding is spread
        pairs = [(leaf, names[0]) for leaf in names[1:]]
    return Topology(spec=f"{shape}:{count}", nodes=nodes,
                    channels=tuple(_channel(x, y, capacity_sat) for x, y in pairs))
