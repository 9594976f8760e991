"""The breach matrix, punished by the node: every kind of revoked state Alice can broadcast, and
Bob's final on-chain amount, exactly the whole channel minus the fees of the transactions that
moved it (read from the chain).

    case            Alice broadcasts                                   Bob
    --------------  -------------------------------------------------  ---------------------------
    no-htlc         revoked commitment #0 (she had everything)         online: penalty from mempool
    offered-htlc    revoked commitment with an HTLC she offered        online
    received-htlc   revoked commitment with an HTLC offered to her     online
    htlc-success    that commitment, then her HTLC-success tx          offline while both confirm
    htlc-timeout    a commitment with her offered HTLC, then, after    offline while both confirm
                    cltv_expiry, her HTLC-timeout tx

Hold invoices keep each HTLC in a known state until the payee settles it, so that state is then
revoked. In the second-stage cases Bob must take the HTLC tx's output with the revocation key,
plus everything else, before Alice's to_self_delay runs out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from onchain import REVOCATION_PATH, fee_of, height_of, tx_of, witness

from channel.node import FINAL_CLTV_DELTA
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import Narrator
from regtest.drills import (
    ALICE_FUNDS_SAT,
    CHANNEL_SAT,
    TO_SELF_DELAY,
    Leaf,
    Staged,
    breach,
    mine_synced,
    owned_by,
    settlement,
    stage_channel,
    sync_nodes,
    wait_all_spent,
)
from regtest.errors import RegtestError
from regtest.wait import wait_for

HTLC_SAT = 150_000
ANCHOR_SAT = 330


@dataclass(frozen=True, slots=True, kw_only=True)
class _Held:
    payment_hash: str
    state: int   # Alice's commitment number that carries the HTLC


def _channel(cluster: Cluster, node: NodeProcess, staged: Staged) -> dict[str, Any]:
    return cluster.channel(node, staged.funding.txid_hex)


def _quiescent(cluster: Cluster, staged: Staged, htlcs: int) -> int:
    """Wait until both sides hold both commitments with ``htlcs`` HTLCs; Alice's number."""
    def agreed() -> int | None:
        a = _channel(cluster, staged.alice, staged)
        b = _channel(cluster, staged.bob, staged)
        if a["htlcs"] == b["htlcs"] == htlcs and \
                a["holder_commitment_number"] == b["counterparty_commitment_number"] and \
                b["holder_commitment_number"] == a["counterparty_commitment_number"]:
            return int(a["holder_commitment_number"])
        return None

    return wait_for(agreed, timeout=20, what=f"both commitments to carry {htlcs} HTLC(s)")


def _hold_htlc(cluster: Cluster, staged: Staged, payer: NodeProcess,
               payee: NodeProcess) -> _Held:
    invoice = payee.call("invoice", amount_msat=HTLC_SAT * 1000, hold=True)
    sent = payer.call("pay", invoice=invoice["invoice"], wait=False)
    assert sent["status"] == "pending"
    state = _quiescent(cluster, staged, 1)
    return _Held(payment_hash=str(invoice["payment_hash"]), state=state)


def _settle(cluster: Cluster, staged: Staged, payee: NodeProcess, held: _Held) -> None:
    payee.call("settle", payment_hash=held.payment_hash)
    assert _quiescent(cluster, staged, 0) > held.state


def _cheat_htlc_txs(staged: Staged, state: int) -> tuple[str, list[dict[str, Any]]]:
    """Alice (re)broadcasts revoked commitment ``state`` and its HTLC txs; per tx the answer."""
    result = staged.alice.call("cheat", channel=staged.channel, state=state, htlc_txs=True)
    assert result["commitment"]["accepted"], result
    return str(result["revoked_commitment_txid"]), list(result["htlc_txs"])


def _is_anchor(leaf: Leaf) -> bool:
    return leaf.amount_sat == ANCHOR_SAT and len(leaf.script_pubkey) == 34


def _taken(cluster: Cluster, staged: Staged) -> bool:
    s = settlement(cluster.miner, staged.funding, staged.funding_height)
    return bool(s.leaves) and all(_is_anchor(leaf) or owned_by(staged.bob.wallet,
                                                               leaf.script_pubkey)
                                  for leaf in s.leaves)


def _await_punishment(cluster: Cluster, staged: Staged, breach_txid: str,
                      anchors: bool) -> None:
    """Mine until Bob holds everything but the anchors."""
    if not anchors:   # his claims are all valid at once: from the mempool, before any block
        wait_all_spent(cluster.miner, breach_txid, what="Bob's penalty and sweep")
    for _ in range(4):
        mine_synced(cluster, 1)
        if _taken(cluster, staged):
            return
    raise RegtestError("Bob did not take the breached channel")


def _check_bob_takes_all(cluster: Cluster, staged: Staged, breach_txid: str,
                         htlc_outputs: int, second_stage: str | None, to_remote: bool = True,
                         anchor_outputs: int = 0) -> None:
    chain = cluster.miner
    s = settlement(chain, staged.funding, staged.funding_height)
    alice_wallet = ALICE_FUNDS_SAT - CHANNEL_SAT - fee_of(chain, staged.funding.txid_hex)
    # where the money went: every end of the tree is Bob's (but the 330 sat anchors, which
    # nobody needs to spend), and nothing came from outside it
    assert s.closing_txid == breach_txid
    assert s.foreign_inputs_sat == 0
    anchor_sat = sum(leaf.amount_sat for leaf in s.leaves if _is_anchor(leaf))
    assert anchor_sat == anchor_outputs * ANCHOR_SAT
    assert [leaf for leaf in s.leaves if not _is_anchor(leaf)] == s.leaves_of(staged.bob.wallet)
    assert staged.bob.wallet.balance_sat() == CHANNEL_SAT - s.total_fees_sat - anchor_sat
    assert staged.alice.wallet.balance_sat() == alice_wallet
    # how: the revoked commitment's HTLC outputs and its to_local on revocation paths
    revoked = tx_of(chain, breach_txid)
    assert len(revoked.vout) == 1 + int(to_remote) + htlc_outputs + anchor_outputs
    claims = [tx_of(chain, t) for t in s.order[1:]]
    stacks = [witness(tx, i) for tx in claims for i in range(len(tx.vin))
              if bytes(tx.vin[i].prevout.hash)[::-1].hex() == breach_txid]
    # revoked HTLC output: <sig> <revocationpubkey> <script>; to_local: <sig> 1 <script>
    revoked_htlcs = [w for w in stacks if len(w) == 3 and len(w[1]) == 33]
    assert len(revoked_htlcs) == (htlc_outputs if second_stage is None else 0)
    assert [w for w in stacks if len(w) == 3 and w[1] == REVOCATION_PATH]
    assert height_of(chain, s.order[-1]) - height_of(chain, breach_txid) < TO_SELF_DELAY
    if second_stage is not None:
        takers = [tx for tx in claims
                  if any(bytes(i.prevout.hash)[::-1].hex() == second_stage for i in tx.vin)]
        assert len(takers) == 1
        assert witness(takers[0], 0)[1] == REVOCATION_PATH            # <sig> 1 <script>
        assert height_of(chain, second_stage) >= height_of(chain, breach_txid)


def _staged(cluster: Cluster, case: str, anchors: bool = False) -> Staged:
    return stage_channel(cluster, Narrator(io.StringIO()),
                         names=(f"alice-{case}", f"bob-{case}"), payments_sat=(300_000,),
                         anchors=anchors)


@pytest.mark.parametrize("fmt", ["static_remotekey", "anchors"])
def test_revoked_commitment_without_htlcs(cluster: Cluster, fmt: str) -> None:
    """Alice's revoked commitment #0 (no HTLC, no to_remote): Bob's node, online, takes its
    to_local with the revocation key and ends with the channel minus the fees (and anchors)."""
    anchors = fmt == "anchors"
    staged = _staged(cluster, f"none-{fmt[0]}", anchors)
    txid = breach(staged, 0)
    _await_punishment(cluster, staged, txid, anchors)
    # BOLT 3: no to_remote and no HTLC, so only the to_local anchor
    _check_bob_takes_all(cluster, staged, txid, htlc_outputs=0, second_stage=None,
                         to_remote=False, anchor_outputs=1 if anchors else 0)


@pytest.mark.parametrize("fmt", ["static_remotekey", "anchors"])
@pytest.mark.parametrize("direction", ["offered", "received"])
def test_revoked_commitment_with_an_htlc(cluster: Cluster, direction: str, fmt: str) -> None:
    """A revoked commitment carrying an HTLC Alice offered (or was offered): Bob's penalty takes
    the HTLC output with the revocation pubkey as well as to_local, and his to_remote too."""
    anchors = fmt == "anchors"
    staged = _staged(cluster, f"{direction[:3]}-{fmt[0]}", anchors)
    payer, payee = (staged.alice, staged.bob) if direction == "offered" else \
        (staged.bob, staged.alice)
    held = _hold_htlc(cluster, staged, payer, payee)
    _settle(cluster, staged, payee, held)
    txid = breach(staged, held.state)
    _await_punishment(cluster, staged, txid, anchors)
    _check_bob_takes_all(cluster, staged, txid, htlc_outputs=1, second_stage=None,
                         anchor_outputs=2 if anchors else 0)


def test_revoked_htlc_success_second_stage(cluster: Cluster) -> None:
    """Alice confirms a revoked commitment and her HTLC-success tx on it while Bob is offline;
    Bob returns and takes the HTLC-success output with the revocation key, plus the rest."""
    staged = _staged(cluster, "succ")
    held = _hold_htlc(cluster, staged, staged.bob, staged.alice)
    _settle(cluster, staged, staged.alice, held)
    staged.bob.stop()
    txid, htlc_txs = _cheat_htlc_txs(staged, held.state)
    assert [t["accepted"] for t in htlc_txs] == [True], htlc_txs
    mine_synced(cluster, 2)
    success = str(htlc_txs[0]["txid"])
    assert height_of(cluster.miner, success) == height_of(cluster.miner, txid)
    staged.bob.start()
    wait_all_spent(cluster.miner, txid, what="the revoked commitment's outputs to be taken")
    wait_all_spent(cluster.miner, success, what="Bob's second-stage penalty")
    mine_synced(cluster, 1)
    _check_bob_takes_all(cluster, staged, txid, htlc_outputs=1, second_stage=success)


def test_revoked_htlc_timeout_second_stage(cluster: Cluster) -> None:
    """Alice confirms a revoked commitment with her offered HTLC, then its HTLC-timeout tx once
    cltv_expiry passes, while Bob is offline; Bob returns before to_self_delay runs out and
    takes the HTLC-timeout output with the revocation key, plus the rest."""
    staged = _staged(cluster, "tmo")
    chain = cluster.miner
    cltv_expiry = sync_nodes(cluster) + FINAL_CLTV_DELTA
    held = _hold_htlc(cluster, staged, staged.alice, staged.bob)
    _settle(cluster, staged, staged.bob, held)
    staged.bob.stop()
    mine_synced(cluster, cltv_expiry - 2 - chain.height())
    txid = breach(staged, held.state)
    mine_synced(cluster, 1)
    confirmed = height_of(chain, txid)
    timeout_tx: dict[str, Any] = {}
    for _ in range(4):
        _, attempt = _cheat_htlc_txs(staged, held.state)
        if attempt[0]["accepted"]:
            timeout_tx = attempt[0]
            break
        assert "non-final" in attempt[0]["error"]   # nLockTime = cltv_expiry
        mine_synced(cluster, 1)
    if not timeout_tx:
        raise RegtestError("the HTLC-timeout tx never became valid")
    mine_synced(cluster, 1)
    second = str(timeout_tx["txid"])
    assert tx_of(chain, second).nLockTime == cltv_expiry
    assert height_of(chain, second) > confirmed
    staged.bob.start()
    wait_all_spent(chain, txid, what="the revoked commitment's outputs to be taken")
    wait_all_spent(chain, second, what="Bob's second-stage penalty")
    mine_synced(cluster, 1)
    _check_bob_takes_all(cluster, staged, txid, htlc_outputs=1, second_stage=second)
