"""Channels not yet funded: a refused open answers at once, and strangers' opens cost no disk.

A node process faces a peer of our own (``hostile_peer.HostilePeer``): one refuses the node's
``open`` (at ``open_channel`` or after ``funding_created``), another sends a thousand
``open_channel`` and never funds any.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_peer import HostilePeer

from channel.errors import ChanlabError
from channel.keys import ChannelKeys
from channel.messages import AcceptChannel, FundingCreated, OpenChannel
from channel.pending import MAX_PENDING_PER_PEER
from channel.state import Channel, ChannelConfig
from channel.types import CommitmentFormat
from channel.wire import ErrorMessage
from regtest.cluster import Cluster, NodeProcess
from regtest.node import BitcoindNode
from regtest.wallet import Wallet

FUNDING_SAT = 200_000
STRANGER_OPENS = 1_000
MIB = 1 << 20


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def target(bitcoind: BitcoindNode, miner: Wallet,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeProcess]]:
    with Cluster.running(bitcoind, tmp_path_factory.mktemp("pending"), miner) as nodes:
        yield nodes, nodes.start_node(_name("target"), funds_sat=3_000_000)


def _db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("node.db*"))


@pytest.mark.parametrize("stage", ["open_channel", "funding_created"])
def test_refused_open_answers_at_once_with_the_reason_and_leaves_nothing(
        target: tuple[Cluster, NodeProcess], stage: str) -> None:
    """The peer's error answers `open` within seconds with its text; no channel stays listed,
    and no wallet input stays locked."""
    _, node = target
    reason = f"no thanks ({stage})"

    async def refuse() -> str:
        peer = HostilePeer()
        await peer.connect("127.0.0.1", node.port, bytes.fromhex(node.node_id))
        opening = asyncio.ensure_future(asyncio.to_thread(
            node.call, "open", peer_id=peer.node_id.hex(), amount_sat=FUNDING_SAT))
        open_msg = await peer.expect(OpenChannel)
        temporary_channel_id = open_msg.temporary_channel_id
        if stage == "funding_created":
            _, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(secrets.token_bytes(32)),
                                               config=ChannelConfig(), msg=open_msg)
            await peer.send(accept)
            await peer.expect(FundingCreated)
        started = time.monotonic()
        await peer.send(ErrorMessage.with_text(temporary_channel_id, reason))
        with pytest.raises(ChanlabError) as refused:
            await opening
        assert time.monotonic() - started < 5
        await peer.close()
        return str(refused.value)

    assert reason in asyncio.run(refuse())
    assert node.call("channels") == []
    assert node.wallet.wallet_rpc.call("listlockunspent") == []


def test_a_thousand_unfunded_opens_from_one_stranger_cost_no_disk(
        target: tuple[Cluster, NodeProcess]) -> None:
    """1,000 open_channel from one peer: the first MAX_PENDING_PER_PEER are accepted, every
    other gets an error, the database grows by less than 1 MiB, and nothing is left once the
    stranger leaves."""
    _, node = target
    before = _db_bytes(node.home)
    _, template = Channel.open_outbound(
        keys=ChannelKeys.from_seed(secrets.token_bytes(32)), config=ChannelConfig(),
        funding_sat=FUNDING_SAT, push_msat=0, feerate_per_kw=1000,
        temporary_channel_id=secrets.token_bytes(32),
        commitment_format=CommitmentFormat.STATIC_REMOTEKEY)

    async def flood() -> tuple[int, int]:
        peer = HostilePeer()
        await peer.connect("127.0.0.1", node.port, bytes.fromhex(node.node_id))
        opens = [dataclasses.replace(template, temporary_channel_id=secrets.token_bytes(32))
                 for _ in range(STRANGER_OPENS)]
        for start in range(0, STRANGER_OPENS, 100):
            await peer.send(*opens[start:start + 100])
        accepted = refused = 0
        while accepted + refused < STRANGER_OPENS:
            reply: object = await peer.expect(
                AcceptChannel | ErrorMessage, timeout=30)  # type: ignore[arg-type]
            if isinstance(reply, AcceptChannel):
                accepted += 1
            else:
                refused += 1
        listed = await asyncio.to_thread(node.call, "channels")
        assert len(listed) == MAX_PENDING_PER_PEER
        await peer.close()
        return accepted, refused

    accepted, refused = asyncio.run(flood())
    assert (accepted, refused) == (MAX_PENDING_PER_PEER, STRANGER_OPENS - MAX_PENDING_PER_PEER)
    assert _db_bytes(node.home) - before < MIB
    deadline = time.monotonic() + 10
    while node.call("channels") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.call("channels") == []
