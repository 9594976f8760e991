"""Each side's to_local waits the delay its PEER set, and a breach of commitment #0 is punished.

Every other unit pair uses one ``to_self_delay`` for both sides, so a commitment built with the
broadcaster's own delay (instead of the countersignatory's, BOLT 3 "to_local Output") went
unnoticed until an integration test. Here Alice asks Bob to wait 10 blocks and Bob asks Alice
to wait 144: every script, sweep height and penalty is checked against the right number. The
last tests revoke commitment #0 itself, the one built from ``funding_created``.
"""

from __future__ import annotations

import pytest
from chanpair import FUNDING_SAT, Pair
from segwit_check import lock_satisfied, verify_spends

from channel.monitor import (
    ChannelMonitor,
    ClaimKind,
    ClaimRequested,
    CloseKind,
    FundingSpent,
    MonitorEvent,
)
from channel.scripts import p2wsh, to_local_script
from channel.state import ForceCloseTransactions
from channel.transactions import CommitmentTransaction
from channel.types import CommitmentFormat, Side

FORMATS = list(CommitmentFormat)
ALICE_DELAY = 10     # what Alice imposes on Bob's to_local
BOB_DELAY = 144      # what Bob imposes on Alice's to_local
HEIGHT = 300


def _pair(fmt: CommitmentFormat) -> Pair:
    return Pair(fmt, alice_delay=ALICE_DELAY, bob_delay=BOB_DELAY)


def _to_local_delay(c: CommitmentTransaction) -> int:
    """The CSV delay of ``c``'s to_local output, read back from its P2WSH by trying each."""
    spk = bytes(c.tx.vout[c.to_local_vout].scriptPubKey)
    for delay in (ALICE_DELAY, BOB_DELAY):
        script = to_local_script(c.keys.revocation_pubkey, delay,
                                 c.keys.broadcaster_delayed_pubkey)
        if p2wsh(script) == spk:
            return delay
    raise AssertionError("to_local pays neither delay")


def _claims(events: list[MonitorEvent], kind: ClaimKind) -> list[ClaimRequested]:
    return [e for e in events if isinstance(e, ClaimRequested) and e.claim.kind is kind]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_to_local_uses_the_delay_the_peer_set(fmt: CommitmentFormat) -> None:
    """Alice's to_local waits Bob's 144 blocks, Bob's waits Alice's 10, on both sides' copies."""
    p = _pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    assert p.alice.holder_params.to_self_delay == ALICE_DELAY
    assert p.bob.holder_params.to_self_delay == BOB_DELAY
    for chan, peer, expected in ((p.alice, p.bob, BOB_DELAY), (p.bob, p.alice, ALICE_DELAY)):
        mine = chan.holder_transactions().commitment
        assert _to_local_delay(mine) == expected
        assert mine.to_self_delay == expected
        assert peer.counterparty_commitment_number == chan.holder_commitment_number
        signed = peer._commitment(Side.COUNTERPARTY, chan.holder_commitment_number)
        assert signed.txid == mine.txid


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("who", ["alice", "bob"])
def test_own_to_local_sweep_waits_the_peers_delay(fmt: CommitmentFormat, who: str) -> None:
    """Each side's monitor sweeps its own to_local exactly when the peer's delay has passed."""
    p = _pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    chan = p.alice if who == "alice" else p.bob
    monitor = p.alice_monitor if who == "alice" else p.bob_monitor
    delay = BOB_DELAY if who == "alice" else ALICE_DELAY
    ours = p.snapshot(chan)
    c = ours.commitment
    events = monitor.block_connected(HEIGHT, [ours.commitment_tx])
    (spent,) = [e for e in events if isinstance(e, FundingSpent)]
    assert spent.outcome.kind is CloseKind.HOLDER_COMMITMENT
    (sweep,) = _claims(events, ClaimKind.TO_LOCAL_SWEEP)
    claim = sweep.claim
    assert claim.broadcastable_at_height == HEIGHT + delay - 1
    assert not lock_satisfied(claim.tx, tip_height=HEIGHT + delay - 2,
                              parent_heights={c.txid: HEIGHT})
    assert lock_satisfied(claim.tx, tip_height=HEIGHT + delay - 1,
                          parent_heights={c.txid: HEIGHT})
    verify_spends(claim.tx, {c.txid: ours.commitment_tx})
    assert claim.amount_sat + claim.fee_sat == c.to_local_amount_sat


def _penalise(victim: ChannelMonitor, old: ForceCloseTransactions) -> None:
    """``victim`` sees the revoked ``old`` and takes its to_local at once, witness verified."""
    c = old.commitment
    events = victim.transaction_seen(old.commitment_tx, None)
    (spent,) = [e for e in events if isinstance(e, FundingSpent)]
    assert spent.outcome.kind is CloseKind.REVOKED_COMMITMENT
    assert spent.outcome.commitment_number == c.commitment_number
    (penalty,) = _claims(events, ClaimKind.PENALTY)
    claim = penalty.claim
    assert claim.broadcastable_at_height == 0
    assert {(o.txid, o.vout) for o in claim.spends} >= {(c.txid, c.to_local_vout)}
    verify_spends(claim.tx, {c.txid: old.commitment_tx})
    assert lock_satisfied(claim.tx, tip_height=0, parent_heights={c.txid: None})
    assert claim.amount_sat + claim.fee_sat == c.to_local_amount_sat + \
        sum(o.amount_sat for o in c.htlc_outputs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_revoked_to_local_with_the_peers_delay_is_penalised(fmt: CommitmentFormat) -> None:
    """Bob punishes Alice's revoked commitment (to_local behind his 144 blocks) and Alice
    Bob's (behind her 10): the revocation path of each script spends."""
    p = _pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.pay(p.bob, 100_000_000, "back")
    old_alice, old_bob = p.snapshot(p.alice), p.snapshot(p.bob)
    assert _to_local_delay(old_alice.commitment) == BOB_DELAY
    assert _to_local_delay(old_bob.commitment) == ALICE_DELAY
    p.pay(p.alice, 10_000_000, "after")
    _penalise(p.bob_monitor, old_alice)
    _penalise(p.alice_monitor, old_bob)


@pytest.mark.parametrize("fmt", FORMATS)
def test_breach_of_commitment_zero_is_punished(fmt: CommitmentFormat) -> None:
    """Alice's commitment #0 (from funding_created), broadcast after it was revoked: Bob's
    monitor recognises it as revoked #0 and takes Alice's whole to_local at once."""
    p = _pair(fmt)
    first = p.snapshot(p.alice)
    assert first.commitment.commitment_number == 0
    assert first.commitment.to_local_amount_sat > 0
    assert 0 not in p.bob_monitor.revoked_commitment_numbers
    p.pay(p.alice, 300_000_000, "first payment")
    assert 0 in p.bob_monitor.revoked_commitment_numbers
    _penalise(p.bob_monitor, first)
    # Alice had everything on #0: to_local was the channel but for the fee (and one anchor,
    # Bob's being absent with no to_remote): the penalty takes all of it
    c = first.commitment
    anchors_sat = 330 * (c.to_local_anchor_vout is not None) + \
        330 * (c.to_remote_anchor_vout is not None)
    assert c.to_remote_vout is None
    assert c.to_local_amount_sat == FUNDING_SAT - c.fee_sat - anchors_sat
