"""The decision a node takes on an incoming HTLC: forward it, accept it as payee, or fail it.

Pure: the caller hands in the incoming HTLC, its peeled onion, the outgoing channel's policy
(the fields of our own BOLT 7 ``channel_update`` for that direction) and the block height;
the answer is either an instruction or the exact BOLT 4 failure to encrypt back.

Forwarding checks follow BOLT 4 "Accepting and Forwarding a Payment" and BOLT 7 "HTLC Fees",
in this order (BOLT 4 asks for the first failure of its list that applies; an unknown or
unusable channel makes the later checks meaningless, so those come first):
``unknown_next_peer`` → ``channel_disabled`` → ``temporary_channel_failure`` (peer offline)
→ ``amount_below_minimum`` → ``temporary_channel_failure`` (above ``htlc_maximum_msat``)
→ ``fee_insufficient`` → ``incorrect_cltv_expiry`` → ``expiry_too_soon`` → ``expiry_too_far``
→ ``temporary_channel_failure`` (not enough outbound liquidity).

The final-hop check answers every payee-side mismatch with the same
``incorrect_or_unknown_payment_details`` (so a probing forwarder learns nothing), and only
then ``final_incorrect_cltv_expiry`` / ``final_incorrect_htlc_amount`` for an HTLC that
does not match its own onion.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from channel.errors import MalformedMessage
from channel.onion import PeeledFinal, PeeledForward
from channel.onion_failures import (
    AmountBelowMinimum,
    ChannelDisabled,
    ExpiryTooFar,
    ExpiryTooSoon,
    FeeInsufficient,
    FinalIncorrectCltvExpiry,
    FinalIncorrectHtlcAmount,
    IncorrectCltvExpiry,
    IncorrectOrUnknownPaymentDetails,
    OnionFailure,
    TemporaryChannelFailure,
    UnknownNextPeer,
)

__all__ = [
    "EXPIRY_GRACE_BLOCKS",
    "FINAL_CLTV_GRACE_BLOCKS",
    "MAX_CLTV_EXPIRY_BLOCKS",
    "AcceptPayment",
    "ChannelPolicy",
    "ExpectedPayment",
    "ForwardHtlc",
    "IncomingHtlc",
    "OutgoingChannel",
    "check_final_hop",
    "decide_forward",
    "forwarding_fee_msat",
]

#: An outgoing HTLC must expire more than this many blocks above our tip: we need those
#: blocks to see a timeout coming and go to chain (LDK's latency grace period is also 3).
EXPIRY_GRACE_BLOCKS: Final = 3
#: Refuse to lock liquidity for longer than two weeks of blocks (``expiry_too_far``).
MAX_CLTV_EXPIRY_BLOCKS: Final = 2016
#: Blocks the payee may have mined since the payer computed its final CLTV from its own tip.
FINAL_CLTV_GRACE_BLOCKS: Final = 3


def forwarding_fee_msat(
    *, fee_base_msat: int, fee_proportional_millionths: int, amount_msat: int
) -> int:
    """BOLT 7 "HTLC Fees": ``fee_base_msat + amount_msat * proportional // 1_000_000``."""
    return fee_base_msat + amount_msat * fee_proportional_millionths // 1_000_000


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if type(value) is not int or value < 0:
            raise MalformedMessage(f"{name} must be a non-negative integer: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelPolicy:
    """Our ``channel_update`` fields for one outgoing channel direction (BOLT 7)."""

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    enabled: bool = True

    def __post_init__(self) -> None:
        _check_non_negative(
            fee_base_msat=self.fee_base_msat,
            fee_proportional_millionths=self.fee_proportional_millionths,
            cltv_expiry_delta=self.cltv_expiry_delta,
            htlc_minimum_msat=self.htlc_minimum_msat,
            htlc_maximum_msat=self.htlc_maximum_msat,
        )
        if self.htlc_maximum_msat < self.htlc_minimum_msat:
            raise MalformedMessage("htlc_maximum_msat is below htlc_minimum_msat")

    def fee_msat(self, amt_to_forward_msat: int) -> int:
        """The fee this direction charges to forward ``amt_to_forward_msat``."""
        return forwarding_fee_msat(
            fee_base_msat=self.fee_base_msat,
            fee_proportional_millionths=self.fee_proportional_millionths,
            amount_msat=amt_to_forward_msat,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingHtlc:
    """The ``update_add_htlc`` as received: its amount and absolute expiry height."""

    amount_msat: int
    cltv_expiry: int

    def __post_init__(self) -> None:
        _check_non_negative(amount_msat=self.amount_msat, cltv_expiry=self.cltv_expiry)
        # the wire's u64 and u32: a failure echoing them back must be encodable
        if self.amount_msat >= 1 << 64 or self.cltv_expiry >= 1 << 32:
            raise MalformedMessage("incoming HTLC amount or cltv_expiry out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingChannel:
    """The channel a forward payload names, as this node sees it right now.

    ``available_msat`` is what the channel can still offer in a new HTLC (``None``: let the
    channel itself refuse later). ``channel_update`` (raw, possibly empty) is attached to
    UPDATE failures; BOLT 4 now makes it optional, and sending none avoids fingerprinting.
    """

    policy: ChannelPolicy
    peer_connected: bool = True
    available_msat: int | None = None
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardHtlc:
    """Offer ``amount_msat`` expiring at ``cltv_expiry`` on ``short_channel_id`` with
    ``onion_routing_packet``; ``fee_msat`` is what this node keeps if it succeeds."""

    short_channel_id: bytes
    amount_msat: int
    cltv_expiry: int
    onion_routing_packet: bytes
    fee_msat: int


def decide_forward(
    *,
    incoming: IncomingHtlc,
    forward: PeeledForward,
    outgoing: OutgoingChannel | None,
    current_height: int,
    expiry_grace_blocks: int = EXPIRY_GRACE_BLOCKS,
    max_cltv_expiry_blocks: int = MAX_CLTV_EXPIRY_BLOCKS,
) -> ForwardHtlc | OnionFailure:
    """BOLT 4 + BOLT 7: forward ``incoming`` as its onion asks, or the failure to send back.

    ``outgoing`` is ``None`` when this node has no channel with ``forward.short_channel_id``.
    """
    if outgoing is None:
        return UnknownNextPeer()
    policy = outgoing.policy
    update = outgoing.channel_update
    amt_to_forward = forward.amt_to_forward
    outgoing_cltv = forward.outgoing_cltv_value
    if not policy.enabled:
        return ChannelDisabled(disabled_flags=0, channel_update=update)
    if not outgoing.peer_connected:
        return TemporaryChannelFailure(channel_update=update)
    if amt_to_forward < policy.htlc_minimum_msat:
        return AmountBelowMinimum(htlc_msat=incoming.amount_msat, channel_update=update)
    if amt_to_forward > policy.htlc_maximum_msat:
        return TemporaryChannelFailure(channel_update=update)
    # BOLT 7: the fee is computed on the amount forwarded, not on the amount received
    if incoming.amount_msat - policy.fee_msat(amt_to_forward) < amt_to_forward:
        return FeeInsufficient(htlc_msat=incoming.amount_msat, channel_update=update)
    # cltv_expiry_delta is the room we keep to fail upstream after the downstream times out
    if incoming.cltv_expiry - policy.cltv_expiry_delta < outgoing_cltv:
        return IncorrectCltvExpiry(cltv_expiry=incoming.cltv_expiry, channel_update=update)
    if outgoing_cltv <= current_height + expiry_grace_blocks:
        return ExpiryTooSoon(channel_update=update)
    if outgoing_cltv > current_height + max_cltv_expiry_blocks:
        return ExpiryTooFar()
    if outgoing.available_msat is not None and amt_to_forward > outgoing.available_msat:
        return TemporaryChannelFailure(channel_update=update)
    return ForwardHtlc(
        short_channel_id=forward.short_channel_id,
        amount_msat=amt_to_forward,
        cltv_expiry=outgoing_cltv,
        onion_routing_packet=forward.next_onion,
        fee_msat=incoming.amount_msat - amt_to_forward,
    )


# --- the payee's side --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedPayment:
    """What the payee's invoice for this ``payment_hash`` asked for.

    ``amount_msat`` ``None`` is an invoice without amount (any amount is accepted);
    ``payment_metadata`` is the invoice's ``m`` field, if it had one.
    """

    payment_secret: bytes
    amount_msat: int | None
    min_final_cltv_expiry_delta: int
    already_paid: bool = False
    payment_metadata: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.payment_secret) is not bytes or len(self.payment_secret) != 32:
            raise MalformedMessage("payment_secret must be 32 bytes")
        _check_non_negative(min_final_cltv_expiry_delta=self.min_final_cltv_expiry_delta)
        if self.amount_msat is not None:
            _check_non_negative(amount_msat=self.amount_msat)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptPayment:
    """Fulfil the HTLC with the invoice's preimage: ``amount_msat`` was received."""

    amount_msat: int


def check_final_hop(
    *,
    incoming: IncomingHtlc,
    final: PeeledFinal,
    expected: ExpectedPayment | None,
    current_height: int,
    cltv_grace_blocks: int = FINAL_CLTV_GRACE_BLOCKS,
) -> AcceptPayment | OnionFailure:
    """BOLT 4 "Payload for the Last Node" and "Failure Messages" at the payee.

    ``expected`` is ``None`` when no invoice has this ``payment_hash``. chanlab does not
    take multi-part payments, so a ``total_msat`` other than the HTLC's own amount is refused.
    """
    details = IncorrectOrUnknownPaymentDetails(
        htlc_msat=incoming.amount_msat, height=current_height
    )
    if expected is None:
        return details
    data = final.payment_data
    if data is None or not hmac.compare_digest(data.payment_secret, expected.payment_secret):
        return details
    if data.total_msat != final.amt_to_forward:
        return details  # one part of a multi-part payment: never completes here
    if expected.amount_msat is not None and not (
        expected.amount_msat <= incoming.amount_msat <= 2 * expected.amount_msat
    ):
        return details  # BOLT 4: below the invoice MUST fail, above twice it SHOULD
    earliest_cltv = current_height + expected.min_final_cltv_expiry_delta - cltv_grace_blocks
    if incoming.cltv_expiry < earliest_cltv:
        return details
    if expected.payment_metadata is not None and (
        final.payment_metadata != expected.payment_metadata
    ):
        return details
    if expected.already_paid:
        return details
    if incoming.cltv_expiry < final.outgoing_cltv_value:
        return FinalIncorrectCltvExpiry(cltv_expiry=incoming.cltv_expiry)
    if incoming.amount_msat < final.amt_to_forward:
        return FinalIncorrectHtlcAmount(incoming_htlc_amt=incoming.amount_msat)
    return AcceptPayment(amount_msat=incoming.amount_msat)
