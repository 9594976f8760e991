"""Anchors HTLC claims by the node: its zero-fee HTLC-timeout tx gets fee inputs from its wallet.

On an ``option_anchors`` commitment the second-stage HTLC txs pay no fee (BOLT 3): the node
asks its bitcoind wallet for inputs (and change) added after input 0 / output 0, signs input 0
over the final tx, broadcasts it, and later sweeps its output after ``to_self_delay``.
"""

from __future__ import annotations

import itertools
from typing import Any

from bitcoin.core import CTransaction
from onchain import fee_of, height_of, tx_of, witness

from channel.node import FINAL_CLTV_DELTA, SWEEP_FEERATE_PER_KW
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import mine_synced, owned_by, sync_nodes
from regtest.wait import wait_for

CHANNEL_SAT = 1_000_000
HTLC_SAT = 123_457
ALICE_DELAY = 5          # Bob imposes it on Alice's outputs (her to_local, her HTLC txs')
ANCHOR_SAT = 330
_names = itertools.count()


def _name(role: str) -> str:
    return f"{role}-anch-{next(_names)}"


def _txid(tx: CTransaction) -> str:
    return bytes(tx.GetTxid())[::-1].hex()


def _spends(tx: CTransaction, outpoint: tuple[str, int]) -> bool:
    return any(bytes(i.prevout.hash)[::-1].hex() == outpoint[0] and i.prevout.n == outpoint[1]
               for i in tx.vin)


def _mempool_spender(cluster: Cluster, outpoint: tuple[str, int]) -> CTransaction | None:
    for txid in cluster.miner.rpc.getrawmempool():
        tx = tx_of(cluster.miner, txid)
        if _spends(tx, outpoint):
            return tx
    return None


def _vsize(tx: CTransaction) -> int:
    return (len(tx.serialize({"include_witness": False})) * 3 + len(tx.serialize()) + 3) // 4


def _channel(cluster: Cluster, node: NodeProcess, funding_txid: str) -> dict[str, Any]:
    return cluster.channel(node, funding_txid)


def test_anchors_htlc_timeout_gets_wallet_fee_inputs_and_its_output_is_swept(
        cluster: Cluster) -> None:
    """Anchors force-close: the node's HTLC-timeout confirms with wallet fee inputs, then sweeps."""
    alice = cluster.start_node(_name("alice"), funds_sat=2_000_000, to_self_delay=6)
    bob = cluster.start_node(_name("bob"), to_self_delay=ALICE_DELAY)
    opened = cluster.open_channel(alice, bob, CHANNEL_SAT, anchors=True)
    funding_txid = str(opened["funding_txid"])
    assert _channel(cluster, alice, funding_txid)["commitment_format"] == "anchors"

    # a held payment: Bob never settles, so only the timeout path can end the HTLC
    invoice = bob.call("invoice", amount_msat=HTLC_SAT * 1000, hold=True)
    pay_height = sync_nodes(cluster)
    sent = alice.call("pay", invoice=invoice["invoice"], wait=False)
    assert sent["status"] == "pending"

    def quiescent() -> bool:
        a, b = (_channel(cluster, n, funding_txid) for n in (alice, bob))
        return bool(a["htlcs"] == b["htlcs"] == 1 and
                    a["holder_commitment_number"] == b["counterparty_commitment_number"] and
                    b["holder_commitment_number"] == a["counterparty_commitment_number"])

    wait_for(quiescent, timeout=10, what="both commitments to carry the HTLC")
    cltv_expiry = pay_height + FINAL_CLTV_DELTA

    closed = alice.call("force-close", channel=str(opened["channel"]))
    commitment_txid = str(closed["commitment_txid"])
    mine_synced(cluster)
    commitment = tx_of(cluster.miner, commitment_txid)
    assert cluster.miner.confirmations(commitment_txid) == 1
    assert sorted(int(o.nValue) for o in commitment.vout).count(ANCHOR_SAT) == 2
    (htlc_vout,) = [n for n, o in enumerate(commitment.vout)
                    if o.nValue == HTLC_SAT and len(o.scriptPubKey) == 34]
    htlc_outpoint = (commitment_txid, htlc_vout)

    # not before cltv_expiry: the HTLC-timeout's nLockTime holds it out of the mempool
    cluster.mine(cltv_expiry - 1 - cluster.miner.height())
    sync_nodes(cluster)
    assert _mempool_spender(cluster, htlc_outpoint) is None
    mine_synced(cluster)
    assert cluster.miner.height() == cltv_expiry
    htlc_tx = wait_for(lambda: _mempool_spender(cluster, htlc_outpoint), timeout=10,
                       what="Alice to broadcast her HTLC-timeout with fee inputs")
    assert isinstance(htlc_tx, CTransaction)
    htlc_txid = _txid(htlc_tx)

    # input 0 / output 0 are the BOLT 3 HTLC-timeout's: 1-CSV input, the whole HTLC out
    assert _spends(htlc_tx, htlc_outpoint) and htlc_tx.vin[0].prevout.n == htlc_vout
    assert bytes(htlc_tx.vin[0].prevout.hash)[::-1].hex() == commitment_txid
    assert htlc_tx.vin[0].nSequence == 1
    assert htlc_tx.nLockTime == cltv_expiry and htlc_tx.nVersion == 2
    assert htlc_tx.vout[0].nValue == HTLC_SAT
    stack = witness(htlc_tx, 0)
    assert len(stack) == 5 and stack[0] == b"" and stack[3] == b""   # timeout: no preimage
    assert stack[1][-1] == 0x83 and stack[2][-1] == 0x01   # SINGLE|ANYONECANPAY, then ALL
    # every other input and the change come from / go to Alice's wallet
    assert len(htlc_tx.vin) >= 2
    for txin in htlc_tx.vin[1:]:
        prev = tx_of(cluster.miner, bytes(txin.prevout.hash)[::-1].hex())
        assert owned_by(alice.wallet, bytes(prev.vout[txin.prevout.n].scriptPubKey))
    assert len(htlc_tx.vout) == 2
    assert owned_by(alice.wallet, bytes(htlc_tx.vout[1].scriptPubKey))

    mine_synced(cluster)
    assert cluster.miner.confirmations(htlc_txid) == 1
    # the whole fee comes from the added inputs, at the node's sweep feerate (4 sat/vB):
    # bitcoind sized it for 73-byte signatures, so it may exceed the actual size by a few vB
    fee = fee_of(cluster.miner, htlc_txid)
    wallet_in = sum(
        int(tx_of(cluster.miner, bytes(i.prevout.hash)[::-1].hex()).vout[i.prevout.n].nValue)
        for i in htlc_tx.vin[1:])
    assert fee == wallet_in - int(htlc_tx.vout[1].nValue)
    sat_per_vb = SWEEP_FEERATE_PER_KW * 4 // 1000
    vsize = _vsize(htlc_tx)
    assert sat_per_vb * vsize <= fee <= sat_per_vb * (vsize + 3), (fee, vsize)

    # output 0 (to_self_delay after it confirms) is swept to Alice's wallet, not a block early
    confirmed_at = height_of(cluster.miner, htlc_txid)
    second_stage = (htlc_txid, 0)
    while cluster.miner.height() < confirmed_at + ALICE_DELAY - 1:
        assert _mempool_spender(cluster, second_stage) is None
        mine_synced(cluster)
    sweep = wait_for(lambda: _mempool_spender(cluster, second_stage), timeout=10,
                     what="Alice to sweep her HTLC-timeout's output")
    assert isinstance(sweep, CTransaction)
    assert len(sweep.vin) == 1 and sweep.vin[0].nSequence == ALICE_DELAY
    assert len(sweep.vout) == 1 and owned_by(alice.wallet, bytes(sweep.vout[0].scriptPubKey))
    mine_synced(cluster)
    sweep_txid = _txid(sweep)
    assert cluster.miner.confirmations(sweep_txid) == 1
    assert int(sweep.vout[0].nValue) == HTLC_SAT - fee_of(cluster.miner, sweep_txid)
    utxos = {(u.txid, u.vout): u.amount_sat
             for u in alice.wallet.wallet_rpc.listunspent(minconf=0)}
    assert utxos[(sweep_txid, 0)] == int(sweep.vout[0].nValue)
