"""Strangers cannot make a node work for them beyond fixed bounds, nor delay its penalty.

A real ``chanlab node start`` process faces peers of our own (``hostile_peer.HostilePeer``)
that flood it with pings; and issue 10's "done when": the victim of a breach (staged with a
cheating node, ``bench.nodes.measure_breach``) under ``bench.hostile_load.HostileLoad`` (three
strangers' 65 kB-feature inits every second, 1,000 unfunded open_channel, a ping flood).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_peer import HostilePeer

from bench.hostile_load import STRANGER_OPENS, HostileLoad
from bench.nodes import MempoolFeed, measure_breach, zmq_rawtx_endpoint
from channel.peers import MAX_UNAUTHENTICATED, PING_BURST, PING_FLOOD_DROP
from channel.wire import Ping, Pong, WarningMessage
from regtest.cluster import Cluster, NodeProcess
from regtest.node import BitcoindNode
from regtest.wallet import Wallet


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def target(bitcoind: BitcoindNode, miner: Wallet,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeProcess]]:
    with Cluster.running(bitcoind, tmp_path_factory.mktemp("load"), miner) as nodes:
        yield nodes, nodes.start_node(_name("target"))


def test_ping_flood_is_answered_at_the_rate_limit_then_dropped(
        target: tuple[Cluster, NodeProcess]) -> None:
    """A burst of pings gets PING_BURST pongs (+1 for the refill while it is read), then a
    warning and a hang-up; the node still answers another peer's ping."""
    _, node = target
    node_id = bytes.fromhex(node.node_id)
    burst = 2 * PING_FLOOD_DROP

    async def flood() -> list[object]:
        peer = HostilePeer()
        await peer.connect("127.0.0.1", node.port, node_id)
        await peer.send(*[Ping(num_pong_bytes=8) for _ in range(burst)])
        seen = await peer.closed(timeout=15)
        await peer.close()
        calm = HostilePeer()
        await calm.connect("127.0.0.1", node.port, node_id)
        await calm.send(Ping(num_pong_bytes=3))
        assert await calm.expect(Pong) == Pong(ignored=bytes(3))
        await calm.close()
        return seen

    seen = asyncio.run(flood())
    pongs = [m for m in seen if isinstance(m, Pong)]
    assert PING_BURST <= len(pongs) <= PING_BURST + 1
    warnings = [m for m in seen if isinstance(m, WarningMessage)]
    assert len(warnings) == 1 and "ping flood" in warnings[0].text


def test_silent_strangers_cannot_lock_out_a_newcomer(target: tuple[Cluster, NodeProcess]) -> None:
    """Three times MAX_UNAUTHENTICATED connections that never start the handshake: a peer
    arriving after them still completes its handshake and init and gets its pong at once."""
    _, node = target

    async def crowd_then_greet() -> float:
        silent = [await asyncio.open_connection("127.0.0.1", node.port)
                  for _ in range(3 * MAX_UNAUTHENTICATED)]
        started = time.monotonic()
        newcomer = HostilePeer()
        await newcomer.connect("127.0.0.1", node.port, bytes.fromhex(node.node_id))
        await newcomer.send(Ping(num_pong_bytes=2))
        assert await newcomer.expect(Pong, timeout=5) == Pong(ignored=bytes(2))
        elapsed = time.monotonic() - started
        await newcomer.close()
        for _, writer in silent:
            writer.close()
        return elapsed

    assert asyncio.run(crowd_then_greet()) < 2.0


PENALTY_GOAL_S = 1.0
MIB = 1 << 20


def test_penalty_within_a_second_of_the_breach_under_hostile_load(
        bitcoind: BitcoindNode, miner: Wallet, tmp_path: Path) -> None:
    """Under the full hostile load the victim's penalty enters the mempool within 1 s of the
    revoked commitment, confirms, and the victim's database grows by less than 1 MiB."""
    loads: list[HostileLoad] = []

    def load(victim: NodeProcess) -> HostileLoad:
        loads.append(HostileLoad("127.0.0.1", victim.port, bytes.fromhex(victim.node_id),
                                 victim.home))
        return loads[-1]

    with Cluster.running(bitcoind, tmp_path / "chanlab", miner) as cluster, \
            MempoolFeed(zmq_rawtx_endpoint(bitcoind)) as feed:
        run = measure_breach(cluster, feed, lambda _: None, index=1, tower=None,
                             prefix=f"load{secrets.token_hex(2)}", load=load)
    assert not isinstance(run, str), run
    assert run.penalty_confirmed
    assert run.latency_s < PENALTY_GOAL_S, f"penalty {run.latency_s * 1e3:.0f} ms after breach"
    (hostile,) = loads
    assert hostile.counts.opens == STRANGER_OPENS
    assert hostile.counts.huge_inits >= 6 and hostile.counts.pings >= 1_000
    assert hostile.db_growth_bytes < MIB
