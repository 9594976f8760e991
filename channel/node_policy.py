"""The fees and delay a node announces for the channels it forwards over (BOLT 7).

Pure. Its own module, apart from the forwarder, so that a node's settings name a policy without
loading the forwarding and onion code an idle node never runs (idle node RSS, see
tests/integration/test_idle_footprint.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from channel.channel_basics import ChannelState

if TYPE_CHECKING:
    from channel.effects import ChannelHandle
    from channel.forwarding import ChannelPolicy

__all__ = [
    "DEFAULT_CLTV_EXPIRY_DELTA",
    "DEFAULT_FEE_BASE_MSAT",
    "DEFAULT_FEE_PROPORTIONAL_MILLIONTHS",
    "NodePolicy",
]

DEFAULT_FEE_BASE_MSAT = 1000
DEFAULT_FEE_PROPORTIONAL_MILLIONTHS = 1
#: regtest-friendly: blocks we keep between the outgoing and the incoming expiry
DEFAULT_CLTV_EXPIRY_DELTA = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePolicy:
    """The fees and delay this node announces for every channel it forwards over (BOLT 7)."""

    fee_base_msat: int = DEFAULT_FEE_BASE_MSAT
    fee_proportional_millionths: int = DEFAULT_FEE_PROPORTIONAL_MILLIONTHS
    cltv_expiry_delta: int = DEFAULT_CLTV_EXPIRY_DELTA

    def for_channel(self, handle: ChannelHandle) -> ChannelPolicy:
        """Our ``channel_update`` fields for ``handle``: the peer's minimum, the capacity."""
        # (idle node RSS, see tests/integration/test_idle_footprint.py)
        from channel.forwarding import ChannelPolicy
        chan = handle.channel
        peer = chan.counterparty_params
        return ChannelPolicy(
            fee_base_msat=self.fee_base_msat,
            fee_proportional_millionths=self.fee_proportional_millionths,
            cltv_expiry_delta=self.cltv_expiry_delta,
            htlc_minimum_msat=1 if peer is None else max(1, peer.htlc_minimum_msat),
            htlc_maximum_msat=chan.funding_sat * 1000,
            enabled=chan.state is ChannelState.NORMAL)
