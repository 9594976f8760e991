"""BOLT 3 transactions: funding output, commitment, HTLC-timeout/-success, cooperative close.

Pure. Builds python-bitcoinlib ``CTransaction`` objects (version 2, segwit) byte-exact to BOLT 3,
computes their BIP 143 sighashes and assembles their witnesses. Spends a party makes on its own
(sweeps, claims, penalties) live in :mod:`channel.sweeps`.

Vocabulary (LDK): a commitment transaction has a *broadcaster* (BOLT 3 "local": the party that
holds it and may publish it) and a *countersignatory* ("remote"). ``to_local`` / ``to_remote``
are named from the broadcaster's view, as in BOLT 3.

Typical use, building the commitment the peer will hold (we are its countersignatory)::

    keys = CommitmentKeys.derive(per_commitment_point=their_point,
                                 broadcaster=their_basepoints, countersignatory=our_basepoints)
    ctx = build_commitment_transaction(..., keys=keys, to_self_delay=our_to_self_delay,
                                       dust_limit_sat=their_dust_limit, ...)
    signature = sign_commitment(ctx, our_channel_keys.funding_key)
    htlc_signatures = [our_htlc_key.sign(h.countersignatory_sighash())
                       for h in build_htlc_transactions(ctx)]     # in commitment output order

Weights and fees (BOLT 3 "Fee Calculation"): commitment ``724 + 172*n`` (anchors ``1124 + 172*n``)
where ``n`` counts untrimmed HTLCs; HTLC-timeout 663, HTLC-success 703 (anchors: fee 0).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import SIGVERSION_WITNESS_V0, CScript, CScriptWitness, SignatureHash

from channel.keys import (
    SIGHASH_ALL,
    SIGHASH_SINGLE_ANYONECANPAY,
    Basepoints,
    DelayedPubkey,
    FundingPubkey,
    HtlcPubkey,
    PaymentBasepoint,
    PaymentPubkey,
    PerCommitmentPoint,
    PrivateKey,
    RevocationPubkey,
    derive_delayed_pubkey,
    derive_htlc_pubkey,
    derive_revocation_pubkey,
    static_payment_pubkey,
    verify,
    witness_signature,
)
from channel.scripts import (
    anchor_script,
    funding_script,
    htlc_output_script,
    offered_htlc_script,
    p2wsh,
    received_htlc_script,
    to_local_script,
    to_remote_anchors_script,
    to_remote_script_pubkey,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint

__all__ = [
    "ANCHOR_OUTPUT_SAT",
    "ClosingTransaction",
    "CommitmentKeys",
    "CommitmentTransaction",
    "HtlcOutput",
    "HtlcTransaction",
    "build_closing_transaction",
    "build_commitment_transaction",
    "build_htlc_success_transaction",
    "build_htlc_timeout_transaction",
    "build_htlc_transaction",
    "build_htlc_transactions",
    "closing_sighash",
    "commitment_fee_sat",
    "commitment_number_from_tx",
    "commitment_sighash",
    "commitment_weight",
    "countersignatory_htlc_sighash_type",
    "finalize_closing_transaction",
    "finalize_commitment_transaction",
    "finalize_htlc_transaction",
    "funding_script_pubkey",
    "funding_witness",
    "htlc_success_fee_sat",
    "htlc_timeout_fee_sat",
    "is_htlc_trimmed",
    "obscured_commitment_number",
    "obscuring_factor",
    "segwit_v0_sighash",
    "sign_commitment",
    "tx_with_witnesses",
    "verify_commitment_signature",
]

ANCHOR_OUTPUT_SAT = 330
COMMITMENT_BASE_WEIGHT = 724
ANCHORS_COMMITMENT_BASE_WEIGHT = 1124
HTLC_OUTPUT_WEIGHT = 172
HTLC_TIMEOUT_WEIGHT = 663
HTLC_SUCCESS_WEIGHT = 703
ANCHORS_HTLC_TIMEOUT_WEIGHT = 666
ANCHORS_HTLC_SUCCESS_WEIGHT = 706

_COMMITMENT_NUMBER_MAX = (1 << 48) - 1


# ---------------------------------------------------------------------------------------------
# Fees, trimming, obscured commitment number


def commitment_weight(num_untrimmed_htlcs: int, commitment_format: CommitmentFormat) -> int:
    """BOLT 3 expected commitment weight: ``724 + 172*n`` (anchors ``1124 + 172*n``)."""
    base = (ANCHORS_COMMITMENT_BASE_WEIGHT if commitment_format is CommitmentFormat.ANCHORS
            else COMMITMENT_BASE_WEIGHT)
    return base + HTLC_OUTPUT_WEIGHT * num_untrimmed_htlcs


def commitment_fee_sat(feerate_per_kw: int, num_untrimmed_htlcs: int,
                       commitment_format: CommitmentFormat) -> int:
    """Base commitment fee: ``feerate_per_kw * weight // 1000`` (anchors' 660 sat not included)."""
    return feerate_per_kw * commitment_weight(num_untrimmed_htlcs, commitment_format) // 1000


def htlc_timeout_fee_sat(feerate_per_kw: int, commitment_format: CommitmentFormat) -> int:
    """HTLC-timeout fee: ``feerate_per_kw * 663 // 1000``; 0 with anchors (fee added later)."""
    if commitment_format is CommitmentFormat.ANCHORS:
        return 0
    return feerate_per_kw * HTLC_TIMEOUT_WEIGHT // 1000


def htlc_success_fee_sat(feerate_per_kw: int, commitment_format: CommitmentFormat) -> int:
    """HTLC-success fee: ``feerate_per_kw * 703 // 1000``; 0 with anchors."""
    if commitment_format is CommitmentFormat.ANCHORS:
        return 0
    return feerate_per_kw * HTLC_SUCCESS_WEIGHT // 1000


def is_htlc_trimmed(htlc: CommitmentHtlc, *, feerate_per_kw: int, dust_limit_sat: int,
                    commitment_format: CommitmentFormat) -> bool:
    """BOLT 3 "Trimmed Outputs": an HTLC gets no output if its amount, less the fee of the
    second-stage transaction that would claim it, is below the broadcaster's dust limit."""
    if htlc.direction is HtlcDirection.OFFERED:
        fee = htlc_timeout_fee_sat(feerate_per_kw, commitment_format)
    else:
        fee = htlc_success_fee_sat(feerate_per_kw, commitment_format)
    return htlc.amount_sat - fee < dust_limit_sat


@functools.lru_cache(maxsize=256)
def obscuring_factor(opener_payment_basepoint: PaymentBasepoint,
                     accepter_payment_basepoint: PaymentBasepoint) -> int:
    """Lower 48 bits of ``SHA256(opener payment_basepoint || accepter payment_basepoint)``."""
    digest = hashlib.sha256(opener_payment_basepoint.data + accepter_payment_basepoint.data)
    return int.from_bytes(digest.digest()[-6:], "big")


def obscured_commitment_number(commitment_number: int, factor: int) -> int:
    """``commitment_number XOR obscuring_factor`` (48 bits)."""
    if not 0 <= commitment_number <= _COMMITMENT_NUMBER_MAX:
        raise ValueError(f"commitment_number out of range: {commitment_number}")
    return commitment_number ^ factor


def _locktime_and_sequence(commitment_number: int, factor: int) -> tuple[int, int]:
    ocn = obscured_commitment_number(commitment_number, factor)
    return 0x20000000 | (ocn & 0xFFFFFF), 0x80000000 | ((ocn >> 24) & 0xFFFFFF)


def commitment_number_from_tx(tx: CTransaction, factor: int) -> int | None:
    """The commitment number of a (possibly revoked) commitment transaction seen on chain.

    Undoes the obscuring of nLockTime/nSequence; None when ``tx`` does not have the shape of a
    commitment transaction (one input, upper bytes 0x20 / 0x80).
    """
    if len(tx.vin) != 1:
        return None
    locktime: int = tx.nLockTime
    sequence: int = tx.vin[0].nSequence
    if locktime >> 24 != 0x20 or sequence >> 24 != 0x80:
        return None
    ocn = ((sequence & 0xFFFFFF) << 24) | (locktime & 0xFFFFFF)
    return ocn ^ factor


# ---------------------------------------------------------------------------------------------
# Shared helpers


def funding_script_pubkey(pubkey_a: FundingPubkey, pubkey_b: FundingPubkey) -> bytes:
    """BOLT 3 "Funding Transaction Output": P2WSH of the sorted 2-of-2."""
    return p2wsh(funding_script(pubkey_a, pubkey_b))


def segwit_v0_sighash(tx: CTransaction, input_index: int, witness_script: bytes,
                      amount_sat: int, sighash_type: int = SIGHASH_ALL) -> bytes:
    """BIP 143 signature hash of one input (``witness_script`` is the scriptCode)."""
    return bytes(SignatureHash(CScript(witness_script), tx, input_index, sighash_type,
                               amount=amount_sat, sigversion=SIGVERSION_WITNESS_V0))


def tx_with_witnesses(tx: CTransaction, witnesses: Sequence[Sequence[bytes]]) -> CTransaction:
    """A copy of ``tx`` carrying one witness stack per input."""
    if len(witnesses) != len(tx.vin):
        raise ValueError("tx_with_witnesses: one witness stack per input")
    wit = CTxWitness(tuple(CTxInWitness(CScriptWitness(list(stack))) for stack in witnesses))
    return CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion, wit)


def funding_witness(*, pubkey_a: FundingPubkey, signature_a: bytes, pubkey_b: FundingPubkey,
                    signature_b: bytes) -> tuple[bytes, ...]:
    """Witness spending the funding output: ``<> <sig1> <sig2> <funding script>``.

    Signatures (64-byte compact, SIGHASH_ALL) are put in the order of the sorted pubkeys.
    """
    pairs = sorted(((pubkey_a.data, signature_a), (pubkey_b.data, signature_b)))
    return (
        b"",
        witness_signature(pairs[0][1]),
        witness_signature(pairs[1][1]),
        funding_script(pubkey_a, pubkey_b),
    )


def _txin(outpoint: OutPoint, sequence: int) -> CTxIn:
    return CTxIn(COutPoint(outpoint.txid, outpoint.vout), CScript(), sequence)


def _txout(amount_sat: int, script_pubkey: bytes) -> CTxOut:
    return CTxOut(amount_sat, CScript(script_pubkey))


# ---------------------------------------------------------------------------------------------
# Commitment transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentKeys:
    """The keys of one commitment transaction (LDK's TxCreationKeys), BOLT 3 "Keys".

    All per-commitment keys are derived from the *broadcaster's* ``per_commitment_point``.
    """

    per_commitment_point: PerCommitmentPoint
    revocation_pubkey: RevocationPubkey
    broadcaster_delayed_pubkey: DelayedPubkey
    broadcaster_htlc_pubkey: HtlcPubkey
    countersignatory_htlc_pubkey: HtlcPubkey
    countersignatory_payment_pubkey: PaymentPubkey
    broadcaster_funding_pubkey: FundingPubkey
    countersignatory_funding_pubkey: FundingPubkey

    @classmethod
    def derive(cls, *, per_commitment_point: PerCommitmentPoint, broadcaster: Basepoints,
               countersignatory: Basepoints) -> CommitmentKeys:
        """Derive the keys of the broadcaster's commitment built on ``per_commitment_point``.

        revocationpubkey from the countersignatory's revocation_basepoint; delayed and local htlc
        keys from the broadcaster's basepoints; remote htlc key from the countersignatory's
        htlc_basepoint; remotepubkey = countersignatory's payment_basepoint (static_remotekey).
        """
        return _derive_commitment_keys(per_commitment_point, broadcaster, countersignatory)


# Memoised so a node can derive the next commitments' keys ahead, while it waits for the peer
# (``ChannelCore.warm_next_commitments``): the five curve operations are most of what building
# a commitment costs. Keyed by the (frozen, hashable) point and basepoints; bounded.
@functools.lru_cache(maxsize=256)
def _derive_commitment_keys(pcp: PerCommitmentPoint, broadcaster: Basepoints,
                            countersignatory: Basepoints) -> CommitmentKeys:
    return CommitmentKeys(
        per_commitment_point=pcp,
        revocation_pubkey=derive_revocation_pubkey(countersignatory.revocation_basepoint, pcp),
        broadcaster_delayed_pubkey=derive_delayed_pubkey(
            broadcaster.delayed_payment_basepoint, pcp),
        broadcaster_htlc_pubkey=derive_htlc_pubkey(broadcaster.htlc_basepoint, pcp),
        countersignatory_htlc_pubkey=derive_htlc_pubkey(countersignatory.htlc_basepoint, pcp),
        countersignatory_payment_pubkey=static_payment_pubkey(
            countersignatory.payment_basepoint),
        broadcaster_funding_pubkey=broadcaster.funding_pubkey,
        countersignatory_funding_pubkey=countersignatory.funding_pubkey,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HtlcOutput:
    """An untrimmed HTLC's output on a commitment transaction."""

    htlc: CommitmentHtlc
    vout: int
    amount_sat: int
    witness_script: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentTransaction:
    """An unsigned commitment transaction and everything needed to sign, check and spend it.

    ``tx`` has no witness; :func:`finalize_commitment_transaction` adds it. Output indices are
    None for outputs that are absent (below dust, or no anchors). ``htlc_outputs`` is in output
    order, which is the order of ``htlc_signature`` in ``commitment_signed``.
    """

    tx: CTransaction
    txid: bytes
    commitment_number: int
    commitment_format: CommitmentFormat
    funding_outpoint: OutPoint
    funding_amount_sat: int
    funding_script: bytes
    keys: CommitmentKeys
    to_self_delay: int
    dust_limit_sat: int
    feerate_per_kw: int
    base_fee_sat: int
    fee_sat: int
    to_local_vout: int | None
    to_local_amount_sat: int
    to_local_script: bytes
    to_remote_vout: int | None
    to_remote_amount_sat: int
    to_remote_witness_script: bytes | None
    to_local_anchor_vout: int | None
    to_remote_anchor_vout: int | None
    htlc_outputs: tuple[HtlcOutput, ...]
    trimmed_htlcs: tuple[CommitmentHtlc, ...]

    @property
    def txid_hex(self) -> str:
        """txid in display order."""
        return self.txid[::-1].hex()

    def outpoint(self, vout: int) -> OutPoint:
        """The outpoint of output ``vout`` of this transaction."""
        return OutPoint(txid=self.txid, vout=vout)

    def htlc_output_for(self, htlc_id: int, direction: HtlcDirection) -> HtlcOutput | None:
        """The output of the HTLC with this id and direction, or None if trimmed/absent."""
        for out in self.htlc_outputs:
            if out.htlc.htlc_id == htlc_id and out.htlc.direction is direction:
                return out
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Output:
    amount_sat: int
    script_pubkey: bytes
    label: str
    htlc: CommitmentHtlc | None = None
    witness_script: bytes = b""

    def sort_key(self) -> tuple[int, bytes, int, int]:
        """BOLT 3 "Transaction Output Ordering": BIP 69 (value, then scriptPubKey bytes), then
        cltv_expiry for HTLC outputs (identical scripts when amount and payment_hash agree).
        The htlc_id last only makes the HTLC-to-vout mapping deterministic; the bytes of such
        twins are identical anyway."""
        if self.htlc is None:
            return (self.amount_sat, self.script_pubkey, 0, 0)
        return (self.amount_sat, self.script_pubkey, self.htlc.cltv_expiry, self.htlc.htlc_id)


def build_commitment_transaction(
    *,
    funding_outpoint: OutPoint,
    funding_amount_sat: int,
    commitment_number: int,
    obscuring_factor: int,
    keys: CommitmentKeys,
    to_self_delay: int,
    dust_limit_sat: int,
    feerate_per_kw: int,
    broadcaster_is_opener: bool,
    to_local_msat: int,
    to_remote_msat: int,
    htlcs: Sequence[CommitmentHtlc],
    commitment_format: CommitmentFormat,
) -> CommitmentTransaction:
    """BOLT 3 "Commitment Transaction Construction" for the broadcaster of ``keys``.

    ``to_local_msat`` / ``to_remote_msat`` are the two balances *excluding* in-flight HTLCs and
    before the fee; the fee (and with anchors the two 330-sat anchors) comes out of the opener's
    balance, which is clamped at zero. ``to_self_delay`` is the value the *countersignatory*
    chose; ``dust_limit_sat`` the broadcaster's own. Steps:

    1. one input: the funding outpoint, nSequence ``0x80 || upper 24 bits`` and nLockTime
       ``0x20 || lower 24 bits`` of the obscured commitment number;
    2. trim HTLCs below dust (after their second-stage fee);
    3. base fee from the untrimmed HTLC count; subtract it (and the anchors) from the opener;
    4. HTLC outputs, to_local and to_remote if not below dust, anchors for each side that has an
       output or if any HTLC is untrimmed;
    5. order outputs BIP 69 (value, then scriptPubKey) with cltv_expiry as the last tie-break.
    """
    if funding_amount_sat <= 0:
        raise ValueError("funding_amount_sat must be positive")
    if to_local_msat < 0 or to_remote_msat < 0:
        raise ValueError("balances must be non-negative")
    if feerate_per_kw < 0 or dust_limit_sat < 0:
        raise ValueError("feerate_per_kw and dust_limit_sat must be non-negative")
    total_msat = to_local_msat + to_remote_msat + sum(h.amount_msat for h in htlcs)
    if total_msat > funding_amount_sat * 1000:
        raise ValueError("balances plus HTLCs exceed the funding amount")
    anchors = commitment_format is CommitmentFormat.ANCHORS

    untrimmed: list[CommitmentHtlc] = []
    trimmed: list[CommitmentHtlc] = []
    for htlc in htlcs:
        if is_htlc_trimmed(htlc, feerate_per_kw=feerate_per_kw, dust_limit_sat=dust_limit_sat,
                           commitment_format=commitment_format):
            trimmed.append(htlc)
        else:
            untrimmed.append(htlc)

    base_fee = commitment_fee_sat(feerate_per_kw, len(untrimmed), commitment_format)
    opener_charge_msat = (base_fee + (2 * ANCHOR_OUTPUT_SAT if anchors else 0)) * 1000
    to_local = to_local_msat
    to_remote = to_remote_msat
    if broadcaster_is_opener:
        to_local = max(0, to_local - opener_charge_msat)
    else:
        to_remote = max(0, to_remote - opener_charge_msat)
    to_local_sat = to_local // 1000
    to_remote_sat = to_remote // 1000

    outputs: list[_Output] = []
    local_script = to_local_script(keys.revocation_pubkey, to_self_delay,
                                   keys.broadcaster_delayed_pubkey)
    for htlc in untrimmed:
        if htlc.direction is HtlcDirection.OFFERED:
            script = offered_htlc_script(
                revocation_pubkey=keys.revocation_pubkey,
                broadcaster_htlc_pubkey=keys.broadcaster_htlc_pubkey,
                countersignatory_htlc_pubkey=keys.countersignatory_htlc_pubkey,
                payment_hash=htlc.payment_hash, commitment_format=commitment_format)
        else:
            script = received_htlc_script(
                revocation_pubkey=keys.revocation_pubkey,
                broadcaster_htlc_pubkey=keys.broadcaster_htlc_pubkey,
                countersignatory_htlc_pubkey=keys.countersignatory_htlc_pubkey,
                payment_hash=htlc.payment_hash, cltv_expiry=htlc.cltv_expiry,
                commitment_format=commitment_format)
        outputs.append(_Output(amount_sat=htlc.amount_sat, script_pubkey=p2wsh(script),
                               label="htlc", htlc=htlc, witness_script=script))
    has_to_local = to_local_sat >= dust_limit_sat
    has_to_remote = to_remote_sat >= dust_limit_sat
    if has_to_local:
        outputs.append(_Output(amount_sat=to_local_sat, script_pubkey=p2wsh(local_script),
                               label="to_local"))
    remote_witness = (to_remote_anchors_script(keys.countersignatory_payment_pubkey)
                      if anchors else None)
    if has_to_remote:
        outputs.append(_Output(
            amount_sat=to_remote_sat,
            script_pubkey=to_remote_script_pubkey(keys.countersignatory_payment_pubkey,
                                                  commitment_format),
            label="to_remote"))
    if anchors:
        if has_to_local or untrimmed:
            outputs.append(_Output(
                amount_sat=ANCHOR_OUTPUT_SAT,
                script_pubkey=p2wsh(anchor_script(keys.broadcaster_funding_pubkey)),
                label="to_local_anchor"))
        if has_to_remote or untrimmed:
            outputs.append(_Output(
                amount_sat=ANCHOR_OUTPUT_SAT,
                script_pubkey=p2wsh(anchor_script(keys.countersignatory_funding_pubkey)),
                label="to_remote_anchor"))
    outputs.sort(key=_Output.sort_key)

    vouts: dict[str, int] = {}
    htlc_outputs: list[HtlcOutput] = []
    for vout, out in enumerate(outputs):
        if out.htlc is not None:
            htlc_outputs.append(HtlcOutput(htlc=out.htlc, vout=vout, amount_sat=out.amount_sat,
                                           witness_script=out.witness_script))
        else:
            vouts[out.label] = vout

    locktime, sequence = _locktime_and_sequence(commitment_number, obscuring_factor)
    f_script = funding_script(keys.broadcaster_funding_pubkey, keys.countersignatory_funding_pubkey)
    tx = CTransaction(
        [_txin(funding_outpoint, sequence)],
        [_txout(o.amount_sat, o.script_pubkey) for o in outputs],
        locktime,
        2,
    )
    outputs_total = sum(o.amount_sat for o in outputs)
    return CommitmentTransaction(
        tx=tx,
        txid=bytes(tx.GetTxid()),
        commitment_number=commitment_number,
        commitment_format=commitment_format,
        funding_outpoint=funding_outpoint,
        funding_amount_sat=funding_amount_sat,
        funding_script=f_script,
        keys=keys,
        to_self_delay=to_self_delay,
        dust_limit_sat=dust_limit_sat,
        feerate_per_kw=feerate_per_kw,
        base_fee_sat=base_fee,
        fee_sat=funding_amount_sat - outputs_total,
        to_local_vout=vouts.get("to_local"),
        to_local_amount_sat=to_local_sat if has_to_local else 0,
        to_local_script=local_script,
        to_remote_vout=vouts.get("to_remote"),
        to_remote_amount_sat=to_remote_sat if has_to_remote else 0,
        to_remote_witness_script=remote_witness,
        to_local_anchor_vout=vouts.get("to_local_anchor"),
        to_remote_anchor_vout=vouts.get("to_remote_anchor"),
        htlc_outputs=tuple(htlc_outputs),
        trimmed_htlcs=tuple(trimmed),
    )


def commitment_sighash(commitment: CommitmentTransaction) -> bytes:
    """BIP 143 SIGHASH_ALL digest of the funding input (what both funding keys sign)."""
    return segwit_v0_sighash(commitment.tx, 0, commitment.funding_script,
                             commitment.funding_amount_sat)


def sign_commitment(commitment: CommitmentTransaction, funding_key: PrivateKey) -> bytes:
    """Our 64-byte compact signature of ``commitment`` with our funding key."""
    return funding_key.sign(commitment_sighash(commitment))


def verify_commitment_signature(commitment: CommitmentTransaction, funding_pubkey: FundingPubkey,
                                signature: bytes) -> bool:
    """True iff ``signature`` is ``funding_pubkey``'s valid signature of ``commitment``."""
    return verify(funding_pubkey, commitment_sighash(commitment), signature)


def finalize_commitment_transaction(commitment: CommitmentTransaction, *,
                                    broadcaster_signature: bytes,
                                    countersignatory_signature: bytes) -> CTransaction:
    """The broadcastable commitment: witness ``<> <sig1> <sig2> <funding script>``."""
    witness = funding_witness(
        pubkey_a=commitment.keys.broadcaster_funding_pubkey, signature_a=broadcaster_signature,
        pubkey_b=commitment.keys.countersignatory_funding_pubkey,
        signature_b=countersignatory_signature)
    return tx_with_witnesses(commitment.tx, [witness])


# ---------------------------------------------------------------------------------------------
# HTLC-timeout / HTLC-success


def countersignatory_htlc_sighash_type(commitment_format: CommitmentFormat) -> int:
    """SIGHASH_ALL, or SIGHASH_SINGLE|SIGHASH_ANYONECANPAY (0x83) with anchors."""
    if commitment_format is CommitmentFormat.ANCHORS:
        return SIGHASH_SINGLE_ANYONECANPAY
    return SIGHASH_ALL


@dataclass(frozen=True, slots=True, kw_only=True)
class HtlcTransaction:
    """An unsigned HTLC-timeout (for an OFFERED htlc) or HTLC-success (RECEIVED) transaction.

    Spends ``htlc_output`` of the broadcaster's commitment ``commitment_txid``; its single output
    (``output_amount_sat``) pays to ``output_script`` (to_local shape), P2WSH.
    """

    tx: CTransaction
    txid: bytes
    commitment_txid: bytes
    commitment_format: CommitmentFormat
    htlc_output: HtlcOutput
    output_script: bytes
    output_amount_sat: int
    fee_sat: int

    @property
    def is_timeout(self) -> bool:
        """True for HTLC-timeout, False for HTLC-success."""
        return self.htlc_output.htlc.direction is HtlcDirection.OFFERED

    @property
    def countersignatory_sighash_type(self) -> int:
        """Sighash type of the countersignatory's signature (0x01, or 0x83 with anchors)."""
        return countersignatory_htlc_sighash_type(self.commitment_format)

    def countersignatory_sighash(self) -> bytes:
        """Digest the countersignatory signs (sent in ``commitment_signed``)."""
        return segwit_v0_sighash(self.tx, 0, self.htlc_output.witness_script,
                                 self.htlc_output.amount_sat, self.countersignatory_sighash_type)

    def broadcaster_sighash(self) -> bytes:
        """Digest the broadcaster signs (SIGHASH_ALL, over this exact tx)."""
        return segwit_v0_sighash(self.tx, 0, self.htlc_output.witness_script,
                                 self.htlc_output.amount_sat, SIGHASH_ALL)


def build_htlc_transaction(commitment: CommitmentTransaction,
                           htlc_output: HtlcOutput) -> HtlcTransaction:
    """BOLT 3 "HTLC-Timeout and HTLC-Success Transactions" for one HTLC output of ``commitment``.

    version 2; input = the HTLC output, nSequence 0 (1 with anchors); nLockTime = cltv_expiry
    (timeout) or 0 (success); one output of ``amount - fee`` to P2WSH of::

        OP_IF <revocationpubkey> OP_ELSE `to_self_delay` OP_CHECKSEQUENCEVERIFY OP_DROP
        <local_delayedpubkey> OP_ENDIF OP_CHECKSIG
    """
    if htlc_output not in commitment.htlc_outputs:
        raise ValueError("build_htlc_transaction: htlc_output is not from this commitment")
    return _build_htlc_transaction(commitment, htlc_output)


def _build_htlc_transaction(commitment: CommitmentTransaction,
                            htlc_output: HtlcOutput) -> HtlcTransaction:
    """:func:`build_htlc_transaction` for an output known to be in ``commitment``."""
    fmt = commitment.commitment_format
    htlc = htlc_output.htlc
    timeout = htlc.direction is HtlcDirection.OFFERED
    fee = (htlc_timeout_fee_sat(commitment.feerate_per_kw, fmt) if timeout
           else htlc_success_fee_sat(commitment.feerate_per_kw, fmt))
    amount = htlc_output.amount_sat - fee
    keys = commitment.keys
    out_script = htlc_output_script(keys.revocation_pubkey, commitment.to_self_delay,
                                    keys.broadcaster_delayed_pubkey)
    sequence = 1 if fmt is CommitmentFormat.ANCHORS else 0
    tx = CTransaction(
        [_txin(commitment.outpoint(htlc_output.vout), sequence)],
        [_txout(amount, p2wsh(out_script))],
        htlc.cltv_expiry if timeout else 0,
        2,
    )
    return HtlcTransaction(
        tx=tx, txid=bytes(tx.GetTxid()), commitment_txid=commitment.txid, commitment_format=fmt,
        htlc_output=htlc_output, output_script=out_script, output_amount_sat=amount, fee_sat=fee)


def build_htlc_timeout_transaction(commitment: CommitmentTransaction,
                                   htlc_output: HtlcOutput) -> HtlcTransaction:
    """HTLC-timeout for an HTLC the broadcaster OFFERED (see :func:`build_htlc_transaction`)."""
    if htlc_output.htlc.direction is not HtlcDirection.OFFERED:
        raise ValueError("HTLC-timeout spends an offered HTLC")
    return build_htlc_transaction(commitment, htlc_output)


def build_htlc_success_transaction(commitment: CommitmentTransaction,
                                   htlc_output: HtlcOutput) -> HtlcTransaction:
    """HTLC-success for an HTLC the broadcaster RECEIVED (see :func:`build_htlc_transaction`)."""
    if htlc_output.htlc.direction is not HtlcDirection.RECEIVED:
        raise ValueError("HTLC-success spends a received HTLC")
    return build_htlc_transaction(commitment, htlc_output)


def build_htlc_transactions(commitment: CommitmentTransaction) -> tuple[HtlcTransaction, ...]:
    """Every second-stage transaction of ``commitment``, in output order (htlc_signature order)."""
    # the outputs come from the commitment itself: skip the per-output membership test, which
    # compares dataclasses and made a commitment with n HTLCs cost O(n**2)
    return tuple(_build_htlc_transaction(commitment, out) for out in commitment.htlc_outputs)


def finalize_htlc_transaction(htlc_tx: HtlcTransaction, *, countersignatory_signature: bytes,
                              broadcaster_signature: bytes,
                              payment_preimage: bytes | None = None) -> CTransaction:
    """The broadcastable HTLC transaction; witness::

        0 <remotehtlcsig> <localhtlcsig> <>           <htlc script>    (HTLC-timeout)
        0 <remotehtlcsig> <localhtlcsig> <preimage>   <htlc script>    (HTLC-success)

    The countersignatory's signature carries its sighash type (0x83 with anchors).
    """
    htlc = htlc_tx.htlc_output.htlc
    if htlc_tx.is_timeout:
        if payment_preimage is not None:
            raise ValueError("HTLC-timeout takes no preimage")
        last = b""
    else:
        if payment_preimage is None or hashlib.sha256(payment_preimage).digest() != \
                htlc.payment_hash:
            raise ValueError("HTLC-success needs the preimage of the HTLC's payment_hash")
        last = payment_preimage
    witness = (
        b"",
        witness_signature(countersignatory_signature, htlc_tx.countersignatory_sighash_type),
        witness_signature(broadcaster_signature, SIGHASH_ALL),
        last,
        htlc_tx.htlc_output.witness_script,
    )
    return tx_with_witnesses(htlc_tx.tx, [witness])


# ---------------------------------------------------------------------------------------------
# Cooperative close


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosingTransaction:
    """An unsigned legacy closing transaction (BOLT 3 "Legacy Closing Transaction")."""

    tx: CTransaction
    txid: bytes
    funding_script: bytes
    funding_amount_sat: int
    fee_sat: int
    local_vout: int | None
    local_amount_sat: int
    remote_vout: int | None
    remote_amount_sat: int


def build_closing_transaction(
    *,
    funding_outpoint: OutPoint,
    funding_amount_sat: int,
    local_funding_pubkey: FundingPubkey,
    remote_funding_pubkey: FundingPubkey,
    local_script_pubkey: bytes,
    remote_script_pubkey: bytes,
    local_amount_msat: int,
    remote_amount_msat: int,
    fee_sat: int,
    local_is_opener: bool,
    dust_limit_sat: int,
) -> ClosingTransaction:
    """BOLT 3 "Legacy Closing Transaction" (the one ``closing_signed`` signs).

    version 2, locktime 0; input = funding outpoint, nSequence 0xFFFFFFFF; outputs = each side's
    final balance rounded down to sats, ``fee_sat`` taken from the opener's; an output below
    ``dust_limit_sat`` (the signer's) is omitted; BIP 69 order. Funding witness as for the
    commitment (:func:`finalize_closing_transaction`).
    """
    if fee_sat < 0:
        raise ValueError("fee_sat must be non-negative")
    local_sat = local_amount_msat // 1000
    remote_sat = remote_amount_msat // 1000
    if local_is_opener:
        local_sat -= fee_sat
    else:
        remote_sat -= fee_sat
    if local_sat < 0 or remote_sat < 0:
        raise ValueError("closing fee exceeds the opener's balance")
    if local_sat + remote_sat + fee_sat > funding_amount_sat:
        raise ValueError("closing outputs exceed the funding amount")
    entries: list[tuple[int, bytes, str]] = []
    if local_sat >= dust_limit_sat:
        entries.append((local_sat, local_script_pubkey, "local"))
    if remote_sat >= dust_limit_sat:
        entries.append((remote_sat, remote_script_pubkey, "remote"))
    if not entries:
        raise ValueError("closing transaction would have no output")
    entries.sort(key=lambda e: (e[0], e[1]))
    tx = CTransaction(
        [_txin(funding_outpoint, 0xFFFFFFFF)],
        [_txout(amount, spk) for amount, spk, _ in entries],
        0,
        2,
    )
    vouts = {label: i for i, (_, _, label) in enumerate(entries)}
    return ClosingTransaction(
        tx=tx,
        txid=bytes(tx.GetTxid()),
        funding_script=funding_script(local_funding_pubkey, remote_funding_pubkey),
        funding_amount_sat=funding_amount_sat,
        fee_sat=funding_amount_sat - sum(e[0] for e in entries),
        local_vout=vouts.get("local"),
        local_amount_sat=local_sat if "local" in vouts else 0,
        remote_vout=vouts.get("remote"),
        remote_amount_sat=remote_sat if "remote" in vouts else 0,
    )


def closing_sighash(closing: ClosingTransaction) -> bytes:
    """BIP 143 SIGHASH_ALL digest both funding keys sign for ``closing_signed``."""
    return segwit_v0_sighash(closing.tx, 0, closing.funding_script, closing.funding_amount_sat)


def finalize_closing_transaction(closing: ClosingTransaction, *, pubkey_a: FundingPubkey,
                                 signature_a: bytes, pubkey_b: FundingPubkey,
                                 signature_b: bytes) -> CTransaction:
    """The broadcastable closing transaction (funding witness, signatures in key order)."""
    witness = funding_witness(pubkey_a=pubkey_a, signature_a=signature_a, pubkey_b=pubkey_b,
                              signature_b=signature_b)
    if witness[-1] != closing.funding_script:
        raise ValueError("finalize_closing_transaction: pubkeys do not match the funding script")
    return tx_with_witnesses(closing.tx, [witness])
