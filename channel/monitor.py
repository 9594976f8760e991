"""Watch one channel's funding output on chain and decide what to claim (BOLT 5).

Pure. LDK's ChannelMonitor idea: a :class:`ChannelMonitor` is built from the channel's static
data, learns each new state from the channel's monitor updates (:mod:`channel.state`), and is fed
the chain (transactions in the mempool or in blocks, reorgs). It answers with events
(:data:`MonitorEvent`) and keeps a current set of claims (:class:`Claim`): signed transactions
to broadcast, each with the chain height from which bitcoind accepts it. It never broadcasts,
sleeps or reads a clock; its caller (the node) does.

Decisions are a function of (static data, updates, preimages, the transactions seen and their
heights). After every input the monitor recomputes its *plan* and reports the difference to the
previous one as events, so feeding the same transaction twice changes nothing, and a reorg
simply moves transactions back to the mempool and re-plans.

What it does, per BOLT 5 case (X = us, Y = the peer)::

    funding spent by                  claims (height = when bitcoind accepts the claim)
    ------------------------------    --------------------------------------------------------
    the cooperative closing tx        none: the outputs already pay the shutdown scripts
    our latest commitment             to_local after to_self_delay (conf + delay - 1);
                                      HTLC-timeout at cltv_expiry, HTLC-success with the preimage,
                                      then their outputs after to_self_delay
    Y's current commitment            to_remote at once (static_remotekey) / after 1 block
                                      (anchors); HTLCs Y offered: with the preimage;
                                      HTLCs we offered: after cltv_expiry
    Y's REVOKED commitment            penalty at once: to_local and every HTLC output with the
                                      revocation key; to_remote as above; if Y's HTLC-success /
                                      -timeout tx takes an HTLC output first, a second-stage
                                      penalty on its output (``<revocation_sig> 1``)
    anything else                     an alert (keys leaked, or our state is stale); if
                                      it pays our static to_remote key, that output
                                      as above (the peer's commitment newer than ours)

Storage is compact: a revoked peer state keeps only its number, balances, feerate and HTLCs;
the per-commitment secret comes from the shachain store (49 slots at most).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import CTransaction, CTxInWitness, CTxWitness
from bitcoin.core.script import CScriptWitness

from channel.errors import InvalidRevocation
from channel.keys import (
    SIGHASH_ALL,
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
    static_payment_pubkey,
    witness_signature,
)
from channel.scripts import (
    htlc_output_script,
    p2wsh,
    to_remote_anchors_script,
    to_remote_script_pubkey,
)
from channel.shachain import RevocationStore
from channel.state import (
    Channel,
    CounterpartyCommitmentSigned,
    CounterpartySecretRevealed,
    HolderCommitmentSigned,
    MonitorUpdate,
    PartyParams,
)
from channel.sweeps import (
    SEQUENCE_NO_RELATIVE_LOCK,
    SpendableOutput,
    SweepTransaction,
    WitnessKind,
    build_htlc_transaction_with_fee,
    build_sweep_transaction,
    delayed_output,
    find_preimages,
    remote_offered_htlc_output,
    remote_received_htlc_output,
    revoked_htlc_output,
    revoked_second_stage_output,
    revoked_to_local_output,
    second_stage_output,
    to_remote_output,
)
from channel.transactions import (
    CommitmentKeys,
    CommitmentTransaction,
    HtlcOutput,
    HtlcTransaction,
    build_commitment_transaction,
    build_htlc_transaction,
    commitment_number_from_tx,
    finalize_commitment_transaction,
    finalize_htlc_transaction,
    obscuring_factor,
    segwit_v0_sighash,
    sign_commitment,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint, Side

__all__ = [
    "ANTI_REORG_DELAY",
    "BalanceStatus",
    "ChannelMonitor",
    "ChannelResolved",
    "Claim",
    "ClaimConfirmed",
    "ClaimKind",
    "ClaimRequested",
    "ClaimWithdrawn",
    "ClaimableBalance",
    "CloseKind",
    "CloseOutcome",
    "CounterpartySpend",
    "FundingSpent",
    "HtlcFeeBump",
    "MonitorEvent",
    "PreimageLearned",
]

ANTI_REORG_DELAY = 6
"""Confirmations after which the monitor calls a transaction final (LDK's value). BOLT 5's 100
is when an implementation may *forget* an output; this monitor never forgets."""

_RECORD_VERSION = 1
_FINAL_SEQUENCE = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Values handed to the caller


class CloseKind(enum.Enum):
    """What spent the funding output."""

    COOPERATIVE = "cooperative"
    HOLDER_COMMITMENT = "holder_commitment"            # our latest commitment
    COUNTERPARTY_COMMITMENT = "counterparty_commitment"  # the peer's current (unrevoked) one
    REVOKED_COMMITMENT = "revoked_commitment"          # the peer cheated
    UNKNOWN = "unknown"                                # none of the above: alert the user


class ClaimKind(enum.Enum):
    """Which BOLT 5 spend a :class:`Claim` is."""

    TO_LOCAL_SWEEP = "to_local_sweep"                  # our to_local after to_self_delay
    HTLC_TIMEOUT = "htlc_timeout"                      # our pre-signed HTLC-timeout tx
    HTLC_SUCCESS = "htlc_success"                      # our pre-signed HTLC-success tx
    SECOND_STAGE_SWEEP = "second_stage_sweep"          # our HTLC tx's output after the delay
    TO_REMOTE_SWEEP = "to_remote_sweep"                # our to_remote on the peer's commitment
    HTLC_PREIMAGE_CLAIM = "htlc_preimage_claim"        # peer-offered HTLC, with the preimage
    HTLC_TIMEOUT_CLAIM = "htlc_timeout_claim"          # our HTLC on the peer's tx, timed out
    PENALTY = "penalty"                                # revoked to_local + HTLC outputs
    SECOND_STAGE_PENALTY = "second_stage_penalty"      # output of the cheater's HTLC tx


@dataclass(frozen=True, slots=True, kw_only=True)
class HtlcFeeBump:
    """A zero-fee anchors HTLC-timeout/-success tx: it needs fee inputs before it can relay.

    The countersignatory's SIGHASH_SINGLE|ANYONECANPAY signature commits to input 0 and output 0
    only, so fee inputs and a change output may be added; our SIGHASH_ALL signature is made last,
    over the final transaction, by :meth:`with_fee_inputs` (coins we hold the key of) or
    :meth:`sign_htlc_input` (a transaction funded and signed elsewhere, e.g. by bitcoind).
    """

    htlc_tx: HtlcTransaction
    countersignatory_signature: bytes
    broadcaster_htlc_privkey: PrivateKey = field(repr=False)
    payment_preimage: bytes | None = field(default=None, repr=False)

    def with_fee_inputs(self, fee_inputs: Sequence[SpendableOutput], *,
                        change_script_pubkey: bytes, feerate_per_kw: int) -> SweepTransaction:
        """The HTLC tx with ``fee_inputs`` attached, fully signed."""
        return build_htlc_transaction_with_fee(
            self.htlc_tx, countersignatory_signature=self.countersignatory_signature,
            broadcaster_htlc_privkey=self.broadcaster_htlc_privkey,
            payment_preimage=self.payment_preimage, fee_inputs=fee_inputs,
            change_script_pubkey=change_script_pubkey, feerate_per_kw=feerate_per_kw)

    def sign_htlc_input(self, tx: CTransaction) -> CTransaction:
        """Fill input 0's witness of ``tx`` (input 0 / output 0 = this HTLC tx's), keeping the
        witnesses of the other inputs."""
        base = self.htlc_tx.tx
        if tx.vin[0].prevout != base.vin[0].prevout or tx.vout[0] != base.vout[0]:
            raise ValueError("sign_htlc_input: input 0 / output 0 are not this HTLC tx's")
        out = self.htlc_tx.htlc_output
        digest = segwit_v0_sighash(tx, 0, out.witness_script, out.amount_sat, SIGHASH_ALL)
        ours = witness_signature(self.broadcaster_htlc_privkey.sign(digest))
        theirs = witness_signature(self.countersignatory_signature,
                                   self.htlc_tx.countersignatory_sighash_type)
        stack = (b"", theirs, ours, self.payment_preimage or b"", out.witness_script)
        old = list(tx.wit.vtxinwit) if not tx.wit.is_null() else []
        old += [CTxInWitness()] * (len(tx.vin) - len(old))
        old[0] = CTxInWitness(CScriptWitness(list(stack)))
        return CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion, CTxWitness(tuple(old)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A transaction the node should broadcast once the tip reaches ``broadcastable_at_height``.

    ``broadcastable_at_height`` is the lowest chain tip height at which bitcoind accepts the
    transaction into its mempool (0: at once). A CSV delay ``D`` on an output confirmed at ``h``
    gives ``h + D - 1``; an nLockTime ``L`` gives ``L``. ``amount_sat`` is the value of the
    claim's first output (what we get, before any later sweep); ``spends`` the outpoints it
    takes. With ``fee_bump`` set (anchors HTLC txs) ``tx`` pays no fee: use the fee bump.
    """

    kind: ClaimKind
    tx: CTransaction
    txid: bytes
    spends: tuple[OutPoint, ...]
    amount_sat: int
    fee_sat: int
    broadcastable_at_height: int
    description: str
    fee_bump: HtlcFeeBump | None = None

    @property
    def txid_hex(self) -> str:
        """The txid in display order."""
        return self.txid[::-1].hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseOutcome:
    """How the channel was closed, as far as the chain says now."""

    kind: CloseKind
    txid: bytes
    height: int | None
    commitment_number: int | None
    description: str


class BalanceStatus(enum.Enum):
    """Where an amount of ours stands (see :meth:`ChannelMonitor.claimable_balances`)."""

    CHANNEL_OPEN = "channel_open"                    # ours if we force-closed now
    CLAIMABLE = "claimable"                          # a claim, valid from ``claimable_from_height``
    AWAITING_PARENT = "awaiting_parent"              # the tx it spends is not confirmed yet
    AWAITING_CONFIRMATIONS = "awaiting_confirmations"  # our claim is out, not final yet
    HTLC_PENDING = "htlc_pending"                    # an HTLC whose outcome is not decided
    CONTESTED = "contested"                          # the peer may take it first
    UNECONOMIC = "uneconomic"                        # below dust after the fee: left on chain


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimableBalance:
    """An amount we can get from this channel, and from which height."""

    status: BalanceStatus
    amount_sat: int
    claimable_from_height: int | None
    description: str


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingSpent:
    """The funding output was spent (or the spend moved: confirmed, reorganised out)."""

    outcome: CloseOutcome

    @property
    def description(self) -> str:
        return self.outcome.description


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRequested:
    """Broadcast ``claim`` once the tip reaches its height (new, or its height changed)."""

    claim: Claim

    @property
    def description(self) -> str:
        return self.claim.description


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimWithdrawn:
    """A claim asked for earlier is void: an input went elsewhere, or its parent left the chain."""

    claim: Claim
    reason: str

    @property
    def description(self) -> str:
        return f"claim {self.claim.txid_hex[:16]}... ({self.claim.kind.value}) withdrawn: " \
            f"{self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimConfirmed:
    """Our claim is in a block."""

    claim: Claim
    height: int

    @property
    def description(self) -> str:
        return f"{self.claim.kind.value} {self.claim.txid_hex[:16]}... confirmed at height " \
            f"{self.height}: {self.claim.amount_sat} sat"


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterpartySpend:
    """The peer spent an output of the closing commitment (second-stage tx, HTLC claim...)."""

    txid: bytes
    height: int | None
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PreimageLearned:
    """A payment preimage revealed on chain (BOLT 5: fulfil the upstream HTLC with it)."""

    payment_hash: bytes
    payment_preimage: bytes
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelResolved:
    """Every output of ours is claimed and ``ANTI_REORG_DELAY`` deep: nothing left to do."""

    description: str


MonitorEvent = (FundingSpent | ClaimRequested | ClaimWithdrawn | ClaimConfirmed
                | CounterpartySpend | PreimageLearned | ChannelResolved)


# ---------------------------------------------------------------------------------------------
# Internal records


@dataclass(frozen=True, slots=True, kw_only=True)
class _CommitmentState:
    """Enough to rebuild one commitment: balances before fees, feerate, HTLCs."""

    commitment_number: int
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _HolderState:
    state: _CommitmentState
    counterparty_signature: bytes
    counterparty_htlc_signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _CounterpartyState:
    state: _CommitmentState
    per_commitment_point: PerCommitmentPoint
    txid: bytes


@dataclass(slots=True, kw_only=True)
class _Seen:
    """A relevant transaction: ``depth`` 1 spends the funding output, 2 a commitment output,
    3 a second-stage output; ``order`` is the arrival order (latest mempool spend wins)."""

    tx: CTransaction
    txid: bytes
    height: int | None
    order: int
    depth: int


@dataclass(slots=True, kw_only=True)
class _Planned:
    claim: Claim
    height: int | None          # confirmation height of the tx that carries it
    in_mempool: bool


@dataclass(slots=True, kw_only=True)
class _Plan:
    close: CloseOutcome | None = None
    claims: dict[tuple[str, tuple[OutPoint, ...]], _Planned] = field(default_factory=dict)
    spends: dict[bytes, CounterpartySpend] = field(default_factory=dict)
    preimages: dict[bytes, bytes] = field(default_factory=dict)
    balances: list[ClaimableBalance] = field(default_factory=list)
    open_items: int = 0


def _short(txid: bytes) -> str:
    return txid[::-1].hex()[:16] + "..."


def _outpoint_key(txid: bytes, vout: int) -> tuple[bytes, int]:
    return (txid, vout)


def _htlc_word(n: int) -> str:
    return "1 HTLC" if n == 1 else f"{n} HTLCs"


# ---------------------------------------------------------------------------------------------
# The monitor


class ChannelMonitor:
    """The chain watcher of one channel (mutable; persist it with :meth:`to_record`).

    Feed it, in any order the node sees them: :meth:`apply_update` (from
    ``Channel.drain_monitor_updates()``), :meth:`provide_payment_preimage`,
    :meth:`transaction_seen`, :meth:`block_connected`, :meth:`block_disconnected`. Each returns
    the events the input caused. Ask it :meth:`claims_to_broadcast` at every new tip.
    """

    def __init__(self, *, funding_outpoint: OutPoint, funding_sat: int,
                 commitment_format: CommitmentFormat, opener: Side,
                 holder_params: PartyParams, counterparty_params: PartyParams,
                 keys: ChannelKeys, destination_script_pubkey: bytes, sweep_feerate_per_kw: int,
                 peer_name: str = "the peer") -> None:
        if funding_sat <= 0:
            raise ValueError("funding_sat must be positive")
        if sweep_feerate_per_kw < 253:
            raise ValueError("sweep_feerate_per_kw below the 253 sat/kw relay floor")
        if not destination_script_pubkey:
            raise ValueError("destination_script_pubkey must not be empty")
        if holder_params.basepoints != keys.basepoints():
            raise ValueError("holder_params.basepoints do not match keys")
        self.funding_outpoint = funding_outpoint
        self.funding_sat = funding_sat
        self.commitment_format = commitment_format
        self.opener = opener
        self.holder_params = holder_params
        self.counterparty_params = counterparty_params
        self.keys = keys
        self.destination_script_pubkey = destination_script_pubkey
        self.sweep_feerate_per_kw = sweep_feerate_per_kw
        self.peer_name = peer_name
        ours = holder_params.basepoints.payment_basepoint
        theirs = counterparty_params.basepoints.payment_basepoint
        self._factor = (obscuring_factor(ours, theirs) if opener is Side.HOLDER
                        else obscuring_factor(theirs, ours))
        self._holder: _HolderState | None = None
        self._counterparty: dict[int, _CounterpartyState] = {}
        self._revoked: dict[int, _CommitmentState] = {}
        self._secrets = RevocationStore()
        self._preimages: dict[bytes, bytes] = {}
        self._seen: dict[bytes, _Seen] = {}
        self._spenders: dict[tuple[bytes, int], list[bytes]] = {}
        self._next_order = 0
        self._tip_height: int | None = None
        self._cache: dict[tuple[str, int], CommitmentTransaction] = {}
        self._plan = _Plan()
        self._resolved_reported = False

    @classmethod
    def from_channel(cls, channel: Channel, destination_script_pubkey: bytes,
                     sweep_feerate_per_kw: int, *, peer_name: str = "the peer"
                     ) -> ChannelMonitor:
        """A monitor for ``channel`` (funding outpoint known). Create it before draining the
        channel's first monitor updates, then :meth:`apply_update` every drained update."""
        if channel.funding_outpoint is None or channel.counterparty_params is None:
            raise ValueError("from_channel: the channel has no funding outpoint yet")
        monitor = cls(
            funding_outpoint=channel.funding_outpoint, funding_sat=channel.funding_sat,
            commitment_format=channel.commitment_format, opener=channel.opener,
            holder_params=channel.holder_params, counterparty_params=channel.counterparty_params,
            keys=channel.keys, destination_script_pubkey=destination_script_pubkey,
            sweep_feerate_per_kw=sweep_feerate_per_kw, peer_name=peer_name)
        if channel.log is not None:
            for entry in channel.log.entries():
                if entry.payment_preimage is not None:
                    monitor._preimages[entry.payment_hash] = entry.payment_preimage
        return monitor

    # -- updates from the channel ----------------------------------------------------------

    def apply_update(self, update: MonitorUpdate) -> list[MonitorEvent]:
        """Learn one state change of the channel (idempotent for a repeated update)."""
        # Rebuilt commitments are only worth keeping once the channel is closed and updates
        # stop; while it is open this keeps the cache from growing with every state.
        self._cache.clear()
        if isinstance(update, HolderCommitmentSigned):
            if self._holder is None or update.commitment_number >= \
                    self._holder.state.commitment_number:
                self._holder = _HolderState(
                    state=_CommitmentState(
                        commitment_number=update.commitment_number,
                        to_broadcaster_msat=update.to_broadcaster_msat,
                        to_countersignatory_msat=update.to_countersignatory_msat,
                        feerate_per_kw=update.feerate_per_kw, htlcs=update.htlcs),
                    counterparty_signature=update.counterparty_signature,
                    counterparty_htlc_signatures=update.counterparty_htlc_signatures)
        elif isinstance(update, CounterpartyCommitmentSigned):
            if update.commitment_number not in self._revoked:
                self._counterparty[update.commitment_number] = _CounterpartyState(
                    state=_CommitmentState(
                        commitment_number=update.commitment_number,
                        to_broadcaster_msat=update.to_broadcaster_msat,
                        to_countersignatory_msat=update.to_countersignatory_msat,
                        feerate_per_kw=update.feerate_per_kw, htlcs=update.htlcs),
                    per_commitment_point=update.per_commitment_point, txid=update.txid)
        elif isinstance(update, CounterpartySecretRevealed):
            self._revoke(update.commitment_number, update.per_commitment_secret)
        else:
            raise TypeError(f"apply_update: not a monitor update: {type(update).__name__}")
        return self._refresh()

    def apply_updates(self, updates: Iterable[MonitorUpdate]) -> list[MonitorEvent]:
        """:meth:`apply_update` for each, in order."""
        events: list[MonitorEvent] = []
        for update in updates:
            events += self.apply_update(update)
        return events

    def _revoke(self, number: int, secret: bytes) -> None:
        if number in self._revoked:
            return
        if self._secrets.get_secret_for_commitment(number) is None:
            entry = self._counterparty.get(number)
            if entry is not None and per_commitment_point_from_secret(secret) != \
                    entry.per_commitment_point:
                raise InvalidRevocation(f"secret does not match the peer's commitment {number}")
            self._secrets.add_secret_for_commitment(number, secret)  # raises if out of order
        entry = self._counterparty.pop(number, None)
        if entry is not None:
            self._revoked[number] = entry.state
        for n in [n for n in self._counterparty if n < number]:
            self._revoked[n] = self._counterparty.pop(n).state

    def provide_payment_preimage(self, payment_preimage: bytes) -> list[MonitorEvent]:
        """A preimage we may use on chain (our invoice's, or learned from the peer)."""
        if len(payment_preimage) != 32:
            raise ValueError("payment_preimage must be 32 bytes")
        payment_hash = hashlib.sha256(payment_preimage).digest()
        if self._preimages.get(payment_hash) == payment_preimage:
            return []
        self._preimages[payment_hash] = payment_preimage
        return self._refresh()

    # -- chain -------------------------------------------------------------------------------

    def transaction_seen(self, tx: CTransaction, height: int | None) -> list[MonitorEvent]:
        """A transaction in the mempool (``height`` None) or in the block at ``height``."""
        self._record(tx, height)
        return self._refresh()

    def block_connected(self, height: int, txs: Sequence[CTransaction]) -> list[MonitorEvent]:
        """The block at ``height`` became the tip; ``txs`` are its transactions."""
        self._tip_height = height
        for tx in txs:
            self._record(tx, height)
        return self._refresh()

    def block_disconnected(self, height: int) -> list[MonitorEvent]:
        """The block at ``height`` left the chain: its transactions go back to the mempool."""
        for seen in self._seen.values():
            if seen.height is not None and seen.height >= height:
                seen.height = None
        self._tip_height = height - 1
        return self._refresh()

    def _depth_of(self, tx: CTransaction) -> int:
        depth = 0
        for txin in tx.vin:
            prev_txid = bytes(txin.prevout.hash)
            vout = int(txin.prevout.n)
            if prev_txid == self.funding_outpoint.txid and vout == self.funding_outpoint.vout:
                return 1
            parent = self._seen.get(prev_txid)
            if parent is not None and parent.depth < 3:
                candidate = parent.depth + 1
                depth = candidate if depth == 0 else min(depth, candidate)
        return depth

    def _record(self, tx: CTransaction, height: int | None) -> None:
        # Relevance first (dict lookups on the prevouts): most txs fed here are not ours, and
        # a recorded tx always has depth >= 1, so hashing can wait.
        depth = self._depth_of(tx)
        if depth == 0:
            return
        txid = bytes(tx.GetTxid())
        seen = self._seen.get(txid)
        if seen is not None:
            if height is not None:
                seen.height = height
        else:
            self._seen[txid] = _Seen(tx=tx, txid=txid, height=height, order=self._next_order,
                                     depth=depth)
            self._next_order += 1
            for txin in tx.vin:
                key = _outpoint_key(bytes(txin.prevout.hash), int(txin.prevout.n))
                self._spenders.setdefault(key, []).append(txid)
        if height is not None and (self._tip_height is None or height > self._tip_height):
            self._tip_height = height

    def _spender(self, outpoint: OutPoint) -> _Seen | None:
        """The tx that spends ``outpoint``: a confirmed one if any, else the latest seen."""
        txids = self._spenders.get(_outpoint_key(outpoint.txid, outpoint.vout))
        if not txids:
            return None
        candidates = [self._seen[t] for t in txids]
        confirmed = [s for s in candidates if s.height is not None]
        if confirmed:
            return min(confirmed, key=lambda s: (s.height, s.order))
        return max(candidates, key=lambda s: s.order)

    # -- queries ---------------------------------------------------------------------------

    @property
    def tip_height(self) -> int | None:
        """The highest block height seen."""
        return self._tip_height

    @property
    def close_outcome(self) -> CloseOutcome | None:
        """How the funding output was spent, or None while the channel is open."""
        return self._plan.close

    @property
    def is_resolved(self) -> bool:
        """Closed, and every output of ours claimed and final (ANTI_REORG_DELAY deep)."""
        return self._is_resolved(self._plan)

    def pending_claims(self) -> list[Claim]:
        """Every claim not yet confirmed, timelocked or not."""
        return [p.claim for p in self._plan.claims.values() if p.height is None]

    def claims_to_broadcast(self, tip_height: int) -> list[Claim]:
        """Claims to (re)broadcast now: not confirmed, valid at ``tip_height``."""
        return [p.claim for p in self._plan.claims.values()
                if p.height is None and p.claim.broadcastable_at_height <= tip_height]

    def known_preimages(self) -> dict[bytes, bytes]:
        """payment_hash -> preimage, given or learned on chain."""
        return dict(self._preimages)

    def claimable_balances(self) -> list[ClaimableBalance]:
        """What we can still get from this channel and from which height (``balance``)."""
        if self._plan.close is None:
            return self._open_balances()
        return list(self._plan.balances)

    def _open_balances(self) -> list[ClaimableBalance]:
        if self._holder is None:
            return []
        c = self._holder_commitment()
        out = [ClaimableBalance(
            status=BalanceStatus.CHANNEL_OPEN, amount_sat=c.to_local_amount_sat,
            claimable_from_height=None,
            description=f"channel open: {c.to_local_amount_sat} sat is ours on our commitment "
                        f"#{c.commitment_number} ({c.to_self_delay} blocks after a force-close)")]
        for ho in c.htlc_outputs:
            h = ho.htlc
            what = ("we offered it: ours again if it times out at height "
                    f"{h.cltv_expiry}" if h.direction is HtlcDirection.OFFERED
                    else "offered to us: ours with its preimage")
            out.append(ClaimableBalance(status=BalanceStatus.HTLC_PENDING,
                                        amount_sat=ho.amount_sat, claimable_from_height=None,
                                        description=f"HTLC #{h.htlc_id} in flight ({what})"))
        return out

    def revoked_commitment(self, commitment_number: int) -> CommitmentTransaction:
        """The peer's revoked commitment ``commitment_number``, rebuilt (for a tower blob)."""
        state = self._revoked.get(commitment_number)
        if state is None:
            raise KeyError(f"the peer's commitment {commitment_number} is not revoked here")
        return self._rebuild_revoked(state)

    def revocation_privkey(self, commitment_number: int) -> PrivateKey:
        """Our revocation key for the peer's revoked commitment ``commitment_number``."""
        secret = self._secrets.get_secret_for_commitment(commitment_number)
        if secret is None:
            raise KeyError(f"no secret for the peer's commitment {commitment_number}")
        return self.keys.revocation_privkey(secret)

    @property
    def revoked_state_count(self) -> int:
        """How many revoked peer states this monitor keeps (O(1))."""
        return len(self._revoked)

    @property
    def revoked_commitment_numbers(self) -> list[int]:
        """Numbers of the peer's revoked commitments known here, ascending."""
        return sorted(self._revoked)

    # -- commitments ------------------------------------------------------------------------

    def _build(self, *, side: Side, state: _CommitmentState,
               point: PerCommitmentPoint) -> CommitmentTransaction:
        ours, theirs = self.holder_params, self.counterparty_params
        broadcaster, countersignatory = (ours, theirs) if side is Side.HOLDER else (theirs, ours)
        keys = CommitmentKeys.derive(per_commitment_point=point,
                                     broadcaster=broadcaster.basepoints,
                                     countersignatory=countersignatory.basepoints)
        return build_commitment_transaction(
            funding_outpoint=self.funding_outpoint, funding_amount_sat=self.funding_sat,
            commitment_number=state.commitment_number, obscuring_factor=self._factor,
            keys=keys, to_self_delay=countersignatory.to_self_delay,
            dust_limit_sat=broadcaster.dust_limit_sat, feerate_per_kw=state.feerate_per_kw,
            broadcaster_is_opener=self.opener is side,
            to_local_msat=state.to_broadcaster_msat, to_remote_msat=state.to_countersignatory_msat,
            htlcs=state.htlcs, commitment_format=self.commitment_format)

    def _holder_commitment(self) -> CommitmentTransaction:
        if self._holder is None:
            raise ValueError("no holder commitment yet")
        state = self._holder.state
        key = ("holder", state.commitment_number)
        if key not in self._cache:
            self._cache[key] = self._build(
                side=Side.HOLDER, state=state,
                point=self.keys.per_commitment_point(state.commitment_number))
        return self._cache[key]

    def holder_commitment_tx(self) -> CTransaction:
        """Our latest commitment, signed by both: what a force-close broadcasts."""
        if self._holder is None:
            raise ValueError("no holder commitment yet")
        c = self._holder_commitment()
        return finalize_commitment_transaction(
            c, broadcaster_signature=sign_commitment(c, self.keys.funding_key),
            countersignatory_signature=self._holder.counterparty_signature)

    def _counterparty_commitment(self, entry: _CounterpartyState) -> CommitmentTransaction:
        key = ("counterparty", entry.state.commitment_number)
        cached = self._cache.get(key)
        if cached is None or cached.txid != entry.txid:
            cached = self._build(side=Side.COUNTERPARTY, state=entry.state,
                                 point=entry.per_commitment_point)
            self._cache[key] = cached
        return cached

    def _rebuild_revoked(self, state: _CommitmentState) -> CommitmentTransaction:
        key = ("revoked", state.commitment_number)
        cached = self._cache.get(key)
        if cached is None:
            secret = self._secrets.get_secret_for_commitment(state.commitment_number)
            if secret is None:
                raise ValueError(f"no secret for revoked commitment {state.commitment_number}")
            cached = self._build(side=Side.COUNTERPARTY, state=state,
                                 point=per_commitment_point_from_secret(secret))
            self._cache[key] = cached
        return cached

    # -- planning ---------------------------------------------------------------------------

    def _refresh(self) -> list[MonitorEvent]:
        new = self._make_plan()
        events = self._diff(self._plan, new)
        self._plan = new
        return events

    def _is_deep(self, height: int | None) -> bool:
        return height is not None and self._tip_height is not None and \
            self._tip_height - height + 1 >= ANTI_REORG_DELAY

    def _is_resolved(self, plan: _Plan) -> bool:
        return plan.close is not None and self._is_deep(plan.close.height) and \
            plan.open_items == 0 and all(self._is_deep(p.height) for p in plan.claims.values())

    def _make_plan(self) -> _Plan:
        plan = _Plan()
        funding = self._spender(self.funding_outpoint)
        if funding is None:
            return plan
        tx, h = funding.tx, funding.height
        number = commitment_number_from_tx(tx, self._factor)
        if self._holder is not None and self._holder_commitment().txid == funding.txid:
            self._plan_holder(plan, funding)
            return plan
        for entry in self._counterparty.values():
            if entry.txid == funding.txid:
                self._plan_counterparty(plan, funding, entry)
                return plan
        if number is not None and number in self._revoked:
            revoked = self._rebuild_revoked(self._revoked[number])
            if revoked.txid == funding.txid:
                self._plan_revoked(plan, funding, revoked)
                return plan
        if tx.vin[0].nSequence == _FINAL_SEQUENCE and tx.nLockTime == 0:
            ours = sum(int(o.nValue) for o in tx.vout
                       if bytes(o.scriptPubKey) == self.destination_script_pubkey)
            plan.close = CloseOutcome(
                kind=CloseKind.COOPERATIVE, txid=funding.txid, height=h, commitment_number=None,
                description=f"cooperative close {_short(funding.txid)} "
                            f"{self._where(h)}: the outputs already pay each side's shutdown "
                            "script, nothing to claim")
            if ours and not self._is_deep(h):
                plan.balances.append(self._confirming_balance(
                    ours, h, "our output of the cooperative close"))
            return plan
        plan.close = CloseOutcome(
            kind=CloseKind.UNKNOWN, txid=funding.txid, height=h, commitment_number=number,
            description=f"ALERT: the funding output was spent by {_short(funding.txid)}, which "
                        "is none of the commitments we know: keys leaked, or our state is stale")
        self._plan_static_to_remote(plan, funding)
        return plan

    def _where(self, height: int | None) -> str:
        return "in the mempool" if height is None else f"confirmed at height {height}"

    def _confirming_balance(self, amount: int, height: int | None,
                            what: str) -> ClaimableBalance:
        final = None if height is None else height + ANTI_REORG_DELAY - 1
        return ClaimableBalance(status=BalanceStatus.AWAITING_CONFIRMATIONS, amount_sat=amount,
                                claimable_from_height=final,
                                description=f"{what}: {amount} sat, final at height {final}"
                                if final is not None else f"{what}: {amount} sat, unconfirmed")

    def _pays_us(self, tx: CTransaction) -> bool:
        return len(tx.vout) == 1 and \
            bytes(tx.vout[0].scriptPubKey) == self.destination_script_pubkey

    def _is_live(self, seen: _Seen) -> bool:
        """No input of ``seen`` went to another (preferred) transaction."""
        return all(self._spender(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)))
                   is seen for i in seen.tx.vin)

    def _carrier(self, claim: Claim) -> tuple[_Seen | None, _Seen | None]:
        """(the tx of ours that carries ``claim``, spending exactly its inputs, if seen;
        a tx not ours that took one of its inputs, if any)."""
        second_stage = claim.kind in (ClaimKind.HTLC_TIMEOUT, ClaimKind.HTLC_SUCCESS)
        spenders = [self._spender(op) for op in claim.spends]
        for s in spenders:
            if s is None or s.txid == claim.txid or self._pays_us(s.tx):
                continue
            # A fee-bumped HTLC tx of ours keeps output 0 and gains inputs.
            if not (second_stage and s.tx.vout[0] == claim.tx.vout[0]):
                return None, s
        carrier = spenders[0]
        if carrier is None or any(s is not carrier for s in spenders) or \
                not self._is_live(carrier):
            return None, None
        spent = {OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n))
                 for i in carrier.tx.vin}
        if spent != set(claim.spends) and not (second_stage and spent >= set(claim.spends)):
            return None, None   # an older grouping of ours, now conflicted: re-plan without it
        return carrier, None

    def _add_claim(self, plan: _Plan, claim: Claim) -> None:
        """Add ``claim``; its status comes from the tx of ours that spends its inputs."""
        carrier, taken = self._carrier(claim)
        if taken is not None:
            self._note_spend(plan, taken, f"an output we meant to claim "
                             f"({claim.kind.value}) went to {_short(taken.txid)}")
            return
        height: int | None = None
        in_mempool = False
        if carrier is not None:
            if carrier.txid != claim.txid:
                # Ours, built differently (another feerate, or fee inputs added): follow it.
                claim = dataclasses.replace(claim, tx=carrier.tx, txid=carrier.txid,
                                            amount_sat=int(carrier.tx.vout[0].nValue),
                                            fee_bump=None)
            height = carrier.height
            in_mempool = carrier.height is None
        key = (claim.kind.value, tuple(sorted(claim.spends, key=lambda o: (o.txid, o.vout))))
        plan.claims[key] = _Planned(claim=claim, height=height, in_mempool=in_mempool)
        if self._is_deep(height):
            return   # final: nothing left to get
        if height is not None:
            plan.balances.append(self._confirming_balance(
                claim.amount_sat, height, f"{claim.kind.value} {_short(claim.txid)}"))
        elif in_mempool:
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.AWAITING_CONFIRMATIONS, amount_sat=claim.amount_sat,
                claimable_from_height=None,
                description=f"{claim.kind.value} {_short(claim.txid)} in the mempool: "
                            f"{claim.amount_sat} sat"))
        else:
            status = BalanceStatus.CONTESTED if claim.kind in (
                ClaimKind.PENALTY, ClaimKind.SECOND_STAGE_PENALTY,
                ClaimKind.HTLC_TIMEOUT_CLAIM, ClaimKind.HTLC_TIMEOUT) else BalanceStatus.CLAIMABLE
            plan.balances.append(ClaimableBalance(
                status=status, amount_sat=claim.amount_sat,
                claimable_from_height=claim.broadcastable_at_height,
                description=claim.description))

    def _sweep(self, plan: _Plan, kind: ClaimKind, inputs: list[SpendableOutput],
               at: int, description: str) -> Claim | None:
        try:
            sweep = build_sweep_transaction(
                inputs, destination_script_pubkey=self.destination_script_pubkey,
                feerate_per_kw=self.sweep_feerate_per_kw)
        except ValueError as exc:  # the output would be dust: not worth a transaction
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.UNECONOMIC, amount_sat=sum(i.amount_sat for i in inputs),
                claimable_from_height=None, description=f"{description}: not worth it, {exc}"))
            return None
        claim = Claim(kind=kind, tx=sweep.tx, txid=sweep.txid,
                      spends=tuple(s.outpoint for s in inputs),
                      amount_sat=sweep.output_amount_sat, fee_sat=sweep.fee_sat,
                      broadcastable_at_height=at,
                      description=f"{description} -> {sweep.output_amount_sat} sat to us "
                                  f"after a {sweep.fee_sat} sat fee")
        self._add_claim(plan, claim)
        return claim

    def _awaiting_parent(self, plan: _Plan, amount: int, what: str) -> None:
        plan.open_items += 1
        plan.balances.append(ClaimableBalance(
            status=BalanceStatus.AWAITING_PARENT, amount_sat=amount, claimable_from_height=None,
            description=f"{what}: {amount} sat, once the transaction it spends confirms"))

    def _note_spend(self, plan: _Plan, seen: _Seen, description: str) -> None:
        plan.spends.setdefault(seen.txid, CounterpartySpend(
            txid=seen.txid, height=seen.height, description=description))
        if not self._is_deep(seen.height):
            plan.open_items += 1

    def _learn_preimages(self, plan: _Plan, seen: _Seen, hashes: Sequence[bytes]) -> None:
        for payment_hash, preimage in find_preimages(seen.tx, hashes).items():
            plan.preimages[payment_hash] = preimage

    # ---- our commitment on chain

    def _plan_holder(self, plan: _Plan, funding: _Seen) -> None:
        assert self._holder is not None
        c = self._holder_commitment()
        h = funding.height
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        delay = c.to_self_delay
        htlc_note = f"; {_htlc_word(len(c.htlc_outputs))} to resolve" if c.htlc_outputs else ""
        plan.close = CloseOutcome(
            kind=CloseKind.HOLDER_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"our commitment #{c.commitment_number} ({_short(c.txid)}) is "
                        f"{self._where(h)}: our to_local {c.to_local_amount_sat} sat waits "
                        f"{delay} blocks (to_self_delay){htlc_note}")
        if c.to_local_vout is not None:
            spend = delayed_output(c, self.keys.delayed_payment_privkey(
                c.keys.per_commitment_point))
            if h is None:
                self._awaiting_parent(plan, spend.amount_sat, "our to_local")
            else:
                self._sweep(plan, ClaimKind.TO_LOCAL_SWEEP, [spend], h + delay - 1,
                            f"sweep our to_local {spend.amount_sat} sat of commitment "
                            f"#{c.commitment_number}, valid {delay} blocks after it confirmed "
                            f"(height {h + delay - 1} on)")
        htlc_key = self.keys.htlc_privkey(c.keys.per_commitment_point)
        sigs = dict(zip((o.vout for o in c.htlc_outputs),
                        self._holder.counterparty_htlc_signatures, strict=True))
        for ho in c.htlc_outputs:
            self._plan_holder_htlc(plan, c, ho, funding, htlc_key, sigs[ho.vout], anchors)

    def _plan_holder_htlc(self, plan: _Plan, c: CommitmentTransaction, ho: HtlcOutput,
                          funding: _Seen, htlc_key: PrivateKey, their_sig: bytes,
                          anchors: bool) -> None:
        h = funding.height
        htlc = ho.htlc
        htx = build_htlc_transaction(c, ho)
        second_spk = p2wsh(htx.output_script)
        spender = self._spender(c.outpoint(ho.vout))
        offered = htlc.direction is HtlcDirection.OFFERED
        label = f"HTLC #{htlc.htlc_id} ({ho.amount_sat} sat, " + \
            ("we offered" if offered else f"{self.peer_name} offered") + ")"
        if spender is not None and bytes(spender.tx.vout[0].scriptPubKey) != second_spk:
            if offered:
                self._learn_preimages(plan, spender, [htlc.payment_hash])
                self._note_spend(plan, spender, f"{self.peer_name} claimed our {label} with its "
                                 f"preimage in {_short(spender.txid)}: the payment succeeded")
            else:
                self._note_spend(plan, spender, f"{self.peer_name} took back its {label} after "
                                 f"its timeout in {_short(spender.txid)}")
            return
        preimage = None if offered else self._preimages.get(htlc.payment_hash)
        if not offered and preimage is None and spender is None:
            plan.open_items += 1
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.HTLC_PENDING, amount_sat=ho.amount_sat,
                claimable_from_height=None,
                description=f"{label}: ours only with its preimage; {self.peer_name} takes it "
                            f"back from height {htlc.cltv_expiry}"))
            return
        if anchors and h is None:
            self._awaiting_parent(plan, ho.amount_sat, label)
            return
        if offered:
            at = max(htlc.cltv_expiry, h or 0) if anchors else htlc.cltv_expiry
            kind = ClaimKind.HTLC_TIMEOUT
            what = f"HTLC-timeout for {label}, valid from height {at}"
        else:
            at = (h or 0) if anchors else 0
            kind = ClaimKind.HTLC_SUCCESS
            what = f"HTLC-success for {label} with its preimage"
        our_sig = htlc_key.sign(htx.broadcaster_sighash())
        signed = finalize_htlc_transaction(htx, countersignatory_signature=their_sig,
                                           broadcaster_signature=our_sig,
                                           payment_preimage=preimage)
        bump = None
        if anchors:
            bump = HtlcFeeBump(htlc_tx=htx, countersignatory_signature=their_sig,
                               broadcaster_htlc_privkey=htlc_key, payment_preimage=preimage)
            what += " (zero-fee: attach fee inputs)"
        claim = Claim(kind=kind, tx=signed, txid=htx.txid, spends=(c.outpoint(ho.vout),),
                      amount_sat=htx.output_amount_sat, fee_sat=htx.fee_sat,
                      broadcastable_at_height=at,
                      description=f"{what}; its output is ours {c.to_self_delay} blocks after "
                                  "it confirms", fee_bump=bump)
        self._add_claim(plan, claim)   # follows a fee-bumped second stage of ours, too
        if spender is None:
            return
        amount = int(spender.tx.vout[0].nValue)
        out = OutPoint(txid=spender.txid, vout=0)
        if spender.height is None:
            self._awaiting_parent(plan, amount, f"output of our {kind.value} tx")
            return
        delay = c.to_self_delay
        taker = self._spender(out)
        if taker is not None and not self._pays_us(taker.tx):
            self._note_spend(plan, taker, f"the output of our {kind.value} tx was spent by "
                             f"{_short(taker.txid)} (revocation path: we broadcast a revoked "
                             "state?)")
            return
        spend = second_stage_output(
            outpoint=out, amount_sat=amount, output_script=htx.output_script,
            to_self_delay=delay,
            delayed_privkey=self.keys.delayed_payment_privkey(c.keys.per_commitment_point))
        self._sweep(plan, ClaimKind.SECOND_STAGE_SWEEP, [spend], spender.height + delay - 1,
                    f"sweep the output of our {kind.value} tx for {label}, valid from height "
                    f"{spender.height + delay - 1}")

    # ---- the peer's current commitment on chain

    def _plan_counterparty(self, plan: _Plan, funding: _Seen, entry: _CounterpartyState) -> None:
        c = self._counterparty_commitment(entry)
        h = funding.height
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        when = "after 1 block (anchors)" if anchors else "at once"
        plan.close = CloseOutcome(
            kind=CloseKind.COUNTERPARTY_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"{self.peer_name} force-closed with its current commitment "
                        f"#{c.commitment_number} ({_short(c.txid)}), {self._where(h)}: our "
                        f"to_remote {c.to_remote_amount_sat} sat is ours {when}"
                        + (f"; {_htlc_word(len(c.htlc_outputs))} to resolve"
                           if c.htlc_outputs else ""))
        self._plan_to_remote(plan, c, h)
        htlc_key = self.keys.htlc_privkey(c.keys.per_commitment_point)
        for ho in c.htlc_outputs:
            htlc = ho.htlc
            op = c.outpoint(ho.vout)
            spender = self._spender(op)
            theirs = htlc.direction is HtlcDirection.OFFERED
            label = f"HTLC #{htlc.htlc_id} ({ho.amount_sat} sat, " + \
                (f"{self.peer_name} offered" if theirs else "we offered") + ")"
            if spender is not None and not self._pays_us(spender.tx):
                if theirs:
                    self._note_spend(plan, spender, f"{self.peer_name} took back its {label} "
                                     f"with its HTLC-timeout tx {_short(spender.txid)}")
                else:
                    self._learn_preimages(plan, spender, [htlc.payment_hash])
                    self._note_spend(plan, spender, f"{self.peer_name} claimed our {label} with "
                                     f"its HTLC-success tx {_short(spender.txid)}: paid")
                continue
            if anchors and h is None:
                self._awaiting_parent(plan, ho.amount_sat, label)
                continue
            if theirs:
                preimage = self._preimages.get(htlc.payment_hash)
                if preimage is None:
                    plan.open_items += 1
                    plan.balances.append(ClaimableBalance(
                        status=BalanceStatus.HTLC_PENDING, amount_sat=ho.amount_sat,
                        claimable_from_height=None,
                        description=f"{label}: ours only with its preimage; {self.peer_name} "
                                    f"takes it back from height {htlc.cltv_expiry}"))
                    continue
                spend = remote_offered_htlc_output(c, ho, htlc_key, preimage)
                self._sweep(plan, ClaimKind.HTLC_PREIMAGE_CLAIM, [spend],
                            (h or 0) if anchors else 0,
                            f"claim {label} on {self.peer_name}'s commitment with its preimage")
            else:
                spend = remote_received_htlc_output(c, ho, htlc_key)
                at = max(htlc.cltv_expiry, h or 0) if anchors else htlc.cltv_expiry
                self._sweep(plan, ClaimKind.HTLC_TIMEOUT_CLAIM, [spend], at,
                            f"take back {label} after its timeout, valid from height {at}")

    def _plan_to_remote(self, plan: _Plan, c: CommitmentTransaction, h: int | None) -> None:
        if c.to_remote_vout is None:
            return
        spend = to_remote_output(c, self.keys.payment_privkey())
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        if anchors and h is None:
            self._awaiting_parent(plan, spend.amount_sat, "our to_remote")
            return
        self._sweep(plan, ClaimKind.TO_REMOTE_SWEEP, [spend], (h or 0) if anchors else 0,
                    f"sweep our to_remote {spend.amount_sat} sat from {self.peer_name}'s "
                    f"commitment #{c.commitment_number}")

    def _plan_static_to_remote(self, plan: _Plan, funding: _Seen) -> None:
        """Our to_remote on a commitment of the peer's we never saw (our state is stale).

        The point of ``option_static_remotekey``: our to_remote pays the same untweaked key in
        every commitment of the peer's, so a node restored from an old backup, which must not
        broadcast its own (revoked) commitment, still finds and sweeps its latest balance.
        """
        pubkey = static_payment_pubkey(self.keys.basepoints().payment_basepoint)
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        script_pubkey = to_remote_script_pubkey(pubkey, self.commitment_format)
        for vout, out in enumerate(funding.tx.vout):
            if bytes(out.scriptPubKey) != script_pubkey:
                continue
            amount = int(out.nValue)
            if anchors and funding.height is None:
                self._awaiting_parent(plan, amount, "our to_remote")
                continue
            spend = SpendableOutput(
                outpoint=OutPoint(txid=funding.txid, vout=vout), amount_sat=amount,
                kind=WitnessKind.SIG_ONLY if anchors else WitnessKind.P2WPKH,
                witness_script=to_remote_anchors_script(pubkey) if anchors else None,
                signing_key=self.keys.payment_privkey(),
                sequence=1 if anchors else SEQUENCE_NO_RELATIVE_LOCK)
            self._sweep(plan, ClaimKind.TO_REMOTE_SWEEP, [spend],
                        (funding.height or 0) if anchors else 0,
                        f"sweep our to_remote {amount} sat from {self.peer_name}'s commitment "
                        f"{_short(funding.txid)}, newer than our state")

    # ---- the peer's revoked commitment on chain

    def _plan_revoked(self, plan: _Plan, funding: _Seen, c: CommitmentTransaction) -> None:
        h = funding.height
        rk = self.revocation_privkey(c.commitment_number)
        second_spk = p2wsh(htlc_output_script(c.keys.revocation_pubkey, c.to_self_delay,
                                              c.keys.broadcaster_delayed_pubkey))
        revocable: list[SpendableOutput] = []
        # Outputs a live tx of ours already takes (ours earlier, or our tower's per-output
        # justice txs paying the same script) are followed as they are, not re-grouped.
        adopted: dict[bytes, tuple[_Seen, list[SpendableOutput]]] = {}
        second_stage: list[tuple[HtlcOutput, _Seen]] = []
        to_local_sat = 0
        htlc_count = 0
        htlc_sat = 0
        lost: list[str] = []
        candidates: list[tuple[SpendableOutput, HtlcOutput | None]] = []
        if c.to_local_vout is not None:
            candidates.append((revoked_to_local_output(c, rk), None))
        candidates += [(revoked_htlc_output(c, ho, rk), ho) for ho in c.htlc_outputs]
        for spend, ho in candidates:
            spender = self._spender(spend.outpoint)
            if spender is not None and self._pays_us(spender.tx) and self._is_live(spender):
                adopted.setdefault(spender.txid, (spender, []))[1].append(spend)
            elif spender is None or self._pays_us(spender.tx):
                revocable.append(spend)   # unspent, or a grouping of ours that lost an input
            elif ho is None:
                lost.append(f"to_local {c.to_local_amount_sat} sat")
                self._note_spend(plan, spender, f"{self.peer_name} swept its revoked to_local "
                                 f"({c.to_local_amount_sat} sat) in {_short(spender.txid)}: the "
                                 "penalty came too late")
                continue
            elif bytes(spender.tx.vout[0].scriptPubKey) == second_spk:
                second_stage.append((ho, spender))
                continue
            else:
                lost.append(f"HTLC #{ho.htlc.htlc_id} {ho.amount_sat} sat")
                self._note_spend(plan, spender, f"HTLC #{ho.htlc.htlc_id} of the revoked "
                                 f"commitment went to {_short(spender.txid)}")
                continue
            if ho is None:
                to_local_sat = c.to_local_amount_sat
            else:
                htlc_count += 1
                htlc_sat += ho.amount_sat
        takes = []
        if to_local_sat:
            takes.append(f"to_local {to_local_sat} sat")
        if htlc_count:
            takes.append(f"{_htlc_word(htlc_count)} ({htlc_sat} sat)")
        plan.close = CloseOutcome(
            kind=CloseKind.REVOKED_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"{self.peer_name} broadcast REVOKED commitment #{c.commitment_number} "
                        f"({_short(c.txid)}), {self._where(h)}: it gave us that state's "
                        "per-commitment secret when it revoked it, so our revocation key spends "
                        "its outputs at once, before its to_self_delay of "
                        f"{c.to_self_delay} blocks runs out"
                        + (f"; penalty takes {' and '.join(takes)}" if takes else "")
                        + (f"; lost: {', '.join(lost)}" if lost else ""))
        for seen, spends in adopted.values():
            taken = sum(sp.amount_sat for sp in spends)
            out = int(seen.tx.vout[0].nValue)
            self._add_claim(plan, Claim(
                kind=ClaimKind.PENALTY, tx=seen.tx, txid=seen.txid,
                spends=tuple(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n))
                             for i in seen.tx.vin),
                amount_sat=out, fee_sat=taken - out, broadcastable_at_height=0,
                description=f"penalty {_short(seen.txid)} for revoked commitment "
                            f"#{c.commitment_number} takes {len(spends)} output(s), "
                            f"{taken} sat -> {out} sat to us"))
        if revocable:
            self._sweep(plan, ClaimKind.PENALTY, revocable, 0,
                        f"penalty for revoked commitment #{c.commitment_number}: "
                        f"{' and '.join(takes)} with the revocation key")
        for ho, spender in second_stage:
            self._plan_second_stage_penalty(plan, c, ho, spender, rk)
        self._plan_to_remote(plan, c, h)

    def _plan_second_stage_penalty(self, plan: _Plan, c: CommitmentTransaction, ho: HtlcOutput,
                                   spender: _Seen, rk: PrivateKey) -> None:
        kind = "HTLC-timeout" if ho.htlc.direction is HtlcDirection.OFFERED else "HTLC-success"
        self._learn_preimages(plan, spender, [ho.htlc.payment_hash])
        self._note_spend(plan, spender, f"{self.peer_name} raced the penalty: its {kind} tx "
                         f"{_short(spender.txid)} spent HTLC #{ho.htlc.htlc_id} of revoked "
                         f"commitment #{c.commitment_number}; its output is still revocable")
        out = OutPoint(txid=spender.txid, vout=0)
        amount = int(spender.tx.vout[0].nValue)
        taker = self._spender(out)
        if taker is not None and not self._pays_us(taker.tx):
            self._note_spend(plan, taker, f"{self.peer_name} swept the output of its {kind} tx "
                             f"in {_short(taker.txid)}: too late to penalise it")
            return
        script = htlc_output_script(c.keys.revocation_pubkey, c.to_self_delay,
                                    c.keys.broadcaster_delayed_pubkey)
        spend = revoked_second_stage_output(outpoint=out, amount_sat=amount,
                                            output_script=script, revocation_privkey=rk)
        self._sweep(plan, ClaimKind.SECOND_STAGE_PENALTY, [spend], 0,
                    f"second-stage penalty: the output of {self.peer_name}'s {kind} tx "
                    f"({amount} sat) with the revocation key")

    # ---- diff -> events

    def _diff(self, old: _Plan, new: _Plan) -> list[MonitorEvent]:
        events: list[MonitorEvent] = []
        if new.close is not None and (old.close is None or
                                      (old.close.kind, old.close.txid, old.close.height) !=
                                      (new.close.kind, new.close.txid, new.close.height)):
            events.append(FundingSpent(outcome=new.close))
        for txid, spend in new.spends.items():
            if txid not in old.spends:
                events.append(spend)
        for payment_hash, preimage in new.preimages.items():
            if self._preimages.get(payment_hash) != preimage:
                self._preimages[payment_hash] = preimage
                events.append(PreimageLearned(
                    payment_hash=payment_hash, payment_preimage=preimage,
                    description=f"learned the preimage of payment {payment_hash.hex()[:16]}... "
                                "on chain: fulfil the upstream HTLC with it"))
        for key, planned in old.claims.items():
            if key not in new.claims:
                events.append(ClaimWithdrawn(
                    claim=planned.claim,
                    reason="an input it spends went to another transaction, or the transaction "
                           "it spends left the chain"))
        for key, planned in new.claims.items():
            before = old.claims.get(key)
            if planned.height is not None:
                if before is None or before.height != planned.height:
                    events.append(ClaimConfirmed(claim=planned.claim, height=planned.height))
                continue
            if planned.in_mempool:
                if before is not None and before.height is not None:
                    events.append(ClaimRequested(claim=planned.claim))   # reorganised out
                continue
            if before is None or before.height is not None or before.in_mempool or \
                    before.claim.txid != planned.claim.txid or \
                    before.claim.broadcastable_at_height != \
                    planned.claim.broadcastable_at_height:
                events.append(ClaimRequested(claim=planned.claim))
        resolved = self._is_resolved(new)
        if resolved and not self._resolved_reported:
            total = sum(p.claim.amount_sat for p in new.claims.values())
            events.append(ChannelResolved(
                description=f"channel resolved: every output of ours is claimed and "
                            f"{ANTI_REORG_DELAY} blocks deep ({total} sat in our claims)"))
        self._resolved_reported = resolved
        return events

    # -- persistence ----------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly record (contains the channel's secrets: store it 0600)."""
        keys = self.keys
        return {
            "version": _RECORD_VERSION,
            "funding_outpoint": [self.funding_outpoint.txid.hex(), self.funding_outpoint.vout],
            "funding_sat": self.funding_sat,
            "commitment_format": self.commitment_format.value,
            "opener": self.opener.value,
            "holder_params": _params_record(self.holder_params),
            "counterparty_params": _params_record(self.counterparty_params),
            "keys": [keys.funding_key.secret.hex(), keys.revocation_basepoint_secret.secret.hex(),
                     keys.payment_basepoint_secret.secret.hex(),
                     keys.delayed_payment_basepoint_secret.secret.hex(),
                     keys.htlc_basepoint_secret.secret.hex(), keys.per_commitment_seed.hex()],
            "destination_script_pubkey": self.destination_script_pubkey.hex(),
            "sweep_feerate_per_kw": self.sweep_feerate_per_kw,
            "peer_name": self.peer_name,
            "holder": None if self._holder is None else [
                _state_record(self._holder.state), self._holder.counterparty_signature.hex(),
                [s.hex() for s in self._holder.counterparty_htlc_signatures]],
            "counterparty": [[_state_record(e.state), e.per_commitment_point.hex(), e.txid.hex()]
                             for e in self._counterparty.values()],
            "revoked": [_state_record(s) for s in self._revoked.values()],
            "secrets": self._secrets.to_bytes().hex(),
            "preimages": [p.hex() for p in self._preimages.values()],
            "txs": [[s.tx.serialize().hex(), s.height, s.depth]
                    for s in sorted(self._seen.values(), key=lambda s: s.order)],
            "tip_height": self._tip_height,
            "resolved_reported": self._resolved_reported,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ChannelMonitor:
        """The inverse of :meth:`to_record` (no events: the plan is recomputed silently)."""
        if rec.get("version") != _RECORD_VERSION:
            raise ValueError(f"unsupported monitor record version {rec.get('version')}")
        k = [bytes.fromhex(x) for x in rec["keys"]]
        keys = ChannelKeys(
            funding_key=PrivateKey(k[0]), revocation_basepoint_secret=PrivateKey(k[1]),
            payment_basepoint_secret=PrivateKey(k[2]),
            delayed_payment_basepoint_secret=PrivateKey(k[3]),
            htlc_basepoint_secret=PrivateKey(k[4]), per_commitment_seed=k[5])
        fo = rec["funding_outpoint"]
        monitor = cls(
            funding_outpoint=OutPoint(txid=bytes.fromhex(fo[0]), vout=fo[1]),
            funding_sat=rec["funding_sat"],
            commitment_format=CommitmentFormat(rec["commitment_format"]),
            opener=Side(rec["opener"]), holder_params=_params_from(rec["holder_params"]),
            counterparty_params=_params_from(rec["counterparty_params"]), keys=keys,
            destination_script_pubkey=bytes.fromhex(rec["destination_script_pubkey"]),
            sweep_feerate_per_kw=rec["sweep_feerate_per_kw"], peer_name=rec["peer_name"])
        if rec["holder"] is not None:
            state, sig, htlc_sigs = rec["holder"]
            monitor._holder = _HolderState(
                state=_state_from(state), counterparty_signature=bytes.fromhex(sig),
                counterparty_htlc_signatures=tuple(bytes.fromhex(s) for s in htlc_sigs))
        for state, point, txid in rec["counterparty"]:
            entry = _CounterpartyState(state=_state_from(state),
                                       per_commitment_point=PerCommitmentPoint.from_hex(point),
                                       txid=bytes.fromhex(txid))
            monitor._counterparty[entry.state.commitment_number] = entry
        for state in rec["revoked"]:
            s = _state_from(state)
            monitor._revoked[s.commitment_number] = s
        monitor._secrets = RevocationStore.from_bytes(bytes.fromhex(rec["secrets"]))
        for p in rec["preimages"]:
            preimage = bytes.fromhex(p)
            monitor._preimages[hashlib.sha256(preimage).digest()] = preimage
        for raw, height, depth in rec["txs"]:
            tx = CTransaction.deserialize(bytes.fromhex(raw))
            txid = bytes(tx.GetTxid())
            monitor._seen[txid] = _Seen(tx=tx, txid=txid, height=height,
                                        order=monitor._next_order, depth=depth)
            monitor._next_order += 1
            for txin in tx.vin:
                key = _outpoint_key(bytes(txin.prevout.hash), int(txin.prevout.n))
                monitor._spenders.setdefault(key, []).append(txid)
        monitor._tip_height = rec["tip_height"]
        monitor._plan = monitor._make_plan()
        monitor._resolved_reported = rec["resolved_reported"]
        return monitor


# -- record helpers ------------------------------------------------------------------------------

_DIRECTION_CODE = {HtlcDirection.OFFERED: "o", HtlcDirection.RECEIVED: "r"}
_DIRECTION_FROM = {v: k for k, v in _DIRECTION_CODE.items()}


def _state_record(s: _CommitmentState) -> list[Any]:
    """``[number, to_broadcaster_msat, to_countersignatory_msat, feerate, [htlc...]]`` with an
    HTLC as ``[o|r, amount_msat, payment_hash, cltv_expiry, htlc_id]``."""
    return [s.commitment_number, s.to_broadcaster_msat, s.to_countersignatory_msat,
            s.feerate_per_kw,
            [[_DIRECTION_CODE[h.direction], h.amount_msat, h.payment_hash.hex(), h.cltv_expiry,
              h.htlc_id] for h in s.htlcs]]


def _state_from(rec: list[Any]) -> _CommitmentState:
    number, to_b, to_c, feerate, htlcs = rec
    return _CommitmentState(
        commitment_number=number, to_broadcaster_msat=to_b, to_countersignatory_msat=to_c,
        feerate_per_kw=feerate,
        htlcs=tuple(CommitmentHtlc(direction=_DIRECTION_FROM[d], amount_msat=a,
                                   payment_hash=bytes.fromhex(ph), cltv_expiry=cltv, htlc_id=i)
                    for d, a, ph, cltv, i in htlcs))


def _params_record(params: PartyParams) -> dict[str, Any]:
    bp = params.basepoints
    return {"dust_limit_sat": params.dust_limit_sat,
            "max_htlc_value_in_flight_msat": params.max_htlc_value_in_flight_msat,
            "channel_reserve_sat": params.channel_reserve_sat,
            "htlc_minimum_msat": params.htlc_minimum_msat, "to_self_delay": params.to_self_delay,
            "max_accepted_htlcs": params.max_accepted_htlcs,
            "basepoints": [bp.funding_pubkey.hex(), bp.revocation_basepoint.hex(),
                           bp.payment_basepoint.hex(), bp.delayed_payment_basepoint.hex(),
                           bp.htlc_basepoint.hex()]}


def _params_from(rec: dict[str, Any]) -> PartyParams:
    f, r, p, d, h = (bytes.fromhex(x) for x in rec["basepoints"])
    return PartyParams(
        dust_limit_sat=rec["dust_limit_sat"],
        max_htlc_value_in_flight_msat=rec["max_htlc_value_in_flight_msat"],
        channel_reserve_sat=rec["channel_reserve_sat"],
        htlc_minimum_msat=rec["htlc_minimum_msat"], to_self_delay=rec["to_self_delay"],
        max_accepted_htlcs=rec["max_accepted_htlcs"],
        basepoints=Basepoints(funding_pubkey=FundingPubkey(f),
                              revocation_basepoint=RevocationBasepoint(r),
                              payment_basepoint=PaymentBasepoint(p),
                              delayed_payment_basepoint=DelayedPaymentBasepoint(d),
                              htlc_basepoint=HtlcBasepoint(h)))
