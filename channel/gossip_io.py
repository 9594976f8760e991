"""I/O: the node's public gossip chores: the graph restored from disk, scid lookups on chain.

The decisions are in :class:`~channel.gossip_public.PublicGossip` (pure). This shell:

* at start, replays the persisted graph (kv ``gossip:`` rows) and the set of our channels to
  announce (kv ``announce:``), and tells the manager our ``node_announcement`` identity
  (alias = node name, an IPv4 listen address when there is one);
* after every flight, logs what gossip noted and starts the funding-output lookups it asked
  for: each is its own task, at most :data:`LOOKUP_CONCURRENCY` at once, so a peer's flood of
  announcements waits here and never in the chain watcher or the peers' loops. The answer
  (height → block → tx → ``gettxout``, :meth:`ScidLookup.scid_output`) goes back to the
  manager in a flight of its own;
* sends each peer its gossip (relays, replays, query answers) from a task of that peer's,
  :data:`RELAY_BATCH` messages per write.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from channel.effects import Effects
from channel.errors import ChainError
from channel.gossip_kv import ANNOUNCE_KV_PREFIX, GOSSIP_KV_PREFIX

if TYPE_CHECKING:
    from channel.gossip import ShortChannelId
    from channel.gossip_public import NodeIdentity, PublicGossip
    from channel.node import Node

__all__ = ["LOOKUP_CONCURRENCY", "RELAY_BATCH", "GossipShell", "ScidLookup", "node_identity"]

log = logging.getLogger("chanlab.gossip")

LOOKUP_CONCURRENCY = 4   # chain lookups for strangers' announcements in flight at once
RELAY_BATCH = 50         # gossip messages per write to one peer


@runtime_checkable
class ScidLookup(Protocol):
    """A chain backend that can say what output a short_channel_id names."""

    async def scid_output(self, height: int, tx_index: int,
                          output_index: int) -> tuple[str, bytes, int] | None:
        """``(txid, script_pubkey, amount_sat)`` of that output if it exists unspent."""
        ...


def node_identity(name: str, host: str, port: int, node_id: bytes) -> NodeIdentity:
    """Our node_announcement's content: the node's name as alias, a colour from its id, its
    listen address when it is a routable IPv4 one (not 0.0.0.0)."""
    # (idle node RSS, see tests/integration/test_idle_footprint.py)
    from channel.gossip import encode_ipv4_address
    from channel.gossip_public import NodeIdentity
    addresses = b""
    try:
        address = ipaddress.ip_address(host)
        if isinstance(address, ipaddress.IPv4Address) and not address.is_unspecified and port:
            addresses = encode_ipv4_address(host, port)
    except ValueError:
        pass   # a host name: BOLT 7 DNS descriptors are not announced
    alias = name.encode()[:32].decode("utf-8", "ignore")
    return NodeIdentity(alias=alias, rgb_color=hashlib.sha256(node_id).digest()[:3],
                        addresses=addresses)


class GossipShell:
    """Restores the graph at start; runs the gossip lookups the manager asks for."""

    def __init__(self, node: Node, spawn: Callable[[Awaitable[Any]], object]) -> None:
        self._node = node
        self._spawn = spawn   # the node's background tasks (cancelled at stop)
        self._flushing: set[bytes] = set()   # peers whose relay task runs
        self._limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        manager = node.manager
        assert manager is not None
        manager.when_public(self._set_identity)
        announced = node.store.kv_with_prefix(ANNOUNCE_KV_PREFIX)
        persisted = node.store.kv_with_prefix(GOSSIP_KV_PREFIX)
        if not announced and not persisted:
            return   # nothing to restore: gossip stays unloaded until a peer or channel needs it
        manager.public.restore(manager.graph, persisted, (k for k, v in announced.items() if v),
                               manager.gossip.public_scids)
        public = manager.public
        public_count = len(manager.graph.public_channels())
        if public_count:
            log.info("gossip: %d public channels, %d nodes restored from disk", public_count,
                     len(manager.graph.node_aliases))
            # the chain watcher replays missed blocks to the monitors only: a channel closed
            # while we were down is found by asking the chain for each funding output
            for scid in sorted(set(public.funding_outpoints.values()), key=bytes):
                spawn(self._recheck(scid))

    def _set_identity(self, public: PublicGossip) -> None:
        node = self._node
        public.identity = node_identity(node.settings.name, node.settings.host, node.port,
                                        node.node_id)

    def after_flight(self) -> None:
        """Log gossip's notes; start the lookups it queued (never awaited here)."""
        manager = self._node.manager
        public = None if manager is None else manager.public_if_built
        if public is None:
            return   # not built yet: nothing noted, nothing queued
        for note in public.notes:
            log.warning("%s", note)
        if public.notes_suppressed:
            log.warning("gossip: %d more lines like these not logged", public.notes_suppressed)
        public.notes.clear()
        public.notes_suppressed = 0
        for scid in public.take_lookups():
            self._spawn(self._lookup(scid))
        for peer_id in public.peers_with_relays():
            if peer_id not in self._flushing:
                self._flushing.add(peer_id)
                self._spawn(self._flush(peer_id))

    async def _flush(self, peer_id: bytes) -> None:
        """Send ``peer_id`` its waiting gossip, RELAY_BATCH messages per write: only this task
        waits for a slow reader; the event loop gets a turn between two writes."""
        try:
            while True:
                manager = self._node.manager
                batch = [] if manager is None else manager.public.take_relays(peer_id,
                                                                              RELAY_BATCH)
                if not batch:
                    return
                await self._node.peers.send_many(peer_id, batch)
                await asyncio.sleep(0)
        finally:
            self._flushing.discard(peer_id)

    async def _recheck(self, scid: ShortChannelId) -> None:
        """Forget restored channel ``scid`` if its funding output is spent by now."""
        async with self._limit:
            chain = self._node.chain
            if not isinstance(chain, ScidLookup):
                return
            try:
                found = await chain.scid_output(scid.block_height, scid.tx_index,
                                                scid.output_index)
            except ChainError as exc:
                log.info("gossip: funding output of %s not checked: %s", scid, exc)
                return
            manager = self._node.manager
            if found is None and manager is not None:
                fx = Effects()
                manager.public.channel_gone(manager, scid, fx)
                await self._node.complete(fx)

    async def _lookup(self, scid: ShortChannelId) -> None:
        async with self._limit:
            chain = self._node.chain
            # (idle node RSS, see tests/integration/test_idle_footprint.py)
            from channel.gossip_public import FundingOutput
            output: FundingOutput | None = None
            failed = False
            try:
                if isinstance(chain, ScidLookup):
                    found = await chain.scid_output(scid.block_height, scid.tx_index,
                                                    scid.output_index)
                    if found is not None:
                        output = FundingOutput(*found)
            except ChainError as exc:
                failed = True
                log.info("gossip: funding output of %s not looked up: %s", scid, exc)
            fx = Effects()
            manager = self._node.manager
            assert manager is not None
            manager.public.lookup_done(manager, scid, output, fx, failed=failed)
            await self._node.complete(fx)
