"""The channel's light vocabulary an idle node needs: its states and our channel policy.

Pure. :class:`ChannelState` and :class:`ChannelConfig` are what the node's start path, control
commands and chain watcher name before any channel exists; the state machine
(:mod:`channel.state` over :mod:`channel.channel_core` and :mod:`channel.channel_params`,
which re-export both) and the BOLT 2 messages are loaded by the first channel, peer message or
restored channel (idle node RSS, see tests/integration/test_idle_footprint.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_HTLC_COUNT", "ChannelConfig", "ChannelState"]

#: BOLT 2: ``max_accepted_htlcs`` above 483 would make a commitment non-standard.
MAX_HTLC_COUNT: Final = 483


class ChannelState(enum.Enum):
    """Where a channel is in its life (BOLT 2 sections in brackets)."""

    AWAITING_ACCEPT = "awaiting_accept"                      # opener sent open_channel
    AWAITING_FUNDING_CREATED = "awaiting_funding_created"    # accepter sent accept_channel
    AWAITING_FUNDING_TX = "awaiting_funding_tx"              # opener got accept, builds funding
    AWAITING_FUNDING_SIGNED = "awaiting_funding_signed"      # opener sent funding_created
    AWAITING_LOCKIN = "awaiting_lockin"                      # funding signed, waiting for depth
    NORMAL = "normal"                                        # [Normal Operation]
    SHUTTING_DOWN = "shutting_down"                          # shutdown sent or received
    NEGOTIATING_CLOSE = "negotiating_close"                  # closing_signed exchange
    CLOSING = "closing"                                      # closing tx signed by both
    FORCE_CLOSING = "force_closing"                          # a commitment went on chain
    CLOSED = "closed"                                        # all outputs resolved


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """Our policy for a channel: what we announce in open_channel / accept_channel.

    ``to_self_delay`` is the delay we impose on the *peer's* to_local outputs;
    ``channel_reserve_sat`` the balance we require the *peer* to keep.
    """

    dust_limit_sat: int = 546
    max_htlc_value_in_flight_msat: int = 2**63 - 1
    channel_reserve_sat: int | None = None     # None: 1% of the funding, at least the dust limit
    htlc_minimum_msat: int = 1
    to_self_delay: int = 144
    max_accepted_htlcs: int = MAX_HTLC_COUNT
    minimum_depth: int = 1
    max_to_self_delay: int = 2016               # the most we accept from a peer

    def reserve_for(self, funding_sat: int) -> int:
        if self.channel_reserve_sat is not None:
            return self.channel_reserve_sat
        return max(funding_sat // 100, self.dust_limit_sat)
