"""What an HTLC's offerer may spend: strict when we offer, lenient when the peer offers.

Pure. BOLT 2 ``update_add_htlc`` lets both sides add at once, so the two views of a channel
differ while messages cross: the receiver may already hold an HTLC of its own that the
sender had not seen, a fee update the sender has already folded away, or a removal the sender
has already forgotten. Checking the peer's add against our own (stricter) view would fail the
channel for an honest race. Hence two rules:

- **Sender** (``check_fee_spike_buffer``, on top of the state machine's own budget): the opener
  keeps BOLT 2's *fee spike buffer*, enough to pay the commitment at twice the feerate with
  one more HTLC than it now holds, so that an ``update_fee`` or an HTLC from the peer crossing
  this one never leaves it unable to pay; the non-opener offers only what leaves the opener able
  to pay the commitment fee with the new HTLC, its reserve kept (BOLT 2 "if it is not
  responsible for paying the Bitcoin fee").
- **Receiver** (``peer_add_budget``, for an add and for an ``update_fee``): counts only what
  the honest sender must have counted when it sent its update: no HTLC of ours it has not
  acknowledged, no HTLC whose removal both commitments already reflect, and the feerate it set
  last rather than the highest one still in our log. What fails even this is a real violation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channel import self_checks
from channel.errors import RejectedUpdate
from channel.htlc_log import Removal
from channel.transactions import ANCHOR_OUTPUT_SAT, commitment_fee_sat
from channel.types import CommitmentFormat, Side

if TYPE_CHECKING:
    from channel.channel_core import ChannelCore

__all__ = ["FEE_SPIKE_MULTIPLE", "check_fee_spike_buffer", "fee_spike_room_msat",
           "opener_charge_msat", "peer_add_budget"]

#: BOLT 2 recommends a buffer for "twice the current feerate_per_kw".
FEE_SPIKE_MULTIPLE = 2


def opener_charge_msat(commitment_format: CommitmentFormat, feerate_per_kw: int,
                       htlc_count: int) -> int:
    """What the opener's output pays on a commitment: the fee and, with anchors, both anchors."""
    fee_sat = commitment_fee_sat(feerate_per_kw, htlc_count, commitment_format)
    if commitment_format is CommitmentFormat.ANCHORS:
        fee_sat += 2 * ANCHOR_OUTPUT_SAT
    return fee_sat * 1000


def _highest_feerate(chan: ChannelCore) -> int:
    log = chan.log
    assert log is not None
    return max([log.base_feerate_per_kw, *(u.feerate_per_kw for u in log.fee_updates)])


def _opener_room_msat(chan: ChannelCore, holder_spendable_msat: int | None) -> tuple[int, int]:
    """(the opener's balance minus its reserve, HTLCs in the log) with every pending debit
    and only irrevocable credits: the state machine's own view, as for its checks."""
    opener = chan.opener
    spendable = holder_spendable_msat if opener is Side.HOLDER and \
        holder_spendable_msat is not None else chan._add_budget(opener)[2]
    log = chan.log
    assert log is not None
    count = len(log.htlcs)
    # _add_budget charged the fee for count + 1 HTLCs at the highest feerate: add it back
    return spendable + opener_charge_msat(chan.commitment_format, _highest_feerate(chan),
                                          count + 1), count


def fee_spike_room_msat(chan: ChannelCore, holder_spendable_msat: int | None = None) -> int:
    """The most we may add under the rule ``check_fee_spike_buffer`` applies (may be < 0).

    ``holder_spendable_msat``: ``chan._add_budget(Side.HOLDER)[2]`` if the caller has it (a
    pass over every HTLC in the log: a batch of adds would pay it twice per HTLC)."""
    room, count = _opener_room_msat(chan, holder_spendable_msat)
    feerate = _highest_feerate(chan)
    if chan.opener is Side.HOLDER:
        # the new HTLC, plus one more from either side, at twice the feerate
        return room - opener_charge_msat(chan.commitment_format, FEE_SPIKE_MULTIPLE * feerate,
                                         count + 2)
    needed = opener_charge_msat(chan.commitment_format, feerate, count + 1)
    if room < needed:
        return -1
    return chan._add_budget(Side.HOLDER)[2] if holder_spendable_msat is None \
        else holder_spendable_msat


def check_fee_spike_buffer(chan: ChannelCore, amount_msat: int,
                           holder_spendable_msat: int | None = None) -> None:
    """Our add of ``amount_msat`` (BOLT 2 "fee spike buffer"); raises ``RejectedUpdate``.
    ``holder_spendable_msat`` as for :func:`fee_spike_room_msat`."""
    most = fee_spike_room_msat(chan, holder_spendable_msat)
    if amount_msat <= most:
        return
    if chan.opener is Side.HOLDER:
        raise RejectedUpdate(
            f"amount_msat {amount_msat} exceeds the {max(most, 0)} msat we may add while keeping "
            f"the fee spike buffer (BOLT 2: the fee at twice the feerate, one more HTLC)")
    raise RejectedUpdate("the peer (the opener) could not pay the commitment fee with one more "
                         "HTLC and keep its reserve")


def peer_add_budget(chan: ChannelCore, *, feerate_per_kw: int | None = None,
                    new_htlcs: int = 1) -> tuple[int, int, int]:
    """The peer's add, as the honest peer must have seen the channel when it sent it:
    (HTLCs it offers that still count, their msat, what it may still spend).

    ``feerate_per_kw``/``new_htlcs=0`` ask the same of the opener's ``update_fee``: may it pay
    that feerate with the HTLCs it knew of?"""
    log = chan.log
    assert log is not None
    parts: list[int] | None = None
    keep = chan.in_peer_adds and feerate_per_kw is None and new_htlcs == 1
    if keep and chan.peer_budget_memo is not None:
        marker, kept = chan.peer_budget_memo
        if marker == chan.budget_marker():
            parts = kept
            if self_checks.CHECK_BUDGET_MEMO:
                assert parts == _peer_budget_parts(chan), (parts, _peer_budget_parts(chan))
    if parts is None:
        parts = _peer_budget_parts(chan)
        if keep:
            chan.peer_budget_memo = (chan.budget_marker(), parts)
    offered, offered_msat, balance, ours = parts
    count = offered + ours
    reserve_msat = chan.holder_params.channel_reserve_sat * 1000
    if chan.opener is Side.COUNTERPARTY:
        latest = log.fee_updates[-1].feerate_per_kw if log.fee_updates \
            else log.base_feerate_per_kw
        balance -= opener_charge_msat(chan.commitment_format, feerate_per_kw or latest,
                                      count + new_htlcs)
    return offered, offered_msat, balance - reserve_msat


def _peer_budget_parts(chan: ChannelCore) -> list[int]:
    """One pass over the log (the hot loop of a batch of the peer's adds): [HTLCs the peer
    offers that still count, their msat, its balance, our HTLCs it may not have seen]."""
    log = chan.log
    assert log is not None
    holder_ctn = chan.holder_commitment_number
    counterparty_ctn = chan.counterparty_commitment_number
    balance = log.base_balance_msat[Side.COUNTERPARTY]
    offered = offered_msat = ours = 0
    # names bound once, and the removal's commitment numbers read only for HTLCs being removed
    holder, counterparty = Side.HOLDER, Side.COUNTERPARTY
    fulfilled, failed = Removal.FULFILLED, Removal.FAILED
    for h in log.htlcs.values():
        removal = h.removal
        committed = False
        if removal is not None:
            removed_l, removed_r = h.removed_at[holder], h.removed_at[counterparty]
            committed = removed_l is not None and removed_l <= holder_ctn and \
                removed_r is not None and removed_r <= counterparty_ctn
        if h.offerer is counterparty:
            if committed:
                if removal is not failed:
                    balance -= h.amount_msat
                continue        # gone from our next commitment; the sender may have pruned it
            balance -= h.amount_msat
            offered += 1
            offered_msat += h.amount_msat
        elif committed:
            if removal is fulfilled:
                balance += h.amount_msat
        elif h.added_at[holder] is not None:
            ours += 1   # ours, not acknowledged by the peer yet: it may not have seen it
    return [offered, offered_msat, balance, ours]
