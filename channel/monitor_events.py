"""What a channel monitor hands its caller: claims, balances, close outcomes and events.

Pure. The values of :mod:`channel.monitor`'s answers (LDK's ``MonitorEvent`` and ``Balance``):
a :class:`Claim` is a signed transaction to broadcast from some height, a
:class:`ClaimableBalance` what is still ours and from when, and each event one change the last
input caused.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from bitcoin.core import CTransaction, CTxInWitness, CTxWitness
from bitcoin.core.script import CScriptWitness

from channel.keys import SIGHASH_ALL, PrivateKey, witness_signature
from channel.sweeps import SpendableOutput, SweepTransaction, build_htlc_transaction_with_fee
from channel.transactions import HtlcTransaction, segwit_v0_sighash
from channel.types import OutPoint

__all__ = [
    "ANTI_REORG_DELAY",
    "BalanceStatus",
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

# ---------------------------------------------------------------------------------------------
# Values handed to the caller


class CloseKind(enum.Enum):
    """What spent the funding output."""

    COOPERATIVE = "cooperative"
    HOLDER_COMMITMENT = "holder_commitment"            # our latest commitment
    COUNTERPARTY_COMMITMENT = "counterparty_commitment"  # the peer's current (unrevoked) one
    REVOKED_COMMITMENT = "revoked_commitment"          # the peer cheated
    HOLDER_REVOKED_COMMITMENT = "holder_revoked_commitment"  # we cheated (cheat mode)
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
