"""On-chain spends one party makes alone: sweeps, HTLC claims, penalties (BOLT 5 with BOLT 3).

Pure. Each situation of BOLT 5 is a constructor returning a :class:`SpendableOutput` (an output
plus the key and witness recipe to spend it); :func:`build_sweep_transaction` spends any mix of
them into one output, paying ``feerate_per_kw`` on the transaction's weight (computed with
maximal, 73-byte signatures, so the real weight is never above the one paid for).

Situation (constructor)                               witness                  nSequence / nLockTime
our to_local after to_self_delay (delayed_output)     <delayed_sig> <>         to_self_delay
our HTLC-tx output after delay (second_stage_output)  <delayed_sig> <>         to_self_delay
their revoked to_local (revoked_to_local_output)      <revocation_sig> 1       -
their revoked HTLC-tx output
  (revoked_second_stage_output)                       <revocation_sig> 1       -
their revoked HTLC outputs (revoked_htlc_output)      <revocation_sig> <revocationpubkey>
our to_remote on their commitment (to_remote_output)  static: <sig> <pubkey>   anchors: seq 1
                                                      anchors: <sig>
HTLC they offered, their commitment, with preimage
  (remote_offered_htlc_output)                        <htlc_sig> <preimage>    anchors: seq 1
HTLC we offered, their commitment, after timeout
  (remote_received_htlc_output)                       <htlc_sig> <>            locktime=cltv_expiry
anchor (anchor_output)                                owner: <sig>             -
                                                      anyone: <>               16
a P2WPKH coin of ours, e.g. a fee input (p2wpkh_output) <sig> <pubkey>         -

(each witness ends with the witness script, except P2WPKH's)

:func:`build_penalty_transaction` puts a revoked commitment's to_local and *all* its HTLC outputs
into one justice transaction; :func:`build_htlc_transaction_with_fee` attaches fee inputs to a
zero-fee anchors HTLC-timeout/-success transaction (the countersignatory's
SIGHASH_SINGLE|ANYONECANPAY signature stays valid; ours signs the final transaction).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript

from channel.keys import (
    SIGHASH_ALL,
    PrivateKey,
    RevocationPubkey,
    witness_signature,
)
from channel.scripts import anchor_script, hash160, p2wpkh, p2wsh
from channel.transactions import (
    CommitmentTransaction,
    HtlcOutput,
    HtlcTransaction,
    segwit_v0_sighash,
    tx_with_witnesses,
)
from channel.types import CommitmentFormat, HtlcDirection, OutPoint

__all__ = [
    "SEQUENCE_NO_RELATIVE_LOCK",
    "SpendableOutput",
    "SweepTransaction",
    "WitnessKind",
    "anchor_output",
    "build_htlc_transaction_with_fee",
    "build_penalty_transaction",
    "build_sweep_transaction",
    "delayed_output",
    "find_preimages",
    "justice_outputs",
    "p2wpkh_output",
    "remote_offered_htlc_output",
    "remote_received_htlc_output",
    "revoked_htlc_output",
    "revoked_second_stage_output",
    "revoked_to_local_output",
    "second_stage_output",
    "to_remote_output",
]

# Non-final (so nLockTime counts), RBF-signalling, and BIP 68 disabled (bit 31 set).
SEQUENCE_NO_RELATIVE_LOCK = 0xFFFFFFFD
_MAX_SIG_WITNESS = 73  # 72-byte DER (33-byte r, low s) + sighash byte
_P2WSH_DUST_SAT = 330
_P2WPKH_DUST_SAT = 294


class WitnessKind(enum.Enum):
    """The witness recipe of a :class:`SpendableOutput` (see the module table)."""

    DELAYED = "delayed"                   # <sig> <> <to_local-shape script>
    REVOKED_DELAYED = "revoked_delayed"   # <sig> 1 <to_local-shape script>
    REVOKED_HTLC = "revoked_htlc"         # <sig> <revocationpubkey> <htlc script>
    P2WPKH = "p2wpkh"                     # <sig> <pubkey>
    SIG_ONLY = "sig_only"                 # <sig> <script>   (anchors to_remote, anchor owner)
    HTLC_PREIMAGE = "htlc_preimage"       # <sig> <preimage> <htlc script>
    HTLC_TIMEOUT = "htlc_timeout"         # <sig> <> <htlc script>
    ANCHOR_ANYONE = "anchor_anyone"       # <> <anchor script>


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendableOutput:
    """An output plus what it takes to spend it alone.

    ``signing_key`` is None only for ANCHOR_ANYONE. ``sequence`` is the input's nSequence (a CSV
    delay where the script demands one); ``min_locktime`` the nLockTime the script demands (the
    HTLC's cltv_expiry on the timeout path, else 0). ``extra`` is the preimage (HTLC_PREIMAGE)
    or the revocationpubkey (REVOKED_HTLC).
    """

    outpoint: OutPoint
    amount_sat: int
    kind: WitnessKind
    witness_script: bytes | None
    signing_key: PrivateKey | None
    sequence: int = SEQUENCE_NO_RELATIVE_LOCK
    min_locktime: int = 0
    extra: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.amount_sat <= 0:
            raise ValueError("SpendableOutput: amount_sat must be positive")
        if (self.kind is WitnessKind.P2WPKH) != (self.witness_script is None):
            raise ValueError("SpendableOutput: P2WPKH has no witness script, the others do")
        if (self.signing_key is None) != (self.kind is WitnessKind.ANCHOR_ANYONE):
            raise ValueError("SpendableOutput: only ANCHOR_ANYONE spends without a key")
        if not 0 <= self.sequence <= 0xFFFFFFFF or not 0 <= self.min_locktime < 500_000_000:
            raise ValueError("SpendableOutput: sequence or min_locktime out of range")

    @property
    def script_pubkey(self) -> bytes:
        """The scriptPubKey of the output being spent."""
        if self.witness_script is None:
            if self.signing_key is None:  # unreachable: guarded in __post_init__
                raise ValueError("P2WPKH without key")
            return p2wpkh(self.signing_key.pubkey)
        return p2wsh(self.witness_script)

    def script_code(self) -> bytes:
        """BIP 143 scriptCode: the witness script, or P2PKH-shaped for P2WPKH."""
        if self.witness_script is not None:
            return self.witness_script
        if self.signing_key is None:
            raise ValueError("P2WPKH without key")
        return b"\x76\xa9\x14" + hash160(self.signing_key.pubkey) + b"\x88\xac"

    def witness(self, signature: bytes) -> tuple[bytes, ...]:
        """The witness stack given the input's witness-form signature (DER + sighash byte)."""
        ws = self.witness_script or b""
        kind = self.kind
        if kind is WitnessKind.DELAYED:
            return (signature, b"", ws)
        if kind is WitnessKind.REVOKED_DELAYED:
            return (signature, b"\x01", ws)
        if kind is WitnessKind.REVOKED_HTLC:
            return (signature, self.extra, ws)
        if kind is WitnessKind.P2WPKH:
            if self.signing_key is None:
                raise ValueError("P2WPKH without key")
            return (signature, self.signing_key.pubkey)
        if kind is WitnessKind.SIG_ONLY:
            return (signature, ws)
        if kind is WitnessKind.HTLC_PREIMAGE:
            return (signature, self.extra, ws)
        if kind is WitnessKind.HTLC_TIMEOUT:
            return (signature, b"", ws)
        return (b"", ws)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepTransaction:
    """A signed, broadcastable sweep and its accounting."""

    tx: CTransaction
    txid: bytes
    inputs: tuple[SpendableOutput, ...]
    output_amount_sat: int
    fee_sat: int
    weight: int

    @property
    def txid_hex(self) -> str:
        """txid in display order."""
        return self.txid[::-1].hex()


# ---------------------------------------------------------------------------------------------
# Constructors, one per BOLT 5 situation


def delayed_output(commitment: CommitmentTransaction,
                   delayed_privkey: PrivateKey) -> SpendableOutput:
    """Our own ``to_local`` after ``to_self_delay`` (BOLT 5 "Unilateral Close Handling: Local
    Commitment Transaction"): witness ``<local_delayedsig> <>``, nSequence = to_self_delay."""
    if commitment.to_local_vout is None:
        raise ValueError("this commitment has no to_local output")
    _check_key(delayed_privkey, commitment.keys.broadcaster_delayed_pubkey.data, "delayed")
    return SpendableOutput(
        outpoint=commitment.outpoint(commitment.to_local_vout),
        amount_sat=commitment.to_local_amount_sat,
        kind=WitnessKind.DELAYED,
        witness_script=commitment.to_local_script,
        signing_key=delayed_privkey,
        sequence=commitment.to_self_delay,
    )


def second_stage_output(*, outpoint: OutPoint, amount_sat: int, output_script: bytes,
                        to_self_delay: int, delayed_privkey: PrivateKey) -> SpendableOutput:
    """The output of our confirmed HTLC-success/-timeout tx, after ``to_self_delay``.

    ``output_script`` is :attr:`HtlcTransaction.output_script`; the outpoint is taken
    explicitly because an anchors HTLC tx gains fee inputs (and so a new txid).
    """
    return SpendableOutput(outpoint=outpoint, amount_sat=amount_sat, kind=WitnessKind.DELAYED,
                           witness_script=output_script, signing_key=delayed_privkey,
                           sequence=to_self_delay)


def revoked_to_local_output(revoked: CommitmentTransaction,
                            revocation_privkey: PrivateKey) -> SpendableOutput:
    """The cheater's ``to_local`` on its revoked commitment: ``<revocation_sig> 1``, at once."""
    if revoked.to_local_vout is None:
        raise ValueError("this commitment has no to_local output")
    _check_key(revocation_privkey, revoked.keys.revocation_pubkey.data, "revocation")
    return SpendableOutput(
        outpoint=revoked.outpoint(revoked.to_local_vout),
        amount_sat=revoked.to_local_amount_sat,
        kind=WitnessKind.REVOKED_DELAYED,
        witness_script=revoked.to_local_script,
        signing_key=revocation_privkey,
    )


def revoked_second_stage_output(*, outpoint: OutPoint, amount_sat: int, output_script: bytes,
                                revocation_privkey: PrivateKey) -> SpendableOutput:
    """The output of the cheater's HTLC-success/-timeout tx spending a revoked commitment:
    ``<revocation_sig> 1``, before its to_self_delay runs out."""
    return SpendableOutput(outpoint=outpoint, amount_sat=amount_sat,
                           kind=WitnessKind.REVOKED_DELAYED, witness_script=output_script,
                           signing_key=revocation_privkey)


def revoked_htlc_output(revoked: CommitmentTransaction, htlc_output: HtlcOutput,
                        revocation_privkey: PrivateKey) -> SpendableOutput:
    """Any HTLC output of a revoked commitment: ``<revocation_sig> <revocationpubkey>``."""
    if htlc_output not in revoked.htlc_outputs:
        raise ValueError("htlc_output is not from this commitment")
    _check_key(revocation_privkey, revoked.keys.revocation_pubkey.data, "revocation")
    return SpendableOutput(
        outpoint=revoked.outpoint(htlc_output.vout),
        amount_sat=htlc_output.amount_sat,
        kind=WitnessKind.REVOKED_HTLC,
        witness_script=htlc_output.witness_script,
        signing_key=revocation_privkey,
        extra=RevocationPubkey(revocation_privkey.pubkey).data,
    )


def to_remote_output(their_commitment: CommitmentTransaction,
                     payment_privkey: PrivateKey) -> SpendableOutput:
    """Our ``to_remote`` on the peer's commitment: P2WPKH (static_remotekey) spent at once, or
    with anchors ``<sig>`` against ``<remotepubkey> OP_CHECKSIGVERIFY 1 OP_CSV``, nSequence 1."""
    c = their_commitment
    if c.to_remote_vout is None:
        raise ValueError("this commitment has no to_remote output")
    _check_key(payment_privkey, c.keys.countersignatory_payment_pubkey.data, "payment")
    if c.commitment_format is CommitmentFormat.ANCHORS:
        return SpendableOutput(outpoint=c.outpoint(c.to_remote_vout),
                               amount_sat=c.to_remote_amount_sat, kind=WitnessKind.SIG_ONLY,
                               witness_script=c.to_remote_witness_script,
                               signing_key=payment_privkey, sequence=1)
    return SpendableOutput(outpoint=c.outpoint(c.to_remote_vout),
                           amount_sat=c.to_remote_amount_sat, kind=WitnessKind.P2WPKH,
                           witness_script=None, signing_key=payment_privkey)


def _htlc_sequence(commitment: CommitmentTransaction) -> int:
    # Anchors HTLC scripts end in `1 OP_CSV`; otherwise non-final so nLockTime is enforced.
    return 1 if commitment.commitment_format is CommitmentFormat.ANCHORS else 0


def remote_offered_htlc_output(their_commitment: CommitmentTransaction, htlc_output: HtlcOutput,
                               htlc_privkey: PrivateKey, payment_preimage: bytes
                               ) -> SpendableOutput:
    """An HTLC the peer offered us, on its commitment: claim it directly with the preimage
    (BOLT 5 "Remote Commitment: HTLC Output Handling"): ``<remotehtlcsig> <preimage>``.

    ``htlc_privkey``: our htlc_basepoint secret tweaked with *their* per_commitment_point.
    """
    c = their_commitment
    if htlc_output not in c.htlc_outputs or htlc_output.htlc.direction is not \
            HtlcDirection.OFFERED:
        raise ValueError("not an HTLC the broadcaster offered on this commitment")
    if hashlib.sha256(payment_preimage).digest() != htlc_output.htlc.payment_hash:
        raise ValueError("payment_preimage does not match the HTLC's payment_hash")
    _check_key(htlc_privkey, c.keys.countersignatory_htlc_pubkey.data, "htlc")
    return SpendableOutput(outpoint=c.outpoint(htlc_output.vout),
                           amount_sat=htlc_output.amount_sat, kind=WitnessKind.HTLC_PREIMAGE,
                           witness_script=htlc_output.witness_script, signing_key=htlc_privkey,
                           sequence=_htlc_sequence(c), extra=payment_preimage)


def remote_received_htlc_output(their_commitment: CommitmentTransaction, htlc_output: HtlcOutput,
                                htlc_privkey: PrivateKey) -> SpendableOutput:
    """An HTLC we offered, on the peer's commitment: take it back once timed out,
    ``<remotehtlcsig> <>`` with nLockTime = cltv_expiry."""
    c = their_commitment
    if htlc_output not in c.htlc_outputs or htlc_output.htlc.direction is not \
            HtlcDirection.RECEIVED:
        raise ValueError("not an HTLC the broadcaster received on this commitment")
    _check_key(htlc_privkey, c.keys.countersignatory_htlc_pubkey.data, "htlc")
    return SpendableOutput(outpoint=c.outpoint(htlc_output.vout),
                           amount_sat=htlc_output.amount_sat, kind=WitnessKind.HTLC_TIMEOUT,
                           witness_script=htlc_output.witness_script, signing_key=htlc_privkey,
                           sequence=_htlc_sequence(c), min_locktime=htlc_output.htlc.cltv_expiry)


def anchor_output(commitment: CommitmentTransaction, *, vout: int,
                  funding_privkey: PrivateKey | None) -> SpendableOutput:
    """An anchor output: the owner spends with ``<sig>`` (funding key) at once; with
    ``funding_privkey=None`` anyone spends with ``<>`` after 16 blocks."""
    if vout not in (commitment.to_local_anchor_vout, commitment.to_remote_anchor_vout) or \
            commitment.commitment_format is not CommitmentFormat.ANCHORS:
        raise ValueError(f"output {vout} is not an anchor of this commitment")
    owner = (commitment.keys.broadcaster_funding_pubkey if vout == commitment.to_local_anchor_vout
             else commitment.keys.countersignatory_funding_pubkey)
    script = anchor_script(owner)
    amount = int(commitment.tx.vout[vout].nValue)
    if funding_privkey is None:
        return SpendableOutput(outpoint=commitment.outpoint(vout), amount_sat=amount,
                               kind=WitnessKind.ANCHOR_ANYONE, witness_script=script,
                               signing_key=None, sequence=16)
    _check_key(funding_privkey, owner.data, "funding")
    return SpendableOutput(outpoint=commitment.outpoint(vout), amount_sat=amount,
                           kind=WitnessKind.SIG_ONLY, witness_script=script,
                           signing_key=funding_privkey)


def p2wpkh_output(*, outpoint: OutPoint, amount_sat: int, privkey: PrivateKey) -> SpendableOutput:
    """A plain P2WPKH coin of ours (e.g. a fee input for CPFP or an anchors HTLC tx)."""
    return SpendableOutput(outpoint=outpoint, amount_sat=amount_sat, kind=WitnessKind.P2WPKH,
                           witness_script=None, signing_key=privkey)


def _check_key(privkey: PrivateKey, expected_pubkey: bytes, what: str) -> None:
    if privkey.pubkey != expected_pubkey:
        raise ValueError(f"the {what} private key does not match the output's key")


# ---------------------------------------------------------------------------------------------
# Building


def _txin(outpoint: OutPoint, sequence: int) -> CTxIn:
    return CTxIn(COutPoint(outpoint.txid, outpoint.vout), CScript(), sequence)


def _txout(amount_sat: int, script_pubkey: bytes) -> CTxOut:
    return CTxOut(amount_sat, CScript(script_pubkey))


def _dummy_signature() -> bytes:
    return b"\x30" + b"\x00" * (_MAX_SIG_WITNESS - 1)


def _dust_limit(script_pubkey: bytes) -> int:
    if len(script_pubkey) == 22 and script_pubkey[:2] == b"\x00\x14":
        return _P2WPKH_DUST_SAT
    return _P2WSH_DUST_SAT


def _sign_inputs(tx: CTransaction, spends: Sequence[SpendableOutput],
                 first_index: int = 0) -> list[tuple[bytes, ...]]:
    stacks = []
    for i, spend in enumerate(spends, start=first_index):
        if spend.signing_key is None:
            stacks.append(spend.witness(b""))
            continue
        digest = segwit_v0_sighash(tx, i, spend.script_code(), spend.amount_sat, SIGHASH_ALL)
        stacks.append(spend.witness(witness_signature(spend.signing_key.sign(digest))))
    return stacks


def build_sweep_transaction(inputs: Sequence[SpendableOutput], *, destination_script_pubkey: bytes,
                            feerate_per_kw: int) -> SweepTransaction:
    """Spend ``inputs`` into one output paying to ``destination_script_pubkey``.

    version 2; nLockTime = the highest ``min_locktime`` of the inputs; fee =
    ``feerate_per_kw * weight // 1000`` with the weight of the signed tx at maximal signature
    size. Raises ValueError if the output would be below the dust threshold.
    """
    if not inputs:
        raise ValueError("build_sweep_transaction: no inputs")
    if feerate_per_kw < 0:
        raise ValueError("feerate_per_kw must be non-negative")
    total = sum(s.amount_sat for s in inputs)
    locktime = max(s.min_locktime for s in inputs)
    vin = [_txin(s.outpoint, s.sequence) for s in inputs]

    def make(amount: int) -> CTransaction:
        return CTransaction(vin, [_txout(amount, destination_script_pubkey)], locktime, 2)

    dummy = tx_with_witnesses(make(total), [s.witness(_dummy_signature()
                                                      if s.signing_key else b"")
                                            for s in inputs])
    weight = int(dummy.calc_weight())
    fee = feerate_per_kw * weight // 1000
    amount = total - fee
    if amount < _dust_limit(destination_script_pubkey):
        raise ValueError(f"sweep output {amount} sat would be dust (inputs {total}, fee {fee})")
    unsigned = make(amount)
    signed = tx_with_witnesses(unsigned, _sign_inputs(unsigned, inputs))
    return SweepTransaction(tx=signed, txid=bytes(signed.GetTxid()), inputs=tuple(inputs),
                            output_amount_sat=amount, fee_sat=fee, weight=weight)


def justice_outputs(revoked: CommitmentTransaction,
                    revocation_privkey: PrivateKey) -> list[SpendableOutput]:
    """Everything the revocation key can take from a revoked commitment: to_local and every
    HTLC output (BOLT 5 "Revoked Transaction Close Handling")."""
    outs = []
    if revoked.to_local_vout is not None:
        outs.append(revoked_to_local_output(revoked, revocation_privkey))
    outs.extend(revoked_htlc_output(revoked, h, revocation_privkey)
                for h in revoked.htlc_outputs)
    if not outs:
        raise ValueError("the revoked commitment has nothing to take with the revocation key")
    return outs


def build_penalty_transaction(revoked: CommitmentTransaction, *, revocation_privkey: PrivateKey,
                              destination_script_pubkey: bytes, feerate_per_kw: int,
                              payment_privkey: PrivateKey | None = None) -> SweepTransaction:
    """The justice transaction: the revoked commitment's to_local and ALL its HTLC outputs, with
    the revocation key, in one transaction; with ``payment_privkey`` also our own to_remote."""
    inputs = justice_outputs(revoked, revocation_privkey)
    if payment_privkey is not None and revoked.to_remote_vout is not None:
        inputs.append(to_remote_output(revoked, payment_privkey))
    return build_sweep_transaction(inputs, destination_script_pubkey=destination_script_pubkey,
                                   feerate_per_kw=feerate_per_kw)


def build_htlc_transaction_with_fee(
    htlc_tx: HtlcTransaction,
    *,
    countersignatory_signature: bytes,
    broadcaster_htlc_privkey: PrivateKey,
    payment_preimage: bytes | None,
    fee_inputs: Sequence[SpendableOutput],
    change_script_pubkey: bytes,
    feerate_per_kw: int,
) -> SweepTransaction:
    """An anchors (zero-fee) HTLC-timeout/-success tx made payable: fee inputs appended after
    the HTLC input, one change output after the HTLC output (SIGHASH_SINGLE|ANYONECANPAY binds
    the countersignatory's signature to input 0 / output 0 only). Our htlc signature is
    SIGHASH_ALL over the final tx. ``SweepTransaction.inputs`` lists the fee inputs only.
    """
    if htlc_tx.commitment_format is not CommitmentFormat.ANCHORS:
        raise ValueError("only zero-fee anchors HTLC transactions take fee inputs")
    if not fee_inputs:
        raise ValueError("no fee inputs")
    htlc = htlc_tx.htlc_output.htlc
    if htlc_tx.is_timeout:
        last = b""
    elif payment_preimage is None or hashlib.sha256(payment_preimage).digest() != \
            htlc.payment_hash:
        raise ValueError("HTLC-success needs the preimage of the HTLC's payment_hash")
    else:
        last = payment_preimage
    base = htlc_tx.tx
    vin = [base.vin[0], *(_txin(s.outpoint, s.sequence) for s in fee_inputs)]
    locktime = max(int(base.nLockTime), *(s.min_locktime for s in fee_inputs))
    fee_total = sum(s.amount_sat for s in fee_inputs)
    witness_script = htlc_tx.htlc_output.witness_script
    remote_sig = witness_signature(countersignatory_signature,
                                   htlc_tx.countersignatory_sighash_type)

    def make(change: int) -> CTransaction:
        return CTransaction(vin, [base.vout[0], _txout(change, change_script_pubkey)], locktime, 2)

    def htlc_stack(our_sig: bytes) -> tuple[bytes, ...]:
        return (b"", remote_sig, our_sig, last, witness_script)

    dummy = tx_with_witnesses(make(fee_total), [htlc_stack(_dummy_signature()),
                                                *(s.witness(_dummy_signature())
                                                  for s in fee_inputs)])
    weight = int(dummy.calc_weight())
    fee = feerate_per_kw * weight // 1000
    change = fee_total - fee
    if change < _dust_limit(change_script_pubkey):
        raise ValueError(f"change {change} sat would be dust (fee inputs {fee_total}, fee {fee})")
    unsigned = make(change)
    our_digest = segwit_v0_sighash(unsigned, 0, witness_script, htlc_tx.htlc_output.amount_sat,
                                   SIGHASH_ALL)
    our_sig = witness_signature(broadcaster_htlc_privkey.sign(our_digest))
    stacks = [htlc_stack(our_sig), *_sign_inputs(unsigned, fee_inputs, first_index=1)]
    signed = tx_with_witnesses(unsigned, stacks)
    return SweepTransaction(tx=signed, txid=bytes(signed.GetTxid()), inputs=tuple(fee_inputs),
                            output_amount_sat=change, fee_sat=fee, weight=weight)


def find_preimages(tx: CTransaction, payment_hashes: Sequence[bytes]) -> dict[bytes, bytes]:
    """Preimages revealed in ``tx``'s witnesses (an HTLC-success or a direct preimage claim),
    keyed by payment_hash: BOLT 5 requires learning them to fulfil the upstream HTLC."""
    wanted = set(payment_hashes)
    found: dict[bytes, bytes] = {}
    for inwit in tx.wit.vtxinwit:
        for item in inwit.scriptWitness.stack:
            item = bytes(item)
            if len(item) == 32:
                h = hashlib.sha256(item).digest()
                if h in wanted:
                    found[h] = item
    return found
