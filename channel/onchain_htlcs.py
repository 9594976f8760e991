"""A chain flight's HTLC work: channels to fail at an HTLC deadline, HTLCs paid to us to claim.

Pure. Called by :meth:`~channel.manager.ChannelManager.dirty_monitors` after each block or
mempool transaction (and when a hold invoice is settled):

* :func:`fail_channels_at_deadline` — BOLT 2: a channel holding an HTLC past its deadline
  (:meth:`~channel.monitor_deadlines.HtlcDeadlines.htlc_deadline`: one we offered, expired; one
  we fulfilled, about to expire) is failed: ``error`` to the peer and our commitment broadcast.
  Its monitor then times the HTLC out (HTLC-timeout) or claims it (HTLC-success), and the
  forwarder (:mod:`channel.forwarder`) fails or fulfils the incoming HTLC it paid for.
* :func:`claim_paid_on_chain` — BOLT 5: an HTLC paid to us (our invoice, not held) on a channel
  gone to chain: its preimage goes to the channel's monitor, which claims the output with it.
* :func:`resolve_sent_on_chain` — BOLT 5 for a payer: our own payment's HTLC on a channel gone
  to chain succeeded once its preimage is read from the peer's claim, failed once timed out
  for good (the forwarder does the same for forwards, :mod:`channel.forwarder`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channel.channel_basics import ChannelState
from channel.effects import Effects
from channel.types import Side

if TYPE_CHECKING:
    from channel.manager import ChannelManager

__all__ = ["claim_paid_on_chain", "fail_channels_at_deadline", "resolve_sent_on_chain"]

#: a channel in these states can still be failed (our commitment not yet out)
_FAILABLE = (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN, ChannelState.NEGOTIATING_CLOSE)


def fail_channels_at_deadline(manager: ChannelManager, fx: Effects) -> None:
    """Fail (force-close) every open channel with an HTLC at its BOLT 2 deadline."""
    for handle in list(manager.handles.values()):
        chan = handle.channel
        if handle.monitor is None or chan.state not in _FAILABLE or chan.channel_id is None:
            continue
        reason = handle.monitor.htlc_deadline(manager.height)
        if reason is None:
            continue
        manager.events.append(f"channel {handle.key[:8]}: {reason}")
        manager.fail_channel(handle.peer_id, chan.channel_id, reason, fx)


def claim_paid_on_chain(manager: ChannelManager, fx: Effects) -> None:
    """Give the monitor of each channel gone to chain the preimages of the HTLCs on it that
    pay invoices of ours we would fulfil (checked as off chain by
    :func:`channel.payee.decide_incoming`)."""
    for handle in manager.handles.values():
        monitor, log = handle.monitor, handle.channel.log
        if monitor is None or log is None or handle.channel.state is not \
                ChannelState.FORCE_CLOSING:
            continue
        # imported only for a channel gone to chain: this runs at every block, and an idle
        # node does not load the payee (idle node RSS, see tests/integration/test_idle_footprint.py)
        from channel.payee import Fulfil, decide_incoming
        from channel.payments import FINAL_CLTV_DELTA
        known: dict[bytes, bytes] | None = None
        for entry in list(log.entries()):
            if entry.offerer is not Side.COUNTERPARTY or entry.removal is not None or \
                    entry.cltv_expiry <= manager.height or \
                    (handle.key, entry.htlc_id) in manager.forwarder.links:
                continue   # ours, settled, the peer's to take back now, or a forward
            known = monitor.known_preimages() if known is None else known
            if entry.payment_hash in known:
                continue
            key = entry.payment_hash.hex()
            # the expiry check is for accepting an HTLC; one on chain is ours to claim until
            # its cltv_expiry, so it is checked as if it had just arrived
            decision = decide_incoming(
                entry, node_secret=manager.payments.node_secret,
                payment=manager.payments.payment(key), hold=manager.payments.hold_state(key),
                height=entry.cltv_expiry - FINAL_CLTV_DELTA,
                min_final_cltv_expiry_delta=FINAL_CLTV_DELTA)
            if isinstance(decision, Fulfil):
                manager.note(handle, monitor.provide_payment_preimage(decision.preimage))
                known[entry.payment_hash] = decision.preimage
                handle.monitor_dirty = True   # the snapshot keeps the preimage
                fx.touch(handle)


def resolve_sent_on_chain(manager: ChannelManager, fx: Effects) -> None:
    """Answer our payments whose HTLC is on a channel gone to chain, once the chain decided."""
    payments = manager.payments
    for handle in manager.handles.values():
        monitor, log = handle.monitor, handle.channel.log
        if monitor is None or log is None or monitor.close_outcome is None:
            continue
        known: dict[bytes, bytes] | None = None
        for entry in list(log.entries()):
            if entry.offerer is not Side.HOLDER or entry.removal is not None or \
                    manager.forwarder.link_of_outgoing(handle.key, entry.htlc_id) is not None:
                continue   # the peer's, settled off chain, or a forward
            row = payments.payment(entry.payment_hash.hex())
            if row is None or row.direction != "out" or row.status != "pending":
                continue
            known = monitor.known_preimages() if known is None else known
            preimage = known.get(entry.payment_hash)
            state = payments.outgoing.get(entry.payment_hash)
            if preimage is not None:
                payments.on_fulfilled(handle, entry, preimage, manager.height, fx)
            elif state is not None and monitor.offered_htlc_failed(entry.htlc_id):
                payments.fail_payment(state, "the channel went to chain and the HTLC was timed "
                                             "out there: nothing was paid", fx)
