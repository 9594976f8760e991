"""Assemble one side's commitment transaction of a channel from plain records (BOLT 3).

Pure. The one place where a channel's static data (funding outpoint, both parties' parameters,
who opened) and one :class:`~channel.records.CommitmentState` become a
:class:`~channel.transactions.CommitmentTransaction`: the channel state machine calls it to sign
and check commitments, the monitor to rebuild the ones that reach the chain, so both always
agree on the bytes.
"""

from __future__ import annotations

from channel.keys import PerCommitmentPoint
from channel.records import CommitmentState, PartyParams
from channel.transactions import (
    CommitmentKeys,
    CommitmentTransaction,
    build_commitment_transaction,
    obscuring_factor,
)
from channel.types import CommitmentFormat, OutPoint, Side

__all__ = ["assemble_commitment", "channel_obscuring_factor", "commitment_keys"]


def channel_obscuring_factor(opener: Side, holder_params: PartyParams,
                             counterparty_params: PartyParams) -> int:
    """BOLT 3 "Commitment Transaction": the commitment number obscuring factor, opener first."""
    ours = holder_params.basepoints.payment_basepoint
    theirs = counterparty_params.basepoints.payment_basepoint
    if opener is Side.HOLDER:
        return obscuring_factor(ours, theirs)
    return obscuring_factor(theirs, ours)


def commitment_keys(side: Side, point: PerCommitmentPoint, holder_params: PartyParams,
                    counterparty_params: PartyParams) -> CommitmentKeys:
    """The keys of ``side``'s commitment built on ``point`` (BOLT 3 "Keys"): ``side`` is the
    broadcaster, the other party the countersignatory (memoised, see ``CommitmentKeys``)."""
    broadcaster, countersignatory = ((holder_params, counterparty_params) if side is Side.HOLDER
                                     else (counterparty_params, holder_params))
    return CommitmentKeys.derive(per_commitment_point=point, broadcaster=broadcaster.basepoints,
                                 countersignatory=countersignatory.basepoints)


def assemble_commitment(*, side: Side, state: CommitmentState, point: PerCommitmentPoint,
                        funding_outpoint: OutPoint, funding_sat: int,
                        commitment_format: CommitmentFormat, opener: Side,
                        holder_params: PartyParams, counterparty_params: PartyParams,
                        obscuring: int | None = None) -> CommitmentTransaction:
    """``side``'s commitment ``state.commitment_number`` (BOLT 3 "Commitment Transaction").

    ``side`` is the broadcaster: its keys are derived from ``point`` (its per-commitment point),
    the *other* party's ``to_self_delay`` applies to its to_local output and its own dust limit
    trims the outputs. ``obscuring`` may pass the channel's obscuring factor if the caller keeps
    it; otherwise it is computed.
    """
    broadcaster, countersignatory = ((holder_params, counterparty_params) if side is Side.HOLDER
                                     else (counterparty_params, holder_params))
    keys = commitment_keys(side, point, holder_params, counterparty_params)
    if obscuring is None:
        obscuring = channel_obscuring_factor(opener, holder_params, counterparty_params)
    return build_commitment_transaction(
        funding_outpoint=funding_outpoint, funding_amount_sat=funding_sat,
        commitment_number=state.commitment_number, obscuring_factor=obscuring, keys=keys,
        to_self_delay=countersignatory.to_self_delay, dust_limit_sat=broadcaster.dust_limit_sat,
        feerate_per_kw=state.feerate_per_kw, broadcaster_is_opener=opener is side,
        to_local_msat=state.to_broadcaster_msat, to_remote_msat=state.to_countersignatory_msat,
        htlcs=state.htlcs, commitment_format=commitment_format)
