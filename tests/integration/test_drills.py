"""The outage drills of ``chanlab demo``, each checked again on chain, to the satoshi.

Every drill runs two real node processes; the checks below read bitcoind only: the wallets'
absolute balances (Alice starts with ``ALICE_FUNDS_SAT``, Bob with nothing), the closing
transaction, and every transaction downstream of the funding output.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from onchain import (
    DELAYED_PATH,
    REVOCATION_PATH,
    all_leaves_owned,
    fee_of,
    height_of,
    spent_outpoints,
    tx_of,
    witness,
)

from regtest.cluster import Cluster, NodeProcess
from regtest.demo import Narrator
from regtest.drills import (
    ALICE_FUNDS_SAT,
    CHANNEL_SAT,
    TO_SELF_DELAY,
    DrillOutcome,
    breach_too_late,
    breach_victim_returns,
    peer_down,
    restart_reorg,
    settlement,
)
from regtest.node import BitcoindNode
from regtest.wallet import Chain, Wallet


def _quiet() -> Narrator:
    return Narrator(io.StringIO())


def _alice_start(chain: Chain, outcome: DrillOutcome) -> int:
    """Alice's wallet right after funding the channel."""
    return ALICE_FUNDS_SAT - CHANNEL_SAT - fee_of(chain, outcome.funding.txid_hex)


def _spender(chain: Chain, outcome: DrillOutcome, txid: str, vout: int) -> str:
    s = settlement(chain, outcome.funding, outcome.funding_height)
    for spender in s.order:
        if (txid, vout) in spent_outpoints(tx_of(chain, spender)):
            return spender
    raise AssertionError(f"{txid}:{vout} is unspent")


def _nodes(cluster: Cluster, names: tuple[str, str]) -> tuple[NodeProcess, NodeProcess]:
    return cluster.nodes[names[0]], cluster.nodes[names[1]]


def test_peer_down_alice_exits_alone_and_bob_sweeps_later(cluster: Cluster) -> None:
    """With Bob's node down, Alice's force-close pays her channel balance minus the commitment
    and sweep fees after to_self_delay, and Bob's returning node sweeps his exact balance."""
    names = ("alice-peerdown", "bob-peerdown")
    out = peer_down(cluster, _quiet(), names=names)
    alice, bob = _nodes(cluster, names)
    chain = cluster.miner
    local_sat, remote_sat = (b // 1000 for b in out.balances_msat)
    commitment = tx_of(chain, out.closing_txid)
    assert spent_outpoints(commitment) == {(out.funding.txid_hex, out.funding.vout)}
    commitment_fee = fee_of(chain, out.closing_txid)
    assert sorted(int(o.nValue) for o in commitment.vout) == sorted(
        [local_sat - commitment_fee, remote_sat])
    to_local = next(n for n, o in enumerate(commitment.vout)
                    if int(o.nValue) == local_sat - commitment_fee)
    to_remote = 1 - to_local
    alice_sweep = _spender(chain, out, out.closing_txid, to_local)
    bob_sweep = _spender(chain, out, out.closing_txid, to_remote)
    sweep_tx = tx_of(chain, alice_sweep)
    assert sweep_tx.vin[0].nSequence == TO_SELF_DELAY
    assert witness(sweep_tx, 0)[1] == DELAYED_PATH
    assert height_of(chain, alice_sweep) - height_of(chain, out.closing_txid) >= TO_SELF_DELAY
    assert alice.wallet.balance_sat() == _alice_start(chain, out) + local_sat - commitment_fee \
        - fee_of(chain, alice_sweep)
    assert bob.wallet.balance_sat() == remote_sat - fee_of(chain, bob_sweep)
    assert out.wallet_delta_sat == {alice.name: local_sat - commitment_fee
                                    - fee_of(chain, alice_sweep),
                                    bob.name: remote_sat - fee_of(chain, bob_sweep)}


def test_breach_victim_returns_within_delay_and_takes_everything(cluster: Cluster) -> None:
    """Bob, offline fewer blocks than to_self_delay while Alice's revoked commitment confirms,
    comes back and ends with the whole channel minus the breach, penalty and sweep fees; the
    penalty spends Alice's to_local on the revocation path before her delay runs out."""
    names = ("alice-returns", "bob-returns")
    out = breach_victim_returns(cluster, _quiet(), names=names)
    alice, bob = _nodes(cluster, names)
    chain = cluster.miner
    s = settlement(chain, out.funding, out.funding_height)
    assert s.closing_txid == out.closing_txid
    assert s.foreign_inputs_sat == 0
    assert all_leaves_owned(s, bob.wallet)
    assert bob.wallet.balance_sat() == CHANNEL_SAT - s.total_fees_sat
    assert alice.wallet.balance_sat() == _alice_start(chain, out)
    breach = tx_of(chain, out.closing_txid)
    old_local, old_remote = (b // 1000 for b in out.balances_msat)
    breach_fee = fee_of(chain, out.closing_txid)
    assert sorted(int(o.nValue) for o in breach.vout) == sorted(
        [old_local - breach_fee, old_remote])
    to_local = next(n for n, o in enumerate(breach.vout)
                    if int(o.nValue) == old_local - breach_fee)
    penalty = _spender(chain, out, out.closing_txid, to_local)
    assert witness(tx_of(chain, penalty), 0)[1] == REVOCATION_PATH
    assert height_of(chain, penalty) - height_of(chain, out.closing_txid) < TO_SELF_DELAY
    assert out.current_msat[1] // 1000 < bob.wallet.balance_sat()  # cheating cost Alice


def test_breach_too_late_lets_the_cheat_succeed(cluster: Cluster) -> None:
    """With Bob offline past to_self_delay, Alice sweeps her revoked to_local on the delayed
    path; Bob ends with only the revoked state's to_remote minus his sweep fee."""
    names = ("alice-toolate", "bob-toolate")
    out = breach_too_late(cluster, _quiet(), names=names)
    alice, bob = _nodes(cluster, names)
    chain = cluster.miner
    breach = tx_of(chain, out.closing_txid)
    old_local, old_remote = (b // 1000 for b in out.balances_msat)
    breach_fee = fee_of(chain, out.closing_txid)
    to_local = next(n for n, o in enumerate(breach.vout)
                    if int(o.nValue) == old_local - breach_fee)
    to_remote = next(n for n, o in enumerate(breach.vout) if int(o.nValue) == old_remote)
    alice_sweep = _spender(chain, out, out.closing_txid, to_local)
    bob_sweep = _spender(chain, out, out.closing_txid, to_remote)
    assert witness(tx_of(chain, alice_sweep), 0)[1] == DELAYED_PATH
    assert height_of(chain, alice_sweep) - height_of(chain, out.closing_txid) == TO_SELF_DELAY
    assert alice.wallet.balance_sat() == _alice_start(chain, out) + old_local - breach_fee \
        - fee_of(chain, alice_sweep)
    assert bob.wallet.balance_sat() == old_remote - fee_of(chain, bob_sweep)
    assert out.current_msat[1] // 1000 - old_remote == 200_000  # what Alice took back


@pytest.fixture()
def own_cluster(fresh_bitcoind: BitcoindNode, tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.running(fresh_bitcoind, tmp_path / "chanlab",
                         Wallet(fresh_bitcoind.rpc, "miner")) as nodes:
        yield nodes


def test_bitcoind_restart_and_reorg_do_not_stop_the_penalty(own_cluster: Cluster) -> None:
    """Across a bitcoind restart and a reorg of the breach's block after bitcoind lost its
    mempool, Bob's node re-broadcasts its penalty and ends with the whole channel minus fees."""
    names = ("alice-reorg", "bob-reorg")
    out = restart_reorg(own_cluster, _quiet(), names=names)
    alice, bob = _nodes(own_cluster, names)
    chain = own_cluster.miner
    s = settlement(chain, out.funding, out.funding_height)
    assert s.closing_txid == out.closing_txid
    assert all_leaves_owned(s, bob.wallet)
    assert bob.wallet.balance_sat() == CHANNEL_SAT - s.total_fees_sat
    assert alice.wallet.balance_sat() == _alice_start(chain, out)
    breach = tx_of(chain, out.closing_txid)
    penalties = [t for t in s.order[1:] if witness(tx_of(chain, t), 0)[1] == REVOCATION_PATH]
    assert len(penalties) == 1
    assert len(s.order) == 3 and len(breach.vout) == 2   # breach, penalty, to_remote sweep
