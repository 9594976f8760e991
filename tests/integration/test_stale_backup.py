"""A node restored from a stale backup must never broadcast its (revoked) commitment.

Alice's node comes back from a copy of its home folder taken several payments ago. When it
meets Bob again, Bob's ``channel_reestablish`` proves (``your_last_per_commitment_secret``) that
her state is old: her commitment is revoked, and broadcasting it would hand Bob the whole
channel through the penalty. So she broadcasts nothing, Bob broadcasts his latest commitment,
and her monitor sweeps her to_remote from it (static_remotekey: the same key in every one of
Bob's commitments): she gets her *latest* balance, the one her backup never saw.
"""

from __future__ import annotations

import functools
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import CBlock, CTransaction

from channel.errors import ChanlabError
from channel.node import COMMITMENT_FEERATE_PER_KW
from channel.state import Channel, channel_from_record
from channel.store import NodeStore
from channel.types import OutPoint
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import mine_synced, owned_by
from regtest.wait import wait_for
from regtest.wallet import Chain

FUNDING_SAT = 1_000_000
ALICE_DELAY = 4     # what Alice imposes on Bob's to_local
BOB_DELAY = 6       # what Bob imposes on Alice's to_local
#: BOLT 3 "Fee Calculation": a static_remotekey commitment without HTLCs weighs 724.
COMMITMENT_FEE_SAT = 724 * COMMITMENT_FEERATE_PER_KW // 1000
P2WPKH_LEN = 22     # to_remote under static_remotekey; to_local is a 34-byte P2WSH


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


def _txid(tx: CTransaction) -> str:
    return bytes(tx.GetTxid())[::-1].hex()


def _tx(chain: Chain, txid: str) -> CTransaction:
    return CTransaction.deserialize(chain.get_transaction(txid))


def _spends(tx: CTransaction, outpoint: OutPoint) -> bool:
    return any(bytes(i.prevout.hash) == outpoint.txid and i.prevout.n == outpoint.vout
               for i in tx.vin)


def _mempool_spenders(chain: Chain, outpoint: OutPoint) -> list[CTransaction]:
    return [tx for tx in (_tx(chain, t) for t in chain.rpc.getrawmempool())
            if _spends(tx, outpoint)]


def _spender(chain: Chain, outpoint: OutPoint, since_height: int) -> CTransaction | None:
    """The transaction spending ``outpoint``: in the mempool, or in a block from ``since_height``
    (a node may broadcast a claim in the same second its parent is mined with it)."""
    in_mempool = _mempool_spenders(chain, outpoint)
    if in_mempool:
        return in_mempool[0]
    for height in range(since_height, chain.height() + 1):
        block = CBlock.deserialize(chain.get_block(chain.rpc.getblockhash(height)))
        for tx in block.vtx:
            if _spends(tx, outpoint):
                return tx
    return None


def _confirmed_height(chain: Chain, txid: str) -> int:
    return chain.height() - chain.confirmations(txid) + 1


def _fee_sat(chain: Chain, tx: CTransaction) -> int:
    """Inputs minus outputs, read from the chain."""
    paid_in = sum(int(_tx(chain, bytes(i.prevout.hash)[::-1].hex()).vout[i.prevout.n].nValue)
                  for i in tx.vin)
    return paid_in - sum(int(o.nValue) for o in tx.vout)


def _copy_home(source: Path, target: Path) -> None:
    """A node's folder, its SQLite db with the -wal/-shm files (copied while it is stopped)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.sock"))


def _stored_channel(home: Path, scratch: Path) -> Channel:
    """The one channel the node at ``home`` holds, read from a copy (SQLite writes on open)."""
    _copy_home(home, scratch)
    store = NodeStore(scratch / "node.db")
    try:
        (row,) = store.channels()
    finally:
        store.close()
    return channel_from_record(row.record)


class Link:
    """Alice's channel to Bob as both nodes report it, and the balances it must show."""

    def __init__(self, cluster: Cluster, alice: NodeProcess, bob: NodeProcess) -> None:
        self.cluster = cluster
        self.alice = alice
        self.bob = bob
        opened = cluster.open_channel(alice, bob, FUNDING_SAT)
        self.key = str(opened["channel"])
        self.funding_txid = str(opened["funding_txid"])
        txid, vout = str(self.report(alice)["funding_outpoint"]).split(":")
        self.funding = OutPoint.from_txid_hex(txid, int(vout))
        self.msat = {alice.name: FUNDING_SAT * 1000, bob.name: 0}

    def report(self, node: NodeProcess) -> dict[str, Any]:
        return self.cluster.channel(node, self.funding_txid)

    def shows(self, node: NodeProcess, other: NodeProcess) -> bool:
        chan = self.report(node)
        return bool(chan["state"] == "normal" and chan["htlcs"] == 0
                    and chan["local_msat"] == self.msat[node.name]
                    and chan["remote_msat"] == self.msat[other.name])

    def pay(self, payer: NodeProcess, amount_msat: int) -> None:
        payee = self.bob if payer is self.alice else self.alice
        result = self.cluster.pay(payer, payee, amount_msat)
        assert result["status"] == "succeeded", result
        self.msat[payer.name] -= amount_msat
        self.msat[payee.name] += amount_msat
        for node, other in ((payer, payee), (payee, payer)):
            wait_for(functools.partial(self.shows, node, other), timeout=10,
                     what=f"{node.name}'s balances after a payment")

    def wait_linked(self) -> None:
        """Until both list each other as peers (restarted, Alice redials Bob by herself)."""
        alice_id, bob_id = self.alice.node_id, self.bob.node_id
        wait_for(lambda: bob_id in self.alice.call("info")["peers"]
                 and alice_id in self.bob.call("info")["peers"],
                 timeout=15, what="Alice and Bob to reconnect")


def test_node_restored_from_stale_backup_broadcasts_nothing_and_sweeps_its_latest_balance(
        cluster: Cluster, tmp_path: Path) -> None:
    """A stale-restored node broadcasts nothing, then sweeps its latest balance from Bob's."""
    chain = cluster.miner
    alice = cluster.start_node(_name("alice"), funds_sat=2_000_000, to_self_delay=ALICE_DELAY)
    bob = cluster.start_node(_name("bob"), to_self_delay=BOB_DELAY)
    link = Link(cluster, alice, bob)
    link.pay(alice, 300_000_000)
    link.pay(bob, 20_000_000)
    stale_msat = dict(link.msat)

    alice.stop()
    backup = tmp_path / "alice-backup"
    _copy_home(alice.home, backup)
    stale = _stored_channel(backup, tmp_path / "scratch")
    stale_commitment = stale.holder_transactions().commitment_tx
    stale_txid = _txid(stale_commitment)
    assert _spends(stale_commitment, link.funding)
    assert sorted(int(o.nValue) for o in stale_commitment.vout) == sorted(
        (stale_msat[alice.name] // 1000 - COMMITMENT_FEE_SAT, stale_msat[bob.name] // 1000))

    alice.start()
    link.wait_linked()
    link.pay(alice, 100_000_001)
    link.pay(bob, 250_000_000)
    link.pay(alice, 12_345)
    latest_msat = dict(link.msat)
    assert latest_msat[alice.name] > stale_msat[alice.name]
    # revoked now, yet bitcoind would take it: only the node itself can keep it off the chain
    assert chain.test_mempool_accept(stale_commitment.serialize()).allowed

    # the disaster: Alice's folder is replaced by the old copy
    alice.stop()
    shutil.rmtree(alice.home)
    _copy_home(backup, alice.home)
    wallet_before_sat = alice.wallet.balance_sat()
    alice.start()

    # (1) the reestablish proves Alice stale: she gives the channel up and broadcasts nothing;
    # Bob (her error, or his own check of her numbers) broadcasts his latest commitment
    wait_for(lambda: "closing_txid" in link.report(bob), timeout=15,
             what="Bob to force-close on meeting Alice's stale state")
    bob_txid = str(link.report(bob)["closing_txid"])
    chain.wait_for_mempool(bob_txid)
    wait_for(lambda: link.report(alice)["state"] == "force_closing", timeout=15,
             what="Alice to give the channel up")
    assert "closing_txid" not in link.report(alice)
    with pytest.raises(ChanlabError, match="no commitment to broadcast"):
        alice.call("force-close", channel=link.key)
    assert [_txid(tx) for tx in _mempool_spenders(chain, link.funding)] == [bob_txid]
    assert bob_txid != stale_txid

    # (2) Bob's commitment carries both latest balances; Alice, the opener, pays its fee
    commitment = _tx(chain, bob_txid)
    # what the outputs leave to the miner: the fee, plus the msat the truncation drops
    assert FUNDING_SAT - sum(int(o.nValue) for o in commitment.vout) == \
        COMMITMENT_FEE_SAT + sum(msat % 1000 for msat in latest_msat.values()) // 1000
    by_kind = {len(o.scriptPubKey): n for n, o in enumerate(commitment.vout)}
    assert len(by_kind) == len(commitment.vout) == 2
    to_remote = OutPoint.from_txid_hex(bob_txid, by_kind[P2WPKH_LEN])
    to_local = OutPoint.from_txid_hex(bob_txid, by_kind[34])
    to_remote_sat = latest_msat[alice.name] // 1000 - COMMITMENT_FEE_SAT
    to_local_sat = latest_msat[bob.name] // 1000
    assert commitment.vout[to_remote.vout].nValue == to_remote_sat
    assert commitment.vout[to_local.vout].nValue == to_local_sat
    confirmed_at = mine_synced(cluster, 1)
    assert chain.confirmations(bob_txid) == 1
    assert chain.get_tx_out(link.funding) is None

    # Alice's monitor does not know this commitment, but finds her static to_remote in it
    alice_sweep = wait_for(lambda: _spender(chain, to_remote, confirmed_at), timeout=10,
                           what="Alice's sweep of her to_remote")
    assert isinstance(alice_sweep, CTransaction)
    assert len(alice_sweep.vin) == len(alice_sweep.vout) == 1
    assert owned_by(alice.wallet, bytes(alice_sweep.vout[0].scriptPubKey))
    events = [str(e) for e in alice.call("events")]
    assert any("ALERT" in e for e in events), events
    mine_synced(cluster, 1)
    assert chain.confirmations(_txid(alice_sweep)) >= 1
    sweep_fee_sat = _fee_sat(chain, alice_sweep)
    assert 0 < sweep_fee_sat < 1_000
    assert alice_sweep.vout[0].nValue == to_remote_sat - sweep_fee_sat
    wait_for(lambda: alice.wallet.balance_sat() == wallet_before_sat
             + latest_msat[alice.name] // 1000 - COMMITMENT_FEE_SAT - sweep_fee_sat,
             timeout=10, what="Alice's wallet to hold her latest balance")

    # Bob's to_local: locked ALICE_DELAY blocks, from the block at confirmed_at + ALICE_DELAY
    while chain.height() < confirmed_at + ALICE_DELAY - 1:
        assert chain.get_tx_out(to_local) is not None
        mine_synced(cluster, 1)
    bob_sweep = wait_for(lambda: _spender(chain, to_local, confirmed_at), timeout=10,
                         what="Bob's sweep of his to_local")
    assert isinstance(bob_sweep, CTransaction)
    assert bob_sweep.vin[0].nSequence == ALICE_DELAY
    mine_synced(cluster, 1)
    assert _confirmed_height(chain, _txid(bob_sweep)) == confirmed_at + ALICE_DELAY
    assert len(bob_sweep.vout) == 1 and owned_by(bob.wallet, bytes(bob_sweep.vout[0].scriptPubKey))
    assert bob_sweep.vout[0].nValue == to_local_sat - _fee_sat(chain, bob_sweep)
