"""Opening a channel (BOLT 2 "Channel Establishment v1"), up to ``channel_ready``.

Pure. :class:`ChannelOpening` adds to :class:`~channel.channel_core.ChannelCore` the transitions
from ``open_channel`` to the state NORMAL: both constructors, the funding signatures and the
exchange of ``channel_ready``. The checks of the peer's announced parameters are in
:mod:`channel.channel_params`.
"""

from __future__ import annotations

import dataclasses
from typing import Self

from channel.channel_core import ChannelCore, ChannelState
from channel.channel_params import (
    MAX_FUNDING_SAT,
    MIN_FEERATE_PER_KW,
    ChannelConfig,
    channel_type_bytes,
    format_from_channel_type,
    our_params,
    peer_params,
)
from channel.errors import (
    InvalidStateTransition,
    PeerProtocolError,
    RejectedUpdate,
    UnexpectedMessage,
)
from channel.htlc_log import UpdateLog
from channel.keys import ChannelKeys, PerCommitmentPoint
from channel.messages import (
    AcceptChannel,
    ChannelReady,
    FundingCreated,
    FundingSigned,
    OpenChannel,
)
from channel.transactions import (
    ANCHOR_OUTPUT_SAT,
    commitment_fee_sat,
    funding_script_pubkey,
    sign_commitment,
)
from channel.types import CommitmentFormat, OutPoint, Side
from channel.validation import MIN_FUNDING_SAT, check_open_funding
from channel.wire import REGTEST_CHAIN_HASH

__all__ = ["ChannelOpening"]


class ChannelOpening(ChannelCore):
    """The opening transitions of a channel (see :class:`channel.state.Channel`)."""

    __slots__ = ()

    @classmethod
    def open_outbound(cls, *, keys: ChannelKeys, config: ChannelConfig, funding_sat: int,
                      push_msat: int, feerate_per_kw: int, temporary_channel_id: bytes,
                      commitment_format: CommitmentFormat = CommitmentFormat.STATIC_REMOTEKEY,
                      ) -> tuple[Self, OpenChannel]:
        """We open: returns the channel and the ``open_channel`` to send."""
        if not MIN_FUNDING_SAT <= funding_sat <= MAX_FUNDING_SAT:   # what a peer would refuse
            raise RejectedUpdate(f"funding_sat must be {MIN_FUNDING_SAT}..{MAX_FUNDING_SAT} sat: "
                                 f"{funding_sat}")
        if not 0 <= push_msat <= funding_sat * 1000:
            raise RejectedUpdate("push_msat must be between 0 and the funding amount")
        if feerate_per_kw < MIN_FEERATE_PER_KW:
            raise RejectedUpdate(f"feerate_per_kw below {MIN_FEERATE_PER_KW}")
        params = our_params(keys, config, funding_sat)
        chan = cls(state=ChannelState.AWAITING_ACCEPT, opener=Side.HOLDER, keys=keys,
                   config=config, commitment_format=commitment_format, funding_sat=funding_sat,
                   push_msat=push_msat, temporary_channel_id=temporary_channel_id,
                   holder_params=params)
        chan.log = UpdateLog(
            opener=Side.HOLDER,
            base_balance_msat={Side.HOLDER: funding_sat * 1000 - push_msat,
                               Side.COUNTERPARTY: push_msat},
            base_feerate_per_kw=feerate_per_kw)
        bp = params.basepoints
        msg = OpenChannel(
            chain_hash=REGTEST_CHAIN_HASH, temporary_channel_id=temporary_channel_id,
            funding_satoshis=funding_sat, push_msat=push_msat,
            dust_limit_satoshis=params.dust_limit_sat,
            max_htlc_value_in_flight_msat=params.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis=params.channel_reserve_sat,
            htlc_minimum_msat=params.htlc_minimum_msat, feerate_per_kw=feerate_per_kw,
            to_self_delay=params.to_self_delay, max_accepted_htlcs=params.max_accepted_htlcs,
            funding_pubkey=bp.funding_pubkey.data,
            revocation_basepoint=bp.revocation_basepoint.data,
            payment_basepoint=bp.payment_basepoint.data,
            delayed_payment_basepoint=bp.delayed_payment_basepoint.data,
            htlc_basepoint=bp.htlc_basepoint.data,
            first_per_commitment_point=keys.per_commitment_point(0).data, channel_flags=0,
            upfront_shutdown_script=b"", channel_type=channel_type_bytes(commitment_format))
        return chan, msg

    @classmethod
    def accept_inbound(cls, *, keys: ChannelKeys, config: ChannelConfig,
                       msg: OpenChannel) -> tuple[Self, AcceptChannel]:
        """The peer opens: check its ``open_channel`` and answer ``accept_channel``."""
        if msg.chain_hash != REGTEST_CHAIN_HASH:
            raise PeerProtocolError("open_channel for a chain other than regtest")
        commitment_format = format_from_channel_type(msg.channel_type)
        check_open_funding(msg)
        peer = peer_params(config, msg, msg.funding_satoshis)
        params = our_params(keys, config, msg.funding_satoshis)
        if params.channel_reserve_sat < peer.dust_limit_sat:
            params = dataclasses.replace(params, channel_reserve_sat=peer.dust_limit_sat)
        chan = cls(state=ChannelState.AWAITING_FUNDING_CREATED, opener=Side.COUNTERPARTY,
                   keys=keys, config=config, commitment_format=commitment_format,
                   funding_sat=msg.funding_satoshis, push_msat=msg.push_msat,
                   temporary_channel_id=msg.temporary_channel_id, holder_params=params,
                   counterparty_params=peer, minimum_depth=config.minimum_depth)
        chan.log = UpdateLog(
            opener=Side.COUNTERPARTY,
            base_balance_msat={Side.HOLDER: msg.push_msat,
                               Side.COUNTERPARTY: msg.funding_satoshis * 1000 - msg.push_msat},
            base_feerate_per_kw=msg.feerate_per_kw)
        chan.counterparty_points[0] = PerCommitmentPoint(msg.first_per_commitment_point)
        opener_fee_sat = chan._initial_fee_sat()
        if msg.funding_satoshis * 1000 - msg.push_msat < opener_fee_sat * 1000:
            raise PeerProtocolError("the opener cannot pay the initial commitment fee")
        opener_sat = (msg.funding_satoshis * 1000 - msg.push_msat) // 1000 - opener_fee_sat
        if max(opener_sat, msg.push_msat // 1000) <= msg.channel_reserve_satoshis:
            raise PeerProtocolError("both initial outputs are at or below the reserve")
        bp = params.basepoints
        reply = AcceptChannel(
            temporary_channel_id=msg.temporary_channel_id,
            dust_limit_satoshis=params.dust_limit_sat,
            max_htlc_value_in_flight_msat=params.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis=params.channel_reserve_sat,
            htlc_minimum_msat=params.htlc_minimum_msat, minimum_depth=config.minimum_depth,
            to_self_delay=params.to_self_delay, max_accepted_htlcs=params.max_accepted_htlcs,
            funding_pubkey=bp.funding_pubkey.data,
            revocation_basepoint=bp.revocation_basepoint.data,
            payment_basepoint=bp.payment_basepoint.data,
            delayed_payment_basepoint=bp.delayed_payment_basepoint.data,
            htlc_basepoint=bp.htlc_basepoint.data,
            first_per_commitment_point=keys.per_commitment_point(0).data,
            upfront_shutdown_script=b"", channel_type=msg.channel_type)
        return chan, reply

    def _initial_fee_sat(self) -> int:
        anchors = 2 * ANCHOR_OUTPUT_SAT if self.commitment_format is CommitmentFormat.ANCHORS else 0
        return commitment_fee_sat(self._log.base_feerate_per_kw, 0, self.commitment_format) + \
            anchors

    def on_accept_channel(self, msg: AcceptChannel) -> None:
        """The peer accepted our ``open_channel``; next the caller builds the funding tx."""
        self._expect(ChannelState.AWAITING_ACCEPT, "accept_channel")
        if msg.temporary_channel_id != self.temporary_channel_id:
            raise PeerProtocolError("accept_channel for another temporary_channel_id")
        if format_from_channel_type(msg.channel_type) is not self.commitment_format:
            raise PeerProtocolError("accept_channel changed the channel_type")
        peer = peer_params(self.config, msg, self.funding_sat)
        if msg.minimum_depth > 100:
            raise PeerProtocolError(f"minimum_depth {msg.minimum_depth} is unreasonably large")
        if peer.channel_reserve_sat < self.holder_params.dust_limit_sat:
            raise PeerProtocolError("channel_reserve_satoshis below our dust limit")
        if self.holder_params.channel_reserve_sat < peer.dust_limit_sat:
            raise PeerProtocolError("dust_limit_satoshis above the reserve we asked for")
        self.counterparty_params = peer
        self.minimum_depth = max(msg.minimum_depth, 1)
        self.counterparty_points[0] = PerCommitmentPoint(msg.first_per_commitment_point)
        self.state = ChannelState.AWAITING_FUNDING_TX

    @property
    def funding_script_pubkey(self) -> bytes:
        """The P2WSH scriptPubKey of the 2-of-2 funding output (known once both keys are)."""
        return funding_script_pubkey(self.holder_params.basepoints.funding_pubkey,
                                     self._peer.basepoints.funding_pubkey)

    def funding_created(self, funding_outpoint: OutPoint) -> FundingCreated:
        """Our funding tx (not broadcast!) pays ``funding_outpoint``: sign the peer's
        commitment 0."""
        if self.state is not ChannelState.AWAITING_FUNDING_TX:
            raise InvalidStateTransition(f"funding_created in state {self.state.value}")
        self._set_funding(funding_outpoint)
        remote = self._commitment(Side.COUNTERPARTY, 0)
        signature = sign_commitment(remote, self.keys.funding_key)
        self.state = ChannelState.AWAITING_FUNDING_SIGNED
        self._record_counterparty_commitment(remote)
        return FundingCreated(temporary_channel_id=self.temporary_channel_id,
                              funding_txid=funding_outpoint.txid,
                              funding_output_index=funding_outpoint.vout, signature=signature)

    def on_funding_created(self, msg: FundingCreated) -> FundingSigned:
        """Check the opener's signature of our commitment 0 and sign its commitment 0."""
        self._expect(ChannelState.AWAITING_FUNDING_CREATED, "funding_created")
        if msg.temporary_channel_id != self.temporary_channel_id:
            raise PeerProtocolError("funding_created for another temporary_channel_id")
        outpoint = OutPoint(txid=msg.funding_txid, vout=msg.funding_output_index)
        saved = (self.funding_outpoint, self.channel_id)
        self._set_funding(outpoint)
        try:
            self._check_holder_commitment(0, msg.signature, ())
        except PeerProtocolError:
            self.funding_outpoint, self.channel_id = saved
            raise
        remote = self._commitment(Side.COUNTERPARTY, 0)
        signature = sign_commitment(remote, self.keys.funding_key)
        self.state = ChannelState.AWAITING_LOCKIN
        self._record_counterparty_commitment(remote)
        assert self.channel_id is not None
        return FundingSigned(channel_id=self.channel_id, signature=signature)

    def on_funding_signed(self, msg: FundingSigned) -> None:
        """The accepter signed our commitment 0: the funding tx may now be broadcast."""
        self._expect(ChannelState.AWAITING_FUNDING_SIGNED, "funding_signed")
        if msg.channel_id != self.channel_id:
            raise PeerProtocolError("funding_signed for another channel_id")
        self._check_holder_commitment(0, msg.signature, ())
        self.state = ChannelState.AWAITING_LOCKIN

    def _set_funding(self, outpoint: OutPoint) -> None:
        self.funding_outpoint = outpoint
        cid = bytearray(outpoint.txid)
        cid[30] ^= (outpoint.vout >> 8) & 0xFF
        cid[31] ^= outpoint.vout & 0xFF
        self.channel_id = bytes(cid)

    def funding_locked(self) -> ChannelReady:
        """The funding tx reached ``minimum_depth``: announce ``channel_ready``."""
        if self.state is not ChannelState.AWAITING_LOCKIN and not self.channel_ready_sent:
            raise InvalidStateTransition(f"channel_ready in state {self.state.value}")
        self.channel_ready_sent = True
        self._maybe_normal()
        return self._channel_ready()

    def _channel_ready(self) -> ChannelReady:
        assert self.channel_id is not None
        return ChannelReady(channel_id=self.channel_id,
                            second_per_commitment_point=self.keys.per_commitment_point(1).data)

    def on_channel_ready(self, msg: ChannelReady) -> None:
        """The peer saw the funding confirmed; store its point for commitment 1."""
        if msg.channel_id != self.channel_id:
            raise PeerProtocolError("channel_ready for another channel_id")
        if self.state is not ChannelState.AWAITING_LOCKIN:
            if self.channel_ready_received:
                return  # a retransmission after reestablish
            raise UnexpectedMessage(f"channel_ready in state {self.state.value}")
        try:
            self.counterparty_points[1] = PerCommitmentPoint(msg.second_per_commitment_point)
        except ValueError as exc:
            raise PeerProtocolError(f"invalid second_per_commitment_point: {exc}") from exc
        self.channel_ready_received = True
        self._maybe_normal()

    def _maybe_normal(self) -> None:
        if self.channel_ready_sent and self.channel_ready_received and \
                self.state is ChannelState.AWAITING_LOCKIN:
            self.state = ChannelState.NORMAL

