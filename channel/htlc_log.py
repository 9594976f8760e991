"""The update log: which HTLCs and fee changes sit in which commitment of which side.

Pure. BOLT 2 "Normal Operation" lets both parties queue updates at once, and each update reaches
the two commitment chains at different times. Following Electrum's HTLC manager, every update
records, for each side, the number of the first commitment of that side that includes it
(``None`` while not yet scheduled). "Which HTLCs are in commitment *n* of side *S*" is then a pure
query, and nothing is ever copied between per-commitment snapshots.

The scheduling rules (X = the update's sender, Y = the other node):

* X sends the update: it is scheduled into Y's *next* commitment (the one X will sign next).
* Y revokes the commitment before the one that included it: it is scheduled into X's next
  commitment (the one Y will sign next for X).

An HTLC whose removal is included in both sides' oldest commitments still needed is *pruned*:
its effect is folded into ``base_balance_msat`` and it is forgotten, so the log stays as small as
the set of HTLCs in flight, and per-payment work stays constant however long the channel lives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from channel.types import CommitmentHtlc, HtlcDirection, Side

__all__ = ["FeeUpdate", "HtlcEntry", "Removal", "UpdateLog"]


class Removal(enum.Enum):
    """How an HTLC left the channel."""

    FULFILLED = "fulfilled"
    FAILED = "failed"


@dataclass(slots=True, kw_only=True)
class HtlcEntry:
    """One HTLC and its progress through both commitment chains.

    ``added_at[S]`` / ``removed_at[S]``: number of the first commitment of side S that contains
    the HTLC / no longer contains it. ``removal_owner`` is the side that sent the removal (always
    the side that did *not* offer the HTLC).
    """

    offerer: Side
    htlc_id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion_routing_packet: bytes
    added_at: dict[Side, int | None] = field(
        default_factory=lambda: {Side.HOLDER: None, Side.COUNTERPARTY: None})
    removal: Removal | None = None
    payment_preimage: bytes | None = None
    fail_reason: bytes | None = None
    removed_at: dict[Side, int | None] = field(
        default_factory=lambda: {Side.HOLDER: None, Side.COUNTERPARTY: None})

    def in_commitment(self, side: Side, number: int) -> bool:
        """True if this HTLC is an output (or a trimmed amount) of ``side``'s commitment
        ``number``."""
        added = self.added_at[side]
        if added is None or added > number:
            return False
        removed = self.removed_at[side]
        return removed is None or removed > number

    def commitment_htlc(self, broadcaster: Side) -> CommitmentHtlc:
        """This HTLC as it appears on ``broadcaster``'s commitment transaction."""
        direction = HtlcDirection.OFFERED if self.offerer is broadcaster else HtlcDirection.RECEIVED
        return CommitmentHtlc(direction=direction, amount_msat=self.amount_msat,
                              payment_hash=self.payment_hash, cltv_expiry=self.cltv_expiry,
                              htlc_id=self.htlc_id)


@dataclass(slots=True, kw_only=True)
class FeeUpdate:
    """An ``update_fee`` (always sent by the opener) and where it has been included."""

    feerate_per_kw: int
    included_at: dict[Side, int | None] = field(
        default_factory=lambda: {Side.HOLDER: None, Side.COUNTERPARTY: None})


def _at_or_before(ctn: int | None, number: int) -> bool:
    return ctn is not None and ctn <= number


@dataclass(slots=True, kw_only=True)
class UpdateLog:
    """Both parties' updates with their inclusion points; see the module docstring."""

    opener: Side
    base_balance_msat: dict[Side, int]
    base_feerate_per_kw: int
    htlcs: dict[tuple[Side, int], HtlcEntry] = field(default_factory=dict)
    fee_updates: list[FeeUpdate] = field(default_factory=list)
    next_htlc_id: dict[Side, int] = field(
        default_factory=lambda: {Side.HOLDER: 0, Side.COUNTERPARTY: 0})

    # -- queries ---------------------------------------------------------------------------

    def htlcs_in_commitment(self, side: Side, number: int) -> list[HtlcEntry]:
        """HTLCs present in ``side``'s commitment ``number``, in id order per offerer."""
        return [h for h in self.htlcs.values() if h.in_commitment(side, number)]

    def balances_msat(self, side: Side, number: int) -> dict[Side, int]:
        """Each party's balance in ``side``'s commitment ``number``, HTLCs in flight excluded."""
        balance = dict(self.base_balance_msat)
        for h in self.htlcs.values():
            if not _at_or_before(h.added_at[side], number):
                continue
            removed = _at_or_before(h.removed_at[side], number)
            if removed and h.removal is Removal.FAILED:
                continue
            balance[h.offerer] -= h.amount_msat
            if removed:  # fulfilled: the receiver is paid
                balance[h.offerer.other] += h.amount_msat
        return balance

    def feerate_per_kw(self, side: Side, number: int) -> int:
        """The feerate of ``side``'s commitment ``number``."""
        feerate = self.base_feerate_per_kw
        for update in self.fee_updates:
            if _at_or_before(update.included_at[side], number):
                feerate = update.feerate_per_kw
        return feerate

    def has_updates_for(self, side: Side, number: int) -> bool:
        """True if some update is scheduled for exactly ``side``'s commitment ``number``."""
        for h in self.htlcs.values():
            if h.added_at[side] == number or h.removed_at[side] == number:
                return True
        return any(u.included_at[side] == number for u in self.fee_updates)

    def entries(self) -> Iterator[HtlcEntry]:
        """Every HTLC still in the log."""
        return iter(self.htlcs.values())

    # -- scheduling ------------------------------------------------------------------------

    def schedule_acked(self, sender: Side, acked_by: Side, acked_up_to: int,
                       into_number: int) -> None:
        """``acked_by`` revoked up to its commitment ``acked_up_to``: ``sender``'s updates included
        there are now irrevocable and go into ``sender``'s commitment ``into_number``."""
        for h in self.htlcs.values():
            if h.offerer is sender and _at_or_before(h.added_at[acked_by], acked_up_to) \
                    and h.added_at[sender] is None:
                h.added_at[sender] = into_number
            if h.offerer is not sender and h.removal is not None \
                    and _at_or_before(h.removed_at[acked_by], acked_up_to) \
                    and h.removed_at[sender] is None:
                h.removed_at[sender] = into_number
        if sender is self.opener:  # only the opener sends update_fee
            for u in self.fee_updates:
                if _at_or_before(u.included_at[acked_by], acked_up_to) \
                        and u.included_at[sender] is None:
                    u.included_at[sender] = into_number

    def drop_unsigned(self, holder_ctn: int, counterparty_ctn: int) -> list[HtlcEntry]:
        """Forget updates no commitment_signed covers yet (BOLT 2 "reverse uncommitted updates"
        on disconnection). Returns the HTLCs *we* had offered and now dropped, so the node can
        fail their payments."""
        dropped_ours: list[HtlcEntry] = []
        for key, h in list(self.htlcs.items()):
            # An add is signed if it is in a commitment that was signed: ours for their adds,
            # theirs for our adds.
            receiver_side = h.offerer.other
            receiver_ctn = counterparty_ctn if receiver_side is Side.COUNTERPARTY else holder_ctn
            if not _at_or_before(h.added_at[receiver_side], receiver_ctn):
                del self.htlcs[key]
                self.next_htlc_id[h.offerer] = min(self.next_htlc_id[h.offerer], h.htlc_id)
                if h.offerer is Side.HOLDER:
                    dropped_ours.append(h)
                continue
            if h.removal is not None:
                remover_peer = h.offerer  # a removal is first included in the offerer's commitment
                peer_ctn = counterparty_ctn if remover_peer is Side.COUNTERPARTY else holder_ctn
                if not _at_or_before(h.removed_at[remover_peer], peer_ctn):
                    h.removal = None
                    h.payment_preimage = None
                    h.fail_reason = None
                    h.removed_at = {Side.HOLDER: None, Side.COUNTERPARTY: None}
        kept: list[FeeUpdate] = []
        for u in self.fee_updates:
            # fee updates are sent by the opener and first land in the non-opener's commitment;
            # keep them only if either side has a commitment that covers them
            if _at_or_before(u.included_at[Side.HOLDER], holder_ctn) or \
                    _at_or_before(u.included_at[Side.COUNTERPARTY], counterparty_ctn):
                kept.append(u)
        self.fee_updates = kept
        return dropped_ours

    def prune(self, holder_ctn: int, counterparty_ctn: int) -> list[HtlcEntry]:
        """Fold away HTLCs removed in both sides' commitments up to the given numbers.

        The numbers must be the oldest commitment of each side that may still be rebuilt from
        this log; returns the pruned entries (for the node's payment bookkeeping).
        """
        pruned: list[HtlcEntry] = []
        for key, h in list(self.htlcs.items()):
            if _at_or_before(h.removed_at[Side.HOLDER], holder_ctn) and \
                    _at_or_before(h.removed_at[Side.COUNTERPARTY], counterparty_ctn):
                if h.removal is Removal.FULFILLED:
                    self.base_balance_msat[h.offerer] -= h.amount_msat
                    self.base_balance_msat[h.offerer.other] += h.amount_msat
                del self.htlcs[key]
                pruned.append(h)
        while self.fee_updates:
            first = self.fee_updates[0]
            if _at_or_before(first.included_at[Side.HOLDER], holder_ctn) and \
                    _at_or_before(first.included_at[Side.COUNTERPARTY], counterparty_ctn):
                self.base_feerate_per_kw = first.feerate_per_kw
                self.fee_updates.pop(0)
            else:
                break
        return pruned
