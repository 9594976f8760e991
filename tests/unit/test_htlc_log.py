"""The update log: per-commitment membership, balances, feerates, scheduling, dropping, pruning.

Every test builds the log by hand, so each rule of ``channel.htlc_log`` is checked on its own,
without the state machine around it.
"""

from __future__ import annotations

import hashlib

from channel.htlc_log import FeeUpdate, HtlcEntry, Removal, UpdateLog
from channel.types import HtlcDirection, Side

H, C = Side.HOLDER, Side.COUNTERPARTY
BASE = {H: 700_000_000, C: 300_000_000}


def entry(offerer: Side, htlc_id: int, amount_msat: int = 10_000_000, *,
          added: tuple[int | None, int | None] = (None, None),
          removed: tuple[int | None, int | None] = (None, None),
          removal: Removal | None = None) -> HtlcEntry:
    """An HTLC with ``added_at``/``removed_at`` given as (holder, counterparty)."""
    h = HtlcEntry(offerer=offerer, htlc_id=htlc_id, amount_msat=amount_msat,
                  payment_hash=hashlib.sha256(bytes([htlc_id])).digest(), cltv_expiry=500 + htlc_id,
                  onion_routing_packet=bytes(1366))
    h.added_at = {H: added[0], C: added[1]}
    h.removed_at = {H: removed[0], C: removed[1]}
    h.removal = removal
    return h


def log_with(*entries: HtlcEntry, fees: tuple[FeeUpdate, ...] = ()) -> UpdateLog:
    log = UpdateLog(opener=H, base_balance_msat=dict(BASE), base_feerate_per_kw=1000)
    for h in entries:
        log.htlcs[(h.offerer, h.htlc_id)] = h
        log.next_htlc_id[h.offerer] = max(log.next_htlc_id[h.offerer], h.htlc_id + 1)
    log.fee_updates = list(fees)
    return log


def fee(feerate: int, holder: int | None, counterparty: int | None) -> FeeUpdate:
    update = FeeUpdate(feerate_per_kw=feerate)
    update.included_at = {H: holder, C: counterparty}
    return update


def test_in_commitment_window() -> None:
    """An HTLC is in side S's commitments from added_at[S] up to, not including, removed_at[S]."""
    h = entry(H, 0, added=(3, 2), removed=(6, 5), removal=Removal.FULFILLED)
    assert [n for n in range(9) if h.in_commitment(H, n)] == [3, 4, 5]
    assert [n for n in range(9) if h.in_commitment(C, n)] == [2, 3, 4]
    pending = entry(C, 0, added=(4, None))
    assert [n for n in range(9) if pending.in_commitment(H, n)] == [4, 5, 6, 7, 8]
    assert not any(pending.in_commitment(C, n) for n in range(9))


def test_commitment_htlc_direction_follows_the_broadcaster() -> None:
    """Offered on the offerer's own commitment, received on the other's; fields carried over."""
    h = entry(C, 7, 12_345_678)
    theirs, ours = h.commitment_htlc(C), h.commitment_htlc(H)
    assert theirs.direction is HtlcDirection.OFFERED and ours.direction is HtlcDirection.RECEIVED
    assert (ours.amount_msat, ours.payment_hash, ours.cltv_expiry, ours.htlc_id) == \
        (12_345_678, h.payment_hash, 507, 7)


def test_balances_per_commitment() -> None:
    """Balances exclude HTLCs in flight; fulfilled ones pay the receiver, failed ones refund."""
    paid = entry(H, 0, 10_000_000, added=(2, 1), removed=(4, 3), removal=Removal.FULFILLED)
    refunded = entry(C, 0, 4_000_000, added=(2, 3), removed=(5, 4), removal=Removal.FAILED)
    log = log_with(paid, refunded)
    got = {n: (log.balances_msat(C, n)[H], log.balances_msat(C, n)[C]) for n in range(6)}
    assert got == {
        0: (700_000_000, 300_000_000),
        1: (690_000_000, 300_000_000),            # our HTLC in flight
        2: (690_000_000, 300_000_000),
        3: (690_000_000, 306_000_000),            # paid to them; their HTLC in flight
        4: (690_000_000, 310_000_000),            # theirs failed: back to them
        5: (690_000_000, 310_000_000),
    }
    assert log.balances_msat(H, 3) == {H: 690_000_000, C: 296_000_000}
    assert log.balances_msat(H, 4) == {H: 690_000_000, C: 306_000_000}
    assert log.balances_msat(H, 5) == {H: 690_000_000, C: 310_000_000}
    assert log.base_balance_msat == BASE       # queries never change the log


def test_feerate_per_commitment() -> None:
    """Each commitment uses the last fee update included at or before its number."""
    log = log_with(fees=(fee(2000, 3, 2), fee(3000, None, 4)))
    assert [log.feerate_per_kw(C, n) for n in range(6)] == [1000, 1000, 2000, 2000, 3000, 3000]
    assert [log.feerate_per_kw(H, n) for n in range(6)] == [1000, 1000, 1000, 2000, 2000, 2000]


def test_has_updates_for_exact_number() -> None:
    """has_updates_for is true only for the commitment number an update is scheduled into."""
    log = log_with(entry(H, 0, added=(None, 5)))
    assert [n for n in range(8) if log.has_updates_for(C, n)] == [5]
    assert not any(log.has_updates_for(H, n) for n in range(8))
    log = log_with(entry(C, 0, added=(1, 1), removed=(None, 6), removal=Removal.FULFILLED))
    assert [n for n in range(8) if log.has_updates_for(C, n)] == [1, 6]
    log = log_with(fees=(fee(2000, None, 3),))
    assert [n for n in range(8) if log.has_updates_for(C, n)] == [3]


def test_schedule_acked_moves_acked_updates_to_the_sender() -> None:
    """After the peer revokes up to n, our updates in its commitments ≤ n go into our next."""
    ours_acked = entry(H, 0, added=(None, 4))
    ours_later = entry(H, 1, added=(None, 5))
    already = entry(H, 2, added=(2, 1))
    our_removal = entry(C, 0, added=(1, 2), removed=(None, 4), removal=Removal.FULFILLED)
    their_add = entry(C, 1, added=(3, None))     # theirs: not ours to schedule
    log = log_with(ours_acked, ours_later, already, our_removal, their_add,
                   fees=(fee(2500, None, 4), fee(2600, None, 5)))
    log.schedule_acked(sender=H, acked_by=C, acked_up_to=4, into_number=7)
    assert ours_acked.added_at == {H: 7, C: 4}
    assert ours_later.added_at == {H: None, C: 5}
    assert already.added_at == {H: 2, C: 1}                 # never moved again
    assert our_removal.removed_at == {H: 7, C: 4}
    assert their_add.added_at == {H: 3, C: None}
    assert [u.included_at for u in log.fee_updates] == [{H: 7, C: 4}, {H: None, C: 5}]


def test_schedule_acked_fee_updates_only_from_the_opener() -> None:
    """The non-opener's acks never move fee updates (only the opener sends update_fee)."""
    log = log_with(fees=(fee(2500, 3, None),))
    log.schedule_acked(sender=C, acked_by=H, acked_up_to=3, into_number=9)
    assert log.fee_updates[0].included_at == {H: 3, C: None}


def test_drop_unsigned_forgets_what_no_signature_covers() -> None:
    """On disconnection: unsigned adds go (ids reused), unsigned removals undone, signed stay."""
    # ours: id 0 settled-in, its fulfill by them unsigned; id 1 signed; ids 2, 3 unsigned
    their_removal_unsigned = entry(H, 0, added=(1, 1), removed=(5, None),
                                   removal=Removal.FULFILLED)
    their_removal_unsigned.payment_preimage = b"\x01" * 32
    signed_ours = entry(H, 1, added=(None, 3))
    unsigned_ours = entry(H, 2, added=(None, 4))
    unsigned_ours2 = entry(H, 3, added=(None, 4))
    # theirs: id 0 settled-in and failed by us (signed); id 1 signed; id 2 unsigned
    our_removal_signed = entry(C, 0, added=(1, 1), removed=(None, 3), removal=Removal.FAILED)
    our_removal_signed.fail_reason = b"no"
    signed_theirs = entry(C, 1, added=(4, None))
    unsigned_theirs = entry(C, 2, added=(5, None))
    log = log_with(their_removal_unsigned, signed_ours, unsigned_ours, unsigned_ours2,
                   our_removal_signed, signed_theirs, unsigned_theirs,
                   fees=(fee(2000, None, 3), fee(3000, None, 4)))
    dropped = log.drop_unsigned(holder_ctn=4, counterparty_ctn=3)
    assert [h.htlc_id for h in dropped] == [2, 3]            # only our own adds are reported
    assert set(log.htlcs) == {(H, 0), (H, 1), (C, 0), (C, 1)}
    assert log.next_htlc_id == {H: 2, C: 2}
    assert their_removal_unsigned.removal is None
    assert their_removal_unsigned.payment_preimage is None
    assert their_removal_unsigned.removed_at == {H: None, C: None}
    assert our_removal_signed.removal is Removal.FAILED and our_removal_signed.fail_reason == b"no"
    assert our_removal_signed.removed_at == {H: None, C: 3}
    assert [u.feerate_per_kw for u in log.fee_updates] == [2000]
    assert log.drop_unsigned(holder_ctn=4, counterparty_ctn=3) == []   # idempotent


def test_prune_folds_settled_htlcs_into_the_base() -> None:
    """Pruning removes HTLCs gone from both sides' oldest commitments; fulfilled ones move
    their amount, failed ones do not; fee updates fold in order."""
    fulfilled = entry(H, 0, 10_000_000, added=(1, 1), removed=(3, 2), removal=Removal.FULFILLED)
    failed = entry(C, 0, 4_000_000, added=(1, 1), removed=(2, 3), removal=Removal.FAILED)
    half = entry(C, 1, 5_000_000, added=(1, 1), removed=(None, 3), removal=Removal.FULFILLED)
    live = entry(H, 1, 1_000_000, added=(2, 2))
    log = log_with(fulfilled, failed, half, live,
                   fees=(fee(2000, 2, 2), fee(3000, 3, 4), fee(4000, 3, 3)))
    before = {n: log.balances_msat(H, n) for n in (3, 4)}
    assert log.prune(2, 2) == []
    pruned = log.prune(holder_ctn=3, counterparty_ctn=3)
    assert pruned == [fulfilled, failed]
    assert set(log.htlcs) == {(C, 1), (H, 1)}
    assert log.base_balance_msat == {H: 690_000_000, C: 310_000_000}
    assert {n: log.balances_msat(H, n) for n in (3, 4)} == before     # same commitments
    assert log.base_feerate_per_kw == 2000                 # 3000 waits for commitment 4
    assert [u.feerate_per_kw for u in log.fee_updates] == [3000, 4000]
    assert log.feerate_per_kw(H, 3) == 4000 and log.feerate_per_kw(C, 4) == 4000
