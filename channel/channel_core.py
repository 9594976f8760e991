"""A channel's durable fields and the queries every part of its state machine shares.

Pure. :class:`ChannelCore` holds what a channel is (its keys, both parties' parameters, the
update log, the commitment numbers); it answers queries (balances, what may be added now) and
builds, signs and checks commitments through :func:`channel.commitment.assemble_commitment`,
recording for the monitor what each new commitment holds (:mod:`channel.records`). The state
transitions are in the classes built on it: opening (:mod:`channel.channel_open`), closing
(:mod:`channel.channel_close`) and normal operation (:class:`channel.state.Channel`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from bitcoin.core import CTransaction

from channel import add_budget, self_checks
from channel.channel_basics import ChannelState
from channel.channel_params import ChannelConfig
from channel.commitment import assemble_commitment, commitment_keys
from channel.errors import (
    InvalidSignature,
    InvalidStateTransition,
    PeerProtocolError,
    UnexpectedMessage,
)
from channel.htlc_log import HtlcEntry, Removal, UpdateLog
from channel.keys import ChannelKeys, PerCommitmentPoint, verify
from channel.records import (
    CommitmentState,
    CounterpartyCommitmentSigned,
    HolderCommitmentSigned,
    MonitorSetup,
    MonitorUpdate,
    PartyParams,
)
from channel.shachain import RevocationStore
from channel.transactions import (
    ANCHOR_OUTPUT_SAT,
    CommitmentTransaction,
    build_htlc_transactions,
    commitment_fee_sat,
    verify_commitment_signature,
)
from channel.types import CommitmentFormat, OutPoint, Side

__all__ = ["ChannelCore", "ChannelState", "ForceCloseTransactions"]


_FUNDED_STATES = frozenset({
    ChannelState.AWAITING_LOCKIN, ChannelState.NORMAL, ChannelState.SHUTTING_DOWN,
    ChannelState.NEGOTIATING_CLOSE,
})


@dataclass(frozen=True, slots=True, kw_only=True)
class ForceCloseTransactions:
    """Our latest commitment, signed by both, and its second-stage HTLC transactions.

    HTLC-success transactions are only present for HTLCs whose preimage we know.
    """

    commitment: CommitmentTransaction
    commitment_tx: CTransaction
    htlc_txs: tuple[CTransaction, ...]


@dataclass(slots=True, kw_only=True)
class ChannelCore:
    """One channel's durable state (mutable: its fields are what the channel record stores).

    Subclasses add the transitions; :class:`channel.state.Channel` is the one to use.
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
    # transient: our add budget's parts while a batch of our adds is under way (adding_batch)
    holder_budget_memo: list[int] | None = field(default=None, repr=False, compare=False)
    in_add_batch: bool = field(default=False, repr=False, compare=False)
    # transient: the peer's add budget during a run of its update_add_htlcs (peer_adds_begin)
    peer_budget_memo: tuple[tuple[int, ...], list[int]] | None = field(
        default=None, repr=False, compare=False)
    in_peer_adds: bool = field(default=False, repr=False, compare=False)

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
        return min(self._spendable_msat(Side.HOLDER), add_budget.fee_spike_room_msat(self))

    # -- commitments -----------------------------------------------------------------------

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
        peer = self._peer
        point = self._point(side, number)
        balances = log.balances_msat(side, number)
        htlcs = tuple(h.commitment_htlc(side) for h in log.htlcs_in_commitment(side, number))
        if self.funding_outpoint is None:
            raise InvalidStateTransition("no funding outpoint yet")
        state = CommitmentState(commitment_number=number, to_broadcaster_msat=balances[side],
                                to_countersignatory_msat=balances[side.other],
                                feerate_per_kw=log.feerate_per_kw(side, number), htlcs=htlcs)
        return assemble_commitment(
            side=side, state=state, point=point, funding_outpoint=self.funding_outpoint,
            funding_sat=self.funding_sat, commitment_format=self.commitment_format,
            opener=self.opener, holder_params=self.holder_params, counterparty_params=peer)

    def warm_next_commitments(self) -> None:
        """Derive the keys of the next commitment each side will sign, and our next
        per-commitment point, ahead of the messages that need them (both are memoised).

        Called by the node once a flight is sent: the curve arithmetic then runs while the
        peer works on its answer, not between the answer's arrival and ours (in a payment one
        in flight, that wait is the payment rate)."""
        if self.state is not ChannelState.NORMAL or self.counterparty_params is None:
            return
        holder = self.holder_commitment_number
        self.keys.per_commitment_point(holder + 2)   # our next revoke_and_ack announces it
        wanted = [(Side.HOLDER, holder + 1)]
        if self.counterparty_commitment_number + 1 in self.counterparty_points:
            wanted.append((Side.COUNTERPARTY, self.counterparty_commitment_number + 1))
        for side, number in wanted:
            commitment_keys(side, self._point(side, number), self.holder_params,
                            self.counterparty_params)

    def monitor_setup(self) -> MonitorSetup:
        """What a new monitor of this (funded) channel starts from: the plain static records."""
        if self.funding_outpoint is None or self.counterparty_params is None:
            raise InvalidStateTransition("the channel has no funding outpoint yet")
        preimages = () if self.log is None else tuple(
            e.payment_preimage for e in self.log.entries() if e.payment_preimage is not None)
        return MonitorSetup(
            funding_outpoint=self.funding_outpoint, funding_sat=self.funding_sat,
            commitment_format=self.commitment_format, opener=self.opener,
            holder_params=self.holder_params, counterparty_params=self.counterparty_params,
            keys=self.keys, preimages=preimages)

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
        """(HTLCs ``side`` offers, their msat, what ``side`` can still spend)."""
        parts = self.holder_budget_memo if side is Side.HOLDER else None
        if parts is None:
            parts = self._budget_parts(side)
            if side is Side.HOLDER and self.in_add_batch:
                self.holder_budget_memo = parts
        elif self_checks.CHECK_BUDGET_MEMO:
            assert parts == self._budget_parts(side), (parts, self._budget_parts(side))
        count, offered, offered_msat, balance = parts
        reserve_msat = (self._peer.channel_reserve_sat if side is Side.HOLDER
                        else self.holder_params.channel_reserve_sat) * 1000
        if self.opener is side:
            log = self._log
            feerate = max(log.base_feerate_per_kw,
                          *(u.feerate_per_kw for u in log.fee_updates)) if log.fee_updates \
                else log.base_feerate_per_kw
            fee = commitment_fee_sat(feerate, count + 1, self.commitment_format)
            if self.commitment_format is CommitmentFormat.ANCHORS:
                fee += 2 * ANCHOR_OUTPUT_SAT
            balance -= fee * 1000
        return offered, offered_msat, balance - reserve_msat

    def _budget_parts(self, side: Side) -> list[int]:
        """One pass over the log (adds are checked per HTLC, so this is the hot loop of a
        batch): [HTLCs in the log, HTLCs ``side`` offers, their msat, ``side``'s balance
        with every pending debit but only irrevocable credits]."""
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
        return [count, offered, offered_msat, balance]

    @contextlib.contextmanager
    def adding_batch(self) -> Iterator[None]:
        """A batch of our adds (a payment pipeline's): inside, nothing but ``add_htlc`` may
        change the channel. Our budget is then counted once and kept up to date by each add,
        not recounted over the whole log per HTLC (which made a batch quadratic)."""
        self.in_add_batch, self.holder_budget_memo = True, None
        try:
            yield
        finally:
            self.in_add_batch, self.holder_budget_memo = False, None

    def peer_adds_begin(self) -> None:
        """A run of the peer's ``update_add_htlc``s starts (the manager ends it at any other
        message and at the end of the batch): the peer's budget is counted once for the run."""
        self.in_peer_adds, self.peer_budget_memo = True, None

    def peer_adds_end(self) -> None:
        self.in_peer_adds, self.peer_budget_memo = False, None

    def budget_marker(self) -> tuple[int, ...]:
        """What a kept budget must find unchanged (a second guard besides the run's bounds):
        the log's size and ids, both commitment numbers, the fee updates."""
        log = self._log
        return (len(log.htlcs), log.next_htlc_id[Side.HOLDER],
                log.next_htlc_id[Side.COUNTERPARTY], self.holder_commitment_number,
                self.counterparty_commitment_number, len(log.fee_updates))

    def _note_peer_add(self, amount_msat: int) -> None:
        """The peer's HTLC of ``amount_msat`` is in the log: the run's kept budget follows."""
        memo = self.peer_budget_memo
        if memo is not None:
            parts = memo[1]
            parts[0] += 1
            parts[1] += amount_msat
            parts[2] -= amount_msat
            self.peer_budget_memo = (self.budget_marker(), parts)

    def _note_holder_add(self, amount_msat: int) -> None:
        """Our HTLC of ``amount_msat`` is in the log: the batch's budget follows."""
        memo = self.holder_budget_memo
        if memo is not None:
            memo[0] += 1
            memo[1] += 1
            memo[2] += amount_msat
            memo[3] -= amount_msat

    def removal_committed(self, h: HtlcEntry) -> bool:
        """The HTLC's removal is in both sides' current commitments (final for a forwarder)."""
        return self._removal_committed(h)

    def _removal_committed(self, h: HtlcEntry) -> bool:
        removed_l = h.removed_at[Side.HOLDER]
        removed_r = h.removed_at[Side.COUNTERPARTY]
        return removed_l is not None and removed_l <= self.holder_commitment_number and \
            removed_r is not None and removed_r <= self.counterparty_commitment_number

    def _quiescent(self) -> bool:
        return not self.awaiting_revoke_and_ack and not self.has_unsigned_changes() and \
            not self._log.has_updates_for(Side.HOLDER, self.holder_commitment_number + 1)

    def _expect(self, state: ChannelState, what: str) -> None:
        """The peer's message ``what`` is only valid in ``state``."""
        if self.state is not state:
            raise UnexpectedMessage(f"{what} in state {self.state.value}")

