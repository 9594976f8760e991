"""Where a manager's flight meets the forwarder: settle forwards and our own incoming HTLCs.

Pure. Called by :class:`~channel.manager.ChannelManager` after each change that can resolve
an HTLC (a ``commitment_signed``, a ``revoke_and_ack``, a reestablish, a fulfil from
downstream, a chain event): the forwarder offers newly locked-in forwards and passes
resolved ones upstream (:mod:`channel.forwarder`), the payee side settles what is paid to us
(:mod:`channel.payments`), and every preimage released goes to its channel's monitor, which
needs it to claim on chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channel.channel_basics import ChannelState
from channel.effects import ChannelHandle, Effects

if TYPE_CHECKING:
    from channel.manager import ChannelManager

__all__ = ["settle_forwards"]


def settle_forwards(manager: ChannelManager, fx: Effects,
                    handle: ChannelHandle | None = None) -> None:
    """Resolved forwards go upstream; ``handle``'s new HTLCs are forwarded or settled."""
    forwarder = manager.forwarder
    if handle is not None:
        forwarder.forward_incoming(manager.handles, handle, manager.height, fx)
    released = forwarder.settle(manager.handles, fx)
    if handle is not None:
        released += [(handle, preimage) for preimage in manager.payments.settle_incoming(
            handle, manager.height, fx, peeled=forwarder.final_peels(handle.key))]
    for incoming, preimage in released:
        if incoming.monitor is not None:
            manager.note(incoming, incoming.monitor.provide_payment_preimage(preimage))
            if incoming.channel.state in (ChannelState.FORCE_CLOSING, ChannelState.CLOSED):
                # the forward is forgotten in this flight: the monitor's snapshot keeps the
                # preimage its claim on chain needs
                incoming.monitor_dirty = True
                fx.touch(incoming)
