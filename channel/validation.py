"""Bounds on what a peer may ask of a channel: BOLT 2 "unreasonable" values, refused with reasons.

Pure. The state machine calls these checks before it changes anything, so a refusal leaves the
channel as it was. Each check raises the ``channel.errors`` class whose reaction BOLT 2 asks
for, with a one-line reason the node sends to the peer in its ``error`` (or ``warning``):

- ``open_channel`` / ``accept_channel`` parameters (BOLT 2 "The open_channel Message" and "The
  accept_channel Message", receiver requirements): ``PeerProtocolError``; nothing is funded
  yet, so failing the channel costs nothing.
- ``update_fee`` outside our feerate bounds: ``PeerWarning`` (warn and reconnect): a fee
  estimate we dislike is no reason to force-close a funded channel.
- an update before ``channel_reestablish``: ours ``RejectedUpdate``, the peer's ``PeerWarning``.
- ``channel_reestablish`` numbers beyond any commitment that can exist (BOLT 3 commitment
  numbers are 48 bits): ``PeerProtocolError`` (BOLT 2: "SHOULD send an error and fail the
  channel"), never the arithmetic error a too-large number would otherwise raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from channel.channel_basics import MAX_HTLC_COUNT
from channel.errors import PeerProtocolError, PeerWarning, RejectedUpdate
from channel.messages import AcceptChannel, ChannelReestablish, OpenChannel

if TYPE_CHECKING:
    from channel.state import Channel

__all__ = [
    "MAX_COMMITMENT_NUMBER",
    "MAX_DUST_LIMIT_SAT",
    "MAX_FEERATE_PER_KW",
    "MAX_FUNDING_SAT",
    "MAX_HTLC_COUNT",
    "MIN_DUST_LIMIT_SAT",
    "MIN_FEERATE_PER_KW",
    "MIN_FUNDING_SAT",
    "check_channel_reestablish",
    "check_open_funding",
    "check_our_update_fee",
    "check_party_params",
    "check_peer_update_fee",
    "check_reestablished",
]

#: BOLT 2 (since 2021): a ``dust_limit_satoshis`` below 354 sat makes outputs non-standard.
MIN_DUST_LIMIT_SAT: Final = 354
#: "Unreasonably large": far above every standard dust threshold (546 sat for P2PKH).
MAX_DUST_LIMIT_SAT: Final = 10_000
#: BOLT 2: 253 sat/kw is the floor (1 sat/vbyte after rounding).
MIN_FEERATE_PER_KW: Final = 253
#: "Unreasonably large": 4,000 sat/vbyte. Electrum's regtest fees (37,500 and 56,250 sat/kw)
#: are well inside.
MAX_FEERATE_PER_KW: Final = 1_000_000
#: Without ``option_support_large_channel``, BOLT 2 caps funding at 2^24 - 1 sat.
MAX_FUNDING_SAT: Final = 2**24 - 1
#: "Too small": below this a channel cannot pay its commitment fee and both reserves.
MIN_FUNDING_SAT: Final = 20_000
#: A reserve above this share of the channel is unreasonable (1% is customary).
MAX_RESERVE_PERCENT: Final = 20
#: An ``htlc_minimum_msat`` above this share of the channel makes it useless for payments.
MAX_HTLC_MINIMUM_PERCENT: Final = 10
#: BOLT 3: commitment numbers are 48 bits (they index the shachain).
MAX_COMMITMENT_NUMBER: Final = 2**48 - 1


def check_open_funding(msg: OpenChannel) -> None:
    """``open_channel``'s amounts: funding within bounds, ``push_msat`` within the funding,
    feerate within bounds."""
    if not MIN_FUNDING_SAT <= msg.funding_satoshis <= MAX_FUNDING_SAT:
        raise PeerProtocolError(
            f"open_channel refused: funding_satoshis {msg.funding_satoshis} sat is outside "
            f"{MIN_FUNDING_SAT}..{MAX_FUNDING_SAT} sat")
    if msg.push_msat > msg.funding_satoshis * 1000:
        raise PeerProtocolError(
            f"open_channel refused: push_msat {msg.push_msat} msat exceeds funding_satoshis "
            f"{msg.funding_satoshis} sat")
    if not MIN_FEERATE_PER_KW <= msg.feerate_per_kw <= MAX_FEERATE_PER_KW:
        raise PeerProtocolError(
            f"open_channel refused: feerate_per_kw {msg.feerate_per_kw} is outside "
            f"{MIN_FEERATE_PER_KW}..{MAX_FEERATE_PER_KW}")


def check_party_params(msg: OpenChannel | AcceptChannel, *, funding_sat: int,
                       max_to_self_delay: int) -> None:
    """The limits the peer announces for the channel (BOLT 2 receiver requirements)."""
    what = f"{msg.NAME} refused"
    if msg.to_self_delay > max_to_self_delay:
        raise PeerProtocolError(
            f"{what}: to_self_delay {msg.to_self_delay} blocks exceeds our maximum "
            f"{max_to_self_delay}")
    if msg.max_accepted_htlcs > MAX_HTLC_COUNT:
        raise PeerProtocolError(
            f"{what}: max_accepted_htlcs {msg.max_accepted_htlcs} exceeds {MAX_HTLC_COUNT}")
    if msg.max_accepted_htlcs == 0:
        raise PeerProtocolError(f"{what}: max_accepted_htlcs 0 allows no payment")
    if msg.dust_limit_satoshis < MIN_DUST_LIMIT_SAT:
        raise PeerProtocolError(
            f"{what}: dust_limit_satoshis {msg.dust_limit_satoshis} sat is below "
            f"{MIN_DUST_LIMIT_SAT} sat")
    if msg.dust_limit_satoshis > MAX_DUST_LIMIT_SAT:
        raise PeerProtocolError(
            f"{what}: dust_limit_satoshis {msg.dust_limit_satoshis} sat exceeds "
            f"{MAX_DUST_LIMIT_SAT} sat")
    if msg.dust_limit_satoshis > msg.channel_reserve_satoshis:
        raise PeerProtocolError(
            f"{what}: dust_limit_satoshis {msg.dust_limit_satoshis} sat exceeds "
            f"channel_reserve_satoshis {msg.channel_reserve_satoshis} sat")
    if msg.channel_reserve_satoshis * 100 > funding_sat * MAX_RESERVE_PERCENT:
        raise PeerProtocolError(
            f"{what}: channel_reserve_satoshis {msg.channel_reserve_satoshis} sat exceeds "
            f"{MAX_RESERVE_PERCENT}% of the {funding_sat} sat channel")
    if msg.htlc_minimum_msat * 100 > funding_sat * 1000 * MAX_HTLC_MINIMUM_PERCENT:
        raise PeerProtocolError(
            f"{what}: htlc_minimum_msat {msg.htlc_minimum_msat} msat exceeds "
            f"{MAX_HTLC_MINIMUM_PERCENT}% of the {funding_sat} sat channel")


def check_peer_update_fee(feerate_per_kw: int) -> None:
    """The opener's ``update_fee``: outside our bounds we warn and reconnect (the update is
    unsigned, so the disconnection drops it); the channel is not failed."""
    if not MIN_FEERATE_PER_KW <= feerate_per_kw <= MAX_FEERATE_PER_KW:
        raise PeerWarning(
            f"update_fee refused: feerate_per_kw {feerate_per_kw} is outside "
            f"{MIN_FEERATE_PER_KW}..{MAX_FEERATE_PER_KW}")


def check_our_update_fee(feerate_per_kw: int) -> None:
    """Our own ``update_fee`` stays inside the bounds we would accept from a peer."""
    if not MIN_FEERATE_PER_KW <= feerate_per_kw <= MAX_FEERATE_PER_KW:
        raise RejectedUpdate(
            f"feerate_per_kw {feerate_per_kw} is outside {MIN_FEERATE_PER_KW}.."
            f"{MAX_FEERATE_PER_KW}")


def check_channel_reestablish(msg: ChannelReestablish) -> None:
    """Both numbers must name a commitment that can exist (below 2^48)."""
    for name in ("next_commitment_number", "next_revocation_number"):
        value: int = getattr(msg, name)
        if value > MAX_COMMITMENT_NUMBER + 1:
            raise PeerProtocolError(
                f"channel_reestablish refused: {name} {value} exceeds any commitment number "
                f"(2^48)")


def check_reestablished(chan: Channel, *, ours: bool) -> None:
    """BOLT 2 "Message Retransmission": after a reconnection, nothing but
    ``channel_reestablish`` for a channel until the peer's has been processed.

    Our own update now would be numbered before the retransmissions it must follow
    (``RejectedUpdate``: refuse it, try again once reestablished); the peer's is an eager
    reconnection, not a cheat (``PeerWarning``: warn and reconnect, never fail the channel).
    """
    if not chan.reestablish_pending:
        return
    if ours:
        raise RejectedUpdate("waiting for the peer's channel_reestablish")
    raise PeerWarning("an update arrived before channel_reestablish: reconnect and retransmit")
