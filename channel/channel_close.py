"""Closing a channel: cooperative (BOLT 2 "Channel Close") and unilateral (BOLT 5).

Pure. :class:`ChannelClosing` adds to the opening transitions the ``shutdown`` /
``closing_signed`` negotiation, the force-close transactions and failing the channel.
"""

from __future__ import annotations

from bitcoin.core import CTransaction

from channel.channel_core import ChannelState, ForceCloseTransactions
from channel.channel_open import ChannelOpening
from channel.channel_params import (
    HIGH_CLOSING_FEERATE_PER_KW,
    MIN_FEERATE_PER_KW,
    check_shutdown_script,
)
from channel.errors import InvalidSignature, PeerProtocolError, RejectedUpdate, UnexpectedMessage
from channel.keys import verify
from channel.messages import ClosingSigned, FeeRange, Shutdown
from channel.transactions import (
    ClosingTransaction,
    build_closing_transaction,
    build_htlc_transactions,
    closing_sighash,
    finalize_closing_transaction,
    finalize_commitment_transaction,
    finalize_htlc_transaction,
    sign_commitment,
)
from channel.types import Side

__all__ = ["ChannelClosing"]


class ChannelClosing(ChannelOpening):
    """The closing transitions of a channel (see :class:`channel.state.Channel`)."""

    __slots__ = ()

    def shutdown(self, scriptpubkey: bytes) -> Shutdown:
        """Start a cooperative close, paying our side to ``scriptpubkey``."""
        if self.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
            raise RejectedUpdate(f"cannot close a channel in state {self.state.value}")
        if self.holder_shutdown_script is not None:
            raise RejectedUpdate("shutdown already sent")
        if self.has_unsigned_changes():
            raise RejectedUpdate("sign pending updates before shutdown")
        check_shutdown_script(scriptpubkey, RejectedUpdate)
        self.holder_shutdown_script = scriptpubkey
        self.state = ChannelState.SHUTTING_DOWN
        assert self.channel_id is not None
        return Shutdown(channel_id=self.channel_id, scriptpubkey=scriptpubkey)

    def on_shutdown(self, msg: Shutdown, our_scriptpubkey: bytes) -> Shutdown | None:
        """The peer wants to close; reply with our own ``shutdown`` if not sent yet.

        Returns None if ours was sent already, and also while our own updates still wait for
        a ``commitment_signed`` (BOLT 2: no shutdown before they are signed): the caller signs
        them, then calls :meth:`shutdown` with ``our_scriptpubkey``.
        """
        # once negotiating (or agreed), only as a retransmission after a reconnection: the
        # script check below refuses any other
        if self.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN,
                              ChannelState.NEGOTIATING_CLOSE, ChannelState.CLOSING):
            raise UnexpectedMessage(f"shutdown in state {self.state.value}")
        check_shutdown_script(msg.scriptpubkey, PeerProtocolError)
        if self.counterparty_shutdown_script not in (None, msg.scriptpubkey):
            raise PeerProtocolError("a second shutdown with another script")
        if self.holder_shutdown_script is None:
            check_shutdown_script(our_scriptpubkey, RejectedUpdate)
        self.counterparty_shutdown_script = msg.scriptpubkey
        if self.state is ChannelState.NORMAL:
            self.state = ChannelState.SHUTTING_DOWN
        if self.holder_shutdown_script is None and not self.has_unsigned_changes():
            return self.shutdown(our_scriptpubkey)
        return None

    def ready_to_negotiate_close(self) -> bool:
        """Both shutdowns exchanged, no HTLC left, nothing owed: closing_signed may start."""
        return (self.state in (ChannelState.SHUTTING_DOWN, ChannelState.NEGOTIATING_CLOSE)
                and self.holder_shutdown_script is not None
                and self.counterparty_shutdown_script is not None
                and not self.htlcs_in_flight() and not any(True for _ in self._log.entries())
                and self._quiescent())

    def _closing(self, fee_sat: int) -> ClosingTransaction:
        assert self.funding_outpoint and self.holder_shutdown_script and \
            self.counterparty_shutdown_script
        balances = self._log.balances_msat(Side.HOLDER, self.holder_commitment_number)
        return build_closing_transaction(
            funding_outpoint=self.funding_outpoint, funding_amount_sat=self.funding_sat,
            local_funding_pubkey=self.holder_params.basepoints.funding_pubkey,
            remote_funding_pubkey=self._peer.basepoints.funding_pubkey,
            local_script_pubkey=self.holder_shutdown_script,
            remote_script_pubkey=self.counterparty_shutdown_script,
            local_amount_msat=balances[Side.HOLDER], remote_amount_msat=balances[Side.COUNTERPARTY],
            fee_sat=fee_sat, local_is_opener=self.opener is Side.HOLDER,
            dust_limit_sat=max(self.holder_params.dust_limit_sat, self._peer.dust_limit_sat))

    def closing_fee_sat(self, feerate_per_kw: int) -> int:
        """The fee of the closing tx at ``feerate_per_kw`` (weight with 73-byte signatures)."""
        tx = self._closing(0).tx
        base = len(tx.serialize())
        weight = base * 4 + 2 + 1 + 1 + 2 * 74 + 1 + 71  # marker, flag, witness stack
        return weight * feerate_per_kw // 1000

    def _fee_range(self) -> FeeRange:
        """BOLT 2 ``fee_range``: from the relay floor up to the fee at the higher of 5x the
        commitment feerate and :data:`HIGH_CLOSING_FEERATE_PER_KW` (so a peer with high but
        legitimate fees, such as Electrum's fixed regtest rate, overlaps us), never more than
        the opener's balance (the opener pays the fee)."""
        feerate = self._log.feerate_per_kw(Side.HOLDER, self.holder_commitment_number)
        balances = self._log.balances_msat(Side.HOLDER, self.holder_commitment_number)
        cap_sat = balances[self.opener] // 1000
        low = min(self.closing_fee_sat(MIN_FEERATE_PER_KW), cap_sat)
        high = self.closing_fee_sat(max(feerate * 5, HIGH_CLOSING_FEERATE_PER_KW))
        return FeeRange(min_fee_satoshis=low, max_fee_satoshis=max(low, min(high, cap_sat)))

    def propose_closing(self) -> ClosingSigned:
        """The opener's first ``closing_signed``, at the commitment feerate."""
        if self.opener is not Side.HOLDER:
            raise RejectedUpdate("the opener proposes the closing fee")
        if not self.ready_to_negotiate_close():
            raise RejectedUpdate("not ready to negotiate the closing fee")
        feerate = self._log.feerate_per_kw(Side.HOLDER, self.holder_commitment_number)
        return self._closing_signed(self.closing_fee_sat(feerate))

    def _closing_signed(self, fee_sat: int) -> ClosingSigned:
        closing = self._closing(fee_sat)
        signature = self.keys.funding_key.sign(closing_sighash(closing))
        self.state = ChannelState.NEGOTIATING_CLOSE
        self.closing_fee_sent_sat = fee_sat
        assert self.channel_id is not None
        return ClosingSigned(channel_id=self.channel_id, fee_satoshis=fee_sat,
                             signature=signature, fee_range=self._fee_range())

    def on_closing_signed(self, msg: ClosingSigned) -> tuple[ClosingSigned | None,
                                                             CTransaction | None]:
        """Answer a fee proposal. Returns (our reply or None, the final closing tx or None).

        Also answers the opener's repeat of the fee we already agreed to (it restarts the
        negotiation after a reconnection that lost our final ``closing_signed``).
        """
        again = self.state is ChannelState.CLOSING and \
            msg.fee_satoshis == self.closing_fee_sent_sat
        if not again and not self.ready_to_negotiate_close():
            raise UnexpectedMessage("closing_signed before shutdown completed")
        try:
            closing = self._closing(msg.fee_satoshis)
        except ValueError as exc:   # e.g. a fee above the opener's balance
            raise PeerProtocolError(f"closing_signed fee {msg.fee_satoshis}: {exc}") from exc
        if not verify(self._peer.basepoints.funding_pubkey, closing_sighash(closing),
                      msg.signature):
            raise InvalidSignature("bad closing_signed signature")
        ours = self._fee_range()
        theirs = msg.fee_range or FeeRange(min_fee_satoshis=msg.fee_satoshis,
                                           max_fee_satoshis=msg.fee_satoshis)
        reply: ClosingSigned | None = None
        if ours.min_fee_satoshis <= msg.fee_satoshis <= ours.max_fee_satoshis:
            fee = msg.fee_satoshis
        else:
            low = max(ours.min_fee_satoshis, theirs.min_fee_satoshis)
            high = min(ours.max_fee_satoshis, theirs.max_fee_satoshis)
            if low > high:
                raise PeerProtocolError("closing fee ranges do not overlap")
            fee = min(max(msg.fee_satoshis, low), high)
        if fee != msg.fee_satoshis:
            return self._closing_signed(fee), None
        if again or self.closing_fee_sent_sat != fee:
            reply = self._closing_signed(fee)
        our_sig = self.keys.funding_key.sign(closing_sighash(closing))
        final = finalize_closing_transaction(
            closing, pubkey_a=self.holder_params.basepoints.funding_pubkey, signature_a=our_sig,
            pubkey_b=self._peer.basepoints.funding_pubkey, signature_b=msg.signature)
        self.closing_tx = final.serialize()
        self.state = ChannelState.CLOSING
        return reply, final

    # -- unilateral close (BOLT 5) ---------------------------------------------------------------

    def force_close(self) -> ForceCloseTransactions:
        """Our latest commitment signed by both, with its HTLC transactions; state FORCE_CLOSING.

        Never a revoked one: the only commitment we hold the peer's signature for is the
        current one.
        """
        if self.funding_outpoint is None or not self.holder_commitment_signature:
            raise RejectedUpdate("nothing to force-close: the channel has no signed commitment")
        if self.lost_state:
            raise RejectedUpdate("our state is stale (the peer proved it): broadcasting our "
                                 "commitment would forfeit the channel; wait for the peer's")
        txs = self.holder_transactions()
        self.state = ChannelState.FORCE_CLOSING
        return txs

    def holder_transactions(self) -> ForceCloseTransactions:
        """Our current commitment and its HTLC transactions, fully signed."""
        number = self.holder_commitment_number
        ctx = self._commitment(Side.HOLDER, number)
        our_sig = sign_commitment(ctx, self.keys.funding_key)
        tx = finalize_commitment_transaction(
            ctx, broadcaster_signature=our_sig,
            countersignatory_signature=self.holder_commitment_signature)
        htlc_key = self.keys.htlc_privkey(ctx.keys.per_commitment_point)
        preimages = {h.payment_hash: h.payment_preimage for h in self._log.entries()
                     if h.payment_preimage is not None}
        htlc_txs: list[CTransaction] = []
        for htlc_tx, their_sig in zip(build_htlc_transactions(ctx), self.holder_htlc_signatures,
                                      strict=True):
            preimage = None
            if not htlc_tx.is_timeout:
                preimage = preimages.get(htlc_tx.htlc_output.htlc.payment_hash)
                if preimage is None:
                    continue
            htlc_txs.append(finalize_htlc_transaction(
                htlc_tx, countersignatory_signature=their_sig,
                broadcaster_signature=htlc_key.sign(htlc_tx.broadcaster_sighash()),
                payment_preimage=preimage))
        return ForceCloseTransactions(commitment=ctx, commitment_tx=tx,
                                      htlc_txs=tuple(htlc_txs))

    def fail_channel(self) -> None:
        """The peer broke the protocol: stop using the channel (the caller force-closes)."""
        if self.is_funded:
            self.state = ChannelState.FORCE_CLOSING
        elif self.state not in (ChannelState.CLOSING, ChannelState.FORCE_CLOSING):
            self.state = ChannelState.CLOSED
