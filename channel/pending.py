"""Channels not yet funded: how many a peer may hold, what of them is stored, how they end.

Pure. Before ``funding_signed`` nobody has broadcast a funding tx, so such a channel puts
nothing at stake: a stranger's ``open_channel`` must cost bounded memory and no disk (BOLT 2
lets a node refuse any ``open_channel``), and a refused or abandoned open leaves no trace
behind (no "closed" row; its funding inputs, locked when we built the tx, are unlocked).
"""

from __future__ import annotations

from collections.abc import Iterable

from channel.channel_basics import ChannelState
from channel.effects import ChannelHandle, Effects, OpenResolved
from channel.errors import PeerProtocolError

__all__ = ["MAX_PENDING_PER_PEER", "MAX_PENDING_TOTAL", "UNFUNDED_STATES", "UNPERSISTED_STATES",
           "check_room_for", "forget_unfunded"]

MAX_PENDING_PER_PEER = 4
MAX_PENDING_TOTAL = 64
#: before funding_signed nobody has broadcast a funding tx: such a channel can be forgotten
UNFUNDED_STATES = frozenset({ChannelState.AWAITING_ACCEPT,
                             ChannelState.AWAITING_FUNDING_CREATED,
                             ChannelState.AWAITING_FUNDING_TX,
                             ChannelState.AWAITING_FUNDING_SIGNED})
#: ... and before funding_created there is not even a funding outpoint: nothing is persisted
UNPERSISTED_STATES = UNFUNDED_STATES - {ChannelState.AWAITING_FUNDING_SIGNED}


def check_room_for(handles: Iterable[ChannelHandle], peer_id: bytes) -> None:
    """Refuse one more unfunded channel from ``peer_id`` beyond the per-peer or total bound."""
    unfunded = [h for h in handles if h.channel.state in UNFUNDED_STATES]
    if sum(h.peer_id == peer_id for h in unfunded) >= MAX_PENDING_PER_PEER:
        raise PeerProtocolError(f"you have {MAX_PENDING_PER_PEER} channels with us not yet "
                                f"funded: fund or cancel one first")
    if len(unfunded) >= MAX_PENDING_TOTAL:
        raise PeerProtocolError("too many channels not yet funded: try again later")


def forget_unfunded(handles: dict[str, ChannelHandle], handle: ChannelHandle, reason: str,
                    fx: Effects) -> bool:
    """End ``handle`` without a trace if it is not funded yet (a waiting ``open`` gets
    ``reason``); whether it was."""
    if handle.channel.state not in UNFUNDED_STATES:
        return False
    del handles[handle.key]
    if handle in fx.touched:
        fx.touched.remove(handle)
    fx.forgotten.append((handle.key, handle.funding_tx))
    fx.resolutions.append(OpenResolved(handle.key, error=reason))
    return True
