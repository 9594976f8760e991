"""chanlab and Electrum, an implementation we did not write, share channels and prove it on chain.

One chanlab node (carol, allowed to cheat) and one Electrum wallet (alice) for the module, on
the session's bitcoind and ElectrumX. Five anchors channels of 1,000,000 sat open at once (one
batch of blocks): carol opens A, C, E; alice opens B, D. A and B carry payments both ways and
close cooperatively (A by carol, B by alice); C and D are force-closed (C by carol, D by
alice) and each side sweeps; on E carol broadcasts a revoked commitment and Electrum's own
penalty takes the whole channel. Every amount is read back from bitcoind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chanlab import Bitcoind, ChannelRecord, Node, NodeFactory
from chanlab.bitcoind import TxRecord
from chanlab.electrum import ElectrumFactory, wait_for_balance
from channel.types import OutPoint
from regtest.electrum import ElectrumChannel, ElectrumWallet, ElectrumX
from regtest.electrum_provision import ElectrumInstall
from regtest.wait import wait_for

CHANNEL_SAT = 1_000_000
ANCHOR_SAT = 330
CAROL_FUNDS_SAT = 4_000_000
ALICE_FUNDS_SAT = 3_000_000
ELECTRUM_MIN_DEPTH = 3      # Electrum as fundee asks for 3 confirmations
TO_SELF_DELAY = 10          # both sides impose it on the other's to_local


@dataclass(frozen=True)
class Lab:
    bitcoind: Bitcoind
    carol: Node
    alice: ElectrumWallet


@dataclass(frozen=True)
class Channels:
    """The five channels, by their funding outpoint (the name both sides know)."""

    a: OutPoint   # carol -> alice: payments, cooperative close by carol
    b: OutPoint   # alice -> carol: payments, cooperative close by alice
    c: OutPoint   # carol -> alice: force close by carol
    d: OutPoint   # alice -> carol: force close by alice
    e: OutPoint   # carol -> alice: carol cheats, Electrum's penalty


@pytest.fixture(scope="module")
def lab(bitcoind: Bitcoind, electrum_install: ElectrumInstall,
        electrumx: ElectrumX) -> Iterator[Lab]:
    with NodeFactory(bitcoind) as nodes, \
            ElectrumFactory(electrum_install, electrumx, bitcoind) as wallets:
        carol = nodes.get_node("carol", to_self_delay=TO_SELF_DELAY, allow_cheating=True)
        alice = wallets.get_wallet("alice", to_self_delay=TO_SELF_DELAY)
        # one block funds both: chanlab's wallet and Electrum's
        miner = bitcoind.miner
        carol_fund = miner.send_to_address(carol.wallet.new_address(), CAROL_FUNDS_SAT)
        alice_fund = miner.send_to_address(alice.new_address(), ALICE_FUNDS_SAT)
        bitcoind.generate_block(1)
        miner.wait_for_confirmation(carol_fund)
        miner.wait_for_confirmation(alice_fund)
        wait_for(lambda: carol.wallet.balances().trusted_sat >= CAROL_FUNDS_SAT,
                 what="carol's wallet to see its funds")
        wait_for_balance(alice, ALICE_FUNDS_SAT)
        yield Lab(bitcoind=bitcoind, carol=carol, alice=alice)


def _open_from_carol(lab: Lab) -> OutPoint:
    answer = lab.carol.call("open", peer_id=lab.alice.node_id(), amount_sat=CHANNEL_SAT,
                            push_msat=0, anchors=False)   # anchors chosen: Electrum requires it
    return _point(lab.carol.channel(answer["channel"]).funding_outpoint or "")


def _point(text: str) -> OutPoint:
    txid, vout = text.split(":")
    return OutPoint.from_txid_hex(txid, int(vout))


@pytest.fixture(scope="module")
def channels(lab: Lab) -> Channels:
    carol, alice = lab.carol, lab.alice
    carol.connect(alice.address())
    a = _open_from_carol(lab)
    b = alice.open_channel(carol.info().address, CHANNEL_SAT)
    c = _open_from_carol(lab)
    # Electrum opens one channel per peer per block: its funding key is derived from the
    # peer and the funding tx's nLockTime (its wallet's height)
    wait_for(lambda: b.txid_hex in lab.bitcoind.rpc.getrawmempool(),
             what="alice's first funding transaction in the mempool")
    lab.bitcoind.generate_block(1)
    tip = lab.bitcoind.height()
    wait_for(lambda: alice.height() == tip, what="alice at the new tip")
    d = alice.open_channel(carol.info().address, CHANNEL_SAT)
    e = _open_from_carol(lab)
    points = Channels(a=a, b=b, c=c, d=d, e=e)
    txids = {p.txid_hex for p in (d, e)}
    wait_for(lambda: txids <= set(lab.bitcoind.rpc.getrawmempool()),
             what="the last funding transactions in the mempool")
    lab.bitcoind.generate_block(ELECTRUM_MIN_DEPTH)
    for point in (a, b, c, d, e):
        carol.wait_for_channel(point.txid_hex, "normal", timeout=60)
        _wait_electrum(lab, point, "OPEN")
    return points


def _wait_electrum(lab: Lab, point: OutPoint, *states: str,
                   timeout: float = 60.0) -> ElectrumChannel:
    """Wait until Electrum's channel ``point`` is in one of ``states``; its row."""
    def reached() -> ElectrumChannel | None:
        channel = _electrum(lab, point)
        return channel if channel.state in states else None

    found: ElectrumChannel = wait_for(reached, timeout=timeout,
                                      what=f"Electrum's channel {point} {'/'.join(states)}")
    return found


def _electrum(lab: Lab, point: OutPoint) -> ElectrumChannel:
    channel = lab.alice.channel(point)
    assert channel is not None, f"Electrum has no channel {point}"
    return channel


def _ours(lab: Lab, point: OutPoint) -> ChannelRecord:
    return lab.carol.channel(point.txid_hex)


def _output(tx: TxRecord, vout: int) -> int:
    return tx.outputs[vout].value_sat


# -- opening ----------------------------------------------------------------------------------


def test_channels_open_both_ways_as_anchors(lab: Lab, channels: Channels) -> None:
    """chanlab opens to Electrum and Electrum opens to chanlab: five 1,000,000 sat anchors
    channels, funded on chain to the satoshi, OPEN on Electrum's side, normal on ours."""
    for point, opener in ((channels.a, "holder"), (channels.b, "counterparty"),
                          (channels.c, "holder"), (channels.d, "counterparty"),
                          (channels.e, "holder")):
        ours = _ours(lab, point)
        assert (ours.state, ours.opener, ours.commitment_format) == ("normal", opener, "anchors")
        assert ours.funding_sat == CHANNEL_SAT
        assert _output(lab.bitcoind.tx(point.txid_hex), point.vout) == CHANNEL_SAT
        theirs = _electrum(lab, point)
        assert theirs.capacity_sat == CHANNEL_SAT and theirs.state == "OPEN"
        assert theirs.remote_node_id == lab.carol.node_id
        # nothing pushed: the opener holds the whole channel, less its commitment fee
        if opener == "holder":
            assert (ours.local_msat, ours.remote_msat) == (CHANNEL_SAT * 1000, 0)
            assert theirs.local_balance_sat == 0
        else:
            assert (ours.local_msat, ours.remote_msat) == (0, CHANNEL_SAT * 1000)
            assert theirs.remote_balance_sat == 0
