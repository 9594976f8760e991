"""Sweeps, HTLC claims and penalties: witness shapes, timelocks, signatures and fees."""

from __future__ import annotations

import hashlib

import pytest
from bitcoin.core import CTransaction

from channel.keys import SIGHASH_ALL, ChannelKeys, PrivateKey, compact_signature, verify
from channel.scripts import p2wpkh
from channel.sweeps import (
    SEQUENCE_NO_RELATIVE_LOCK,
    SpendableOutput,
    SweepTransaction,
    WitnessKind,
    anchor_output,
    build_htlc_transaction_with_fee,
    build_penalty_transaction,
    build_sweep_transaction,
    delayed_output,
    find_preimages,
    p2wpkh_output,
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
    build_commitment_transaction,
    build_htlc_transactions,
    obscuring_factor,
    segwit_v0_sighash,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint

ALICE = ChannelKeys.from_seed(b"\xaa" * 32)   # opener; broadcaster of the commitments below
BOB = ChannelKeys.from_seed(b"\xbb" * 32)
NUMBER = 3
PREIMAGE_OFFERED = b"\x01" * 32    # HTLC Alice offered to Bob
PREIMAGE_RECEIVED = b"\x02" * 32   # HTLC Bob offered to Alice
DEST = p2wpkh(PrivateKey(b"\x05" * 32).pubkey)
FEERATE = 2500
FUNDING = OutPoint(txid=b"\x11" * 32, vout=1)


def _alice_commitment(fmt: CommitmentFormat) -> CommitmentTransaction:
    pcp = ALICE.per_commitment_point(NUMBER)
    keys = CommitmentKeys.derive(per_commitment_point=pcp, broadcaster=ALICE.basepoints(),
                                 countersignatory=BOB.basepoints())
    htlcs = [
        CommitmentHtlc(direction=HtlcDirection.OFFERED, amount_msat=300_000_000,
                       payment_hash=hashlib.sha256(PREIMAGE_OFFERED).digest(), cltv_expiry=700,
                       htlc_id=0),
        CommitmentHtlc(direction=HtlcDirection.RECEIVED, amount_msat=200_000_000,
                       payment_hash=hashlib.sha256(PREIMAGE_RECEIVED).digest(), cltv_expiry=710,
                       htlc_id=0),
    ]
    return build_commitment_transaction(
        funding_outpoint=FUNDING, funding_amount_sat=2_000_000, commitment_number=NUMBER,
        obscuring_factor=obscuring_factor(ALICE.basepoints().payment_basepoint,
                                          BOB.basepoints().payment_basepoint),
        keys=keys, to_self_delay=5, dust_limit_sat=546, feerate_per_kw=FEERATE,
        broadcaster_is_opener=True, to_local_msat=1_000_000_000, to_remote_msat=500_000_000,
        htlcs=htlcs, commitment_format=fmt)


def _check_signatures(sweep: SweepTransaction, pubkeys: list[bytes]) -> None:
    """Every input's first witness item is a valid SIGHASH_ALL signature by the given key."""
    for i, (spend, pubkey) in enumerate(zip(sweep.inputs, pubkeys, strict=True)):
        stack = [bytes(x) for x in sweep.tx.wit.vtxinwit[i].scriptWitness.stack]
        assert stack[0][-1] == SIGHASH_ALL
        digest = segwit_v0_sighash(sweep.tx, i, spend.script_code(), spend.amount_sat)
        assert verify(pubkey, digest, compact_signature(stack[0][:-1]))


def _check_fee(sweep: SweepTransaction) -> None:
    """Fee is feerate*weight//1000 and the real weight does not exceed the one paid for."""
    assert sweep.fee_sat == FEERATE * sweep.weight // 1000
    assert int(sweep.tx.calc_weight()) <= sweep.weight
    assert sweep.output_amount_sat == sum(s.amount_sat for s in sweep.inputs) - sweep.fee_sat
    assert sweep.tx.vout[0].nValue == sweep.output_amount_sat
    assert bytes(sweep.tx.vout[0].scriptPubKey) == DEST


@pytest.mark.parametrize("fmt", list(CommitmentFormat), ids=lambda f: f.value)
def test_to_local_sweep_waits_to_self_delay(fmt: CommitmentFormat) -> None:
    """Our to_local sweep: nSequence = to_self_delay, witness <sig> <> <script>, delayed key."""
    ctx = _alice_commitment(fmt)
    delayed_key = ALICE.delayed_payment_privkey(ctx.keys.per_commitment_point)
    sweep = build_sweep_transaction([delayed_output(ctx, delayed_key)],
                                    destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    assert sweep.tx.vin[0].nSequence == 5
    assert sweep.tx.nVersion == 2
    stack = [bytes(x) for x in sweep.tx.wit.vtxinwit[0].scriptWitness.stack]
    assert stack[1:] == [b"", ctx.to_local_script]
    _check_signatures(sweep, [ctx.keys.broadcaster_delayed_pubkey.data])
    _check_fee(sweep)
    with pytest.raises(ValueError, match="delayed"):
        delayed_output(ctx, ALICE.htlc_privkey(ctx.keys.per_commitment_point))


@pytest.mark.parametrize("fmt", list(CommitmentFormat), ids=lambda f: f.value)
def test_to_remote_sweep(fmt: CommitmentFormat) -> None:
    """Bob's to_remote on Alice's commitment: P2WPKH at once, or anchors P2WSH with nSequence 1."""
    ctx = _alice_commitment(fmt)
    sweep = build_sweep_transaction([to_remote_output(ctx, BOB.payment_privkey())],
                                    destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    stack = [bytes(x) for x in sweep.tx.wit.vtxinwit[0].scriptWitness.stack]
    if fmt is CommitmentFormat.ANCHORS:
        assert sweep.tx.vin[0].nSequence == 1
        assert stack[1] == ctx.to_remote_witness_script
    else:
        assert sweep.tx.vin[0].nSequence == SEQUENCE_NO_RELATIVE_LOCK
        assert stack[1] == BOB.basepoints().payment_basepoint.data
    _check_signatures(sweep, [BOB.basepoints().payment_basepoint.data])
    _check_fee(sweep)
    assert sweep.inputs[0].amount_sat == ctx.to_remote_amount_sat == 500_000


@pytest.mark.parametrize("fmt", list(CommitmentFormat), ids=lambda f: f.value)
def test_penalty_takes_to_local_and_all_htlcs(fmt: CommitmentFormat) -> None:
    """The justice tx spends to_local (<sig> 1) and every HTLC (<sig> <revocationpubkey>)."""
    ctx = _alice_commitment(fmt)
    rev_key = BOB.revocation_privkey(ALICE.per_commitment_secret(NUMBER))
    sweep = build_penalty_transaction(ctx, revocation_privkey=rev_key,
                                      destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    assert len(sweep.tx.vin) == 1 + len(ctx.htlc_outputs) == 3
    spent = {int(i.prevout.n) for i in sweep.tx.vin}
    assert spent == {ctx.to_local_vout, *(h.vout for h in ctx.htlc_outputs)}
    rev = ctx.keys.revocation_pubkey.data
    for i, spend in enumerate(sweep.inputs):
        stack = [bytes(x) for x in sweep.tx.wit.vtxinwit[i].scriptWitness.stack]
        if spend.kind is WitnessKind.REVOKED_DELAYED:
            assert stack[1:] == [b"\x01", ctx.to_local_script]
        else:
            assert stack[1] == rev
        assert sweep.tx.vin[i].nSequence == SEQUENCE_NO_RELATIVE_LOCK
    assert sweep.tx.nLockTime == 0
    _check_signatures(sweep, [rev] * 3)
    _check_fee(sweep)
    assert sweep.output_amount_sat + sweep.fee_sat == ctx.to_local_amount_sat + 500_000
    with_remote = build_penalty_transaction(ctx, revocation_privkey=rev_key,
                                            destination_script_pubkey=DEST,
                                            feerate_per_kw=FEERATE,
                                            payment_privkey=BOB.payment_privkey())
    assert len(with_remote.tx.vin) == 4
    with pytest.raises(ValueError, match="revocation"):
        revoked_to_local_output(ctx, BOB.revocation_privkey(ALICE.per_commitment_secret(9)))


@pytest.mark.parametrize("fmt", list(CommitmentFormat), ids=lambda f: f.value)
def test_claims_on_remote_commitment(fmt: CommitmentFormat) -> None:
    """Bob claims Alice's offered HTLC with the preimage and reclaims his own after timeout."""
    ctx = _alice_commitment(fmt)
    bob_htlc_key = BOB.htlc_privkey(ctx.keys.per_commitment_point)
    offered = next(h for h in ctx.htlc_outputs if h.htlc.direction is HtlcDirection.OFFERED)
    received = next(h for h in ctx.htlc_outputs if h.htlc.direction is HtlcDirection.RECEIVED)
    claim = build_sweep_transaction(
        [remote_offered_htlc_output(ctx, offered, bob_htlc_key, PREIMAGE_OFFERED)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    stack = [bytes(x) for x in claim.tx.wit.vtxinwit[0].scriptWitness.stack]
    assert stack[1:] == [PREIMAGE_OFFERED, offered.witness_script]
    assert claim.tx.nLockTime == 0
    anchors = fmt is CommitmentFormat.ANCHORS
    assert claim.tx.vin[0].nSequence == (1 if anchors else 0)
    _check_signatures(claim, [ctx.keys.countersignatory_htlc_pubkey.data])
    _check_fee(claim)
    assert find_preimages(claim.tx, [offered.htlc.payment_hash]) == {
        offered.htlc.payment_hash: PREIMAGE_OFFERED}

    timeout = build_sweep_transaction([remote_received_htlc_output(ctx, received, bob_htlc_key)],
                                      destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    stack = [bytes(x) for x in timeout.tx.wit.vtxinwit[0].scriptWitness.stack]
    assert stack[1:] == [b"", received.witness_script]
    assert timeout.tx.nLockTime == 710
    assert timeout.tx.vin[0].nSequence == (1 if anchors else 0)
    _check_signatures(timeout, [ctx.keys.countersignatory_htlc_pubkey.data])
    with pytest.raises(ValueError, match="preimage"):
        remote_offered_htlc_output(ctx, offered, bob_htlc_key, PREIMAGE_RECEIVED)
    with pytest.raises(ValueError):
        remote_received_htlc_output(ctx, offered, bob_htlc_key)


def test_second_stage_outputs() -> None:
    """HTLC-tx outputs: Alice after her delay (<sig> <>), Bob with revocation (<sig> 1)."""
    ctx = _alice_commitment(CommitmentFormat.STATIC_REMOTEKEY)
    htlc_tx = build_htlc_transactions(ctx)[0]
    outpoint = OutPoint(txid=htlc_tx.txid, vout=0)
    delayed_key = ALICE.delayed_payment_privkey(ctx.keys.per_commitment_point)
    own = build_sweep_transaction(
        [second_stage_output(outpoint=outpoint, amount_sat=htlc_tx.output_amount_sat,
                             output_script=htlc_tx.output_script, to_self_delay=5,
                             delayed_privkey=delayed_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    assert own.tx.vin[0].nSequence == 5
    _check_signatures(own, [ctx.keys.broadcaster_delayed_pubkey.data])
    rev_key = BOB.revocation_privkey(ALICE.per_commitment_secret(NUMBER))
    penalty = build_sweep_transaction(
        [revoked_second_stage_output(outpoint=outpoint, amount_sat=htlc_tx.output_amount_sat,
                                     output_script=htlc_tx.output_script,
                                     revocation_privkey=rev_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    stack = [bytes(x) for x in penalty.tx.wit.vtxinwit[0].scriptWitness.stack]
    assert stack[1:] == [b"\x01", htlc_tx.output_script]
    _check_signatures(penalty, [ctx.keys.revocation_pubkey.data])
    _check_fee(penalty)


def test_revoked_htlc_output_rejects_foreign_output() -> None:
    """An HTLC output of another commitment is refused."""
    ctx = _alice_commitment(CommitmentFormat.STATIC_REMOTEKEY)
    other = _alice_commitment(CommitmentFormat.ANCHORS)
    rev_key = BOB.revocation_privkey(ALICE.per_commitment_secret(NUMBER))
    with pytest.raises(ValueError):
        revoked_htlc_output(ctx, other.htlc_outputs[0], rev_key)


def test_anchor_spends() -> None:
    """Owner's anchor spend carries <sig>; the anyone-can-spend path is <> with nSequence 16."""
    ctx = _alice_commitment(CommitmentFormat.ANCHORS)
    assert ctx.to_local_anchor_vout is not None and ctx.to_remote_anchor_vout is not None
    wallet_key = PrivateKey(b"\x09" * 32)
    fee_coin = p2wpkh_output(outpoint=OutPoint(txid=b"\x22" * 32, vout=0), amount_sat=50_000,
                             privkey=wallet_key)
    cpfp = build_sweep_transaction(
        [anchor_output(ctx, vout=ctx.to_local_anchor_vout, funding_privkey=ALICE.funding_key),
         fee_coin], destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    _check_signatures(cpfp, [ALICE.basepoints().funding_pubkey.data, wallet_key.pubkey])
    _check_fee(cpfp)
    anyone = anchor_output(ctx, vout=ctx.to_remote_anchor_vout, funding_privkey=None)
    assert anyone.sequence == 16 and anyone.witness(b"") == (b"", anyone.witness_script)
    with pytest.raises(ValueError, match="funding"):
        anchor_output(ctx, vout=ctx.to_remote_anchor_vout, funding_privkey=ALICE.funding_key)
    with pytest.raises(ValueError, match="anchor"):
        anchor_output(ctx, vout=ctx.htlc_outputs[0].vout, funding_privkey=None)


def test_anchors_htlc_transaction_with_fee_inputs() -> None:
    """Fee inputs go after the HTLC input; the 0x83 remote sig and input/output 0 stay put."""
    ctx = _alice_commitment(CommitmentFormat.ANCHORS)
    pcp = ctx.keys.per_commitment_point
    for htlc_tx in build_htlc_transactions(ctx):
        remote_sig = BOB.htlc_privkey(pcp).sign(htlc_tx.countersignatory_sighash())
        wallet_key = PrivateKey(b"\x09" * 32)
        fee_coin = p2wpkh_output(outpoint=OutPoint(txid=b"\x22" * 32, vout=0),
                                 amount_sat=40_000, privkey=wallet_key)
        preimage = None if htlc_tx.is_timeout else PREIMAGE_RECEIVED
        bumped = build_htlc_transaction_with_fee(
            htlc_tx, countersignatory_signature=remote_sig,
            broadcaster_htlc_privkey=ALICE.htlc_privkey(pcp), payment_preimage=preimage,
            fee_inputs=[fee_coin], change_script_pubkey=DEST, feerate_per_kw=FEERATE)
        tx: CTransaction = bumped.tx
        assert tx.vin[0] == htlc_tx.tx.vin[0] and tx.vout[0] == htlc_tx.tx.vout[0]
        assert tx.nLockTime == htlc_tx.tx.nLockTime
        # The countersignatory's signature still verifies on the grown transaction.
        digest = segwit_v0_sighash(tx, 0, htlc_tx.htlc_output.witness_script,
                                   htlc_tx.htlc_output.amount_sat, 0x83)
        stack = [bytes(x) for x in tx.wit.vtxinwit[0].scriptWitness.stack]
        assert stack[1][-1] == 0x83
        assert verify(ctx.keys.countersignatory_htlc_pubkey, digest,
                      compact_signature(stack[1][:-1]))
        ours = segwit_v0_sighash(tx, 0, htlc_tx.htlc_output.witness_script,
                                 htlc_tx.htlc_output.amount_sat)
        assert verify(ctx.keys.broadcaster_htlc_pubkey, ours, compact_signature(stack[2][:-1]))
        assert stack[3] == (b"" if htlc_tx.is_timeout else PREIMAGE_RECEIVED)
        assert bumped.fee_sat == FEERATE * bumped.weight // 1000
        assert tx.vout[1].nValue == 40_000 - bumped.fee_sat
        assert int(tx.calc_weight()) <= bumped.weight


def test_sweep_refuses_dust_and_empty() -> None:
    """A sweep whose output would be dust, or with no inputs, is refused."""
    tiny = p2wpkh_output(outpoint=OutPoint(txid=b"\x33" * 32, vout=0), amount_sat=400,
                         privkey=PrivateKey(b"\x09" * 32))
    with pytest.raises(ValueError, match="dust"):
        build_sweep_transaction([tiny], destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    with pytest.raises(ValueError):
        build_sweep_transaction([], destination_script_pubkey=DEST, feerate_per_kw=FEERATE)
    with pytest.raises(ValueError):
        SpendableOutput(outpoint=tiny.outpoint, amount_sat=1, kind=WitnessKind.P2WPKH,
                        witness_script=b"\x51", signing_key=PrivateKey(b"\x09" * 32))
