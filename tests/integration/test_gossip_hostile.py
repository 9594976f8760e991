"""A stranger's gossip flood costs a node a bounded number of chain lookups, and no delay.

A real ``chanlab node start`` process gets, from a peer of our own
(``hostile_peer.HostilePeer``), a thousand ``channel_announcement``\\ s with four valid
signatures whose scids name coinbase outputs (not the 2-of-2 of their keys) or no output at
all: each one passes the signature check and would cost the node a chain lookup.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from hostile_peer import HostilePeer

from channel.gossip import (
    ShortChannelId,
    sign_announcement,
    unsigned_channel_announcement,
    with_channel_announcement_signatures,
)
from channel.gossip_public import LOOKUP_BURST, LOOKUPS_PER_S
from channel.keys import PrivateKey
from channel.wire import REGTEST_CHAIN_HASH, Ping, Pong
from regtest.cluster import Cluster
from regtest.wait import wait_for

FLOOD = 1000


def _announcement(scid: ShortChannelId) -> object:
    """A channel_announcement signed by four fresh keys, naming ``scid`` (a coinbase)."""
    nodes = [PrivateKey(secrets.token_bytes(32)) for _ in range(2)]
    funding = [PrivateKey(secrets.token_bytes(32)) for _ in range(2)]
    unsigned = unsigned_channel_announcement(
        chain_hash=REGTEST_CHAIN_HASH, short_channel_id=scid,
        node_id_a=nodes[0].pubkey, node_id_b=nodes[1].pubkey,
        bitcoin_key_a=funding[0].pubkey, bitcoin_key_b=funding[1].pubkey)
    signed = unsigned
    for node_key, funding_key in zip(nodes, funding, strict=True):
        node_sig, bitcoin_sig = sign_announcement(unsigned, node_key=node_key,
                                                  funding_key=funding_key)
        signed = with_channel_announcement_signatures(
            signed, node_id=node_key.pubkey, node_signature=node_sig,
            bitcoin_signature=bitcoin_sig)
    return signed


def test_an_announcement_flood_costs_bounded_lookups_and_no_delay(cluster: Cluster) -> None:
    """1000 well-signed announcements of non-channel outputs: the node starts at most
    LOOKUP_BURST + LOOKUPS_PER_S per second of flood chain lookups, keeps none of them,
    answers another peer's ping within 2 s and follows a block mined meanwhile."""
    node = cluster.start_node(f"target-{secrets.token_hex(3)}")
    node_id = bytes.fromhex(node.node_id)
    tip = int(cluster.bitcoind.rpc.call("getblockcount"))   # type: ignore[arg-type]
    # every scid different (none answered from the cache): coinbase outputs, or none at all
    flood = [_announcement(ShortChannelId(1 + i % (tip - 1), 0, i // (tip - 1)))
             for i in range(FLOOD)]

    async def attack() -> tuple[float, float]:
        stranger, honest = HostilePeer(), HostilePeer()
        await stranger.connect("127.0.0.1", node.port, node_id)
        await honest.connect("127.0.0.1", node.port, node_id)
        started = time.monotonic()
        await stranger.send(*flood)
        await honest.send(Ping(num_pong_bytes=4))
        await honest.expect(Pong, timeout=5)
        pong_s = time.monotonic() - started
        await asyncio.to_thread(cluster.mine, 1)
        await asyncio.to_thread(wait_for, lambda: node.call("info")["height"] == tip + 1,
                                timeout=10, what="the node to see the block")
        block_s = time.monotonic() - started
        await stranger.close()
        await honest.close()
        return pong_s, block_s

    pong_s, block_s = asyncio.run(attack())
    print(f"pong after {pong_s:.2f} s, block followed after {block_s:.2f} s")
    assert pong_s < 2.0   # 0.2-0.5 s measured; slack for a loaded machine
    assert block_s < 5.0

    def settled() -> bool:
        counters = node.call("graph-info")["gossip"]
        return bool(counters["lookups"] + counters["over_budget"] == FLOOD)

    wait_for(settled, timeout=30, what="the node to have weighed every announcement")
    report = node.call("graph-info")
    counters = report["gossip"]
    print(f"gossip counters after the flood: {counters}")
    assert counters["lookups"] <= LOOKUP_BURST + LOOKUPS_PER_S * (block_s + 30)
    assert counters["over_budget"] >= FLOOD - counters["lookups"]
    assert (report["public_channels"], report["node_announcements"]) == (0, 0)
    wait_for(lambda: node.call("graph-info")["gossip"]["rejected"] == counters["lookups"],
             timeout=30, what="every looked-up announcement to be rejected")
