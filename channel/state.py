"""The channel state machine: BOLT 2 messages in, BOLT 2 messages and monitor updates out.

Pure. A :class:`Channel` never touches a socket, a disk or the chain. Its caller (the node's
peer loop) feeds it the peer's messages and its own user's requests; each method either returns
the messages to send, or raises an exception from ``channel.errors`` whose class says what to do
(``RejectedUpdate``: refuse the request, the channel goes on; ``PeerProtocolError``: send
``error`` and fail the channel). A method that raises leaves the channel exactly as it was.

Every state change the peer may rely on must be durable before the messages that announce it
are sent: the caller persists :meth:`Channel.to_record` (and drains :attr:`Channel.monitor_updates`
into the same write) between a call and the sending of what it returned.

Roles follow LDK: ``Side.HOLDER`` is us, ``Side.COUNTERPARTY`` the peer. Commitment numbers count
up from 0 for each side's chain of commitments (``holder_commitment_number``,
``counterparty_commitment_number``); the shachain index is ``2**48 - 1 - number``.

A whole HTLC life cycle, as seen from the offerer A (B is the peer)::

    A: add_htlc()          -> update_add_htlc          (scheduled into B's next commitment)
    A: sign_commitment()   -> commitment_signed        (B's commitment n+1 now has the HTLC)
    B: on_commitment_signed ... -> revoke_and_ack      (B revokes n; A's add is irrevocable)
    B: sign_commitment()   -> commitment_signed        (A's commitment m+1 gets the HTLC)
    A: on_commitment_signed ... -> revoke_and_ack      (both sides now hold it)
    B: fulfill_htlc()      -> update_fulfill_htlc      ... and the same two round trips.

The update bookkeeping lives in :mod:`channel.htlc_log`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from channel.add_budget import check_fee_spike_buffer, peer_add_budget
from channel.channel_close import ChannelClosing
from channel.channel_core import ChannelState, ForceCloseTransactions
from channel.channel_params import (
    ChannelConfig,
    channel_type_bytes,
)
from channel.channel_record import channel_fields_from_record, channel_to_record
from channel.errors import (
    InvalidRevocation,
    LostState,
    PeerProtocolError,
    PeerWarning,
    RejectedUpdate,
    UnexpectedMessage,
)
from channel.htlc_log import FeeUpdate, HtlcEntry, Removal
from channel.keys import PerCommitmentPoint, per_commitment_point_from_secret
from channel.messages import (
    ChannelReestablish,
    CommitmentSigned,
    RevokeAndAck,
    Shutdown,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFailMalformedHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
)
from channel.records import (
    CounterpartyCommitmentSigned,
    CounterpartySecretRevealed,
    HolderCommitmentSigned,
    MonitorUpdate,
    PartyParams,
    monitor_update_from_record,
    monitor_update_to_record,
)
from channel.transactions import build_htlc_transactions, sign_commitment
from channel.types import Side
from channel.validation import (
    check_channel_reestablish,
    check_our_update_fee,
    check_peer_update_fee,
    check_reestablished,
)

# The records, parameters and codecs moved to their own modules stay importable from here.
__all__ = [
    "MALFORMED_MARK",
    "Channel",
    "ChannelConfig",
    "ChannelState",
    "CounterpartyCommitmentSigned",
    "CounterpartySecretRevealed",
    "ForceCloseTransactions",
    "HolderCommitmentSigned",
    "MonitorUpdate",
    "PartyParams",
    "channel_from_record",
    "channel_to_record",
    "channel_type_bytes",
    "monitor_update_from_record",
    "monitor_update_to_record",
]

ZERO_SECRET = bytes(32)
#: How the HTLC log keeps an ``update_fail_malformed_htlc`` (then u16 code, sha256_of_onion):
#: an encrypted failure onion is at least 292 bytes of HMAC'd data and cannot start so.
MALFORMED_MARK = b"chanlab:update_fail_malformed_htlc:"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def channel_from_record(rec: dict[str, Any]) -> Channel:
    """The inverse of :func:`channel_to_record`."""
    return Channel(**channel_fields_from_record(rec))


class Channel(ChannelClosing):
    """One channel's state machine (mutable: its fields are the channel's durable state).

    Build one with :meth:`open_outbound` or :meth:`accept_inbound`; restore one with
    :func:`channel_from_record`. Only the methods documented here and in the classes it builds
    on (:mod:`channel.channel_open`, :mod:`channel.channel_close`) change it.
    """

    __slots__ = ()

    # -- updates (BOLT 2 "Normal Operation") -------------------------------------------------

    def _check_add(self, side: Side, amount_msat: int, cltv_expiry: int,
                   error: type[RejectedUpdate] | type[PeerProtocolError]) -> None:
        """BOLT 2 update_add_htlc requirements, for an HTLC ``side`` offers."""
        receiver = self.holder_params if side is Side.COUNTERPARTY else self._peer
        if self.state is not ChannelState.NORMAL:
            raise error(f"cannot add an HTLC in state {self.state.value}")
        if amount_msat <= 0 or amount_msat < receiver.htlc_minimum_msat:
            raise error(f"amount_msat {amount_msat} below htlc_minimum_msat "
                        f"{receiver.htlc_minimum_msat}")
        if not 0 < cltv_expiry < 500_000_000:
            raise error(f"cltv_expiry {cltv_expiry} is not a block height")
        # An HTLC counts until it is gone from both commitments (pruned), not just removed:
        # until then the receiver's next commitment may still hold it next to the new one.
        offered, offered_msat, spendable = self._add_budget(side) if side is Side.HOLDER \
            else peer_add_budget(self)      # the peer may not have seen all we have
        if offered + 1 > receiver.max_accepted_htlcs:
            raise error(f"more than max_accepted_htlcs={receiver.max_accepted_htlcs} HTLCs")
        in_flight = offered_msat + amount_msat
        if in_flight > receiver.max_htlc_value_in_flight_msat:
            raise error(f"{in_flight} msat in flight exceeds max_htlc_value_in_flight_msat")
        if amount_msat > spendable:
            raise error(f"amount_msat {amount_msat} exceeds the {max(spendable, 0)} msat the "
                        f"{'peer' if side is Side.COUNTERPARTY else 'channel'} can spend")
        if side is Side.HOLDER:   # the budget just computed: one pass over the log per add
            check_fee_spike_buffer(self, amount_msat, holder_spendable_msat=spendable)

    def add_htlc(self, *, amount_msat: int, payment_hash: bytes, cltv_expiry: int,
                 onion_routing_packet: bytes) -> UpdateAddHtlc:
        """Offer an HTLC to the peer (raises ``RejectedUpdate`` if we cannot)."""
        if len(payment_hash) != 32 or len(onion_routing_packet) != 1366:
            raise RejectedUpdate("payment_hash must be 32 bytes and the onion 1366 bytes")
        check_reestablished(self, ours=True)
        self._check_add(Side.HOLDER, amount_msat, cltv_expiry, RejectedUpdate)
        log = self._log
        htlc_id = log.next_htlc_id[Side.HOLDER]
        entry = HtlcEntry(offerer=Side.HOLDER, htlc_id=htlc_id, amount_msat=amount_msat,
                          payment_hash=payment_hash, cltv_expiry=cltv_expiry,
                          onion_routing_packet=onion_routing_packet)
        entry.added_at[Side.COUNTERPARTY] = self.counterparty_commitment_number + 1
        log.htlcs[(Side.HOLDER, htlc_id)] = entry
        log.next_htlc_id[Side.HOLDER] = htlc_id + 1
        self._note_holder_add(amount_msat)
        return self._add_message(entry)

    def _add_message(self, entry: HtlcEntry) -> UpdateAddHtlc:
        assert self.channel_id is not None
        return UpdateAddHtlc(channel_id=self.channel_id, id=entry.htlc_id,
                             amount_msat=entry.amount_msat, payment_hash=entry.payment_hash,
                             cltv_expiry=entry.cltv_expiry,
                             onion_routing_packet=entry.onion_routing_packet)

    def on_update_add_htlc(self, msg: UpdateAddHtlc) -> HtlcEntry:
        """The peer offers us an HTLC."""
        check_reestablished(self, ours=False)
        log = self._log
        expected = log.next_htlc_id[Side.COUNTERPARTY]
        if msg.id != expected:
            raise PeerProtocolError(f"update_add_htlc id {msg.id}, expected {expected}")
        self._check_add(Side.COUNTERPARTY, msg.amount_msat, msg.cltv_expiry, PeerProtocolError)
        entry = HtlcEntry(offerer=Side.COUNTERPARTY, htlc_id=msg.id, amount_msat=msg.amount_msat,
                          payment_hash=msg.payment_hash, cltv_expiry=msg.cltv_expiry,
                          onion_routing_packet=msg.onion_routing_packet)
        entry.added_at[Side.HOLDER] = self.holder_commitment_number + 1
        log.htlcs[(Side.COUNTERPARTY, msg.id)] = entry
        log.next_htlc_id[Side.COUNTERPARTY] = msg.id + 1
        self._note_peer_add(msg.amount_msat)
        return entry

    def _removable(self, offerer: Side, htlc_id: int,
                   error: type[RejectedUpdate] | type[PeerProtocolError]) -> HtlcEntry:
        entry = self._log.htlcs.get((offerer, htlc_id))
        if entry is None:
            raise error(f"unknown HTLC id {htlc_id}")
        if entry.removal is not None:
            raise error(f"HTLC {htlc_id} is already {entry.removal.value}")
        if not self._irrevocably_committed(entry):
            raise error(f"HTLC {htlc_id} is not irrevocably committed yet")
        return entry

    def fulfill_htlc(self, htlc_id: int, payment_preimage: bytes) -> UpdateFulfillHtlc:
        """Claim an HTLC the peer offered us with its preimage."""
        check_reestablished(self, ours=True)
        entry = self._removable(Side.COUNTERPARTY, htlc_id, RejectedUpdate)
        if _sha256(payment_preimage) != entry.payment_hash:
            raise RejectedUpdate(f"preimage does not match HTLC {htlc_id}'s payment_hash")
        entry.removal = Removal.FULFILLED
        entry.payment_preimage = payment_preimage
        entry.removed_at[Side.COUNTERPARTY] = self.counterparty_commitment_number + 1
        assert self.channel_id is not None
        return UpdateFulfillHtlc(channel_id=self.channel_id, id=htlc_id,
                                 payment_preimage=payment_preimage)

    def fail_htlc(self, htlc_id: int, reason: bytes) -> UpdateFailHtlc:
        """Refuse an HTLC the peer offered us."""
        check_reestablished(self, ours=True)
        entry = self._removable(Side.COUNTERPARTY, htlc_id, RejectedUpdate)
        entry.removal = Removal.FAILED
        entry.fail_reason = reason
        entry.removed_at[Side.COUNTERPARTY] = self.counterparty_commitment_number + 1
        assert self.channel_id is not None
        return UpdateFailHtlc(channel_id=self.channel_id, id=htlc_id, reason=reason)

    def fail_malformed_htlc(self, htlc_id: int, sha256_of_onion: bytes,
                            failure_code: int) -> UpdateFailMalformedHtlc:
        """Refuse an HTLC whose onion we could not peel (BOLT 2 ``update_fail_malformed_htlc``:
        no shared secret, so no encrypted reason; the log keeps it under ``MALFORMED_MARK``)."""
        check_reestablished(self, ours=True)
        entry = self._removable(Side.COUNTERPARTY, htlc_id, RejectedUpdate)
        entry.removal = Removal.FAILED
        entry.fail_reason = MALFORMED_MARK + failure_code.to_bytes(2, "big") + sha256_of_onion
        entry.removed_at[Side.COUNTERPARTY] = self.counterparty_commitment_number + 1
        assert self.channel_id is not None
        return UpdateFailMalformedHtlc(channel_id=self.channel_id, id=htlc_id,
                                       sha256_of_onion=sha256_of_onion,
                                       failure_code=failure_code)

    def on_update_fulfill_htlc(self, msg: UpdateFulfillHtlc) -> HtlcEntry:
        """The peer claims an HTLC we offered: the payment succeeded (we learn the preimage)."""
        check_reestablished(self, ours=False)
        entry = self._removable(Side.HOLDER, msg.id, PeerProtocolError)
        if _sha256(msg.payment_preimage) != entry.payment_hash:
            raise PeerProtocolError(f"update_fulfill_htlc {msg.id}: preimage does not match")
        entry.removal = Removal.FULFILLED
        entry.payment_preimage = msg.payment_preimage
        entry.removed_at[Side.HOLDER] = self.holder_commitment_number + 1
        return entry

    def on_update_fail_htlc(self, msg: UpdateFailHtlc) -> HtlcEntry:
        """The peer refused an HTLC we offered."""
        check_reestablished(self, ours=False)
        entry = self._removable(Side.HOLDER, msg.id, PeerProtocolError)
        entry.removal = Removal.FAILED
        entry.fail_reason = msg.reason
        entry.removed_at[Side.HOLDER] = self.holder_commitment_number + 1
        return entry

    def update_fee(self, feerate_per_kw: int) -> UpdateFee:
        """Change the commitment feerate (opener only)."""
        if self.opener is not Side.HOLDER:
            raise RejectedUpdate("only the opener may send update_fee")
        check_reestablished(self, ours=True)
        if self.state is not ChannelState.NORMAL:
            raise RejectedUpdate(f"cannot change the fee in state {self.state.value}")
        check_our_update_fee(feerate_per_kw)
        update = FeeUpdate(feerate_per_kw=feerate_per_kw)
        update.included_at[Side.COUNTERPARTY] = self.counterparty_commitment_number + 1
        self._log.fee_updates.append(update)
        if self._spendable_msat(Side.HOLDER) < 0:
            self._log.fee_updates.pop()
            raise RejectedUpdate("we cannot afford that feerate")
        assert self.channel_id is not None
        return UpdateFee(channel_id=self.channel_id, feerate_per_kw=feerate_per_kw)

    def on_update_fee(self, msg: UpdateFee) -> None:
        """The opener changes the feerate."""
        if self.opener is not Side.COUNTERPARTY:
            raise PeerProtocolError("update_fee from the non-opener")
        check_reestablished(self, ours=False)
        check_peer_update_fee(msg.feerate_per_kw)
        # counted as the opener saw the channel: an HTLC of ours may cross its update_fee
        if peer_add_budget(self, feerate_per_kw=msg.feerate_per_kw, new_htlcs=0)[2] < 0:
            raise PeerWarning(f"update_fee refused: the opener cannot afford "
                              f"{msg.feerate_per_kw} sat/kw with the HTLCs in flight")
        update = FeeUpdate(feerate_per_kw=msg.feerate_per_kw)
        update.included_at[Side.HOLDER] = self.holder_commitment_number + 1
        self._log.fee_updates.append(update)

    # -- commitment_signed / revoke_and_ack ----------------------------------------------------

    def sign_commitment(self) -> CommitmentSigned:
        """Sign the peer's next commitment with every update it should now hold."""
        if self.awaiting_revoke_and_ack:
            raise RejectedUpdate("waiting for revoke_and_ack before signing again")
        check_reestablished(self, ours=True)
        if self.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
            raise RejectedUpdate(f"cannot sign in state {self.state.value}")
        if not self.has_unsigned_changes():
            # BOLT 2: a commitment_signed must include at least one update
            raise RejectedUpdate("nothing to sign: no update since the last commitment_signed")
        number = self.counterparty_commitment_number + 1
        msg = self._signed_commitment(number)
        self.counterparty_commitment_number = number
        self.awaiting_revoke_and_ack = True
        self.commitment_signed_sent_last = True
        # a removal we signed can no longer be undone by a disconnection, so the onion of the
        # HTLC it removes will never be peeled again: stop carrying 1366 bytes per HTLC
        for h in self._log.entries():
            removed = h.removed_at[Side.COUNTERPARTY]
            if h.offerer is Side.COUNTERPARTY and removed is not None and removed <= number:
                h.onion_routing_packet = b""
        return msg

    def _signed_commitment(self, number: int, record: bool = True) -> CommitmentSigned:
        ctx = self._commitment(Side.COUNTERPARTY, number)
        signature = sign_commitment(ctx, self.keys.funding_key)
        htlc_key = self.keys.htlc_privkey(ctx.keys.per_commitment_point)
        htlc_signatures = tuple(htlc_key.sign(tx.countersignatory_sighash())
                                for tx in build_htlc_transactions(ctx))
        if record:
            self._record_counterparty_commitment(ctx)
        assert self.channel_id is not None
        return CommitmentSigned(channel_id=self.channel_id, signature=signature,
                                htlc_signature=htlc_signatures,
                                funding_txid=self.funding_outpoint.txid
                                if self.funding_outpoint else None)

    def on_commitment_signed(self, msg: CommitmentSigned) -> RevokeAndAck:
        """The peer signed our next commitment: check it, then revoke our previous one."""
        if self.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
            raise UnexpectedMessage(f"commitment_signed in state {self.state.value}")
        check_reestablished(self, ours=False)
        number = self.holder_commitment_number + 1
        self._check_holder_commitment(number, msg.signature, msg.htlc_signature)
        self.holder_commitment_number = number
        self._log.schedule_acked(sender=Side.COUNTERPARTY, acked_by=Side.HOLDER,
                                 acked_up_to=number,
                                 into_number=self.counterparty_commitment_number + 1)
        self.commitment_signed_sent_last = False
        self._prune()
        return self._revoke_and_ack()

    def _revoke_and_ack(self) -> RevokeAndAck:
        number = self.holder_commitment_number
        assert self.channel_id is not None
        next_point = self.keys.per_commitment_point(number + 1)
        return RevokeAndAck(channel_id=self.channel_id,
                            per_commitment_secret=self.keys.per_commitment_secret(number - 1),
                            next_per_commitment_point=next_point.data)

    def on_revoke_and_ack(self, msg: RevokeAndAck) -> None:
        """The peer revoked its previous commitment."""
        check_reestablished(self, ours=False)
        if not self.awaiting_revoke_and_ack:
            raise UnexpectedMessage("revoke_and_ack without a commitment_signed to answer")
        revoked = self.counterparty_commitment_number - 1
        try:
            point = per_commitment_point_from_secret(msg.per_commitment_secret)
        except ValueError as exc:
            raise InvalidRevocation(f"per_commitment_secret is not a valid key: {exc}") from exc
        if point != self._point(Side.COUNTERPARTY, revoked):
            raise InvalidRevocation(f"per_commitment_secret does not match commitment {revoked}")
        try:
            next_point = PerCommitmentPoint(msg.next_per_commitment_point)
        except ValueError as exc:
            raise PeerProtocolError(f"invalid next_per_commitment_point: {exc}") from exc
        secrets = self.counterparty_secrets.copy()
        secrets.add_secret_for_commitment(revoked, msg.per_commitment_secret)  # may raise
        self.counterparty_secrets = secrets
        self.awaiting_revoke_and_ack = False
        self.counterparty_points[self.counterparty_commitment_number + 1] = next_point
        for n in [n for n in self.counterparty_points if n < revoked]:
            del self.counterparty_points[n]
        self._log.schedule_acked(sender=Side.HOLDER, acked_by=Side.COUNTERPARTY,
                                 acked_up_to=self.counterparty_commitment_number,
                                 into_number=self.holder_commitment_number + 1)
        # the peer revoked after receiving our adds: they are never retransmitted again
        for h in self._log.entries():
            added = h.added_at[Side.COUNTERPARTY]
            if h.offerer is Side.HOLDER and added is not None and \
                    added <= self.counterparty_commitment_number:
                h.onion_routing_packet = b""
        self.monitor_updates.append(CounterpartySecretRevealed(
            commitment_number=revoked, per_commitment_secret=msg.per_commitment_secret))
        self._prune()

    def _prune(self) -> list[HtlcEntry]:
        oldest_remote = self.counterparty_commitment_number - int(self.awaiting_revoke_and_ack)
        return self._log.prune(self.holder_commitment_number, oldest_remote)

    def drain_monitor_updates(self) -> list[MonitorUpdate]:
        """Hand the pending monitor updates to the caller (who persists them with the channel)."""
        updates, self.monitor_updates = self.monitor_updates, []
        return updates

    # -- reconnection (BOLT 2 "Message Retransmission") ----------------------------------------

    def on_disconnect(self) -> list[HtlcEntry]:
        """Forget updates that no commitment_signed covers; returns our dropped HTLCs.

        A closing fee negotiation in progress restarts after the reconnection (BOLT 2).
        """
        self.peer_adds_end()
        if self.state is ChannelState.NEGOTIATING_CLOSE:
            self.state = ChannelState.SHUTTING_DOWN
            self.closing_fee_sent_sat = None
        if self.log is None or not self.is_funded:
            return []
        self.reestablish_pending = True
        return self._log.drop_unsigned(self.holder_commitment_number,
                                       self.counterparty_commitment_number)

    def channel_reestablish(self) -> ChannelReestablish:
        """The first message for this channel after a (re)connection."""
        assert self.channel_id is not None
        received = self.counterparty_commitment_number - int(self.awaiting_revoke_and_ack)
        last_secret = ZERO_SECRET
        if received > 0:
            last_secret = self.counterparty_secrets.get_secret_for_commitment(received - 1) or \
                ZERO_SECRET
        return ChannelReestablish(
            channel_id=self.channel_id, next_commitment_number=self.holder_commitment_number + 1,
            next_revocation_number=received, your_last_per_commitment_secret=last_secret,
            my_current_per_commitment_point=self.keys.per_commitment_point(
                self.holder_commitment_number).data)

    def on_channel_reestablish(self, msg: ChannelReestablish) -> list[Any]:
        """What to retransmit, in the original order, after the peer's ``channel_reestablish``."""
        out: list[Any] = []
        if msg.channel_id != self.channel_id:
            raise PeerProtocolError("channel_reestablish for another channel_id")
        check_channel_reestablish(msg)
        # Did the peer get our last revoke_and_ack?
        resend_revoke = False
        if msg.next_revocation_number == self.holder_commitment_number - 1:
            resend_revoke = True
        elif msg.next_revocation_number != self.holder_commitment_number:
            if msg.next_revocation_number > self.holder_commitment_number and \
                    msg.your_last_per_commitment_secret != ZERO_SECRET:
                # only a secret we never revealed (as far as we know) proves we are behind
                if msg.your_last_per_commitment_secret != \
                        self.keys.per_commitment_secret(msg.next_revocation_number - 1):
                    raise InvalidRevocation("your_last_per_commitment_secret is not ours")
                self.lost_state = True
                raise LostState(
                    "the peer proves we lost state: we must not broadcast our commitment")
            raise PeerProtocolError(
                f"next_revocation_number {msg.next_revocation_number}, our commitment is "
                f"{self.holder_commitment_number}")
        # Did the peer get our last commitment_signed?
        resend_commit = False
        if msg.next_commitment_number == self.counterparty_commitment_number and \
                self.awaiting_revoke_and_ack:
            resend_commit = True
        elif msg.next_commitment_number != self.counterparty_commitment_number + 1:
            raise PeerProtocolError(
                f"next_commitment_number {msg.next_commitment_number}, we signed up to "
                f"{self.counterparty_commitment_number}")
        if msg.your_last_per_commitment_secret != ZERO_SECRET:
            claimed = msg.next_revocation_number - 1
            if claimed >= 0 and msg.your_last_per_commitment_secret != \
                    self.keys.per_commitment_secret(claimed):
                raise InvalidRevocation("your_last_per_commitment_secret is not ours")
        if self.channel_ready_sent and msg.next_commitment_number == 1 and \
                self.holder_commitment_number == 0:
            out.append(self._channel_ready())
        commit_msgs: list[Any] = []
        if resend_commit:
            commit_msgs = [*self._updates_in(self.counterparty_commitment_number),
                           self._signed_commitment(self.counterparty_commitment_number,
                                                   record=False)]
        revoke_msgs: list[Any] = [self._revoke_and_ack()] if resend_revoke else []
        if self.commitment_signed_sent_last:
            out += revoke_msgs + commit_msgs
        else:
            out += commit_msgs + revoke_msgs
        if self.holder_shutdown_script is not None and self.state in (
                ChannelState.SHUTTING_DOWN, ChannelState.NEGOTIATING_CLOSE, ChannelState.CLOSING):
            # BOLT 2: retransmit shutdown; the fee negotiation then starts over
            out.append(Shutdown(channel_id=self.channel_id,
                                scriptpubkey=self.holder_shutdown_script))
        self.reestablish_pending = False
        return out

    def _updates_in(self, number: int) -> list[Any]:
        """Our updates first included in the peer's commitment ``number`` (for retransmission)."""
        assert self.channel_id is not None
        out: list[Any] = []
        log = self._log
        for update in log.fee_updates:
            if self.opener is Side.HOLDER and update.included_at[Side.COUNTERPARTY] == number:
                out.append(UpdateFee(channel_id=self.channel_id,
                                     feerate_per_kw=update.feerate_per_kw))
        for h in sorted(log.entries(), key=lambda e: (e.offerer.value, e.htlc_id)):
            if h.offerer is Side.HOLDER and h.added_at[Side.COUNTERPARTY] == number:
                out.append(self._add_message(h))
            if h.offerer is Side.COUNTERPARTY and h.removed_at[Side.COUNTERPARTY] == number:
                if h.removal is Removal.FULFILLED:
                    assert h.payment_preimage is not None
                    out.append(UpdateFulfillHtlc(channel_id=self.channel_id, id=h.htlc_id,
                                                 payment_preimage=h.payment_preimage))
                elif (h.fail_reason or b"").startswith(MALFORMED_MARK):
                    mark = (h.fail_reason or b"")[len(MALFORMED_MARK):]
                    out.append(UpdateFailMalformedHtlc(
                        channel_id=self.channel_id, id=h.htlc_id, sha256_of_onion=mark[2:],
                        failure_code=int.from_bytes(mark[:2], "big")))
                else:
                    out.append(UpdateFailHtlc(channel_id=self.channel_id, id=h.htlc_id,
                                              reason=h.fail_reason or b""))
        return out

    # -- transitions the chain decides (the node learns them from the channel's monitor) --

    def on_funding_spent(self) -> None:
        """A commitment (ours or the peer's) spent the funding output: FORCE_CLOSING, unless a
        close of ours is already under way."""
        if self.state not in (ChannelState.CLOSING, ChannelState.FORCE_CLOSING,
                              ChannelState.CLOSED):
            self.state = ChannelState.FORCE_CLOSING

    def on_resolved(self) -> None:
        """Every output of the channel is settled on chain: CLOSED."""
        self.state = ChannelState.CLOSED

    def on_funding_failed(self) -> None:
        """Our wallet could not fund the channel we opened: it is over before it began."""
        self.state = ChannelState.CLOSED

    def await_peer_commitment(self) -> None:
        """Our state is stale (the peer proved it): we must not broadcast ours, so we wait in
        FORCE_CLOSING for the peer's commitment."""
        self.state = ChannelState.FORCE_CLOSING

    def record_force_close(self, commitment_tx: bytes) -> None:
        """Remember the commitment we broadcast (answered again to a repeated force-close)."""
        self.closing_tx = commitment_tx
