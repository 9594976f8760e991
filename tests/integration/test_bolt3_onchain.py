"""BOLT 3 transactions against a real bitcoind: each kind accepted and mined, exact amounts.

Every test opens its own 2-of-2 funding output (Alice opener, Bob accepter, 1,000,000 sat) on the
shared session node and plays one on-chain situation: commitment (both formats), HTLC-timeout
and HTLC-success, cooperative close, the to_local and to_remote sweeps, direct HTLC claims on
the remote commitment, anchor spends, the penalty on a revoked commitment and on a revoked
commitment's second-stage output. The edges that carry the security are checked at the exact
block where they flip: a to_local spend is non-BIP68-final one block before ``to_self_delay``
and accepted at it, an HTLC-timeout is non-final one block before ``cltv_expiry``, a penalty is
accepted at once, and an HTLC-success with a wrong preimage fails its script.

Amounts on confirmed outputs are read back from bitcoind (``gettxout``) and compared with values
computed here from the BOLT 3 formulas, not copied from the builder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from bitcoin.core import CTransaction

from channel.keys import ChannelKeys, PrivateKey, witness_signature
from channel.scripts import p2wpkh
from channel.sweeps import (
    SweepTransaction,
    anchor_output,
    build_htlc_transaction_with_fee,
    build_penalty_transaction,
    build_sweep_transaction,
    delayed_output,
    p2wpkh_output,
    remote_offered_htlc_output,
    remote_received_htlc_output,
    revoked_second_stage_output,
    second_stage_output,
    to_remote_output,
)
from channel.transactions import (
    CommitmentKeys,
    CommitmentTransaction,
    HtlcTransaction,
    build_closing_transaction,
    build_commitment_transaction,
    build_htlc_transactions,
    closing_sighash,
    finalize_closing_transaction,
    finalize_commitment_transaction,
    finalize_htlc_transaction,
    funding_script_pubkey,
    obscuring_factor,
    sign_commitment,
    tx_with_witnesses,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint
from regtest.rpc import MempoolAcceptResult
from regtest.wallet import Wallet

TO_SELF_DELAY = 5
FEERATE_PER_KW = 2500
FUNDING_SAT = 1_000_000
OFFERED_MSAT = 50_000_000        # Alice -> Bob (offered on Alice's commitment)
RECEIVED_MSAT = 40_000_000       # Bob -> Alice (received on Alice's commitment)
TO_REMOTE_MSAT = 300_000_000
TO_LOCAL_MSAT = FUNDING_SAT * 1000 - TO_REMOTE_MSAT - OFFERED_MSAT - RECEIVED_MSAT
PREIMAGE_OFFERED = hashlib.sha256(b"alice pays bob").digest()
PREIMAGE_RECEIVED = hashlib.sha256(b"bob pays alice").digest()
SWEEP_KEY = PrivateKey(hashlib.sha256(b"sweep destination").digest())
DEST = p2wpkh(SWEEP_KEY.pubkey)
FORMATS = [CommitmentFormat.STATIC_REMOTEKEY, CommitmentFormat.ANCHORS]


def _ids(fmt: CommitmentFormat) -> str:
    return fmt.value


# ---------------------------------------------------------------------------------------------
# Expected values, from the BOLT 3 formulas


def expected_commitment_fee(fmt: CommitmentFormat, htlcs: int = 2) -> int:
    base = 1124 if fmt is CommitmentFormat.ANCHORS else 724
    return FEERATE_PER_KW * (base + 172 * htlcs) // 1000


def expected_to_local(fmt: CommitmentFormat) -> int:
    anchors = 660 if fmt is CommitmentFormat.ANCHORS else 0
    return TO_LOCAL_MSAT // 1000 - expected_commitment_fee(fmt) - anchors


# ---------------------------------------------------------------------------------------------
# A channel on chain


@dataclass
class Channel:
    """Alice (opener) and Bob around one confirmed funding output."""

    alice: ChannelKeys
    bob: ChannelKeys
    funding: OutPoint
    fmt: CommitmentFormat
    chain: Wallet

    def alice_commitment(self, number: int, *, offered_cltv: int = 1000,
                         received_cltv: int = 1000) -> CommitmentTransaction:
        """Alice's commitment ``number`` with one HTLC each way."""
        keys = CommitmentKeys.derive(per_commitment_point=self.alice.per_commitment_point(number),
                                     broadcaster=self.alice.basepoints(),
                                     countersignatory=self.bob.basepoints())
        htlcs = [
            CommitmentHtlc(direction=HtlcDirection.OFFERED, amount_msat=OFFERED_MSAT,
                           payment_hash=hashlib.sha256(PREIMAGE_OFFERED).digest(),
                           cltv_expiry=offered_cltv, htlc_id=0),
            CommitmentHtlc(direction=HtlcDirection.RECEIVED, amount_msat=RECEIVED_MSAT,
                           payment_hash=hashlib.sha256(PREIMAGE_RECEIVED).digest(),
                           cltv_expiry=received_cltv, htlc_id=0),
        ]
        return build_commitment_transaction(
            funding_outpoint=self.funding, funding_amount_sat=FUNDING_SAT,
            commitment_number=number,
            obscuring_factor=obscuring_factor(self.alice.basepoints().payment_basepoint,
                                              self.bob.basepoints().payment_basepoint),
            keys=keys, to_self_delay=TO_SELF_DELAY, dust_limit_sat=546,
            feerate_per_kw=FEERATE_PER_KW, broadcaster_is_opener=True,
            to_local_msat=TO_LOCAL_MSAT, to_remote_msat=TO_REMOTE_MSAT, htlcs=htlcs,
            commitment_format=self.fmt)

    def signed(self, ctx: CommitmentTransaction) -> bytes:
        """The commitment with both funding signatures, serialized."""
        tx = finalize_commitment_transaction(
            ctx, broadcaster_signature=sign_commitment(ctx, self.alice.funding_key),
            countersignatory_signature=sign_commitment(ctx, self.bob.funding_key))
        return bytes(tx.serialize())

    def signed_htlc_tx(self, ctx: CommitmentTransaction, htlc_tx: HtlcTransaction,
                       preimage: bytes | None) -> bytes:
        """Alice's second-stage tx with Bob's signature (as in commitment_signed) and hers."""
        pcp = ctx.keys.per_commitment_point
        tx = finalize_htlc_transaction(
            htlc_tx,
            countersignatory_signature=self.bob.htlc_privkey(pcp).sign(
                htlc_tx.countersignatory_sighash()),
            broadcaster_signature=self.alice.htlc_privkey(pcp).sign(
                htlc_tx.broadcaster_sighash()),
            payment_preimage=preimage)
        return bytes(tx.serialize())


ChannelFactory = Callable[[CommitmentFormat], Channel]


@pytest.fixture()
def open_channel(miner: Wallet, request: pytest.FixtureRequest) -> ChannelFactory:
    """Fund a fresh 2-of-2 (keys seeded by the test's name) and confirm it."""
    def make(fmt: CommitmentFormat) -> Channel:
        seed = hashlib.sha256(request.node.nodeid.encode() + fmt.value.encode()).digest()
        alice = ChannelKeys.from_seed(hashlib.sha256(b"alice" + seed).digest())
        bob = ChannelKeys.from_seed(hashlib.sha256(b"bob" + seed).digest())
        spk = funding_script_pubkey(alice.basepoints().funding_pubkey,
                                    bob.basepoints().funding_pubkey)
        funding = miner.fund_script(spk, FUNDING_SAT)
        miner.confirm(funding.txid_hex)
        return Channel(alice=alice, bob=bob, funding=funding, fmt=fmt, chain=miner)
    return make


def accepted(chain: Wallet, raw: bytes) -> MempoolAcceptResult:
    result = chain.test_mempool_accept(raw)
    assert result.allowed, f"bitcoind refused: {result.reject_reason}"
    return result


def rejected(chain: Wallet, raw: bytes, reason: str) -> None:
    result = chain.test_mempool_accept(raw)
    assert not result.allowed, "bitcoind accepted a transaction it must refuse"
    assert result.reject_reason is not None and reason in result.reject_reason, \
        result.reject_reason


def mine_tx(chain: Wallet, raw: bytes) -> str:
    """testmempoolaccept, broadcast, mine one block; return the txid (display hex)."""
    accepted(chain, raw)
    txid = chain.send_raw_transaction(raw)
    chain.confirm(txid)
    return txid


def confirmed_value(chain: Wallet, txid: str, vout: int) -> int:
    """Value of a confirmed, unspent output as bitcoind reports it."""
    out = chain.get_tx_out(OutPoint.from_txid_hex(txid, vout), include_mempool=False)
    assert out is not None, f"{txid}:{vout} is not an unspent confirmed output"
    assert out.confirmations >= 1
    return out.value_sat


def mine_sweep(chain: Wallet, sweep: SweepTransaction) -> None:
    """Mine a sweep; bitcoind's fee and the confirmed output equal the sweep's accounting."""
    raw = bytes(sweep.tx.serialize())
    result = accepted(chain, raw)
    assert result.fee_sat == sweep.fee_sat
    txid = chain.send_raw_transaction(raw)
    chain.confirm(txid)
    assert txid == sweep.txid_hex
    assert confirmed_value(chain, txid, 0) == sweep.output_amount_sat


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_commitment_confirms_with_exact_outputs(open_channel: ChannelFactory,
                                                fmt: CommitmentFormat) -> None:
    """A signed commitment is accepted and mined; every output holds the BOLT 3 amount."""
    ch = open_channel(fmt)
    ctx = ch.alice_commitment(7)
    txid = mine_tx(ch.chain, ch.signed(ctx))
    assert txid == ctx.txid_hex
    assert ctx.to_local_vout is not None and ctx.to_remote_vout is not None
    assert confirmed_value(ch.chain, txid, ctx.to_local_vout) == expected_to_local(fmt)
    assert confirmed_value(ch.chain, txid, ctx.to_remote_vout) == TO_REMOTE_MSAT // 1000
    amounts = sorted(confirmed_value(ch.chain, txid, h.vout) for h in ctx.htlc_outputs)
    assert amounts == [RECEIVED_MSAT // 1000, OFFERED_MSAT // 1000]
    n_outputs = 4
    if fmt is CommitmentFormat.ANCHORS:
        for vout in (ctx.to_local_anchor_vout, ctx.to_remote_anchor_vout):
            assert vout is not None and confirmed_value(ch.chain, txid, vout) == 330
        n_outputs = 6
    tx = CTransaction.deserialize(ch.chain.get_transaction(txid))
    assert len(tx.vout) == n_outputs
    assert FUNDING_SAT - sum(o.nValue for o in tx.vout) == expected_commitment_fee(fmt)


def test_closing_transaction_confirms(open_channel: ChannelFactory) -> None:
    """The cooperative close is accepted and pays each side its balance, the opener the fee."""
    ch = open_channel(CommitmentFormat.STATIC_REMOTEKEY)
    alice_spk = p2wpkh(ch.alice.payment_privkey().pubkey)
    bob_spk = p2wpkh(ch.bob.payment_privkey().pubkey)
    alice_fp, bob_fp = ch.alice.basepoints().funding_pubkey, ch.bob.basepoints().funding_pubkey
    closing = build_closing_transaction(
        funding_outpoint=ch.funding, funding_amount_sat=FUNDING_SAT,
        local_funding_pubkey=alice_fp, remote_funding_pubkey=bob_fp,
        local_script_pubkey=alice_spk, remote_script_pubkey=bob_spk,
        local_amount_msat=700_000_000, remote_amount_msat=300_000_000, fee_sat=700,
        local_is_opener=True, dust_limit_sat=546)
    digest = closing_sighash(closing)
    tx = finalize_closing_transaction(closing, pubkey_a=alice_fp,
                                      signature_a=ch.alice.funding_key.sign(digest),
                                      pubkey_b=bob_fp, signature_b=ch.bob.funding_key.sign(digest))
    txid = mine_tx(ch.chain, bytes(tx.serialize()))
    assert closing.local_vout is not None and closing.remote_vout is not None
    assert confirmed_value(ch.chain, txid, closing.local_vout) == 700_000 - 700
    assert confirmed_value(ch.chain, txid, closing.remote_vout) == 300_000


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_to_local_sweep_is_non_final_until_to_self_delay(open_channel: ChannelFactory,
                                                        fmt: CommitmentFormat) -> None:
    """Alice's to_local sweep is non-BIP68-final until to_self_delay blocks, then confirms."""
    ch = open_channel(fmt)
    ctx = ch.alice_commitment(1)
    mine_tx(ch.chain, ch.signed(ctx))           # confirmed at height h, tip = h
    sweep = build_sweep_transaction(
        [delayed_output(ctx, ch.alice.delayed_payment_privkey(ctx.keys.per_commitment_point))],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    raw = bytes(sweep.tx.serialize())
    rejected(ch.chain, raw, "non-BIP68-final")
    ch.chain.mine(TO_SELF_DELAY - 2)             # tip = h + delay - 2: one block short
    rejected(ch.chain, raw, "non-BIP68-final")
    ch.chain.mine(1)                             # mineable in the next block, h + delay
    mine_sweep(ch.chain, sweep)
    assert sweep.output_amount_sat + sweep.fee_sat == expected_to_local(fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_to_remote_sweep(open_channel: ChannelFactory, fmt: CommitmentFormat) -> None:
    """Bob sweeps his to_remote from Alice's commitment right after it confirms."""
    ch = open_channel(fmt)
    ctx = ch.alice_commitment(2)
    mine_tx(ch.chain, ch.signed(ctx))
    sweep = build_sweep_transaction([to_remote_output(ctx, ch.bob.payment_privkey())],
                                    destination_script_pubkey=DEST,
                                    feerate_per_kw=FEERATE_PER_KW)
    mine_sweep(ch.chain, sweep)
    assert sweep.output_amount_sat + sweep.fee_sat == TO_REMOTE_MSAT // 1000


def test_htlc_timeout_and_success_second_stage(open_channel: ChannelFactory) -> None:
    """HTLC-timeout is non-final before cltv_expiry; HTLC-success needs the right preimage;
    both confirm with amount minus the BOLT 3 fee, and their outputs sweep after the delay."""
    ch = open_channel(CommitmentFormat.STATIC_REMOTEKEY)
    height = ch.chain.height()
    cltv = height + 4
    ctx = ch.alice_commitment(3, offered_cltv=cltv)
    commit_txid = mine_tx(ch.chain, ch.signed(ctx))   # tip = height + 1
    timeout_tx, success_tx = sorted(build_htlc_transactions(ctx), key=lambda h: not h.is_timeout)
    assert timeout_tx.is_timeout and not success_tx.is_timeout

    # HTLC-success: a wrong preimage fails the script, the right one is accepted at once.
    good = ch.signed_htlc_tx(ctx, success_tx, PREIMAGE_RECEIVED)
    stack = list(CTransaction.deserialize(good).wit.vtxinwit[0].scriptWitness.stack)
    stack[3] = PREIMAGE_OFFERED                      # 32 bytes, but not this HTLC's preimage
    bad = tx_with_witnesses(success_tx.tx, [stack])
    rejected(ch.chain, bytes(bad.serialize()), "OP_EQUALVERIFY")
    success_txid = mine_tx(ch.chain, good)           # tip = height + 2
    assert confirmed_value(ch.chain, success_txid, 0) == \
        RECEIVED_MSAT // 1000 - FEERATE_PER_KW * 703 // 1000

    # HTLC-timeout: non-final until the tip reaches cltv_expiry.
    raw_timeout = ch.signed_htlc_tx(ctx, timeout_tx, None)
    rejected(ch.chain, raw_timeout, "non-final")
    ch.chain.mine(cltv - 1 - ch.chain.height())      # tip = cltv - 1
    rejected(ch.chain, raw_timeout, "non-final")
    ch.chain.mine(1)                                 # tip = cltv
    timeout_txid = mine_tx(ch.chain, raw_timeout)
    assert confirmed_value(ch.chain, timeout_txid, 0) == \
        OFFERED_MSAT // 1000 - FEERATE_PER_KW * 663 // 1000
    assert commit_txid == ctx.txid_hex

    # The HTLC-timeout output is Alice's after to_self_delay (to_local shape).
    delayed_key = ch.alice.delayed_payment_privkey(ctx.keys.per_commitment_point)
    sweep = build_sweep_transaction(
        [second_stage_output(outpoint=OutPoint.from_txid_hex(timeout_txid, 0),
                             amount_sat=timeout_tx.output_amount_sat,
                             output_script=timeout_tx.output_script,
                             to_self_delay=TO_SELF_DELAY, delayed_privkey=delayed_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    rejected(ch.chain, bytes(sweep.tx.serialize()), "non-BIP68-final")
    ch.chain.mine(TO_SELF_DELAY - 1)
    mine_sweep(ch.chain, sweep)


def test_anchors_htlc_transactions_with_fee_inputs(open_channel: ChannelFactory,
                                                   miner: Wallet) -> None:
    """Zero-fee anchors HTLC txs are refused alone and accepted once a fee input is attached."""
    ch = open_channel(CommitmentFormat.ANCHORS)
    fee_key = PrivateKey(hashlib.sha256(b"fee coin").digest())
    coins = [miner.fund_script(p2wpkh(fee_key.pubkey), 100_000) for _ in range(2)]
    cltv = ch.chain.height() + 3
    ctx = ch.alice_commitment(4, offered_cltv=cltv)
    mine_tx(ch.chain, ch.signed(ctx))                # also confirms the fee coins
    pcp = ctx.keys.per_commitment_point
    for htlc_tx, coin in zip(sorted(build_htlc_transactions(ctx), key=lambda h: h.is_timeout),
                             coins, strict=True):
        preimage = None if htlc_tx.is_timeout else PREIMAGE_RECEIVED
        if htlc_tx.is_timeout:
            ch.chain.mine(cltv - ch.chain.height())
        bare = ch.signed_htlc_tx(ctx, htlc_tx, preimage)
        rejected(ch.chain, bare, "min relay fee not met")
        bumped = build_htlc_transaction_with_fee(
            htlc_tx,
            countersignatory_signature=ch.bob.htlc_privkey(pcp).sign(
                htlc_tx.countersignatory_sighash()),
            broadcaster_htlc_privkey=ch.alice.htlc_privkey(pcp), payment_preimage=preimage,
            fee_inputs=[p2wpkh_output(outpoint=coin, amount_sat=100_000, privkey=fee_key)],
            change_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
        raw = bytes(bumped.tx.serialize())
        assert accepted(ch.chain, raw).fee_sat == bumped.fee_sat
        txid = ch.chain.send_raw_transaction(raw)
        ch.chain.confirm(txid)
        assert confirmed_value(ch.chain, txid, 0) == htlc_tx.htlc_output.amount_sat
        assert confirmed_value(ch.chain, txid, 1) == 100_000 - bumped.fee_sat


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_htlc_claims_on_remote_commitment(open_channel: ChannelFactory,
                                          fmt: CommitmentFormat) -> None:
    """On Alice's commitment Bob takes her offered HTLC with the preimage at once, and his own
    HTLC back only from its cltv_expiry."""
    ch = open_channel(fmt)
    cltv = ch.chain.height() + 3
    ctx = ch.alice_commitment(5, received_cltv=cltv)
    mine_tx(ch.chain, ch.signed(ctx))
    bob_htlc_key = ch.bob.htlc_privkey(ctx.keys.per_commitment_point)
    offered = next(h for h in ctx.htlc_outputs if h.htlc.direction is HtlcDirection.OFFERED)
    received = next(h for h in ctx.htlc_outputs if h.htlc.direction is HtlcDirection.RECEIVED)

    claim = build_sweep_transaction(
        [remote_offered_htlc_output(ctx, offered, bob_htlc_key, PREIMAGE_OFFERED)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    mine_sweep(ch.chain, claim)
    assert claim.output_amount_sat + claim.fee_sat == OFFERED_MSAT // 1000

    reclaim = build_sweep_transaction(
        [remote_received_htlc_output(ctx, received, bob_htlc_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    raw = bytes(reclaim.tx.serialize())
    ch.chain.mine(cltv - 1 - ch.chain.height())
    rejected(ch.chain, raw, "non-final")
    ch.chain.mine(1)
    mine_sweep(ch.chain, reclaim)
    assert reclaim.output_amount_sat + reclaim.fee_sat == RECEIVED_MSAT // 1000


def test_anchor_spends(open_channel: ChannelFactory, miner: Wallet) -> None:
    """Alice CPFPs her unconfirmed commitment through her anchor; anyone may take Bob's anchor
    after 16 blocks (non-BIP68-final before)."""
    ch = open_channel(CommitmentFormat.ANCHORS)
    fee_key = PrivateKey(hashlib.sha256(b"anchor fee coin").digest())
    coins = [miner.fund_script(p2wpkh(fee_key.pubkey), 50_000) for _ in range(2)]
    miner.confirm(coins[0].txid_hex)
    assert miner.confirmations(coins[1].txid_hex) >= 1
    ctx = ch.alice_commitment(6)
    assert ctx.to_local_anchor_vout is not None and ctx.to_remote_anchor_vout is not None
    raw = ch.signed(ctx)
    accepted(ch.chain, raw)
    ch.chain.send_raw_transaction(raw)               # in the mempool, not mined
    cpfp = build_sweep_transaction(
        [anchor_output(ctx, vout=ctx.to_local_anchor_vout, funding_privkey=ch.alice.funding_key),
         p2wpkh_output(outpoint=coins[0], amount_sat=50_000, privkey=fee_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    mine_sweep(ch.chain, cpfp)                        # mines parent and child together
    assert ch.chain.confirmations(ctx.txid_hex) >= 1
    assert cpfp.output_amount_sat + cpfp.fee_sat == 330 + 50_000

    anyone = build_sweep_transaction(
        [anchor_output(ctx, vout=ctx.to_remote_anchor_vout, funding_privkey=None),
         p2wpkh_output(outpoint=coins[1], amount_sat=50_000, privkey=fee_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    raw_anyone = bytes(anyone.tx.serialize())
    confirmed_at = ch.chain.height() - ch.chain.confirmations(ctx.txid_hex) + 1
    ch.chain.mine(confirmed_at + 14 - ch.chain.height())   # one block short of 16
    rejected(ch.chain, raw_anyone, "non-BIP68-final")
    ch.chain.mine(1)
    mine_sweep(ch.chain, anyone)


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_penalty_on_revoked_commitment(open_channel: ChannelFactory,
                                       fmt: CommitmentFormat) -> None:
    """Alice publishes revoked commitment 3; Bob's justice tx takes to_local, both HTLCs and his
    to_remote with the revocation key in the very next block."""
    ch = open_channel(fmt)
    revoked = ch.alice_commitment(3)
    mine_tx(ch.chain, ch.signed(revoked))
    revocation_key = ch.bob.revocation_privkey(ch.alice.per_commitment_secret(3))
    penalty = build_penalty_transaction(revoked, revocation_privkey=revocation_key,
                                        destination_script_pubkey=DEST,
                                        feerate_per_kw=FEERATE_PER_KW,
                                        payment_privkey=ch.bob.payment_privkey())
    assert len(penalty.tx.vin) == 4
    mine_sweep(ch.chain, penalty)
    taken = expected_to_local(fmt) + TO_REMOTE_MSAT // 1000 + (OFFERED_MSAT + RECEIVED_MSAT) // 1000
    assert penalty.output_amount_sat + penalty.fee_sat == taken


def test_penalty_on_second_stage_htlc_output(open_channel: ChannelFactory) -> None:
    """Alice publishes a revoked commitment and its HTLC-success; Bob takes that output at once
    with the revocation key."""
    ch = open_channel(CommitmentFormat.STATIC_REMOTEKEY)
    revoked = ch.alice_commitment(2)
    mine_tx(ch.chain, ch.signed(revoked))
    success_tx = next(h for h in build_htlc_transactions(revoked) if not h.is_timeout)
    success_txid = mine_tx(ch.chain, ch.signed_htlc_tx(revoked, success_tx, PREIMAGE_RECEIVED))
    amount = confirmed_value(ch.chain, success_txid, 0)
    assert amount == success_tx.output_amount_sat
    revocation_key = ch.bob.revocation_privkey(ch.alice.per_commitment_secret(2))
    penalty = build_sweep_transaction(
        [revoked_second_stage_output(outpoint=OutPoint.from_txid_hex(success_txid, 0),
                                     amount_sat=amount, output_script=success_tx.output_script,
                                     revocation_privkey=revocation_key)],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    mine_sweep(ch.chain, penalty)
    assert penalty.output_amount_sat + penalty.fee_sat == amount


def test_witness_signature_of_wrong_key_is_rejected(open_channel: ChannelFactory) -> None:
    """A to_local sweep signed with the wrong key is refused even after the delay."""
    ch = open_channel(CommitmentFormat.STATIC_REMOTEKEY)
    ctx = ch.alice_commitment(1)
    mine_tx(ch.chain, ch.signed(ctx))
    ch.chain.mine(TO_SELF_DELAY)
    sweep = build_sweep_transaction(
        [delayed_output(ctx, ch.alice.delayed_payment_privkey(ctx.keys.per_commitment_point))],
        destination_script_pubkey=DEST, feerate_per_kw=FEERATE_PER_KW)
    stack = list(sweep.tx.wit.vtxinwit[0].scriptWitness.stack)
    stack[0] = witness_signature(ch.bob.funding_key.sign(b"\x00" * 32))
    forged = tx_with_witnesses(sweep.tx, [stack])
    rejected(ch.chain, bytes(forged.serialize()), "script-verify-flag-failed")
    mine_sweep(ch.chain, sweep)
