"""The channel monitor: breach matrix, unilateral closes, reorgs, idempotence, persistence.

Two in-memory channels (Alice opens, Bob accepts) are driven message by message; each side's
monitor gets every monitor update. Old commitments are captured with ``holder_transactions()``
at the time they were current, then shown to the victim's monitor as if broadcast. Every claim's
witnesses are executed by :mod:`segwit_check` (BIP 143 signatures, CSV, CLTV), and every amount
is checked to the satoshi.
"""

from __future__ import annotations

import json

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript
from chanpair import (
    ALICE_DEST,
    BOB_DEST,
    CLTV,
    FEE_COIN,
    FEE_COIN_TX_OUT,
    FEE_KEY,
    FUNDING_OUTPOINT,
    FUNDING_SAT,
    SWEEP_FEERATE,
    TO_SELF_DELAY,
    Pair,
    breach,
    cheater_second_stage,
    preimage,
)
from segwit_check import ScriptFailed, lock_satisfied, verify_input, verify_spends

from channel.errors import InvalidRevocation
from channel.keys import PrivateKey
from channel.monitor import (
    ANTI_REORG_DELAY,
    BalanceStatus,
    ChannelMonitor,
    ChannelResolved,
    Claim,
    ClaimConfirmed,
    ClaimKind,
    ClaimRequested,
    ClaimWithdrawn,
    CloseKind,
    CounterpartySpend,
    FundingSpent,
    MonitorEvent,
    PreimageLearned,
)
from channel.state import CounterpartySecretRevealed
from channel.sweeps import p2wpkh_output
from channel.tower import MemoryTowerStore, TowerClient, Watchtower, justice_kit_for_state
from channel.transactions import ANCHOR_OUTPUT_SAT
from channel.types import CommitmentFormat, HtlcDirection, OutPoint

FORMATS = list(CommitmentFormat)


def _of(events: list[MonitorEvent], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def _claims(events: list[MonitorEvent], kind: ClaimKind) -> list[Claim]:
    return [e.claim for e in _of(events, ClaimRequested) if e.claim.kind is kind]


def _anchors_sat(fmt: CommitmentFormat) -> int:
    return 2 * ANCHOR_OUTPUT_SAT if fmt is CommitmentFormat.ANCHORS else 0


def _tower_holding(monitor: ChannelMonitor, commitment_number: int) -> Watchtower:
    """An in-memory tower holding the justice kit for ``monitor``'s revoked ``commitment_number``,
    uploaded by a registered client."""
    tower = Watchtower(MemoryTowerStore())
    client = TowerClient(PrivateKey(b"\x44" * 32))
    tower.register_client(client.pubkey)
    txid, kit = justice_kit_for_state(monitor, commitment_number)
    tower.accept(client.upload_kit(kit, txid))
    return tower


def _check_claim(claim: Claim, *parents: CTransaction) -> None:
    """Every input of the claim validates against its parent outputs."""
    verify_spends(claim.tx, {bytes(p.GetTxid()): p for p in parents})


# ---------------------------------------------------------------------------------------------
# Breach matrix


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("offered", "received"),
                         [(False, False), (True, False), (False, True), (True, True)],
                         ids=["no-htlc", "offered", "received", "both"])
def test_revoked_commitment_penalty_takes_every_output(fmt: CommitmentFormat, offered: bool,
                                                       received: bool) -> None:
    """A revoked commitment gets one penalty spending to_local and every HTLC output at once;
    the victim ends with the whole channel minus the commitment's and its own claims' fees."""
    p, old = breach(fmt, offered=offered, received=received)
    c = old.commitment
    events = p.bob_monitor.transaction_seen(old.commitment_tx, None)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.REVOKED_COMMITMENT
    assert spent.outcome.commitment_number == c.commitment_number
    assert f"Alice broadcast REVOKED commitment #{c.commitment_number}" in spent.description
    (penalty,) = _claims(events, ClaimKind.PENALTY)
    n_htlcs = int(offered) + int(received)
    assert len(c.htlc_outputs) == n_htlcs
    expected = {c.to_local_vout, *(o.vout for o in c.htlc_outputs)}
    assert {o.vout for o in penalty.spends} == expected
    assert {o.txid for o in penalty.spends} == {c.txid}
    taken = c.to_local_amount_sat + sum(o.amount_sat for o in c.htlc_outputs)
    assert penalty.amount_sat + penalty.fee_sat == taken
    assert int(penalty.tx.vout[0].nValue) == penalty.amount_sat
    assert bytes(penalty.tx.vout[0].scriptPubKey) == BOB_DEST
    # fee paid on the weight with 73-byte signatures: real signatures are 1-2 bytes shorter
    weight = penalty.tx.calc_weight()
    n_inputs = len(penalty.spends)
    assert SWEEP_FEERATE * weight // 1000 <= penalty.fee_sat <= \
        SWEEP_FEERATE * (weight + 2 * n_inputs) // 1000
    assert penalty.broadcastable_at_height == 0
    assert lock_satisfied(penalty.tx, tip_height=0, parent_heights={c.txid: None})
    _check_claim(penalty, old.commitment_tx)
    # to_remote is Bob's anyway: at once with static_remotekey, one block after with anchors
    remote = _claims(events, ClaimKind.TO_REMOTE_SWEEP)
    if fmt is CommitmentFormat.ANCHORS:
        assert remote == []
        events = p.bob_monitor.block_connected(300, [old.commitment_tx])
        (remote_claim,) = _claims(events, ClaimKind.TO_REMOTE_SWEEP)
        assert remote_claim.broadcastable_at_height == 300
        assert not lock_satisfied(remote_claim.tx, tip_height=299,
                                  parent_heights={c.txid: 300})
        assert lock_satisfied(remote_claim.tx, tip_height=300, parent_heights={c.txid: 300})
    else:
        (remote_claim,) = remote
    _check_claim(remote_claim, old.commitment_tx)
    assert remote_claim.amount_sat + remote_claim.fee_sat == c.to_remote_amount_sat
    assert penalty.amount_sat + remote_claim.amount_sat == FUNDING_SAT - c.fee_sat \
        - _anchors_sat(fmt) - penalty.fee_sat - remote_claim.fee_sat


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("direction", list(HtlcDirection))
def test_revoked_second_stage_output_is_penalised(fmt: CommitmentFormat,
                                                  direction: HtlcDirection) -> None:
    """When the cheater's HTLC-timeout/-success tx takes an HTLC output first, the penalty is
    re-planned without it and the second-stage output is taken with the revocation key."""
    offered = direction is HtlcDirection.OFFERED
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "offered")
    p.add(p.bob, 40_000_000, "received")
    if not offered:
        p.fulfill(p.alice, "received", commit=False)   # Alice knows the preimage: HTLC-success
    old = p.snapshot(p.alice)
    p.flush()
    p.fulfill(p.bob, "offered")
    c = old.commitment
    monitor = p.bob_monitor
    events = monitor.block_connected(400, [old.commitment_tx])
    (first,) = _claims(events, ClaimKind.PENALTY)
    assert len(first.spends) == 3
    second = cheater_second_stage(p, old, direction)
    verify_input(second, 0, bytes(c.tx.vout[second.vin[0].prevout.n].scriptPubKey),
                 int(c.tx.vout[second.vin[0].prevout.n].nValue))
    height = CLTV if offered else 401
    events = monitor.block_connected(height, [second])
    (withdrawn,) = _of(events, ClaimWithdrawn)
    assert withdrawn.claim.txid == first.txid
    (rest,) = _claims(events, ClaimKind.PENALTY)
    htlc_vout = second.vin[0].prevout.n
    assert {o.vout for o in rest.spends} == {o.vout for o in first.spends} - {htlc_vout}
    _check_claim(rest, old.commitment_tx)
    (ssp,) = _claims(events, ClaimKind.SECOND_STAGE_PENALTY)
    assert ssp.spends == (OutPoint(txid=bytes(second.GetTxid()), vout=0),)
    assert ssp.amount_sat + ssp.fee_sat == int(second.vout[0].nValue)
    assert ssp.broadcastable_at_height == 0
    _check_claim(ssp, second)
    (spend,) = _of(events, CounterpartySpend)
    assert "raced the penalty" in spend.description
    if not offered:
        (learned,) = _of(events, PreimageLearned)
        assert learned.payment_preimage == preimage("received")
    # accounting: everything Alice had on the revoked commitment ends with Bob, minus fees
    (remote,) = [cl for cl in monitor.pending_claims() if cl.kind is ClaimKind.TO_REMOTE_SWEEP]
    htlc_amount = c.tx.vout[htlc_vout].nValue
    second_stage_fee = htlc_amount - int(second.vout[0].nValue) \
        if fmt is CommitmentFormat.STATIC_REMOTEKEY else 0
    total = rest.amount_sat + ssp.amount_sat + remote.amount_sat
    assert total == FUNDING_SAT - c.fee_sat - _anchors_sat(fmt) - second_stage_fee \
        - rest.fee_sat - ssp.fee_sat - remote.fee_sat


def test_second_stage_seen_in_mempool_before_penalty() -> None:
    """A legacy HTLC-success chained in the mempool right behind the revoked commitment is met
    by a penalty that leaves that output out, plus a second-stage penalty (with anchors the
    HTLC tx needs the commitment confirmed: 1 OP_CSV)."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.bob, 40_000_000, "received")
    p.fulfill(p.alice, "received", commit=False)
    old = p.snapshot(p.alice)
    p.flush()
    monitor = p.bob_monitor
    second = cheater_second_stage(p, old, HtlcDirection.RECEIVED)
    monitor.transaction_seen(old.commitment_tx, None)
    events = monitor.transaction_seen(second, None)
    kinds = sorted(e.claim.kind.value for e in _of(events, ClaimRequested))
    assert kinds == ["penalty", "second_stage_penalty"]
    (rest,) = _claims(events, ClaimKind.PENALTY)
    assert rest.spends == (old.commitment.outpoint(old.commitment.to_local_vout or 0),)


@pytest.mark.parametrize("fmt", FORMATS)
def test_penalty_confirms_then_channel_resolves(fmt: CommitmentFormat) -> None:
    """Penalty and to_remote sweep confirm; ANTI_REORG_DELAY blocks later the channel is
    resolved, reported once."""
    p, old = breach(fmt, offered=True, received=False)
    monitor = p.bob_monitor
    monitor.block_connected(300, [old.commitment_tx])
    claims = monitor.claims_to_broadcast(300)
    assert sorted(cl.kind.value for cl in claims) == ["penalty", "to_remote_sweep"]
    events = monitor.block_connected(301, [cl.tx for cl in claims])
    assert sorted(e.claim.kind.value for e in _of(events, ClaimConfirmed)) == \
        ["penalty", "to_remote_sweep"]
    assert monitor.claims_to_broadcast(301) == []
    assert not monitor.is_resolved
    for height in range(302, 301 + ANTI_REORG_DELAY - 1):
        assert _of(monitor.block_connected(height, []), ChannelResolved) == []
    events = monitor.block_connected(301 + ANTI_REORG_DELAY - 1, [])
    assert len(_of(events, ChannelResolved)) == 1
    assert monitor.is_resolved
    assert _of(monitor.block_connected(310, []), ChannelResolved) == []
    assert monitor.claimable_balances() == []


def test_breach_before_revocation_becomes_penalty_when_secret_arrives() -> None:
    """A peer commitment first seen as current turns into a breach once its secret is applied."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 100_000_000, "a")
    old = p.snapshot(p.alice)
    number = old.commitment.commitment_number
    monitor = ChannelMonitor.from_record(p.bob_monitor.to_record())   # before the revocation
    events = monitor.transaction_seen(old.commitment_tx, None)
    assert _of(events, FundingSpent)[0].outcome.kind is CloseKind.COUNTERPARTY_COMMITMENT
    assert _claims(events, ClaimKind.PENALTY) == []
    secret = p.alice.keys.per_commitment_secret(number)
    events = monitor.apply_update(CounterpartySecretRevealed(commitment_number=number,
                                                             per_commitment_secret=secret))
    assert _of(events, FundingSpent)[0].outcome.kind is CloseKind.REVOKED_COMMITMENT
    (penalty,) = _claims(events, ClaimKind.PENALTY)
    _check_claim(penalty, old.commitment_tx)


def test_wrong_revocation_secret_is_refused() -> None:
    """A secret that does not match the peer's commitment point is an InvalidRevocation."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.add(p.alice, 10_000_000, "x")
    monitor = p.bob_monitor
    number = max(monitor.revoked_commitment_numbers) + 1
    with pytest.raises(InvalidRevocation):
        monitor.apply_update(CounterpartySecretRevealed(commitment_number=number,
                                                        per_commitment_secret=b"\x01" * 32))


# ---------------------------------------------------------------------------------------------
# Honest unilateral closes


@pytest.mark.parametrize("fmt", FORMATS)
def test_our_commitment_sweeps_to_local_after_delay_and_resolves_htlcs(
        fmt: CommitmentFormat) -> None:
    """Our commitment: to_local after to_self_delay, HTLC-timeout at cltv_expiry, HTLC-success
    once the preimage is given, each second-stage output after to_self_delay."""
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.bob, 30_000_000, "bob-offers")     # Bob's HTLC-timeout
    p.add(p.alice, 20_000_000, "alice-offers")  # Bob's HTLC-success with the preimage
    ours = p.snapshot(p.bob)
    c = ours.commitment
    monitor = p.bob_monitor
    events = monitor.transaction_seen(ours.commitment_tx, None)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.HOLDER_COMMITMENT
    assert monitor.holder_commitment_tx().serialize() == ours.commitment_tx.serialize()
    h = 200
    events = monitor.block_connected(h, [ours.commitment_tx])
    (to_local,) = _claims(events, ClaimKind.TO_LOCAL_SWEEP)
    assert to_local.broadcastable_at_height == h + TO_SELF_DELAY - 1
    assert not lock_satisfied(to_local.tx, tip_height=h + TO_SELF_DELAY - 2,
                              parent_heights={c.txid: h})
    assert lock_satisfied(to_local.tx, tip_height=h + TO_SELF_DELAY - 1,
                          parent_heights={c.txid: h})
    _check_claim(to_local, ours.commitment_tx)
    assert to_local.amount_sat + to_local.fee_sat == c.to_local_amount_sat
    (timeout,) = [cl for cl in monitor.pending_claims() if cl.kind is ClaimKind.HTLC_TIMEOUT]
    assert timeout.broadcastable_at_height == CLTV
    assert [cl for cl in monitor.pending_claims() if cl.kind is ClaimKind.HTLC_SUCCESS] == []
    pending = [b for b in monitor.claimable_balances() if b.status is BalanceStatus.HTLC_PENDING]
    assert [b.amount_sat for b in pending] == [20_000]
    events = monitor.provide_payment_preimage(preimage("alice-offers"))
    (success,) = _claims(events, ClaimKind.HTLC_SUCCESS)
    assert success.broadcastable_at_height == (h if fmt is CommitmentFormat.ANCHORS else 0)
    for claim in (timeout, success):
        tx = claim.tx
        if fmt is CommitmentFormat.ANCHORS:
            assert claim.fee_bump is not None
            coin = p2wpkh_output(outpoint=FEE_COIN, amount_sat=100_000, privkey=FEE_KEY)
            tx = claim.fee_bump.with_fee_inputs([coin], change_script_pubkey=BOB_DEST,
                                                feerate_per_kw=2000).tx
            verify_input(tx, 1, bytes(FEE_COIN_TX_OUT.scriptPubKey), 100_000)
        else:
            assert claim.fee_bump is None
        ho = c.tx.vout[claim.spends[0].vout]
        verify_input(tx, 0, bytes(ho.scriptPubKey), int(ho.nValue))
        assert lock_satisfied(tx, tip_height=claim.broadcastable_at_height,
                              parent_heights={c.txid: h, FEE_COIN.txid: 1})
        events = monitor.block_connected(CLTV + 1, [tx])
        (confirmed,) = _of(events, ClaimConfirmed)
        assert confirmed.claim.txid == bytes(tx.GetTxid())
        (sweep,) = _claims(events, ClaimKind.SECOND_STAGE_SWEEP)
        assert sweep.broadcastable_at_height == CLTV + 1 + TO_SELF_DELAY - 1
        assert sweep.spends == (OutPoint(txid=bytes(tx.GetTxid()), vout=0),)
        assert sweep.amount_sat + sweep.fee_sat == int(tx.vout[0].nValue)
        _check_claim(sweep, tx)
        assert lock_satisfied(sweep.tx, tip_height=sweep.broadcastable_at_height,
                              parent_heights={bytes(tx.GetTxid()): CLTV + 1})
        assert not lock_satisfied(sweep.tx, tip_height=sweep.broadcastable_at_height - 1,
                                  parent_heights={bytes(tx.GetTxid()): CLTV + 1})
        monitor.block_disconnected(CLTV + 1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_their_commitment_gives_to_remote_and_htlc_claims(fmt: CommitmentFormat) -> None:
    """The peer's current commitment: to_remote (at once / after 1 block), our offered HTLC
    back after its timeout, their offered HTLC with the preimage, no second stage."""
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.bob, 30_000_000, "bob-offers")
    p.add(p.alice, 20_000_000, "alice-offers")
    theirs = p.snapshot(p.alice)
    c = theirs.commitment
    monitor = p.bob_monitor
    h = 250
    events = monitor.block_connected(h, [theirs.commitment_tx])
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.COUNTERPARTY_COMMITMENT
    (remote,) = _claims(events, ClaimKind.TO_REMOTE_SWEEP)
    assert remote.broadcastable_at_height == (h if fmt is CommitmentFormat.ANCHORS else 0)
    assert remote.amount_sat + remote.fee_sat == c.to_remote_amount_sat
    (back,) = _claims(events, ClaimKind.HTLC_TIMEOUT_CLAIM)
    assert back.broadcastable_at_height == CLTV
    assert back.amount_sat + back.fee_sat == 30_000
    assert not lock_satisfied(back.tx, tip_height=CLTV - 1, parent_heights={c.txid: h})
    assert lock_satisfied(back.tx, tip_height=CLTV, parent_heights={c.txid: h})
    assert _claims(events, ClaimKind.HTLC_PREIMAGE_CLAIM) == []
    events = monitor.provide_payment_preimage(preimage("alice-offers"))
    (claim,) = _claims(events, ClaimKind.HTLC_PREIMAGE_CLAIM)
    assert claim.amount_sat + claim.fee_sat == 20_000
    for cl in (remote, back, claim):
        _check_claim(cl, theirs.commitment_tx)
    assert monitor.provide_payment_preimage(preimage("alice-offers")) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_peer_htlc_success_reveals_preimage_and_voids_timeout_claim(
        fmt: CommitmentFormat) -> None:
    """If the peer claims our HTLC with its HTLC-success tx, we learn the preimage from the
    witness and our timeout claim is withdrawn."""
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.bob, 30_000_000, "bob-offers")
    p.fulfill(p.alice, "bob-offers", commit=False)
    theirs = p.snapshot(p.alice)
    monitor = p.bob_monitor
    monitor.block_connected(250, [theirs.commitment_tx])
    success = cheater_second_stage(p, theirs, HtlcDirection.RECEIVED)
    events = monitor.block_connected(251, [success])
    (learned,) = _of(events, PreimageLearned)
    assert learned.payment_preimage == preimage("bob-offers")
    (withdrawn,) = _of(events, ClaimWithdrawn)
    assert withdrawn.claim.kind is ClaimKind.HTLC_TIMEOUT_CLAIM
    assert monitor.known_preimages()[learned.payment_hash] == preimage("bob-offers")


def test_cooperative_close_needs_no_claim() -> None:
    """The closing tx is recognised as a cooperative close; nothing to claim."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 250_000_000, "a")
    a, b = p.alice, p.bob
    sa = a.shutdown(ALICE_DEST)
    sb = b.on_shutdown(sa, BOB_DEST)
    assert sb is not None
    a.on_shutdown(sb, ALICE_DEST)
    reply, tx = b.on_closing_signed(a.propose_closing())
    if tx is None:
        assert reply is not None
        _, tx = a.on_closing_signed(reply)
    assert tx is not None
    events = p.bob_monitor.block_connected(100, [tx])
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.COOPERATIVE
    assert _of(events, ClaimRequested) == []
    (balance,) = p.bob_monitor.claimable_balances()
    assert balance.status is BalanceStatus.AWAITING_CONFIRMATIONS
    assert balance.amount_sat == 250_000
    assert balance.claimable_from_height == 100 + ANTI_REORG_DELAY - 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_own_revoked_commitment_is_recognised_not_an_alert(fmt: CommitmentFormat) -> None:
    """The cheater's monitor names its own revoked commitment (cheat mode), with its number;
    the victim's monitor still sees the same tx as the peer's revoked commitment."""
    p, old = breach(fmt, offered=False, received=False)
    number = old.commitment.commitment_number
    events = p.alice_monitor.transaction_seen(old.commitment_tx, None)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.HOLDER_REVOKED_COMMITMENT
    assert spent.outcome.commitment_number == number
    assert spent.description.startswith(f"our own revoked commitment #{number} ")
    assert "ALERT" not in spent.description
    assert p.alice_monitor.pending_claims() == []
    (victim,) = _of(p.bob_monitor.transaction_seen(old.commitment_tx, None), FundingSpent)
    assert victim.outcome.kind is CloseKind.REVOKED_COMMITMENT


def test_unknown_funding_spend_raises_an_alert() -> None:
    """A funding spend that is no known commitment nor a closing tx is reported as UNKNOWN."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    op = FUNDING_OUTPOINT
    weird = CTransaction([CTxIn(COutPoint(op.txid, op.vout), CScript(), 5)],
                         [CTxOut(1000, CScript(ALICE_DEST))], 7, 2)
    events = p.bob_monitor.transaction_seen(weird, None)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.UNKNOWN
    assert spent.description.startswith("ALERT")
    assert p.bob_monitor.pending_claims() == []


@pytest.mark.parametrize("fmt", list(CommitmentFormat))
def test_stale_monitor_still_sweeps_to_remote_from_a_newer_peer_commitment(
        fmt: CommitmentFormat) -> None:
    """A monitor restored from a stale backup sweeps our to_remote from the peer's newer,
    unknown commitment, because the static_remotekey output pays the same key in every state."""
    p = Pair(fmt)
    p.pay(p.alice, 200_000_000, "before-backup")
    stale = ChannelMonitor.from_record(json.loads(json.dumps(p.alice_monitor.to_record())))
    p.pay(p.alice, 100_000_000, "after-backup")
    p.pay(p.bob, 30_000_000, "back")
    latest = p.snapshot(p.bob).commitment_tx  # Bob's commitment, unknown to the stale monitor
    events = stale.transaction_seen(latest, None)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.kind is CloseKind.UNKNOWN
    events += stale.block_connected(300, [latest])  # anchors: to_remote has a 1-block CSV
    (claim,) = _claims(events, ClaimKind.TO_REMOTE_SWEEP)
    ours = p.alice.balance_msat() // 1000
    (vout,) = [i for i, out in enumerate(latest.vout)
               if (claim.spends[0].txid, claim.spends[0].vout) == (bytes(latest.GetTxid()), i)]
    # Alice opened, so her to_remote in Bob's commitment is her latest balance minus the
    # commitment fee and, with anchors, both anchors; the claim takes all of it
    commitment_fee = FUNDING_SAT - sum(out.nValue for out in latest.vout)
    assert latest.vout[vout].nValue == ours - commitment_fee - _anchors_sat(fmt)
    assert claim.amount_sat + claim.fee_sat == latest.vout[vout].nValue
    assert bytes(claim.tx.vout[0].scriptPubKey) == ALICE_DEST
    _check_claim(claim, latest)


# ---------------------------------------------------------------------------------------------
# Idempotence, reorgs, persistence, balances


def test_same_transaction_twice_changes_nothing() -> None:
    """Feeding the same tx again (mempool, mempool, then block, then block) yields no new
    claim; only the confirmation itself is reported."""
    p, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=True, received=True)
    monitor = p.bob_monitor
    first = monitor.transaction_seen(old.commitment_tx, None)
    assert len(_of(first, ClaimRequested)) == 2
    assert monitor.transaction_seen(old.commitment_tx, None) == []
    events = monitor.block_connected(300, [old.commitment_tx])
    assert [type(e) for e in events] == [FundingSpent]
    assert monitor.block_connected(300, [old.commitment_tx]) == []
    assert monitor.transaction_seen(old.commitment_tx, 300) == []
    assert len(monitor.pending_claims()) == 2


def test_unrelated_transaction_is_ignored() -> None:
    """A tx that spends nothing of the channel is not recorded and changes nothing."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    other = CTransaction([CTxIn(COutPoint(FUNDING_OUTPOINT.txid, 0), CScript(), 0)],
                         [CTxOut(1000, CScript(ALICE_DEST))], 0, 2)
    assert p.bob_monitor.transaction_seen(other, 5) == []
    assert p.bob_monitor.to_record()["txs"] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_reorg_of_our_commitment_moves_the_sweep_height(fmt: CommitmentFormat) -> None:
    """Our commitment reorganised out and mined one block later: the to_local claim is withdrawn,
    then requested again with a height one block later."""
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "a")
    ours = p.snapshot(p.bob)
    monitor = p.bob_monitor
    events = monitor.block_connected(200, [ours.commitment_tx])
    (first,) = _claims(events, ClaimKind.TO_LOCAL_SWEEP)
    assert first.broadcastable_at_height == 200 + TO_SELF_DELAY - 1
    events = monitor.block_disconnected(200)
    (withdrawn,) = _of(events, ClaimWithdrawn)
    assert withdrawn.claim.txid == first.txid
    assert monitor.close_outcome is not None and monitor.close_outcome.height is None
    events = monitor.block_connected(200, [])
    assert _of(events, ClaimRequested) == []
    events = monitor.block_connected(201, [ours.commitment_tx])
    (again,) = _claims(events, ClaimKind.TO_LOCAL_SWEEP)
    assert again.txid == first.txid
    assert again.broadcastable_at_height == 201 + TO_SELF_DELAY - 1


def test_reorg_of_breach_and_penalty_keeps_the_penalty() -> None:
    """Breach and penalty confirmed, both blocks reorganised out and back: the same penalty is
    asked for again and confirms again."""
    p, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=False, received=True)
    monitor = p.bob_monitor
    monitor.block_connected(300, [old.commitment_tx])
    (penalty,) = [cl for cl in monitor.claims_to_broadcast(300) if cl.kind is ClaimKind.PENALTY]
    monitor.block_connected(301, [penalty.tx])
    assert [cl.kind for cl in monitor.claims_to_broadcast(301)] == [ClaimKind.TO_REMOTE_SWEEP]
    events = monitor.block_disconnected(301)
    assert [cl.txid for cl in _claims(events, ClaimKind.PENALTY)] == [penalty.txid]
    events = monitor.block_disconnected(300)
    (spent,) = _of(events, FundingSpent)
    assert spent.outcome.height is None
    assert penalty.txid in {cl.txid for cl in monitor.claims_to_broadcast(299)}
    monitor.block_connected(300, [old.commitment_tx])
    events = monitor.block_connected(301, [penalty.tx])
    (confirmed,) = [e for e in _of(events, ClaimConfirmed) if e.claim.kind is ClaimKind.PENALTY]
    assert confirmed.height == 301


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_roundtrip_keeps_every_decision(fmt: CommitmentFormat) -> None:
    """to_record -> JSON -> from_record gives the same claims, outcome and balances, silently."""
    p, old = breach(fmt, offered=True, received=True)
    monitor = p.bob_monitor
    monitor.block_connected(300, [old.commitment_tx])
    second = cheater_second_stage(p, old, HtlcDirection.OFFERED)
    monitor.block_connected(CLTV, [second])
    text = json.dumps(monitor.to_record())
    restored = ChannelMonitor.from_record(json.loads(text))
    assert restored.to_record() == json.loads(text)
    assert [cl.txid for cl in restored.pending_claims()] == \
        [cl.txid for cl in monitor.pending_claims()]
    assert restored.close_outcome == monitor.close_outcome
    assert restored.claimable_balances() == monitor.claimable_balances()
    assert restored.transaction_seen(second, CLTV) == []
    assert restored.block_connected(CLTV + 1, []) == monitor.block_connected(CLTV + 1, [])


def test_revoked_states_are_stored_compactly() -> None:
    """A revoked state without HTLCs costs a few dozen bytes of JSON: no point, no txid, no
    secret (secrets live in the 49-slot shachain store)."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    for i in range(40):
        p.pay(p.alice, 1_000_000, f"p{i}")
    rec = p.bob_monitor.to_record()
    assert len(rec["revoked"]) >= 80
    for state in rec["revoked"]:
        assert len(json.dumps(state)) < 48 + 100 * len(state[4])
    assert sum(1 for state in rec["revoked"] if not state[4]) >= 40
    assert len(rec["counterparty"]) == 1
    assert len(bytes.fromhex(rec["secrets"])) <= 2 + 39 * 49


def test_claimable_balances_while_open() -> None:
    """While open, the balance is our to_local on our commitment plus in-flight HTLCs."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "a")
    p.add(p.bob, 25_000_000, "b")
    balances = p.bob_monitor.claimable_balances()
    assert [(b.status, b.amount_sat) for b in balances] == [
        (BalanceStatus.CHANNEL_OPEN, 275_000), (BalanceStatus.HTLC_PENDING, 25_000)]


def test_anchor_fee_bump_signs_a_tx_funded_elsewhere() -> None:
    """sign_htlc_input fills input 0 of an HTLC tx whose fee inputs another wallet added."""
    p = Pair(CommitmentFormat.ANCHORS)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.bob, 30_000_000, "x")
    ours = p.snapshot(p.bob)
    monitor = p.bob_monitor
    monitor.block_connected(600, [ours.commitment_tx])
    (timeout,) = [cl for cl in monitor.claims_to_broadcast(600)
                  if cl.kind is ClaimKind.HTLC_TIMEOUT]
    assert timeout.fee_bump is not None
    base = timeout.tx
    funded = CTransaction(
        [base.vin[0], CTxIn(COutPoint(FEE_COIN.txid, 0), CScript(), 0xFFFFFFFD)],
        [base.vout[0], CTxOut(90_000, CScript(BOB_DEST))], base.nLockTime, 2)
    signed = timeout.fee_bump.sign_htlc_input(funded)
    out = ours.commitment.tx.vout[timeout.spends[0].vout]
    verify_input(signed, 0, bytes(out.scriptPubKey), int(out.nValue))
    tampered = CTransaction(signed.vin, [base.vout[0], CTxOut(80_000, CScript(BOB_DEST))],
                            base.nLockTime, 2, signed.wit)
    with pytest.raises(ScriptFailed):
        verify_input(tampered, 0, bytes(out.scriptPubKey), int(out.nValue))


# ---------------------------------------------------------------------------------------------
# Node and tower acting on the same breach


@pytest.mark.parametrize("fmt", FORMATS)
def test_monitor_adopts_the_towers_justice_txs(fmt: CommitmentFormat) -> None:
    """When the tower's per-output justice txs (paying our script) win, the node's monitor
    follows them as its penalty claims instead of re-requesting its own, and resolves."""
    p, old = breach(fmt, offered=True, received=True)
    monitor = p.bob_monitor
    tower = _tower_holding(monitor, old.commitment.commitment_number)
    justice = tower.on_transaction(old.commitment_tx)
    assert len(justice) == 3
    monitor.transaction_seen(old.commitment_tx, None)
    (own,) = [cl for cl in monitor.pending_claims() if cl.kind is ClaimKind.PENALTY]
    events = monitor.block_connected(300, [old.commitment_tx, *(j.tx for j in justice)])
    confirmed = {e.claim.txid for e in _of(events, ClaimConfirmed)}
    assert confirmed == {j.txid for j in justice}
    assert [e.claim.txid for e in _of(events, ClaimWithdrawn)] == [own.txid]
    assert [cl.kind for cl in monitor.pending_claims()] == [ClaimKind.TO_REMOTE_SWEEP]
    (remote,) = monitor.claims_to_broadcast(300)
    monitor.block_connected(301, [remote.tx])
    for height in range(302, 301 + ANTI_REORG_DELAY):
        monitor.block_connected(height, [])
    assert monitor.is_resolved


def test_monitor_completes_what_the_tower_left() -> None:
    """The tower's to_local justice confirms first: the node's combined penalty is void and a
    new one takes only the HTLC outputs."""
    p, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=True, received=True)
    monitor = p.bob_monitor
    tower = _tower_holding(monitor, old.commitment.commitment_number)
    c = old.commitment
    (to_local,) = [j for j in tower.on_transaction(old.commitment_tx)
                   if j.spends.vout == c.to_local_vout]
    monitor.transaction_seen(old.commitment_tx, None)
    (own,) = [cl for cl in monitor.pending_claims() if cl.kind is ClaimKind.PENALTY]
    monitor.transaction_seen(own.tx, None)      # ours reached the mempool first ...
    events = monitor.block_connected(300, [old.commitment_tx, to_local.tx])   # ... tower's won
    assert [e.claim.txid for e in _of(events, ClaimWithdrawn)] == [own.txid]
    (rest,) = _claims(events, ClaimKind.PENALTY)
    assert {o.vout for o in rest.spends} == {o.vout for o in c.htlc_outputs}
    _check_claim(rest, old.commitment_tx)
    assert to_local.txid in {e.claim.txid for e in _of(events, ClaimConfirmed)}
