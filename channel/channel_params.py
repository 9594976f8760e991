"""Channel parameters: our policy, the ``channel_type`` codes and the checks of the peer's.

Pure. What :mod:`channel.state` announces in ``open_channel`` / ``accept_channel`` and how it
validates what the peer announced (BOLT 2 "The open_channel Message" and "The accept_channel
Message" requirements). A failed check of the peer's values raises ``PeerProtocolError``.
"""

from __future__ import annotations

from channel.channel_basics import ChannelConfig
from channel.errors import PeerProtocolError, RejectedUpdate
from channel.keys import (
    Basepoints,
    ChannelKeys,
    DelayedPaymentBasepoint,
    FundingPubkey,
    HtlcBasepoint,
    PaymentBasepoint,
    PerCommitmentPoint,
    RevocationBasepoint,
)
from channel.messages import AcceptChannel, OpenChannel
from channel.records import PartyParams
from channel.types import CommitmentFormat
from channel.validation import (
    MAX_FUNDING_SAT,
    MAX_HTLC_COUNT,
    MIN_DUST_LIMIT_SAT,
    MIN_FEERATE_PER_KW,
    check_party_params,
)

__all__ = [
    "HIGH_CLOSING_FEERATE_PER_KW",
    "MAX_FUNDING_SAT",
    "MAX_HTLC_COUNT",
    "MIN_DUST_LIMIT_SAT",
    "MIN_FEERATE_PER_KW",
    "ChannelConfig",
    "channel_type_bytes",
    "check_shutdown_script",
    "format_from_channel_type",
    "our_params",
    "peer_params",
]

#: The top of our closing ``fee_range`` at least reaches this feerate: twice Electrum's fixed
#: regtest rate (150 sat/vB = 37,500 sat/kw), so our range overlaps a peer settling there
#: even when its weight estimate of the closing tx is a little above ours.
HIGH_CLOSING_FEERATE_PER_KW = 75_000


def channel_type_bytes(commitment_format: CommitmentFormat) -> bytes:
    """The ``channel_type`` TLV value: bit 12 (static_remotekey), plus bit 22 with anchors."""
    bits = 1 << 12
    if commitment_format is CommitmentFormat.ANCHORS:
        bits |= 1 << 22
    return bits.to_bytes((bits.bit_length() + 7) // 8, "big")


def format_from_channel_type(value: bytes | None) -> CommitmentFormat:
    """The commitment format a peer's ``channel_type`` asks for (only the two we support)."""
    if value is None:
        raise PeerProtocolError("open/accept without channel_type")
    bits = int.from_bytes(value, "big")
    if bits == 1 << 12:
        return CommitmentFormat.STATIC_REMOTEKEY
    if bits == (1 << 12) | (1 << 22):
        return CommitmentFormat.ANCHORS
    raise PeerProtocolError(f"unsupported channel_type {value.hex()}")


def our_params(keys: ChannelKeys, config: ChannelConfig, funding_sat: int) -> PartyParams:
    """What we announce for a channel of ``funding_sat``."""
    return PartyParams(
        dust_limit_sat=config.dust_limit_sat,
        max_htlc_value_in_flight_msat=config.max_htlc_value_in_flight_msat,
        channel_reserve_sat=config.reserve_for(funding_sat),
        htlc_minimum_msat=config.htlc_minimum_msat, to_self_delay=config.to_self_delay,
        max_accepted_htlcs=config.max_accepted_htlcs, basepoints=keys.basepoints())


def peer_params(config: ChannelConfig, msg: OpenChannel | AcceptChannel,
                funding_sat: int) -> PartyParams:
    """The peer's announced parameters, checked against BOLT 2 and our ``config``."""
    try:
        basepoints = Basepoints(
            funding_pubkey=FundingPubkey(msg.funding_pubkey),
            revocation_basepoint=RevocationBasepoint(msg.revocation_basepoint),
            payment_basepoint=PaymentBasepoint(msg.payment_basepoint),
            delayed_payment_basepoint=DelayedPaymentBasepoint(msg.delayed_payment_basepoint),
            htlc_basepoint=HtlcBasepoint(msg.htlc_basepoint))
        PerCommitmentPoint(msg.first_per_commitment_point)
    except (ValueError, TypeError) as exc:
        raise PeerProtocolError(f"invalid key in {type(msg).__name__}: {exc}") from exc
    check_party_params(msg, funding_sat=funding_sat, max_to_self_delay=config.max_to_self_delay)
    return PartyParams(
        dust_limit_sat=msg.dust_limit_satoshis,
        max_htlc_value_in_flight_msat=msg.max_htlc_value_in_flight_msat,
        channel_reserve_sat=msg.channel_reserve_satoshis,
        htlc_minimum_msat=max(1, msg.htlc_minimum_msat), to_self_delay=msg.to_self_delay,
        max_accepted_htlcs=msg.max_accepted_htlcs, basepoints=basepoints)


def check_shutdown_script(script: bytes,
                          error: type[RejectedUpdate] | type[PeerProtocolError]) -> None:
    """BOLT 2 "Closing Initiation": a shutdown scriptpubkey is P2WPKH or P2WSH."""
    p2wpkh = len(script) == 22 and script[:2] == b"\x00\x14"
    p2wsh = len(script) == 34 and script[:2] == b"\x00\x20"
    if not (p2wpkh or p2wsh):
        raise error("shutdown scriptpubkey must be P2WPKH or P2WSH")
