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

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import CTransaction

from channel.add_budget import check_fee_spike_buffer, fee_spike_room_msat, peer_add_budget
from channel.errors import (
    InvalidRevocation,
    InvalidSignature,
    InvalidStateTransition,
    LostState,
    PeerProtocolError,
    PeerWarning,
    RejectedUpdate,
)
from channel.htlc_log import FeeUpdate, HtlcEntry, Removal, UpdateLog
from channel.keys import (
    Basepoints,
    ChannelKeys,
    DelayedPaymentBasepoint,
    FundingPubkey,
    HtlcBasepoint,
    PaymentBasepoint,
    PerCommitmentPoint,
    PrivateKey,
    RevocationBasepoint,
    per_commitment_point_from_secret,
    verify,
)
from channel.messages import (
    AcceptChannel,
    ChannelReady,
    ChannelReestablish,
    ClosingSigned,
    CommitmentSigned,
    FeeRange,
    FundingCreated,
    FundingSigned,
    OpenChannel,
    RevokeAndAck,
    Shutdown,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
)
from channel.shachain import RevocationStore
from channel.transactions import (
    ANCHOR_OUTPUT_SAT,
    ClosingTransaction,
    CommitmentKeys,
    CommitmentTransaction,
    build_closing_transaction,
    build_commitment_transaction,
    build_htlc_transactions,
    closing_sighash,
    commitment_fee_sat,
    finalize_closing_transaction,
    finalize_commitment_transaction,
    finalize_htlc_transaction,
    funding_script_pubkey,
    obscuring_factor,
    sign_commitment,
    verify_commitment_signature,
)
from channel.types import CommitmentFormat, CommitmentHtlc, OutPoint, Side
from channel.validation import (
    MAX_FUNDING_SAT,
    MAX_HTLC_COUNT,
    MIN_FEERATE_PER_KW,
    MIN_FUNDING_SAT,
    check_channel_reestablish,
    check_open_funding,
    check_our_update_fee,
    check_party_params,
    check_peer_update_fee,
    check_reestablished,
)
from channel.wire import REGTEST_CHAIN_HASH

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelState",
    "CounterpartyCommitmentSigned",
    "CounterpartySecretRevealed",
    "ForceCloseTransactions",
    "HolderCommitmentSigned",
    "MonitorUpdate",
    "PartyParams",
    "channel_type_bytes",
]

ZERO_SECRET = bytes(32)


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


_FUNDED_STATES = frozenset({
    ChannelState.AWAITING_LOCKIN, ChannelState.NORMAL, ChannelState.SHUTTING_DOWN,
    ChannelState.NEGOTIATING_CLOSE,
})


def channel_type_bytes(commitment_format: CommitmentFormat) -> bytes:
    """The ``channel_type`` TLV value: bit 12 (static_remotekey), plus bit 22 with anchors."""
    bits = 1 << 12
    if commitment_format is CommitmentFormat.ANCHORS:
        bits |= 1 << 22
    return bits.to_bytes((bits.bit_length() + 7) // 8, "big")


def _format_from_channel_type(value: bytes | None) -> CommitmentFormat:
    if value is None:
        raise PeerProtocolError("open/accept without channel_type")
    bits = int.from_bytes(value, "big")
    if bits == 1 << 12:
        return CommitmentFormat.STATIC_REMOTEKEY
    if bits == (1 << 12) | (1 << 22):
        return CommitmentFormat.ANCHORS
    raise PeerProtocolError(f"unsupported channel_type {value.hex()}")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyParams:
    """What one party announced in its open_channel / accept_channel."""

    dust_limit_sat: int
    max_htlc_value_in_flight_msat: int
    channel_reserve_sat: int
    htlc_minimum_msat: int
    to_self_delay: int
    max_accepted_htlcs: int
    basepoints: Basepoints


# -- monitor updates (LDK's ChannelMonitorUpdateStep): what the chain watcher must learn ------


@dataclass(frozen=True, slots=True, kw_only=True)
class HolderCommitmentSigned:
    """Our newest commitment, which the peer signed: what a force-close broadcasts."""

    commitment_number: int
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]
    counterparty_signature: bytes
    counterparty_htlc_signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterpartyCommitmentSigned:
    """A commitment we signed for the peer: enough to rebuild it if it is ever broadcast."""

    commitment_number: int
    per_commitment_point: PerCommitmentPoint
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]
    txid: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterpartySecretRevealed:
    """The peer revoked its commitment ``commitment_number``: from now on it is a breach."""

    commitment_number: int
    per_commitment_secret: bytes


MonitorUpdate = HolderCommitmentSigned | CounterpartyCommitmentSigned | CounterpartySecretRevealed


@dataclass(frozen=True, slots=True, kw_only=True)
class ForceCloseTransactions:
    """Our latest commitment, signed by both, and its second-stage HTLC transactions.

    HTLC-success transactions are only present for HTLCs whose preimage we know.
    """

    commitment: CommitmentTransaction
    commitment_tx: CTransaction
    htlc_txs: tuple[CTransaction, ...]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(slots=True, kw_only=True)
class Channel:
    """One channel's state machine (mutable: its fields are the channel's durable state).

    Build one with :meth:`open_outbound` or :meth:`accept_inbound`; restore one with
    :meth:`from_record`. Only the methods documented below change it.
    """

    state: ChannelState
    opener: Side
    keys: ChannelKeys
    config: ChannelConfig
    commitment_format: CommitmentFormat
    funding_sat: int
    push_msat: int
    temporary_channel_id: bytes
    holder_params: PartyParams
    counterparty_params: PartyParams | None = None
    minimum_depth: int = 1
    funding_outpoint: OutPoint | None = None
    channel_id: bytes | None = None
    log: UpdateLog | None = None
    holder_commitment_number: int = 0
    counterparty_commitment_number: int = 0
    awaiting_revoke_and_ack: bool = False
    # whether our last commitment_signed was sent after our last revoke_and_ack (reestablish order)
    commitment_signed_sent_last: bool = False
    counterparty_points: dict[int, PerCommitmentPoint] = field(default_factory=dict)
    counterparty_secrets: RevocationStore = field(default_factory=RevocationStore)
    holder_commitment_signature: bytes = b""
    holder_htlc_signatures: tuple[bytes, ...] = ()
    channel_ready_sent: bool = False
    channel_ready_received: bool = False
    holder_shutdown_script: bytes | None = None
    counterparty_shutdown_script: bytes | None = None
    closing_fee_sent_sat: int | None = None
    closing_tx: bytes | None = None
    # set when the peer proved our state is stale: our commitment must never be broadcast
    lost_state: bool = False
    monitor_updates: list[MonitorUpdate] = field(default_factory=list)
    # transient (never persisted): from a disconnection until the peer's channel_reestablish
    reestablish_pending: bool = False

    # -- opening (BOLT 2 "Channel Establishment v1") -----------------------------------------

    @classmethod
    def open_outbound(cls, *, keys: ChannelKeys, config: ChannelConfig, funding_sat: int,
                      push_msat: int, feerate_per_kw: int, temporary_channel_id: bytes,
                      commitment_format: CommitmentFormat = CommitmentFormat.STATIC_REMOTEKEY,
                      ) -> tuple[Channel, OpenChannel]:
        """We open: returns the channel and the ``open_channel`` to send."""
        if not MIN_FUNDING_SAT <= funding_sat <= MAX_FUNDING_SAT:   # what a peer would refuse
            raise RejectedUpdate(f"funding_sat must be {MIN_FUNDING_SAT}..{MAX_FUNDING_SAT} sat: "
                                 f"{funding_sat}")
        if not 0 <= push_msat <= funding_sat * 1000:
            raise RejectedUpdate("push_msat must be between 0 and the funding amount")
        if feerate_per_kw < MIN_FEERATE_PER_KW:
            raise RejectedUpdate(f"feerate_per_kw below {MIN_FEERATE_PER_KW}")
        params = cls._our_params(keys, config, funding_sat)
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

    @staticmethod
    def _our_params(keys: ChannelKeys, config: ChannelConfig, funding_sat: int) -> PartyParams:
        return PartyParams(
            dust_limit_sat=config.dust_limit_sat,
            max_htlc_value_in_flight_msat=config.max_htlc_value_in_flight_msat,
            channel_reserve_sat=config.reserve_for(funding_sat),
            htlc_minimum_msat=config.htlc_minimum_msat, to_self_delay=config.to_self_delay,
            max_accepted_htlcs=config.max_accepted_htlcs, basepoints=keys.basepoints())

    @staticmethod
    def _peer_params(config: ChannelConfig, msg: OpenChannel | AcceptChannel,
                     funding_sat: int) -> PartyParams:
        try:
            basepoints = Basepoints(
                funding_pubkey=FundingPubkey(msg.funding_pubkey),
                revocation_basepoint=RevocationBasepoint(msg.revocation_basepoint),
                payment_basepoint=PaymentBasepoint(msg.payment_basepoint),
                delayed_payment_basepoint=DelayedPaymentBasepoint(msg.delayed_payment_basepoint),
                htlc_basepoint=HtlcBasepoint(msg.htlc_basepoint))
            PerCommitmentPoint(msg.first_per_commitment_point)
        except (ValueError, TypeError) as exc:
            raise PeerProtocolError(f"invalid key in {type(msg).__name__}: {exc}") from exc
        check_party_params(msg, funding_sat=funding_sat,
                           max_to_self_delay=config.max_to_self_delay)
        return PartyParams(
            dust_limit_sat=msg.dust_limit_satoshis,
            max_htlc_value_in_flight_msat=msg.max_htlc_value_in_flight_msat,
            channel_reserve_sat=msg.channel_reserve_satoshis,
            htlc_minimum_msat=max(1, msg.htlc_minimum_msat), to_self_delay=msg.to_self_delay,
            max_accepted_htlcs=msg.max_accepted_htlcs, basepoints=basepoints)

    @classmethod
    def accept_inbound(cls, *, keys: ChannelKeys, config: ChannelConfig,
                       msg: OpenChannel) -> tuple[Channel, AcceptChannel]:
        """The peer opens: check its ``open_channel`` and answer ``accept_channel``."""
        if msg.chain_hash != REGTEST_CHAIN_HASH:
            raise PeerProtocolError("open_channel for a chain other than regtest")
        commitment_format = _format_from_channel_type(msg.channel_type)
        check_open_funding(msg)
        peer = cls._peer_params(config, msg, msg.funding_satoshis)
        params = cls._our_params(keys, config, msg.funding_satoshis)
        if params.channel_reserve_sat < peer.dust_limit_sat:
            params = PartyParams(**{**_params_dict(params),
                                    "channel_reserve_sat": peer.dust_limit_sat})
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
        if _format_from_channel_type(msg.channel_type) is not self.commitment_format:
            raise PeerProtocolError("accept_channel changed the channel_type")
        peer = self._peer_params(self.config, msg, self.funding_sat)
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
        self._expect(ChannelState.AWAITING_FUNDING_TX, "funding_created")
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
            raise InvalidStateTransition(f"channel_ready in state {self.state.value}")
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

    # -- queries ---------------------------------------------------------------------------

    @property
    def _log(self) -> UpdateLog:
        if self.log is None:
            raise InvalidStateTransition("channel has no update log yet")
        return self.log

    @property
    def _peer(self) -> PartyParams:
        if self.counterparty_params is None:
            raise InvalidStateTransition("the peer's parameters are not known yet")
        return self.counterparty_params

    @property
    def is_funded(self) -> bool:
        return self.state in _FUNDED_STATES

    def balance_msat(self, side: Side = Side.HOLDER) -> int:
        """``side``'s balance in our current commitment, HTLCs in flight excluded."""
        return self._log.balances_msat(Side.HOLDER, self.holder_commitment_number)[side]

    def htlcs_in_flight(self) -> list[HtlcEntry]:
        """HTLCs in our current commitment."""
        return self._log.htlcs_in_commitment(Side.HOLDER, self.holder_commitment_number)

    def _irrevocably_committed(self, h: HtlcEntry) -> bool:
        """Added to both sides' commitments, and the previous ones revoked (removable now)."""
        oldest_remote = self.counterparty_commitment_number - int(self.awaiting_revoke_and_ack)
        return h.in_commitment(Side.HOLDER, self.holder_commitment_number) and \
            h.in_commitment(Side.COUNTERPARTY, oldest_remote)

    def htlcs_to_settle(self) -> list[HtlcEntry]:
        """HTLCs the peer offered us that are locked in and not yet fulfilled or failed
        (none while ``channel_reestablish`` is pending: a removal sent now could be lost)."""
        if self.reestablish_pending:
            return []
        return [h for h in self._log.entries()
                if h.offerer is Side.COUNTERPARTY and h.removal is None
                and self._irrevocably_committed(h)]

    def has_unsigned_changes(self) -> bool:
        """True if the peer's next commitment would differ from its current one."""
        return self._log.has_updates_for(Side.COUNTERPARTY, self.counterparty_commitment_number + 1)

    def can_sign(self) -> bool:
        """A ``commitment_signed`` may be sent now (changes pending, no revocation owed to us)."""
        return (self.state in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN)
                and not self.awaiting_revoke_and_ack and not self.reestablish_pending
                and self.has_unsigned_changes())

    def available_to_send_msat(self) -> int:
        """What we can still offer: balance minus HTLCs pending, reserve and (opener) fees,
        and the fee spike buffer (see ``channel.add_budget``)."""
        return min(self._spendable_msat(Side.HOLDER), fee_spike_room_msat(self))

    # -- commitments -----------------------------------------------------------------------

    @property
    def _obscuring_factor(self) -> int:
        ours = self.holder_params.basepoints.payment_basepoint
        theirs = self._peer.basepoints.payment_basepoint
        if self.opener is Side.HOLDER:
            return obscuring_factor(ours, theirs)
        return obscuring_factor(theirs, ours)

    def _point(self, side: Side, number: int) -> PerCommitmentPoint:
        if side is Side.HOLDER:
            return self.keys.per_commitment_point(number)
        try:
            return self.counterparty_points[number]
        except KeyError:
            raise InvalidStateTransition(
                f"no per_commitment_point for the peer's commitment {number}") from None

    def _commitment(self, side: Side, number: int) -> CommitmentTransaction:
        """``side``'s commitment ``number`` as the log defines it."""
        log = self._log
        ours, theirs = self.holder_params, self._peer
        broadcaster, countersignatory = (ours, theirs) if side is Side.HOLDER else (theirs, ours)
        keys = CommitmentKeys.derive(per_commitment_point=self._point(side, number),
                                     broadcaster=broadcaster.basepoints,
                                     countersignatory=countersignatory.basepoints)
        balances = log.balances_msat(side, number)
        htlcs = [h.commitment_htlc(side) for h in log.htlcs_in_commitment(side, number)]
        if self.funding_outpoint is None:
            raise InvalidStateTransition("no funding outpoint yet")
        return build_commitment_transaction(
            funding_outpoint=self.funding_outpoint, funding_amount_sat=self.funding_sat,
            commitment_number=number, obscuring_factor=self._obscuring_factor, keys=keys,
            to_self_delay=countersignatory.to_self_delay,
            dust_limit_sat=broadcaster.dust_limit_sat,
            feerate_per_kw=log.feerate_per_kw(side, number),
            broadcaster_is_opener=self.opener is side,
            to_local_msat=balances[side], to_remote_msat=balances[side.other],
            htlcs=htlcs, commitment_format=self.commitment_format)

    def _check_holder_commitment(self, number: int, signature: bytes,
                                 htlc_signatures: tuple[bytes, ...]) -> CommitmentTransaction:
        ctx = self._commitment(Side.HOLDER, number)
        if not verify_commitment_signature(ctx, self._peer.basepoints.funding_pubkey, signature):
            raise InvalidSignature(f"bad signature on our commitment {number}")
        if len(htlc_signatures) != len(ctx.htlc_outputs):
            raise PeerProtocolError(
                f"commitment {number} has {len(ctx.htlc_outputs)} HTLC outputs but "
                f"{len(htlc_signatures)} htlc_signatures")
        htlc_key = ctx.keys.countersignatory_htlc_pubkey
        for htlc_tx, sig in zip(build_htlc_transactions(ctx), htlc_signatures, strict=True):
            if not verify(htlc_key, htlc_tx.countersignatory_sighash(), sig):
                raise InvalidSignature(
                    f"bad htlc_signature for HTLC {htlc_tx.htlc_output.htlc.htlc_id}")
        self.holder_commitment_signature = signature
        self.holder_htlc_signatures = htlc_signatures
        balances = self._log.balances_msat(Side.HOLDER, number)
        self.monitor_updates.append(HolderCommitmentSigned(
            commitment_number=number, to_broadcaster_msat=balances[Side.HOLDER],
            to_countersignatory_msat=balances[Side.COUNTERPARTY],
            feerate_per_kw=ctx.feerate_per_kw,
            htlcs=tuple(o.htlc for o in ctx.htlc_outputs) + ctx.trimmed_htlcs,
            counterparty_signature=signature, counterparty_htlc_signatures=htlc_signatures))
        return ctx

    def _record_counterparty_commitment(self, ctx: CommitmentTransaction) -> None:
        balances = self._log.balances_msat(Side.COUNTERPARTY, ctx.commitment_number)
        self.monitor_updates.append(CounterpartyCommitmentSigned(
            commitment_number=ctx.commitment_number,
            per_commitment_point=ctx.keys.per_commitment_point,
            to_broadcaster_msat=balances[Side.COUNTERPARTY],
            to_countersignatory_msat=balances[Side.HOLDER],
            feerate_per_kw=ctx.feerate_per_kw,
            htlcs=tuple(o.htlc for o in ctx.htlc_outputs) + ctx.trimmed_htlcs, txid=ctx.txid))

    # -- updates (BOLT 2 "Normal Operation") -------------------------------------------------

    def _spendable_msat(self, side: Side) -> int:
        """``side``'s balance counting every pending debit but only irrevocable credits,
        minus the reserve the other side imposes and, for the opener, the commitment fee."""
        return self._add_budget(side)[2]

    def _add_budget(self, side: Side) -> tuple[int, int, int]:
        """One pass over the log (adds are checked per HTLC, so this is the hot loop of a
        batch): (HTLCs ``side`` offers, their msat, what ``side`` can still spend)."""
        log = self._log
        balance = log.base_balance_msat[side]
        count = offered = offered_msat = 0
        holder_ctn = self.holder_commitment_number
        counterparty_ctn = self.counterparty_commitment_number
        fulfilled, failed = Removal.FULFILLED, Removal.FAILED
        for h in log.htlcs.values():
            count += 1
            removal = h.removal
            committed = False
            if removal is not None:
                removed_l = h.removed_at[Side.HOLDER]
                removed_r = h.removed_at[Side.COUNTERPARTY]
                committed = removed_l is not None and removed_l <= holder_ctn and \
                    removed_r is not None and removed_r <= counterparty_ctn
            if h.offerer is side:
                # it counts against the limits until pruned (gone from both commitments)
                offered += 1
                offered_msat += h.amount_msat
                if not (removal is failed and committed):
                    balance -= h.amount_msat
            elif removal is fulfilled and committed:
                balance += h.amount_msat
        reserve_msat = (self._peer.channel_reserve_sat if side is Side.HOLDER
                        else self.holder_params.channel_reserve_sat) * 1000
        if self.opener is side:
            feerate = max(log.base_feerate_per_kw,
                          *(u.feerate_per_kw for u in log.fee_updates)) if log.fee_updates \
                else log.base_feerate_per_kw
            fee = commitment_fee_sat(feerate, count + 1, self.commitment_format)
            if self.commitment_format is CommitmentFormat.ANCHORS:
                fee += 2 * ANCHOR_OUTPUT_SAT
            balance -= fee * 1000
        return offered, offered_msat, balance - reserve_msat

    def _removal_committed(self, h: HtlcEntry) -> bool:
        removed_l = h.removed_at[Side.HOLDER]
        removed_r = h.removed_at[Side.COUNTERPARTY]
        return removed_l is not None and removed_l <= self.holder_commitment_number and \
            removed_r is not None and removed_r <= self.counterparty_commitment_number

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
        if side is Side.HOLDER:
            check_fee_spike_buffer(self, amount_msat)

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
            raise InvalidStateTransition(f"commitment_signed in state {self.state.value}")
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
            raise InvalidStateTransition("revoke_and_ack without a commitment_signed to answer")
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
                else:
                    out.append(UpdateFailHtlc(channel_id=self.channel_id, id=h.htlc_id,
                                              reason=h.fail_reason or b""))
        return out

    # -- cooperative close (BOLT 2 "Channel Close") ---------------------------------------------

    def _quiescent(self) -> bool:
        return not self.awaiting_revoke_and_ack and not self.has_unsigned_changes() and \
            not self._log.has_updates_for(Side.HOLDER, self.holder_commitment_number + 1)

    def shutdown(self, scriptpubkey: bytes) -> Shutdown:
        """Start a cooperative close, paying our side to ``scriptpubkey``."""
        if self.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
            raise RejectedUpdate(f"cannot close a channel in state {self.state.value}")
        if self.holder_shutdown_script is not None:
            raise RejectedUpdate("shutdown already sent")
        if self.has_unsigned_changes():
            raise RejectedUpdate("sign pending updates before shutdown")
        _check_shutdown_script(scriptpubkey, RejectedUpdate)
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
            raise InvalidStateTransition(f"shutdown in state {self.state.value}")
        _check_shutdown_script(msg.scriptpubkey, PeerProtocolError)
        if self.counterparty_shutdown_script not in (None, msg.scriptpubkey):
            raise PeerProtocolError("a second shutdown with another script")
        if self.holder_shutdown_script is None:
            _check_shutdown_script(our_scriptpubkey, RejectedUpdate)
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
        feerate = self._log.feerate_per_kw(Side.HOLDER, self.holder_commitment_number)
        return FeeRange(min_fee_satoshis=self.closing_fee_sat(MIN_FEERATE_PER_KW),
                        max_fee_satoshis=max(self.closing_fee_sat(feerate * 5),
                                             self.closing_fee_sat(MIN_FEERATE_PER_KW)))

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
            raise InvalidStateTransition("closing_signed before shutdown completed")
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

    def _expect(self, state: ChannelState, what: str) -> None:
        if self.state is not state:
            raise InvalidStateTransition(f"{what} in state {self.state.value}")


def _check_shutdown_script(script: bytes, error: type[RejectedUpdate] | type[PeerProtocolError],
                           ) -> None:
    p2wpkh = len(script) == 22 and script[:2] == b"\x00\x14"
    p2wsh = len(script) == 34 and script[:2] == b"\x00\x20"
    if not (p2wpkh or p2wsh):
        raise error("shutdown scriptpubkey must be P2WPKH or P2WSH")


def _params_dict(params: PartyParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in PartyParams.__dataclass_fields__}


# -- persistence: a JSON-friendly record of the whole channel --------------------------------

_RECORD_VERSION = 1


def _basepoints_record(bp: Basepoints) -> dict[str, str]:
    return {name: getattr(bp, name).hex() for name in Basepoints.__dataclass_fields__}


def _basepoints_from(rec: dict[str, str]) -> Basepoints:
    return Basepoints(
        funding_pubkey=FundingPubkey(bytes.fromhex(rec["funding_pubkey"])),
        revocation_basepoint=RevocationBasepoint(bytes.fromhex(rec["revocation_basepoint"])),
        payment_basepoint=PaymentBasepoint(bytes.fromhex(rec["payment_basepoint"])),
        delayed_payment_basepoint=DelayedPaymentBasepoint(
            bytes.fromhex(rec["delayed_payment_basepoint"])),
        htlc_basepoint=HtlcBasepoint(bytes.fromhex(rec["htlc_basepoint"])))


def _params_record(params: PartyParams) -> dict[str, Any]:
    rec = _params_dict(params)
    rec["basepoints"] = _basepoints_record(params.basepoints)
    return rec


def _params_from(rec: dict[str, Any]) -> PartyParams:
    return PartyParams(**{**rec, "basepoints": _basepoints_from(rec["basepoints"])})


def _sides(d: dict[Side, int | None]) -> dict[str, int | None]:
    return {side.value: value for side, value in d.items()}


def _sides_from(d: dict[str, int | None]) -> dict[Side, int | None]:
    return {Side(k): v for k, v in d.items()}


def _opt_hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _opt_bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _htlc_record(h: HtlcEntry) -> dict[str, Any]:
    return {"offerer": h.offerer.value, "htlc_id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash.hex(), "cltv_expiry": h.cltv_expiry,
            "onion": h.onion_routing_packet.hex(), "added_at": _sides(h.added_at),
            "removal": h.removal.value if h.removal else None,
            "payment_preimage": _opt_hex(h.payment_preimage),
            "fail_reason": _opt_hex(h.fail_reason), "removed_at": _sides(h.removed_at)}


def _htlc_from(rec: dict[str, Any]) -> HtlcEntry:
    return HtlcEntry(
        offerer=Side(rec["offerer"]), htlc_id=rec["htlc_id"], amount_msat=rec["amount_msat"],
        payment_hash=bytes.fromhex(rec["payment_hash"]), cltv_expiry=rec["cltv_expiry"],
        onion_routing_packet=bytes.fromhex(rec["onion"]), added_at=_sides_from(rec["added_at"]),
        removal=Removal(rec["removal"]) if rec["removal"] else None,
        payment_preimage=_opt_bytes(rec["payment_preimage"]),
        fail_reason=_opt_bytes(rec["fail_reason"]), removed_at=_sides_from(rec["removed_at"]))


def channel_to_record(chan: Channel) -> dict[str, Any]:
    """Everything needed to resume ``chan`` after a restart (contains secrets: store 0600)."""
    keys = chan.keys
    log = chan.log
    return {
        "version": _RECORD_VERSION,
        "state": chan.state.value, "opener": chan.opener.value,
        "keys": {"funding_key": keys.funding_key.secret.hex(),
                 "revocation_basepoint_secret": keys.revocation_basepoint_secret.secret.hex(),
                 "payment_basepoint_secret": keys.payment_basepoint_secret.secret.hex(),
                 "delayed_payment_basepoint_secret":
                     keys.delayed_payment_basepoint_secret.secret.hex(),
                 "htlc_basepoint_secret": keys.htlc_basepoint_secret.secret.hex(),
                 "per_commitment_seed": keys.per_commitment_seed.hex()},
        "config": {name: getattr(chan.config, name)
                   for name in ChannelConfig.__dataclass_fields__},
        "commitment_format": chan.commitment_format.value, "funding_sat": chan.funding_sat,
        "push_msat": chan.push_msat, "temporary_channel_id": chan.temporary_channel_id.hex(),
        "holder_params": _params_record(chan.holder_params),
        "counterparty_params": _params_record(chan.counterparty_params)
        if chan.counterparty_params else None,
        "minimum_depth": chan.minimum_depth,
        "funding_outpoint": [chan.funding_outpoint.txid.hex(), chan.funding_outpoint.vout]
        if chan.funding_outpoint else None,
        "channel_id": _opt_hex(chan.channel_id),
        "log": None if log is None else {
            "opener": log.opener.value,
            "base_balance_msat": _sides(dict(log.base_balance_msat)),
            "base_feerate_per_kw": log.base_feerate_per_kw,
            "htlcs": [_htlc_record(h) for h in log.htlcs.values()],
            "fee_updates": [[u.feerate_per_kw, _sides(u.included_at)] for u in log.fee_updates],
            "next_htlc_id": _sides(dict(log.next_htlc_id)),
        },
        "holder_commitment_number": chan.holder_commitment_number,
        "counterparty_commitment_number": chan.counterparty_commitment_number,
        "awaiting_revoke_and_ack": chan.awaiting_revoke_and_ack,
        "commitment_signed_sent_last": chan.commitment_signed_sent_last,
        "counterparty_points": {str(n): p.hex() for n, p in chan.counterparty_points.items()},
        "counterparty_secrets": chan.counterparty_secrets.to_bytes().hex(),
        "holder_commitment_signature": chan.holder_commitment_signature.hex(),
        "holder_htlc_signatures": [s.hex() for s in chan.holder_htlc_signatures],
        "channel_ready_sent": chan.channel_ready_sent,
        "channel_ready_received": chan.channel_ready_received,
        "holder_shutdown_script": _opt_hex(chan.holder_shutdown_script),
        "counterparty_shutdown_script": _opt_hex(chan.counterparty_shutdown_script),
        "closing_fee_sent_sat": chan.closing_fee_sent_sat,
        "closing_tx": _opt_hex(chan.closing_tx),
        "lost_state": chan.lost_state,
    }


def channel_from_record(rec: dict[str, Any]) -> Channel:
    """The inverse of :func:`channel_to_record`."""
    if rec.get("version") != _RECORD_VERSION:
        raise ValueError(f"unsupported channel record version {rec.get('version')}")
    k = rec["keys"]
    keys = ChannelKeys(
        funding_key=PrivateKey(bytes.fromhex(k["funding_key"])),
        revocation_basepoint_secret=PrivateKey(bytes.fromhex(k["revocation_basepoint_secret"])),
        payment_basepoint_secret=PrivateKey(bytes.fromhex(k["payment_basepoint_secret"])),
        delayed_payment_basepoint_secret=PrivateKey(
            bytes.fromhex(k["delayed_payment_basepoint_secret"])),
        htlc_basepoint_secret=PrivateKey(bytes.fromhex(k["htlc_basepoint_secret"])),
        per_commitment_seed=bytes.fromhex(k["per_commitment_seed"]))
    lrec = rec["log"]
    log = None
    if lrec is not None:
        htlcs = [_htlc_from(h) for h in lrec["htlcs"]]
        base = _sides_from(lrec["base_balance_msat"])
        next_id = _sides_from(lrec["next_htlc_id"])
        log = UpdateLog(
            opener=Side(lrec["opener"]),
            base_balance_msat={s: int(v or 0) for s, v in base.items()},
            base_feerate_per_kw=lrec["base_feerate_per_kw"],
            htlcs={(h.offerer, h.htlc_id): h for h in htlcs},
            fee_updates=[FeeUpdate(feerate_per_kw=f, included_at=_sides_from(at))
                         for f, at in lrec["fee_updates"]],
            next_htlc_id={s: int(v or 0) for s, v in next_id.items()})
    fo = rec["funding_outpoint"]
    return Channel(
        state=ChannelState(rec["state"]), opener=Side(rec["opener"]), keys=keys,
        config=ChannelConfig(**rec["config"]),
        commitment_format=CommitmentFormat(rec["commitment_format"]),
        funding_sat=rec["funding_sat"], push_msat=rec["push_msat"],
        temporary_channel_id=bytes.fromhex(rec["temporary_channel_id"]),
        holder_params=_params_from(rec["holder_params"]),
        counterparty_params=_params_from(rec["counterparty_params"])
        if rec["counterparty_params"] else None,
        minimum_depth=rec["minimum_depth"],
        funding_outpoint=OutPoint(txid=bytes.fromhex(fo[0]), vout=fo[1]) if fo else None,
        channel_id=_opt_bytes(rec["channel_id"]), log=log,
        holder_commitment_number=rec["holder_commitment_number"],
        counterparty_commitment_number=rec["counterparty_commitment_number"],
        awaiting_revoke_and_ack=rec["awaiting_revoke_and_ack"],
        commitment_signed_sent_last=rec["commitment_signed_sent_last"],
        counterparty_points={int(n): PerCommitmentPoint(bytes.fromhex(p))
                             for n, p in rec["counterparty_points"].items()},
        counterparty_secrets=RevocationStore.from_bytes(
            bytes.fromhex(rec["counterparty_secrets"])),
        holder_commitment_signature=bytes.fromhex(rec["holder_commitment_signature"]),
        holder_htlc_signatures=tuple(bytes.fromhex(s) for s in rec["holder_htlc_signatures"]),
        channel_ready_sent=rec["channel_ready_sent"],
        channel_ready_received=rec["channel_ready_received"],
        holder_shutdown_script=_opt_bytes(rec["holder_shutdown_script"]),
        counterparty_shutdown_script=_opt_bytes(rec["counterparty_shutdown_script"]),
        closing_fee_sent_sat=rec["closing_fee_sent_sat"], closing_tx=_opt_bytes(rec["closing_tx"]),
        lost_state=bool(rec.get("lost_state", False)))


def _htlcs_record(htlcs: tuple[CommitmentHtlc, ...]) -> list[list[Any]]:
    return [[h.direction.value, h.amount_msat, h.payment_hash.hex(), h.cltv_expiry, h.htlc_id]
            for h in htlcs]


def _htlcs_from(rec: list[list[Any]]) -> tuple[CommitmentHtlc, ...]:
    from channel.types import HtlcDirection
    return tuple(CommitmentHtlc(direction=HtlcDirection(d), amount_msat=a,
                                payment_hash=bytes.fromhex(h), cltv_expiry=c, htlc_id=i)
                 for d, a, h, c, i in rec)


def monitor_update_to_record(update: MonitorUpdate) -> dict[str, Any]:
    """A JSON-friendly form of one monitor update (the node persists updates incrementally)."""
    if isinstance(update, HolderCommitmentSigned):
        return {"kind": "holder", "n": update.commitment_number,
                "b": update.to_broadcaster_msat, "c": update.to_countersignatory_msat,
                "f": update.feerate_per_kw, "h": _htlcs_record(update.htlcs),
                "sig": update.counterparty_signature.hex(),
                "hsigs": [s.hex() for s in update.counterparty_htlc_signatures]}
    if isinstance(update, CounterpartyCommitmentSigned):
        return {"kind": "counterparty", "n": update.commitment_number,
                "p": update.per_commitment_point.hex(), "b": update.to_broadcaster_msat,
                "c": update.to_countersignatory_msat, "f": update.feerate_per_kw,
                "h": _htlcs_record(update.htlcs), "txid": update.txid.hex()}
    return {"kind": "secret", "n": update.commitment_number,
            "s": update.per_commitment_secret.hex()}


def monitor_update_from_record(rec: dict[str, Any]) -> MonitorUpdate:
    """The inverse of :func:`monitor_update_to_record`."""
    kind = rec["kind"]
    if kind == "holder":
        return HolderCommitmentSigned(
            commitment_number=rec["n"], to_broadcaster_msat=rec["b"],
            to_countersignatory_msat=rec["c"], feerate_per_kw=rec["f"],
            htlcs=_htlcs_from(rec["h"]), counterparty_signature=bytes.fromhex(rec["sig"]),
            counterparty_htlc_signatures=tuple(bytes.fromhex(s) for s in rec["hsigs"]))
    if kind == "counterparty":
        return CounterpartyCommitmentSigned(
            commitment_number=rec["n"], per_commitment_point=PerCommitmentPoint(
                bytes.fromhex(rec["p"])), to_broadcaster_msat=rec["b"],
            to_countersignatory_msat=rec["c"], feerate_per_kw=rec["f"],
            htlcs=_htlcs_from(rec["h"]), txid=bytes.fromhex(rec["txid"]))
    if kind == "secret":
        return CounterpartySecretRevealed(commitment_number=rec["n"],
                                          per_commitment_secret=bytes.fromhex(rec["s"]))
    raise ValueError(f"unknown monitor update kind {kind!r}")
