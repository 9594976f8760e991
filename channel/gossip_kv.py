"""The names under which a node's database keeps gossip (kv rows, ``channel.store``).

Pure constants. Their own module so that a node whose database has no such row restores an
empty graph without loading the gossip code (idle node RSS, see
tests/integration/test_idle_footprint.py).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANNOUNCE_KV_PREFIX", "GOSSIP_KV_PREFIX", "PEER_UPDATE_KV_PREFIX"]

#: the public graph, as the raw gossip messages (``channel.gossip_public``)
GOSSIP_KV_PREFIX: Final = "gossip:"
#: our channels opened to be announced (``channel.gossip_public``)
ANNOUNCE_KV_PREFIX: Final = "announce:"
#: the peers' private channel_updates (``channel.gossip_local``)
PEER_UPDATE_KV_PREFIX: Final = "peer_update:"
