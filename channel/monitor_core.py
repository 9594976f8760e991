"""A channel monitor's inputs and memory: the states it learns and the transactions it sees.

Pure. :class:`MonitorCore` keeps what the channel handed over (:mod:`channel.records`: each
commitment's state, the revealed secrets, the preimages), records the transactions that spend
the funding output or its descendants, rebuilds commitments with
:func:`channel.commitment.assemble_commitment`, and turns a new plan into events. Deciding what
to claim (the plan) is the job of :class:`channel.monitor_claims.ClaimPlanner`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bitcoin.core import CTransaction

from channel.commitment import assemble_commitment, channel_obscuring_factor
from channel.errors import InvalidRevocation
from channel.keys import (
    ChannelKeys,
    PerCommitmentPoint,
    PrivateKey,
    per_commitment_point_from_secret,
)
from channel.monitor_events import (
    ANTI_REORG_DELAY,
    BalanceStatus,
    ChannelResolved,
    Claim,
    ClaimableBalance,
    ClaimConfirmed,
    ClaimRequested,
    ClaimWithdrawn,
    CloseOutcome,
    CounterpartySpend,
    FundingSpent,
    MonitorEvent,
    PreimageLearned,
)
from channel.records import (
    CommitmentState,
    CounterpartyCommitmentSigned,
    CounterpartySecretRevealed,
    HolderCommitmentSigned,
    MonitorUpdate,
    PartyParams,
)
from channel.shachain import RevocationStore
from channel.transactions import (
    CommitmentTransaction,
    commitment_number_from_tx,
    finalize_commitment_transaction,
    sign_commitment,
)
from channel.types import CommitmentFormat, HtlcDirection, OutPoint, Side

__all__ = ["MonitorCore"]



@dataclass(frozen=True, slots=True, kw_only=True)
class _HolderState:
    state: CommitmentState
    counterparty_signature: bytes
    counterparty_htlc_signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _CounterpartyState:
    state: CommitmentState
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


class MonitorCore:
    """The chain watcher's state (see :class:`channel.monitor.ChannelMonitor`, the one to use)."""

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
        self._factor = channel_obscuring_factor(opener, holder_params, counterparty_params)
        self._holder: _HolderState | None = None
        self._counterparty: dict[int, _CounterpartyState] = {}
        self._revoked: dict[int, CommitmentState] = {}
        self._secrets = RevocationStore()
        self._preimages: dict[bytes, bytes] = {}
        self._seen: dict[bytes, _Seen] = {}
        self._spenders: dict[tuple[bytes, int], list[bytes]] = {}
        self._next_order = 0
        self._tip_height: int | None = None
        self._cache: dict[tuple[str, int], CommitmentTransaction] = {}
        self._plan = _Plan()
        self._resolved_reported = False
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
                    state=update.state, counterparty_signature=update.counterparty_signature,
                    counterparty_htlc_signatures=update.counterparty_htlc_signatures)
        elif isinstance(update, CounterpartyCommitmentSigned):
            if update.commitment_number not in self._revoked:
                self._counterparty[update.commitment_number] = _CounterpartyState(
                    state=update.state, per_commitment_point=update.per_commitment_point,
                    txid=update.txid)
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

    def known_commitments(self) -> list[tuple[Side, CommitmentTransaction, bool]]:
        """The commitments worth drawing (``chanlab NAME graph``): (broadcaster, commitment,
        revoked?) for our latest, the peer's current ones and any revoked state of the peer's
        that reached the chain (only those: a long channel has thousands)."""
        out: list[tuple[Side, CommitmentTransaction, bool]] = []
        if self._holder is not None:
            out.append((Side.HOLDER, self._holder_commitment(), False))
        out.extend((Side.COUNTERPARTY, self._counterparty_commitment(entry), False)
                   for entry in self._counterparty.values())
        for seen in self._seen.values():
            number = commitment_number_from_tx(seen.tx, self._factor) if seen.depth == 1 \
                else None
            if number is not None and number in self._revoked:
                try:
                    out.append((Side.COUNTERPARTY, self._rebuild_revoked(self._revoked[number]),
                                True))
                except ValueError:
                    continue   # its secret is not known here
        return out

    def seen_transactions(self) -> list[tuple[CTransaction, int | None]]:
        """Every transaction of the channel seen on chain or in the mempool, with its
        confirmation height (None: unconfirmed), in arrival order."""
        return [(s.tx, s.height) for s in sorted(self._seen.values(), key=lambda s: s.order)]

    # -- commitments ------------------------------------------------------------------------

    def _build(self, *, side: Side, state: CommitmentState,
               point: PerCommitmentPoint) -> CommitmentTransaction:
        return assemble_commitment(
            side=side, state=state, point=point, funding_outpoint=self.funding_outpoint,
            funding_sat=self.funding_sat, commitment_format=self.commitment_format,
            opener=self.opener, holder_params=self.holder_params,
            counterparty_params=self.counterparty_params, obscuring=self._factor)

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

    def _rebuild_revoked(self, state: CommitmentState) -> CommitmentTransaction:
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
        raise NotImplementedError   # channel.monitor_claims.ClaimPlanner decides the claims

    def _where(self, height: int | None) -> str:
        return "in the mempool" if height is None else f"confirmed at height {height}"

    def _confirming_balance(self, amount: int, height: int | None,
                            what: str) -> ClaimableBalance:
        final = None if height is None else height + ANTI_REORG_DELAY - 1
        return ClaimableBalance(status=BalanceStatus.AWAITING_CONFIRMATIONS, amount_sat=amount,
                                claimable_from_height=final,
                                description=f"{what}: {amount} sat, final at height {final}"
                                if final is not None else f"{what}: {amount} sat, unconfirmed")

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
