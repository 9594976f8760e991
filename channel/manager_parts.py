"""The channel manager's routing, forwarding and gossip parts, each built on its first use.

Pure. A node with no channel and no peer never forwards, routes or gossips: the payer, the
forwarder, the network graph and the two gossip halves (and the onion, failure and route code
they import) are made, and their modules loaded, by the first call that needs them (a peer
connecting, a channel, a payment, a persisted graph restored at start). A part built late is
the same as one built at start: each begins empty (idle node RSS, see
tests/integration/test_idle_footprint.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from channel.forwarder import Forwarder
    from channel.gossip_local import LocalGossip
    from channel.gossip_public import PublicGossip
    from channel.graph import NetworkGraph
    from channel.manager import ChannelManager
    from channel.payer import Payer

__all__ = ["ManagerParts"]


class ManagerParts:
    """The manager's payer, forwarder, graph and gossip, as properties built on first use."""

    def __init__(self, *, node_secret: bytes, forwarder: Forwarder | None = None,
                 make_forwarder: Callable[[], Forwarder] | None = None) -> None:
        self._node_secret = node_secret
        self._given_forwarder = forwarder
        self._forwarder: Forwarder | None = None
        # the forwarder as the node's database left it (its policy, the forwards in flight)
        self._make_forwarder = make_forwarder
        self._gossip: LocalGossip | None = None
        self._public: PublicGossip | None = None
        self._public_setups: list[Callable[[PublicGossip], None]] = []
        self._graph: NetworkGraph | None = None
        self._payer: Payer | None = None

    @property
    def forwarder(self) -> Forwarder:
        """HTLCs forwarded from one channel to another (:mod:`channel.forwarder`)."""
        if self._forwarder is None:
            forwarder = self._given_forwarder
            if forwarder is None and self._make_forwarder is not None:
                forwarder = self._make_forwarder()
            if forwarder is None:
                # (idle node RSS, see tests/integration/test_idle_footprint.py)
                from channel.forwarder import Forwarder
                forwarder = Forwarder(node_secret=self._node_secret)
            forwarder.channel_update = self.gossip.failure_update
            self._forwarder = forwarder
        return self._forwarder

    @property
    def gossip(self) -> LocalGossip:
        """Our private channel_updates and the peers' (:mod:`channel.gossip_local`)."""
        if self._gossip is None:
            # (idle node RSS, see tests/integration/test_idle_footprint.py)
            from channel.gossip_local import LocalGossip
            from channel.wire import REGTEST_CHAIN_HASH
            self._gossip = LocalGossip(node_secret=self._node_secret,
                                       chain_hash=REGTEST_CHAIN_HASH)
        return self._gossip

    @property
    def public(self) -> PublicGossip:
        """BOLT 7 public gossip (:mod:`channel.gossip_public`)."""
        if self._public is None:
            # (idle node RSS, see tests/integration/test_idle_footprint.py)
            from channel.gossip_public import PublicGossip
            from channel.wire import REGTEST_CHAIN_HASH
            self._public = PublicGossip(node_secret=self._node_secret,
                                        chain_hash=REGTEST_CHAIN_HASH)
            for setup in self._public_setups:
                setup(self._public)
        return self._public

    @property
    def public_if_built(self) -> PublicGossip | None:
        """The public gossip if something needed it yet (else it has nothing to say)."""
        return self._public

    def when_public(self, setup: Callable[[PublicGossip], None]) -> None:
        """Run ``setup`` on the public gossip: now if it is built, else once it is."""
        self._public_setups.append(setup)
        if self._public is not None:
            setup(self._public)

    @property
    def graph(self) -> NetworkGraph:
        """What gossip taught us: routes (:mod:`channel.graph`)."""
        if self._graph is None:
            # (idle node RSS, see tests/integration/test_idle_footprint.py)
            from channel.graph import NetworkGraph
            from channel.wire import REGTEST_CHAIN_HASH
            self._graph = NetworkGraph(REGTEST_CHAIN_HASH)
        return self._graph

    @property
    def payer(self) -> Payer:
        """Route choice, sending and retries of our payments (:mod:`channel.payer`)."""
        if self._payer is None:
            # (idle node RSS, see tests/integration/test_idle_footprint.py)
            from channel.payer import Payer
            self._payer = Payer(cast("ChannelManager", self))
        return self._payer
