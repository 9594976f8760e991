"""The channel manager: the node's channel table and what happens to it (LDK's ChannelManager).

Pure. It takes events — a decoded message from peer X, a peer (dis)connecting, a block height or
a monitor's findings, the funding depth of a channel, a control command — and writes their
consequences into an :class:`~channel.effects.Effects`: channels and payments to persist,
messages to send, transactions to broadcast, callers to answer. It owns no socket, no file and
no clock; the block height and randomness are given to it. The node (:mod:`channel.node`)
carries the effects out; tests wire managers together in memory.

Reactions follow ``channel.errors``: a :class:`~channel.errors.PeerProtocolError` raised while
handling a peer's message leaves the caller to call :meth:`ChannelManager.fail_channel` (an
``error`` to the peer, then a force-close); a :class:`~channel.errors.RejectedUpdate` from a
local command changes nothing and is the command's answer.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitcoin.core import CTransaction

from channel.channel_basics import ChannelConfig, ChannelState
from channel.effects import (
    ChannelHandle,
    Effects,
    FundingNeeded,
    OpenResolved,
    ShutdownResolved,
)
from channel.errors import PeerProtocolError, RejectedUpdate
from channel.forwarding_flow import settle_forwards
from channel.manager_parts import ManagerParts
from channel.onchain_htlcs import (
    claim_paid_on_chain,
    fail_channels_at_deadline,
    resolve_sent_on_chain,
)
from channel.payments import Payments
from channel.pending import UNPERSISTED_STATES, check_room_for, forget_unfunded
from channel.store import ChannelRow, ForwardRow, PaymentRow
from channel.types import CommitmentFormat, OutPoint, Side

# the state machine and the BOLT 2 messages load with the first channel, peer message or
# restored channel (idle node RSS, see tests/integration/test_idle_footprint.py)
if TYPE_CHECKING:
    from channel.bolt11 import Bolt11Invoice
    from channel.forwarder import Forwarder
    from channel.messages import (
        AcceptChannel,
        ChannelReady,
        ChannelReestablish,
        ClosingSigned,
        CommitmentSigned,
        FundingCreated,
        FundingSigned,
        OpenChannel,
        RevokeAndAck,
        Shutdown,
        UpdateAddHtlc,
        UpdateFailHtlc,
        UpdateFailMalformedHtlc,
        UpdateFee,
        UpdateFulfillHtlc,
    )
    from channel.monitor import ChannelMonitor, MonitorEvent
    from channel.state import MonitorUpdate

__all__ = [
    "COMMITMENT_FEERATE_PER_KW",
    "SWEEP_FEERATE_PER_KW",
    "ChannelManager",
    "FlightRecords",
    "closes_under_way",
    "find_channel",
    "refuse_close",
    "txid_hex",
]

COMMITMENT_FEERATE_PER_KW = 1000
SWEEP_FEERATE_PER_KW = 1000
MONITOR_SNAPSHOT_EVERY = 256  # updates between two monitor snapshots (bounds replay at start)

Entropy = Callable[[int], bytes]


def txid_hex(raw_tx: bytes) -> str:
    return bytes(CTransaction.deserialize(raw_tx).GetTxid())[::-1].hex()


@dataclass(frozen=True, slots=True)
class FlightRecords:
    """The rows one flight writes, in one SQLite transaction."""

    channels: list[ChannelRow]
    monitors: list[tuple[str, dict[str, Any]]]
    monitor_updates: list[tuple[str, int, dict[str, Any]]]
    payments: list[PaymentRow]
    kv: list[tuple[str, str]]
    revealed: list[tuple[str, list[MonitorUpdate]]]   # per channel: updates for the towers
    forwards: list[ForwardRow]


def find_channel(handles: Iterable[ChannelHandle], channel: str) -> ChannelHandle:
    """The channel a person named: any unique prefix of its key or of its channel id;
    a one-line :class:`RejectedUpdate` for no match or several."""
    handles = list(handles)
    text = channel.strip().lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise RejectedUpdate(f"{channel!r} is not a channel id: give the start of a key or "
                             "channel_id shown by `channels`")
    ids = {h.key: (h.key, (h.channel.channel_id or b"").hex()) for h in handles}
    matches = [h for h in handles if any(i.startswith(text) for i in ids[h.key] if i)]
    exact = [h for h in matches if text in ids[h.key]]
    if len(exact) == 1:
        return exact[0]
    if not matches:
        raise RejectedUpdate(f"no channel starts with {text} (see `channels`)")
    if len(matches) > 1:
        raise RejectedUpdate(f"{text} is the start of {len(matches)} channels' ids "
                             f"({', '.join(h.key[:12] for h in matches)}): type more of it")
    return matches[0]


def closes_under_way(handles: Iterable[ChannelHandle]) -> list[str]:
    """Keys of the channels among ``handles`` whose cooperative close is being negotiated."""
    return [h.key for h in handles if h.channel.state in
            (ChannelState.SHUTTING_DOWN, ChannelState.NEGOTIATING_CLOSE)]


def refuse_close(handle: ChannelHandle, reason: str, fx: Effects) -> None:
    """A close under way ended without a closing tx: the ``close`` command fails at once."""
    if closes_under_way([handle]):
        fx.resolutions.append(ShutdownResolved(handle.key, "", error=reason))


class ChannelManager(ManagerParts):
    """Every channel of one node, its payments, and its reactions to peers and the chain
    (its payer, forwarder, graph and gossip: :class:`~channel.manager_parts.ManagerParts`)."""

    def __init__(self, *, node_id: bytes, config: ChannelConfig,
                 sweep_script: bytes, payments: Payments,
                 handles: Iterable[ChannelHandle] = (),
                 entropy: Entropy = secrets.token_bytes,
                 forwarder: Forwarder | None = None,
                 make_forwarder: Callable[[], Forwarder] | None = None) -> None:
        super().__init__(node_secret=payments.node_secret, forwarder=forwarder,
                         make_forwarder=make_forwarder)
        self.node_id = node_id
        self.config = config
        self.sweep_script = sweep_script
        self.payments = payments
        self.handles: dict[str, ChannelHandle] = {h.key: h for h in handles}
        self.height = 0
        self.events: list[str] = []   # what the monitors said, for `events` and narration
        self._closes_lost: list[str] = []   # closes under way when a commitment spent the funding
        self._entropy = entropy
        self.connected: set[bytes] = set()   # peers with a live connection (routes start there)
        self._add_run: ChannelHandle | None = None   # the channel in a run of peer adds

    # -- lookups -----------------------------------------------------------------------------

    def handles_of(self, peer_id: bytes) -> list[ChannelHandle]:
        return [h for h in self.handles.values() if h.peer_id == peer_id]

    def handle_for(self, peer_id: bytes, channel_id: bytes | None) -> ChannelHandle | None:
        for h in self.handles_of(peer_id):
            if channel_id in (h.channel.channel_id, h.channel.temporary_channel_id):
                return h
        return None

    def _require(self, peer_id: bytes, channel_id: bytes) -> ChannelHandle:
        handle = self.handle_for(peer_id, channel_id)
        if handle is None:
            raise PeerProtocolError(f"unknown channel {channel_id.hex()}")
        return handle

    def find(self, channel: str) -> ChannelHandle:
        """The channel a person named: any unique prefix of its key or of its channel id."""
        return find_channel(self.handles.values(), channel)

    def usable_channel(self, peer_id: bytes) -> ChannelHandle:
        for h in self.handles_of(peer_id):
            if h.channel.state is ChannelState.NORMAL:
                return h
        raise RejectedUpdate(f"no usable channel with {peer_id.hex()[:16]}…")

    def peers_wanted(self) -> set[bytes]:
        """Peers we have an open channel with (to reconnect to after a restart)."""
        return {h.peer_id for h in self.handles.values()
                if h.channel.state is not ChannelState.CLOSED}

    def awaiting_lockin(self) -> list[tuple[str, str]]:
        """(channel key, funding txid) of channels waiting for their funding depth."""
        out = []
        for h in self.handles.values():
            chan = h.channel
            if chan.state is ChannelState.AWAITING_LOCKIN and not chan.channel_ready_sent:
                assert chan.funding_outpoint is not None
                out.append((h.key, chan.funding_outpoint.txid_hex))
        return out

    # -- peers -------------------------------------------------------------------------------

    def peer_connected(self, peer_id: bytes, fx: Effects, *, gossip_queries: bool = True,
                       ) -> None:
        """BOLT 2: channel_reestablish first for every channel with this peer (BOLT 7
        ``gossip_queries``: whether both offered it, and so gossip is asked for)."""
        self.connected.add(peer_id)
        for handle in self.handles_of(peer_id):
            chan = handle.channel
            if chan.is_funded or chan.state is ChannelState.CLOSING:
                chan.on_disconnect()
                if chan.channel_id is not None and chan.log is not None:
                    fx.send(peer_id, chan.channel_reestablish())
                    fx.touch(handle)
        self.public.peer_connected(self, peer_id, fx, gossip_queries=gossip_queries)

    def peer_disconnected(self, peer_id: bytes, fx: Effects | None = None) -> None:
        """Uncommitted updates die with the connection; so do channels not yet funded (BOLT
        2: forget a channel on disconnect before funding_signed)."""
        _end_add_run(self)
        self.gossip.peer_disconnected(self.handles_of(peer_id))
        self.public.peer_disconnected(peer_id)
        self.connected.discard(peer_id)
        for handle in self.handles_of(peer_id):  # a copy: forgetting changes self.handles
            if not forget_unfunded(self.handles, handle, "the peer disconnected before the "
                                   "channel was funded", fx if fx is not None else Effects()):
                dropped = handle.channel.on_disconnect()
                if fx is not None:
                    self.payer.on_dropped(dropped, fx)

    def handle_message(self, peer_id: bytes, message: Any, fx: Effects, *,
                       fresh_script: bytes | None = None) -> None:
        """One decoded message from ``peer_id`` (``fresh_script``: for a ``shutdown``, the
        wallet script our side of the close pays to)."""
        handler = _message_handlers().get(type(message))
        if handler is not ChannelManager._on_update_add_htlc:
            _end_add_run(self)
        if handler is not None:
            handler(self, peer_id, message, fx, fresh_script)
            return
        # (idle node RSS, see tests/integration/test_idle_footprint.py)
        from channel.gossip_public import PUBLIC_GOSSIP_TYPES
        from channel.wire import ErrorMessage, WarningMessage
        if isinstance(message, PUBLIC_GOSSIP_TYPES):   # a private update comes back
            private = self.public.on_gossip(self, peer_id, message, fx)
            if private is not None:
                self.gossip.on_peer_update(self.graph, self.handles.values(), peer_id, private,
                                           fx)
        elif isinstance(message, ErrorMessage | WarningMessage):
            targets = self.handles_of(peer_id) if message.channel_id == bytes(32) else \
                [h for h in [self.handle_for(peer_id, message.channel_id)] if h is not None]
            for handle in targets:
                refuse_close(handle, f"the peer refused the close: {message.text!r}", fx)
                # BOLT 1: a warning fails nothing; an error fails the channel (an unfunded one
                # is simply forgotten: there is nothing to close on chain)
                if isinstance(message, ErrorMessage) and not forget_unfunded(
                        self.handles, handle, f"the peer refused the channel: {message.text}",
                        fx):
                    self.force_close(handle, fx)

    def end_of_batch(self, fx: Effects) -> None:
        """Updates queued while a batch was handled (a pipeline's next HTLCs) ride in the
        batch's commitment_signed."""
        _end_add_run(self)
        for handle in list(fx.touched):
            self._sign_if_needed(handle, fx)
        self.gossip.send_updates(fx.touched, self.forwarder.policy, fx)
        self.public.tick(self, fx)

    def fail_channel(self, peer_id: bytes, channel_id: bytes | None, text: str,
                     fx: Effects) -> None:
        """BOLT 2: the peer broke the protocol on a channel: ``error`` it and force-close."""
        from channel.wire import ErrorMessage  # idle node RSS
        fx.send(peer_id, ErrorMessage.with_text(channel_id or bytes(32), text[:500]))
        handle = self.handle_for(peer_id, channel_id) if channel_id else None
        if handle is not None:
            refuse_close(handle, f"the close failed: {text}", fx)
        if handle is not None and not forget_unfunded(
                self.handles, handle, f"channel failed before funding: {text}", fx):
            self.force_close(handle, fx)

    # -- opening -----------------------------------------------------------------------------

    def open_channel(self, peer_id: bytes, *, funding_sat: int, push_msat: int, anchors: bool,
                     fx: Effects, announce: bool = False) -> ChannelHandle:
        from channel.keys import ChannelKeys  # with the first channel (idle node RSS)
        from channel.state import Channel
        fmt = CommitmentFormat.ANCHORS if anchors else CommitmentFormat.STATIC_REMOTEKEY
        chan, msg = Channel.open_outbound(
            keys=ChannelKeys.from_seed(self._entropy(32)), config=self.config,
            funding_sat=funding_sat, push_msat=push_msat,
            feerate_per_kw=COMMITMENT_FEERATE_PER_KW,
            temporary_channel_id=self._entropy(32), commitment_format=fmt)
        handle = ChannelHandle(key=chan.temporary_channel_id.hex(), peer_id=peer_id, channel=chan)
        self.handles[handle.key] = handle
        if announce:   # BOLT 2 open_channel channel_flags bit 0: announce_channel
            from channel.gossip_public import ANNOUNCE_CHANNEL  # with the first announced one
            msg = dataclasses.replace(msg, channel_flags=ANNOUNCE_CHANNEL)
            self.public.mark_announced(handle.key, fx)
        fx.touch(handle)
        fx.send(peer_id, msg)
        return handle

    def _on_open_channel(self, peer_id: bytes, msg: OpenChannel, fx: Effects,
                         _: bytes | None) -> None:
        from channel.gossip_public import ANNOUNCE_CHANNEL  # a peer is connected by now
        from channel.keys import ChannelKeys  # with the first channel (idle node RSS)
        from channel.state import Channel
        check_room_for(self.handles.values(), peer_id)
        chan, reply = Channel.accept_inbound(keys=ChannelKeys.from_seed(self._entropy(32)),
                                             config=self.config, msg=msg)
        handle = ChannelHandle(key=chan.temporary_channel_id.hex(), peer_id=peer_id, channel=chan)
        self.handles[handle.key] = handle
        if msg.channel_flags & ANNOUNCE_CHANNEL:
            self.public.mark_announced(handle.key, fx)
        fx.touch(handle)
        fx.send(peer_id, reply)

    def _on_accept_channel(self, peer_id: bytes, msg: AcceptChannel, fx: Effects,
                           _: bytes | None) -> None:
        handle = self._require(peer_id, msg.temporary_channel_id)
        chan = handle.channel
        chan.on_accept_channel(msg)
        fx.funding.append(FundingNeeded(handle.key, chan.funding_script_pubkey, chan.funding_sat))

    def funded(self, key: str, *, txid: bytes, vout: int, raw_tx: bytes, fx: Effects) -> None:
        """Our wallet funded channel ``key`` (asked by :class:`FundingNeeded`)."""
        handle = self.handles[key]
        handle.funding_tx = raw_tx
        created = handle.channel.funding_created(OutPoint(txid=txid, vout=vout))
        fx.kv.append((f"funding_tx:{key}", raw_tx.hex()))
        fx.touch(handle)
        fx.send(handle.peer_id, created)

    def funding_failed(self, key: str, error: str, fx: Effects) -> None:
        """Our wallet could not fund channel ``key``: the open fails, the peer is told."""
        handle = self.handles[key]
        forget_unfunded(self.handles, handle, f"cannot fund the channel: {error}", fx)
        self.fail_channel(handle.peer_id, handle.channel.temporary_channel_id,
                          f"funding failed on our side: {error}", fx)

    def _on_funding_created(self, peer_id: bytes, msg: FundingCreated, fx: Effects,
                            _: bytes | None) -> None:
        handle = self._require(peer_id, msg.temporary_channel_id)
        reply = handle.channel.on_funding_created(msg)
        fx.touch(handle)
        fx.send(peer_id, reply)

    def _on_funding_signed(self, peer_id: bytes, msg: FundingSigned, fx: Effects,
                           _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        handle.channel.on_funding_signed(msg)
        fx.touch(handle)
        if handle.funding_tx is not None:
            fx.broadcasts.append(handle.funding_tx)
        assert handle.channel.funding_outpoint is not None
        fx.resolutions.append(OpenResolved(handle.key,
                                           handle.channel.funding_outpoint.txid_hex))
        fx.depth_checks.append(handle.key)

    def funding_depth(self, key: str, depth: int, fx: Effects) -> None:
        """The funding tx of channel ``key`` has ``depth`` confirmations."""
        chan = self.handles[key].channel
        if chan.state is not ChannelState.AWAITING_LOCKIN or chan.channel_ready_sent or \
                depth < chan.minimum_depth:
            return
        fx.touch(self.handles[key])
        fx.send(self.handles[key].peer_id, chan.funding_locked())
        self.gossip.send_updates([self.handles[key]], self.forwarder.policy, fx)

    def _on_channel_ready(self, peer_id: bytes, msg: ChannelReady, fx: Effects,
                          _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        handle.channel.on_channel_ready(msg)
        fx.touch(handle)

    # -- updates -----------------------------------------------------------------------------

    def _on_update_add_htlc(self, peer_id: bytes, msg: UpdateAddHtlc, fx: Effects,
                            _: bytes | None) -> None:
        # a run of the peer's adds: its budget is counted once for the run
        _in_add_run(self, self._require(peer_id, msg.channel_id)).channel.on_update_add_htlc(msg)

    def _on_update_fulfill_htlc(self, peer_id: bytes, msg: UpdateFulfillHtlc, fx: Effects,
                                _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        entry = handle.channel.on_update_fulfill_htlc(msg)
        fx.touch(handle)
        if handle.monitor is not None:
            self.note(handle, handle.monitor.provide_payment_preimage(msg.payment_preimage))
        if self.forwarder.outgoing_fulfilled(handle.key, entry.htlc_id, msg.payment_preimage, fx):
            settle_forwards(self, fx)   # fulfil backwards in this same flight
            return
        self.payments.on_fulfilled(handle, entry, msg.payment_preimage, self.height, fx)

    def _on_update_fail_htlc(self, peer_id: bytes, msg: UpdateFailHtlc, fx: Effects,
                             _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        entry = handle.channel.on_update_fail_htlc(msg)
        if self.forwarder.outgoing_failed(handle.key, entry.htlc_id, msg.reason, fx):
            return   # failed upstream once this failure is committed
        fx.touch(handle)
        self.payer.on_failed(handle, entry, fx, reason=msg.reason)

    def _on_update_fail_malformed_htlc(self, peer_id: bytes, msg: UpdateFailMalformedHtlc,
                                       fx: Effects, _: bytes | None) -> None:
        if not msg.failure_code & 0x8000:  # BOLT 2: fail the channel
            raise PeerProtocolError(f"update_fail_malformed_htlc code {msg.failure_code:#06x}")
        from channel.messages import UpdateFailHtlc  # loaded by the message decoded
        handle = self._require(peer_id, msg.channel_id)
        entry = handle.channel.on_update_fail_htlc(UpdateFailHtlc(
            channel_id=msg.channel_id, id=msg.id, reason=b"malformed onion"))
        if self.forwarder.outgoing_malformed(handle.key, entry.htlc_id, msg.failure_code,
                                             msg.sha256_of_onion, fx):
            return
        fx.touch(handle)
        self.payer.on_failed(handle, entry, fx, malformed=(msg.failure_code, msg.sha256_of_onion))

    def _on_update_fee(self, peer_id: bytes, msg: UpdateFee, fx: Effects,
                       _: bytes | None) -> None:
        self._require(peer_id, msg.channel_id).channel.on_update_fee(msg)

    def _on_commitment_signed(self, peer_id: bytes, msg: CommitmentSigned, fx: Effects,
                              _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        reply = handle.channel.on_commitment_signed(msg)   # a fault raises: nothing changed
        fx.touch(handle)
        fx.send(peer_id, reply)
        settle_forwards(self, fx, handle)
        self._sign_if_needed(handle, fx)

    def _on_revoke_and_ack(self, peer_id: bytes, msg: RevokeAndAck, fx: Effects,
                           _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        handle.channel.on_revoke_and_ack(msg)
        fx.touch(handle)
        settle_forwards(self, fx, handle)
        self._sign_if_needed(handle, fx)
        self._maybe_negotiate_close(handle, fx)

    def _on_channel_reestablish(self, peer_id: bytes, msg: ChannelReestablish, fx: Effects,
                                _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        replies = handle.channel.on_channel_reestablish(msg)
        fx.touch(handle)
        for out in replies:
            fx.send(peer_id, out)
        settle_forwards(self, fx, handle)
        self._sign_if_needed(handle, fx)
        self._maybe_negotiate_close(handle, fx)

    def _sign_if_needed(self, handle: ChannelHandle, fx: Effects) -> None:
        if handle.channel.can_sign():
            fx.send(handle.peer_id, handle.channel.sign_commitment())

    # -- payments (local commands) -----------------------------------------------------------

    def pay(self, decoded: list[Bolt11Invoice], fx: Effects) -> list[dict[str, Any] | None]:
        """Start paying invoices, each over the channel or route that can carry it (HTLCs to
        one peer go out in one ``commitment_signed``); per invoice, its failure now or None."""
        outcomes = self.payer.pay(decoded, fx)
        for handle in list(fx.touched):
            self._sign_if_needed(handle, fx)
        return outcomes

    def retry_payments(self, payment_hashes: list[bytes], fx: Effects) -> None:
        """Next routes for payments whose route failed (``Effects.retries``), signed."""
        for payment_hash in payment_hashes:
            self.payer.retry(payment_hash, fx)
        for handle in list(fx.touched):
            self._sign_if_needed(handle, fx)

    def start_pipeline(self, decoded: list[Bolt11Invoice], batch_size: int,
                       fx: Effects) -> ChannelHandle:
        """Pay ``decoded`` (one payee) in batches of ``batch_size``, one batch in flight."""
        if not decoded or any(inv.payee_node_id != decoded[0].payee_node_id
                              for inv in decoded):
            raise RejectedUpdate("a pipeline pays one peer at least one invoice")
        handle = self.usable_channel(decoded[0].payee_node_id)
        self.payments.start_pipeline(handle, decoded, batch_size, self.height, fx)
        self._sign_if_needed(handle, fx)
        return handle

    def release_hold(self, payment_hash: str, decision: str, fx: Effects) -> None:
        """``settle`` or ``cancel`` a hold invoice (its HTLCs: :meth:`settle_held`)."""
        if self.payments.hold_state(payment_hash) != "hold":
            raise RejectedUpdate(f"no held invoice with payment hash {payment_hash[:16]}…")
        self.payments.set_hold(payment_hash, decision, fx)
        claim_paid_on_chain(self, fx)   # its HTLCs on a channel gone to chain (BOLT 5)

    def holding(self, payment_hash: str) -> list[ChannelHandle]:
        """Open channels with HTLCs paying ``payment_hash`` ready to be settled now."""
        return [h for h in self.handles.values()
                if h.channel.log is not None and h.channel.state is ChannelState.NORMAL and
                any(e.payment_hash.hex() == payment_hash for e in h.channel.htlcs_to_settle())]

    def settle_held(self, handle: ChannelHandle, fx: Effects) -> None:
        fx.touch(handle)
        settle_forwards(self, fx, handle)
        self._sign_if_needed(handle, fx)

    def update_fee(self, handle: ChannelHandle, feerate_per_kw: int, fx: Effects) -> None:
        fx.touch(handle)
        fx.send(handle.peer_id, handle.channel.update_fee(feerate_per_kw))
        self._sign_if_needed(handle, fx)

    # -- closing -----------------------------------------------------------------------------

    def close(self, handle: ChannelHandle, script: bytes, fx: Effects) -> None:
        """Start a cooperative close paying our side to ``script``."""
        fx.touch(handle)
        fx.send(handle.peer_id, handle.channel.shutdown(script))
        self._maybe_negotiate_close(handle, fx)

    def _on_shutdown(self, peer_id: bytes, msg: Shutdown, fx: Effects,
                     fresh_script: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        reply = handle.channel.on_shutdown(msg, fresh_script or self.sweep_script)
        fx.touch(handle)
        if reply is not None:
            fx.send(peer_id, reply)
        self._sign_if_needed(handle, fx)
        self._maybe_negotiate_close(handle, fx)

    def _on_closing_signed(self, peer_id: bytes, msg: ClosingSigned, fx: Effects,
                           _: bytes | None) -> None:
        handle = self._require(peer_id, msg.channel_id)
        reply, final = handle.channel.on_closing_signed(msg)
        fx.touch(handle)
        if reply is not None:
            fx.send(peer_id, reply)
        if final is not None:
            fx.broadcasts.append(final.serialize())
            fx.resolutions.append(ShutdownResolved(handle.key, final.GetTxid()[::-1].hex()))

    def _maybe_negotiate_close(self, handle: ChannelHandle, fx: Effects) -> None:
        chan = handle.channel
        if chan.counterparty_shutdown_script is not None and \
                chan.holder_shutdown_script is None and not chan.has_unsigned_changes() and \
                chan.state is ChannelState.SHUTTING_DOWN:
            # the peer's shutdown arrived while our updates were unsigned: answer it now
            fx.send(handle.peer_id, chan.shutdown(self.sweep_script))
        if chan.opener is Side.HOLDER and chan.ready_to_negotiate_close() and \
                chan.state is ChannelState.SHUTTING_DOWN:
            fx.send(handle.peer_id, chan.propose_closing())

    def force_close(self, handle: ChannelHandle, fx: Effects) -> str | None:
        """Broadcast our latest commitment; its txid, or None when there is none to send."""
        chan = handle.channel
        fx.touch(handle)
        if chan.lost_state:
            # the peer proved our state stale: ours would forfeit the channel; wait for theirs
            chan.await_peer_commitment()
            return None
        if chan.state in (ChannelState.CLOSED, ChannelState.CLOSING) or \
                not chan.holder_commitment_signature:
            chan.fail_channel()
            return None
        if chan.state is ChannelState.FORCE_CLOSING and chan.closing_tx is not None:
            return txid_hex(chan.closing_tx)
        raw = chan.force_close().commitment_tx.serialize()
        chan.record_force_close(raw)
        fx.broadcasts.append(raw)
        return txid_hex(raw)

    # -- the chain (through the channels' monitors) ------------------------------------------

    def note(self, handle: ChannelHandle, events: list[MonitorEvent]) -> None:
        """Record what a monitor decided, and follow the channel's state from the chain."""
        from channel import monitor as mon  # loaded with the first channel: idle node RSS
        chan = handle.channel
        for event in events:
            self.events.append(f"channel {handle.key[:8]}: {event.description}")
            if isinstance(event, mon.FundingSpent):
                closed_by = event.outcome.kind
                if closed_by is not mon.CloseKind.COOPERATIVE and closes_under_way([handle]):
                    self._closes_lost.append(handle.key)
                chan.on_funding_spent()
            if isinstance(event, mon.ChannelResolved):
                chan.on_resolved()
            if isinstance(event, mon.ClaimRequested | mon.ClaimConfirmed):
                handle.monitor_dirty = True
        if events:
            handle.monitor_dirty = True

    def live_monitors(self) -> list[tuple[ChannelHandle, ChannelMonitor]]:
        return [(h, h.monitor) for h in self.handles.values()
                if h.monitor is not None and not h.monitor.is_resolved]

    def block_connected(self, height: int, txs: list[CTransaction], *, reorg: bool) -> None:
        """A block at ``height`` (``reorg``: it replaces the block we had there)."""
        self.height = height
        if self.public_if_built is not None:   # else it knows no funding output to forget
            self.public_if_built.block_connected(txs)
        for handle, monitor in self.live_monitors():
            if reorg:
                self.note(handle, monitor.block_disconnected(height))
            self.note(handle, monitor.block_connected(height, txs))

    def transaction_seen(self, tx: CTransaction) -> None:
        """A transaction in the mempool."""
        for handle, monitor in self.live_monitors():
            self.note(handle, monitor.transaction_seen(tx, None))

    def dirty_monitors(self, fx: Effects) -> None:
        """Persist the channels whose monitors the chain changed; a close under way that a
        commitment on chain ended fails its ``close`` command now."""
        for key in self._closes_lost:
            fx.resolutions.append(ShutdownResolved(key, "", error=(
                "a commitment spent the channel during the close negotiation (a force close): "
                "the funds follow it on chain, see `claimable`")))
        self._closes_lost.clear()
        for handle in self.handles.values():
            if handle.monitor_dirty:
                fx.touch(handle)
        if self.public_if_built is not None:   # a block: announcement depth, spent funding
            self.public_if_built.tick(self, fx)
        fail_channels_at_deadline(self, fx)   # BOLT 2: HTLCs past their deadline go on chain
        claim_paid_on_chain(self, fx)
        resolve_sent_on_chain(self, fx)
        if self.handles:   # a preimage learnt on chain downstream goes up (BOLT 5)
            settle_forwards(self, fx)
        for handle in list(fx.touched):   # a fulfil or fail sent upstream is signed at once
            self._sign_if_needed(handle, fx)

    # -- persistence -------------------------------------------------------------------------

    def flight_records(self, fx: Effects) -> FlightRecords:
        """The rows that make ``fx`` durable; monitors take the channels' updates here."""
        return _flight_records(self, fx)


_HANDLERS: dict[type, Callable[[ChannelManager, bytes, Any, Effects, bytes | None], None]] = {}


def _message_handlers() -> dict[type, Callable[[ChannelManager, bytes, Any, Effects,
                                                bytes | None], None]]:
    """The manager's handler of each BOLT 2 message class, its ``_on_<message name>``, built
    on the first message (the classes' module loads then: idle node RSS, see
    tests/integration/test_idle_footprint.py)."""
    if not _HANDLERS:
        from channel.messages import BOLT2_MESSAGES  # loaded by the decoder: a dict lookup
        _HANDLERS.update({cls: getattr(ChannelManager, f"_on_{cls.NAME}")
                          for cls in BOLT2_MESSAGES.values()})
    return _HANDLERS


def _in_add_run(manager: ChannelManager, handle: ChannelHandle) -> ChannelHandle:
    """``handle``, in the run of its peer's adds (a new run if another was open)."""
    if manager._add_run is not handle:
        _end_add_run(manager)
        handle.channel.peer_adds_begin()
        manager._add_run = handle
    return handle


def _end_add_run(manager: ChannelManager) -> None:
    """End the run of a peer's adds, if one is open (see ``ChannelCore.peer_adds_begin``)."""
    if manager._add_run is not None:
        manager._add_run.channel.peer_adds_end()
        manager._add_run = None


def _flight_records(manager: ChannelManager, fx: Effects) -> FlightRecords:
    """The rows that make ``fx`` durable; monitors take the channels' updates here."""
    # a touched channel loaded the state machine already: a dict lookup (idle node RSS)
    from channel.state import channel_to_record, monitor_update_to_record
    # a channel before funding_created has nothing to lose: a stranger's open_channel
    # costs the database nothing
    rows = [ChannelRow(key=h.key, peer_id=h.peer_id.hex(),
                       record=channel_to_record(h.channel)) for h in fx.touched
            if h.channel.state not in UNPERSISTED_STATES]
    snapshots: list[tuple[str, dict[str, Any]]] = []
    update_rows: list[tuple[str, int, dict[str, Any]]] = []
    revealed: list[tuple[str, list[MonitorUpdate]]] = []
    for h in fx.touched:
        updates = h.channel.drain_monitor_updates()
        chan = h.channel
        if h.monitor is None and chan.funding_outpoint is not None and \
                chan.counterparty_params is not None:
            from channel.monitor import ChannelMonitor  # with the first channel only
            h.monitor = ChannelMonitor.from_channel(
                chan, manager.sweep_script, SWEEP_FEERATE_PER_KW,
                peer_name=f"peer {h.peer_id.hex()[:8]}")
            h.monitor_dirty = True
        if h.monitor is None:
            continue
        manager.note(h, h.monitor.apply_updates(updates))
        revealed.append((h.key, updates))
        # a snapshot costs O(revoked states): take one only after as many updates, so
        # persistence stays amortised O(1) per update on a long-lived channel
        threshold = max(MONITOR_SNAPSHOT_EVERY, h.monitor.revoked_state_count)
        if h.monitor_dirty or h.monitor_seq + len(updates) > threshold:
            snapshots.append((h.key, h.monitor.to_record()))
            h.monitor_seq = 0
            h.monitor_dirty = False
        else:
            for update in updates:
                update_rows.append((h.key, h.monitor_seq, monitor_update_to_record(update)))
                h.monitor_seq += 1
    return FlightRecords(channels=rows, monitors=snapshots, monitor_updates=update_rows,
                         payments=fx.payments, kv=fx.kv, revealed=revealed,
                         forwards=fx.forwards)
