"""BOLT 3 Appendix B, C and F: funding, commitment and HTLC transactions, byte for byte."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript, SignatureHash

from channel.keys import (
    SIGHASH_ALL,
    Basepoints,
    DelayedPaymentBasepoint,
    DelayedPubkey,
    FundingPubkey,
    HtlcBasepoint,
    HtlcPubkey,
    PaymentBasepoint,
    PerCommitmentPoint,
    PrivateKey,
    RevocationBasepoint,
    RevocationPubkey,
    compact_signature,
    der_signature,
    derive_privkey,
    verify,
)
from channel.scripts import funding_script, p2wpkh
from channel.transactions import (
    CommitmentKeys,
    CommitmentTransaction,
    build_closing_transaction,
    build_commitment_transaction,
    build_htlc_success_transaction,
    build_htlc_timeout_transaction,
    build_htlc_transactions,
    closing_sighash,
    commitment_fee_sat,
    commitment_number_from_tx,
    commitment_sighash,
    finalize_closing_transaction,
    finalize_commitment_transaction,
    finalize_htlc_transaction,
    funding_script_pubkey,
    htlc_success_fee_sat,
    htlc_timeout_fee_sat,
    obscured_commitment_number,
    obscuring_factor,
    sign_commitment,
    verify_commitment_signature,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "bolt3.json").read_text())
APP_B = VECTORS["appendix_b_funding_tx"]
APP_C = VECTORS["appendix_c_commitment_and_htlc_txs"]
APP_F = VECTORS["appendix_f_anchors"]
COMMON = APP_C["common"]
SECRETS = APP_C["internal_derivation_inputs_from_html_comment"]
# Any valid point, for basepoints Appendix C does not use (they take no part in the tx).
UNUSED_POINT = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


def _priv(hex_with_01: str) -> PrivateKey:
    """Vector private keys are 32 bytes followed by the 01 compressed marker."""
    return PrivateKey(bytes.fromhex(hex_with_01)[:32])


@dataclass(frozen=True)
class _Setup:
    local: Basepoints
    remote: Basepoints
    pcp: PerCommitmentPoint
    local_funding_key: PrivateKey
    remote_funding_key: PrivateKey
    local_htlc_key: PrivateKey
    remote_htlc_key: PrivateKey
    funding_outpoint: OutPoint


def _setup() -> _Setup:
    local = Basepoints(
        funding_pubkey=FundingPubkey.from_hex(COMMON["local_funding_pubkey"]),
        revocation_basepoint=RevocationBasepoint(UNUSED_POINT),
        payment_basepoint=PaymentBasepoint.from_hex(COMMON["local_payment_basepoint"]),
        delayed_payment_basepoint=DelayedPaymentBasepoint.from_hex(
            SECRETS["local_delayed_payment_basepoint"]),
        htlc_basepoint=HtlcBasepoint.from_hex(COMMON["local_htlc_basepoint"]),
    )
    remote = Basepoints(
        funding_pubkey=FundingPubkey.from_hex(COMMON["remote_funding_pubkey"]),
        revocation_basepoint=RevocationBasepoint.from_hex(SECRETS["remote_revocation_basepoint"]),
        payment_basepoint=PaymentBasepoint.from_hex(COMMON["remote_payment_basepoint"]),
        delayed_payment_basepoint=DelayedPaymentBasepoint(UNUSED_POINT),
        htlc_basepoint=HtlcBasepoint.from_hex(COMMON["remote_htlc_basepoint"]),
    )
    pcp = PerCommitmentPoint.from_hex(SECRETS["local_per_commitment_point"])
    return _Setup(
        local=local,
        remote=remote,
        pcp=pcp,
        local_funding_key=_priv(COMMON["local_funding_privkey"]),
        remote_funding_key=_priv(SECRETS["remote_funding_privkey"]),
        # Appendix C's htlc basepoints equal the payment basepoints, so do their secrets.
        local_htlc_key=derive_privkey(_priv(SECRETS["local_payment_basepoint_secret"]), pcp),
        remote_htlc_key=derive_privkey(_priv(SECRETS["remote_payment_basepoint_secret"]), pcp),
        funding_outpoint=OutPoint.from_txid_hex(COMMON["funding_tx_id"],
                                                COMMON["funding_output_index"]),
    )


SETUP = _setup()


def _htlc(entry: dict[str, Any]) -> CommitmentHtlc:
    preimage = bytes.fromhex(entry["payment_preimage"])
    return CommitmentHtlc(
        direction=(HtlcDirection.RECEIVED if entry["direction"] == "remote->local"
                   else HtlcDirection.OFFERED),
        amount_msat=entry["amount_msat"],
        payment_hash=hashlib.sha256(preimage).digest(),
        cltv_expiry=entry["expiry"],
        htlc_id=entry["id"],
    )


ALL_HTLCS = {e["id"]: _htlc(e) for e in APP_C["htlcs"]}
PREIMAGES = {e["id"]: bytes.fromhex(e["payment_preimage"]) for e in APP_C["htlcs"]}


def _htlcs_for(to_local_msat: int, to_remote_msat: int) -> list[CommitmentHtlc]:
    """The HTLC set of a case: the one that makes balances + HTLCs equal the funding amount."""
    missing = COMMON["funding_amount_satoshi"] * 1000 - to_local_msat - to_remote_msat
    for ids in ((), (0, 1, 2, 3, 4), (1, 5, 6)):
        chosen = [ALL_HTLCS[i] for i in ids]
        if sum(h.amount_msat for h in chosen) == missing:
            return chosen
    raise AssertionError(f"no HTLC set sums to {missing} msat")


def _keys() -> CommitmentKeys:
    return CommitmentKeys.derive(per_commitment_point=SETUP.pcp, broadcaster=SETUP.local,
                                 countersignatory=SETUP.remote)


def _build(to_local_msat: int, to_remote_msat: int, feerate_per_kw: int, dust_limit_sat: int,
           commitment_format: CommitmentFormat) -> CommitmentTransaction:
    return build_commitment_transaction(
        funding_outpoint=SETUP.funding_outpoint,
        funding_amount_sat=COMMON["funding_amount_satoshi"],
        commitment_number=COMMON["commitment_number"],
        obscuring_factor=obscuring_factor(SETUP.local.payment_basepoint,
                                          SETUP.remote.payment_basepoint),
        keys=_keys(),
        to_self_delay=COMMON["local_delay"],
        dust_limit_sat=dust_limit_sat,
        feerate_per_kw=feerate_per_kw,
        broadcaster_is_opener=True,
        to_local_msat=to_local_msat,
        to_remote_msat=to_remote_msat,
        htlcs=_htlcs_for(to_local_msat, to_remote_msat),
        commitment_format=commitment_format,
    )


# ---------------------------------------------------------------------------------------------
# Appendix C (static_remotekey)


def test_appendix_c_commitment_keys() -> None:
    """CommitmentKeys.derive reproduces every key listed in Appendix C's common inputs."""
    keys = _keys()
    assert keys.broadcaster_htlc_pubkey == HtlcPubkey.from_hex(COMMON["local_htlcpubkey"])
    assert keys.countersignatory_htlc_pubkey == HtlcPubkey.from_hex(COMMON["remote_htlcpubkey"])
    assert keys.broadcaster_delayed_pubkey == DelayedPubkey.from_hex(COMMON["local_delayedpubkey"])
    assert keys.revocation_pubkey == RevocationPubkey.from_hex(COMMON["local_revocation_pubkey"])
    assert keys.countersignatory_payment_pubkey.data == SETUP.remote.payment_basepoint.data
    assert SETUP.local_htlc_key.secret == bytes.fromhex(COMMON["local_privkey"])[:32]
    assert SETUP.remote_htlc_key.secret == bytes.fromhex(SECRETS["remote_privkey"])[:32]


def test_appendix_c_obscuring_factor() -> None:
    """The obscuring factor is 0x2bb038521914, as the vector's comment states."""
    factor = obscuring_factor(SETUP.local.payment_basepoint, SETUP.remote.payment_basepoint)
    assert COMMON["obscured_commitment_number_comment"].startswith(hex(factor))
    assert obscured_commitment_number(42, factor) == 0x2BB038521914 ^ 42


def test_funding_script_matches_vector() -> None:
    """The funding witness script is the sorted 2-of-2 of Appendix C, whatever the key order."""
    a, b = SETUP.local.funding_pubkey, SETUP.remote.funding_pubkey
    assert funding_script(a, b).hex() == COMMON["funding_wscript_comment"]
    assert funding_script(b, a).hex() == COMMON["funding_wscript_comment"]


@pytest.mark.parametrize("case", APP_C["cases"], ids=[c["name"] for c in APP_C["cases"]])
def test_appendix_c_commitment(case: dict[str, Any]) -> None:
    """The commitment tx, both funding signatures and the fee match Appendix C exactly."""
    ctx = _build(case["to_local_msat"], case["to_remote_msat"], case["local_feerate_per_kw"],
                 COMMON["local_dust_limit_satoshi"], CommitmentFormat.STATIC_REMOTEKEY)
    local_sig = sign_commitment(ctx, SETUP.local_funding_key)
    remote_sig = sign_commitment(ctx, SETUP.remote_funding_key)
    assert der_signature(remote_sig).hex() == case["remote_signature"]
    assert der_signature(local_sig).hex() == case["local_signature_comment"]
    assert verify_commitment_signature(ctx, SETUP.remote.funding_pubkey, remote_sig)
    assert not verify_commitment_signature(ctx, SETUP.local.funding_pubkey, remote_sig)
    signed = finalize_commitment_transaction(ctx, broadcaster_signature=local_sig,
                                             countersignatory_signature=remote_sig)
    assert signed.serialize().hex() == case["commit_tx_hex"]
    assert ctx.txid_hex == case["_decoded_commit_txid"]
    assert len(ctx.htlc_outputs) == case["num_htlcs"]
    if "base_commitment_fee_sat_comment" in case:
        assert ctx.base_fee_sat == case["base_commitment_fee_sat_comment"]
        assert ctx.fee_sat == case["actual_commitment_fee_sat_comment"]
    if "to_local_output_comment" in case:
        assert ctx.to_local_amount_sat == case["to_local_output_comment"]["amount_sat"]
        assert ctx.to_local_script.hex() == case["to_local_output_comment"]["wscript"]
    elif "note_comment" not in case:  # the last case lists no outputs at all
        assert ctx.to_local_vout is None
    if "to_remote_output_comment" in case:
        assert ctx.to_remote_amount_sat == case["to_remote_output_comment"]["amount_sat"]
    by_id = {o.htlc.htlc_id: o for o in ctx.htlc_outputs}
    for info in case["htlc_outputs_info"]:
        out = by_id[info["htlc"]]
        assert out.amount_sat == info["amount_sat"]
        assert out.witness_script.hex() == info["wscript"]
        assert out.htlc.direction.value == info["type"]
    assert commitment_number_from_tx(
        signed, obscuring_factor(SETUP.local.payment_basepoint, SETUP.remote.payment_basepoint)
    ) == COMMON["commitment_number"]


def _c_htlc_ids() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for case in APP_C["cases"]:
        for entry in case["htlc_txs"]:
            out.append((f"{case['name']}/output{entry['htlc_output_index']}", case, entry))
    return out


@pytest.mark.parametrize(("case", "entry"), [(c, e) for _, c, e in _c_htlc_ids()],
                         ids=[i for i, _, _ in _c_htlc_ids()])
def test_appendix_c_htlc_transaction(case: dict[str, Any], entry: dict[str, Any]) -> None:
    """Each HTLC-success/-timeout tx and both its signatures match Appendix C exactly."""
    ctx = _build(case["to_local_msat"], case["to_remote_msat"], case["local_feerate_per_kw"],
                 COMMON["local_dust_limit_satoshi"], CommitmentFormat.STATIC_REMOTEKEY)
    htlc_txs = build_htlc_transactions(ctx)
    htlc_tx = next(h for h in htlc_txs if h.htlc_output.vout == entry["htlc_output_index"])
    assert htlc_tx.htlc_output.htlc.htlc_id == entry["htlc"]
    assert htlc_tx.is_timeout == (entry["type"] == "htlc-timeout")
    remote_sig = SETUP.remote_htlc_key.sign(htlc_tx.countersignatory_sighash())
    local_sig = SETUP.local_htlc_key.sign(htlc_tx.broadcaster_sighash())
    assert der_signature(remote_sig).hex() == entry["remote_htlc_signature"]
    assert der_signature(local_sig).hex() == entry["local_htlc_signature_comment"]
    preimage = None if htlc_tx.is_timeout else PREIMAGES[entry["htlc"]]
    signed = finalize_htlc_transaction(htlc_tx, countersignatory_signature=remote_sig,
                                       broadcaster_signature=local_sig, payment_preimage=preimage)
    assert signed.serialize().hex() == entry["tx_hex"]


def test_htlc_signature_order_is_output_order() -> None:
    """build_htlc_transactions lists second-stage txs in commitment output order."""
    case = APP_C["cases"][1]
    ctx = _build(case["to_local_msat"], case["to_remote_msat"], case["local_feerate_per_kw"],
                 COMMON["local_dust_limit_satoshi"], CommitmentFormat.STATIC_REMOTEKEY)
    vouts = [h.htlc_output.vout for h in build_htlc_transactions(ctx)]
    assert vouts == sorted(vouts)
    assert vouts == [e["htlc_output_index"] for e in case["htlc_txs"]]


def test_htlc_builders_check_direction() -> None:
    """HTLC-timeout refuses a received HTLC and HTLC-success an offered one."""
    case = APP_C["cases"][1]
    ctx = _build(case["to_local_msat"], case["to_remote_msat"], case["local_feerate_per_kw"],
                 COMMON["local_dust_limit_satoshi"], CommitmentFormat.STATIC_REMOTEKEY)
    offered = next(o for o in ctx.htlc_outputs if o.htlc.direction is HtlcDirection.OFFERED)
    received = next(o for o in ctx.htlc_outputs if o.htlc.direction is HtlcDirection.RECEIVED)
    with pytest.raises(ValueError, match="offered"):
        build_htlc_timeout_transaction(ctx, received)
    with pytest.raises(ValueError, match="received"):
        build_htlc_success_transaction(ctx, offered)
    htlc_tx = build_htlc_success_transaction(ctx, received)
    sig = SETUP.local_htlc_key.sign(htlc_tx.broadcaster_sighash())
    with pytest.raises(ValueError, match="preimage"):
        finalize_htlc_transaction(htlc_tx, countersignatory_signature=sig,
                                  broadcaster_signature=sig, payment_preimage=b"\x07" * 32)


def test_fee_helpers_match_spec_example() -> None:
    """BOLT 3's fee example: feerate 5000 gives HTLC-timeout 3315 and HTLC-success 3515 sat."""
    fmt = CommitmentFormat.STATIC_REMOTEKEY
    assert htlc_timeout_fee_sat(5000, fmt) == 3315
    assert htlc_success_fee_sat(5000, fmt) == 3515
    assert htlc_timeout_fee_sat(5000, CommitmentFormat.ANCHORS) == 0
    assert commitment_fee_sat(15000, 0, fmt) == 10860
    assert commitment_fee_sat(15000, 0, CommitmentFormat.ANCHORS) == 16860


# ---------------------------------------------------------------------------------------------
# Appendix F (anchors)


@pytest.mark.parametrize("case", APP_F["cases"], ids=[c["Name"] for c in APP_F["cases"]])
def test_appendix_f_commitment(case: dict[str, Any]) -> None:
    """The anchors commitment tx and remote signature match Appendix F exactly."""
    ctx = _build(case["LocalBalance"], case["RemoteBalance"], case["FeePerKw"],
                 case["DustLimitSatoshis"], CommitmentFormat.ANCHORS)
    local_sig = sign_commitment(ctx, SETUP.local_funding_key)
    remote_sig = sign_commitment(ctx, SETUP.remote_funding_key)
    assert der_signature(remote_sig).hex() == case["RemoteSigHex"]
    assert der_signature(local_sig).hex() == case["_decoded"]["local_sig_from_witness"]
    signed = finalize_commitment_transaction(ctx, broadcaster_signature=local_sig,
                                             countersignatory_signature=remote_sig)
    assert signed.serialize().hex() == case["ExpectedCommitmentTxHex"]
    assert [(o.nValue, bytes(o.scriptPubKey).hex()) for o in ctx.tx.vout] == \
        [(o["value_sat"], o["scriptpubkey"]) for o in case["_decoded"]["outputs"]]
    anchors = [v for v in (ctx.to_local_anchor_vout, ctx.to_remote_anchor_vout) if v is not None]
    assert all(ctx.tx.vout[v].nValue == 330 for v in anchors)


def _f_htlc_ids() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for case in APP_F["cases"]:
        for desc in case["HtlcDescs"]:
            idx = desc["_decoded"]["spends_commitment_output_index"]
            out.append((f"{case['Name']}/output{idx}", case, desc))
    return out


@pytest.mark.parametrize(("case", "desc"), [(c, d) for _, c, d in _f_htlc_ids()],
                         ids=[i for i, _, _ in _f_htlc_ids()])
def test_appendix_f_htlc_transaction(case: dict[str, Any], desc: dict[str, Any]) -> None:
    """Each zero-fee anchors HTLC tx matches Appendix F: 0x83 remote sig, ALL local sig."""
    ctx = _build(case["LocalBalance"], case["RemoteBalance"], case["FeePerKw"],
                 case["DustLimitSatoshis"], CommitmentFormat.ANCHORS)
    decoded = desc["_decoded"]
    htlc_tx = next(h for h in build_htlc_transactions(ctx)
                   if h.htlc_output.vout == decoded["spends_commitment_output_index"])
    assert htlc_tx.htlc_output.htlc.htlc_id == decoded["htlc"]
    assert htlc_tx.fee_sat == 0
    assert htlc_tx.output_amount_sat == decoded["output_value_sat"]
    assert htlc_tx.countersignatory_sighash_type == int(decoded["remote_sig_sighash_byte"], 16)
    remote_sig = SETUP.remote_htlc_key.sign(htlc_tx.countersignatory_sighash())
    local_sig = SETUP.local_htlc_key.sign(htlc_tx.broadcaster_sighash())
    assert der_signature(remote_sig).hex() == desc["RemoteSigHex"]
    assert der_signature(local_sig).hex() == decoded["local_sig_from_witness"]
    preimage = None if htlc_tx.is_timeout else PREIMAGES[decoded["htlc"]]
    signed = finalize_htlc_transaction(htlc_tx, countersignatory_signature=remote_sig,
                                       broadcaster_signature=local_sig, payment_preimage=preimage)
    assert signed.serialize().hex() == desc["ResolutionTxHex"]


def test_appendix_f_htlc_count_per_case() -> None:
    """Every untrimmed HTLC of every Appendix F case has exactly one vector HTLC tx."""
    for case in APP_F["cases"]:
        ctx = _build(case["LocalBalance"], case["RemoteBalance"], case["FeePerKw"],
                     case["DustLimitSatoshis"], CommitmentFormat.ANCHORS)
        assert len(ctx.htlc_outputs) == len(case["HtlcDescs"]), case["Name"]


# ---------------------------------------------------------------------------------------------
# Appendix B (funding tx)


def test_appendix_b_funding_transaction() -> None:
    """The funding tx of Appendix B is rebuilt and signed byte for byte (P2PKH input)."""
    key = _priv(APP_B["block1_coinbase_privkey"])
    local = FundingPubkey.from_hex(APP_B["local_funding_pubkey"])
    remote = FundingPubkey.from_hex(APP_B["remote_funding_pubkey"])
    assert funding_script(local, remote).hex() == APP_B["funding_witness_script_comment"]
    change_spk = p2wpkh(key.pubkey)
    txin = CTxIn(COutPoint(bytes.fromhex(APP_B["input_txid"])[::-1], APP_B["input_index"]))
    outputs = [CTxOut(APP_B["funding_satoshis"], CScript(funding_script_pubkey(local, remote))),
               CTxOut(APP_B["change_satoshis"], CScript(change_spk))]
    unsigned = CTransaction([txin], outputs, 0, 2)
    prev_spk = CScript(b"\x76\xa9\x14" + change_spk[2:] + b"\x88\xac")  # P2PKH of the same key
    sighash = SignatureHash(prev_spk, unsigned, 0, SIGHASH_ALL)
    sig = der_signature(key.sign(bytes(sighash))) + bytes((SIGHASH_ALL,))
    signed_in = CTxIn(txin.prevout, CScript([sig, key.pubkey]), 0xFFFFFFFF)
    signed = CTransaction([signed_in], outputs, 0, 2)
    assert signed.serialize().hex() == APP_B["funding_tx_hex"]
    assert bytes(signed.GetTxid())[::-1].hex() == APP_B["funding_txid_comment"]
    fee = APP_B["input_satoshis"] - APP_B["funding_satoshis"] - APP_B["change_satoshis"]
    assert fee == APP_B["feerate_per_kw_comment"] * 928 // 1000


# ---------------------------------------------------------------------------------------------
# Closing transaction


def test_closing_transaction_shape_and_signatures() -> None:
    """Closing tx: fee from the opener, dust output dropped, BIP69 order, valid 2-of-2 witness."""
    local_spk, remote_spk = b"\x00\x14" + b"\x11" * 20, b"\x00\x14" + b"\x22" * 20
    common = {
        "funding_outpoint": SETUP.funding_outpoint,
        "funding_amount_sat": 10_000_000,
        "local_funding_pubkey": SETUP.local.funding_pubkey,
        "remote_funding_pubkey": SETUP.remote.funding_pubkey,
        "local_script_pubkey": local_spk,
        "remote_script_pubkey": remote_spk,
        "local_is_opener": True,
        "dust_limit_sat": 546,
    }
    closing = build_closing_transaction(local_amount_msat=6_000_000_500,
                                        remote_amount_msat=4_000_000_000 - 500, fee_sat=1000,
                                        **common)  # type: ignore[arg-type]
    assert [(o.nValue, bytes(o.scriptPubKey)) for o in closing.tx.vout] == \
        [(3_999_999, remote_spk), (5_999_000, local_spk)]
    assert (closing.local_vout, closing.remote_vout) == (1, 0)
    assert closing.tx.nLockTime == 0 and closing.tx.vin[0].nSequence == 0xFFFFFFFF
    assert closing.tx.nVersion == 2
    assert closing.fee_sat == 1001  # the negotiated fee plus the rounded-down msat
    sig_l = SETUP.local_funding_key.sign(closing_sighash(closing))
    sig_r = SETUP.remote_funding_key.sign(closing_sighash(closing))
    assert verify(SETUP.remote.funding_pubkey, closing_sighash(closing), sig_r)
    signed = finalize_closing_transaction(closing, pubkey_a=SETUP.remote.funding_pubkey,
                                          signature_a=sig_r, pubkey_b=SETUP.local.funding_pubkey,
                                          signature_b=sig_l)
    stack = list(signed.wit.vtxinwit[0].scriptWitness.stack)
    # local funding pubkey (023d...) sorts before remote (030e...): its signature comes first.
    assert stack[1] == der_signature(sig_l) + b"\x01"
    assert stack[2] == der_signature(sig_r) + b"\x01"
    dusty = build_closing_transaction(local_amount_msat=9_999_700_000, remote_amount_msat=300_000,
                                      fee_sat=1000, **common)  # type: ignore[arg-type]
    assert len(dusty.tx.vout) == 1 and dusty.remote_vout is None
    assert dusty.tx.vout[0].nValue == 9_998_700


def test_commitment_sighash_is_funding_input_digest() -> None:
    """commitment_sighash is the BIP143 digest both funding keys sign (checked via the vector)."""
    case = APP_C["cases"][0]
    ctx = _build(case["to_local_msat"], case["to_remote_msat"], case["local_feerate_per_kw"],
                 COMMON["local_dust_limit_satoshi"], CommitmentFormat.STATIC_REMOTEKEY)
    remote_sig = compact_signature(bytes.fromhex(case["remote_signature"]))
    assert verify(SETUP.remote.funding_pubkey, commitment_sighash(ctx), remote_sig)


def test_fee_comes_from_the_opener_when_it_is_the_countersignatory() -> None:
    """On the accepter's commitment the fee and anchors come out of to_remote (the opener)."""
    keys = CommitmentKeys.derive(per_commitment_point=SETUP.pcp, broadcaster=SETUP.remote,
                                 countersignatory=SETUP.local)
    for fmt, extra in ((CommitmentFormat.STATIC_REMOTEKEY, 0), (CommitmentFormat.ANCHORS, 660)):
        ctx = build_commitment_transaction(
            funding_outpoint=SETUP.funding_outpoint, funding_amount_sat=10_000_000,
            commitment_number=1, obscuring_factor=0, keys=keys, to_self_delay=144,
            dust_limit_sat=546, feerate_per_kw=1000, broadcaster_is_opener=False,
            to_local_msat=3_000_000_000, to_remote_msat=7_000_000_000, htlcs=[],
            commitment_format=fmt)
        fee = commitment_fee_sat(1000, 0, fmt)
        assert ctx.to_local_amount_sat == 3_000_000
        assert ctx.to_remote_amount_sat == 7_000_000 - fee - extra
        assert ctx.fee_sat == fee


def test_commitment_number_round_trip() -> None:
    """The commitment number is recovered from nLockTime/nSequence for any 48-bit value."""
    factor = obscuring_factor(SETUP.local.payment_basepoint, SETUP.remote.payment_basepoint)
    for number in (0, 1, 42, 0xFFFFFF, 0x1000000, 2**48 - 1):
        ctx = build_commitment_transaction(
            funding_outpoint=SETUP.funding_outpoint, funding_amount_sat=10_000_000,
            commitment_number=number, obscuring_factor=factor, keys=_keys(), to_self_delay=144,
            dust_limit_sat=546, feerate_per_kw=253, broadcaster_is_opener=True,
            to_local_msat=5_000_000_000, to_remote_msat=5_000_000_000, htlcs=[],
            commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
        assert ctx.tx.nLockTime >> 24 == 0x20 and ctx.tx.vin[0].nSequence >> 24 == 0x80
        assert commitment_number_from_tx(ctx.tx, factor) == number
    closing = build_closing_transaction(
        funding_outpoint=SETUP.funding_outpoint, funding_amount_sat=10_000_000,
        local_funding_pubkey=SETUP.local.funding_pubkey,
        remote_funding_pubkey=SETUP.remote.funding_pubkey,
        local_script_pubkey=b"\x00\x14" + b"\x01" * 20,
        remote_script_pubkey=b"\x00\x14" + b"\x02" * 20,
        local_amount_msat=5_000_000_000, remote_amount_msat=5_000_000_000, fee_sat=500,
        local_is_opener=True, dust_limit_sat=546)
    assert commitment_number_from_tx(closing.tx, factor) is None


def test_commitment_rejects_inconsistent_balances() -> None:
    """Balances plus HTLCs above the funding amount, or negative, are refused."""
    base = {
        "funding_outpoint": SETUP.funding_outpoint, "funding_amount_sat": 10_000_000,
        "commitment_number": 1, "obscuring_factor": 0, "keys": _keys(), "to_self_delay": 144,
        "dust_limit_sat": 546, "feerate_per_kw": 253, "broadcaster_is_opener": True,
        "htlcs": [], "commitment_format": CommitmentFormat.STATIC_REMOTEKEY,
    }
    with pytest.raises(ValueError, match="exceed"):
        build_commitment_transaction(to_local_msat=6_000_000_000, to_remote_msat=4_000_000_001,
                                     **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_commitment_transaction(to_local_msat=-1, to_remote_msat=0,
                                     **base)  # type: ignore[arg-type]
