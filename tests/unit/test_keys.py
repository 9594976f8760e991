"""BOLT 3 Appendix E key derivation, typed points, and signing/verification."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from channel.keys import (
    ChannelKeys,
    DelayedPaymentBasepoint,
    FundingPubkey,
    HtlcBasepoint,
    HtlcPubkey,
    PaymentBasepoint,
    PerCommitmentPoint,
    PrivateKey,
    RevocationBasepoint,
    compact_signature,
    der_signature,
    derive_delayed_pubkey,
    derive_htlc_pubkey,
    derive_payment_pubkey,
    derive_privkey,
    derive_revocation_privkey,
    derive_revocation_pubkey,
    per_commitment_point_from_secret,
    static_payment_pubkey,
    verify,
    witness_signature,
)
from channel.shachain import generate_from_seed

APP_E = json.loads((Path(__file__).parent.parent / "vectors" / "bolt3.json").read_text())[
    "appendix_e_key_derivation"]
INPUTS = APP_E["inputs"]
RESULTS = {c["result_name"]: c["result"] for c in APP_E["cases"]}
BASE_SECRET = PrivateKey(bytes.fromhex(INPUTS["base_secret"]))
PCS = bytes.fromhex(INPUTS["per_commitment_secret"])
PCP = PerCommitmentPoint.from_hex(INPUTS["per_commitment_point"])
BASEPOINT = bytes.fromhex(INPUTS["base_point"])
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_inputs_are_consistent() -> None:
    """The vector's base_point and per_commitment_point are the points of its secrets."""
    assert BASE_SECRET.pubkey == BASEPOINT
    assert per_commitment_point_from_secret(PCS) == PCP


def test_appendix_e_localpubkey() -> None:
    """Tweaked pubkey derivation gives Appendix E's localpubkey for every tweaked key kind."""
    expected = RESULTS["localpubkey"]
    assert derive_htlc_pubkey(HtlcBasepoint(BASEPOINT), PCP).hex() == expected
    assert derive_delayed_pubkey(DelayedPaymentBasepoint(BASEPOINT), PCP).hex() == expected
    assert derive_payment_pubkey(PaymentBasepoint(BASEPOINT), PCP).hex() == expected


def test_appendix_e_localprivkey() -> None:
    """derive_privkey gives Appendix E's localprivkey, and it matches the derived pubkey."""
    priv = derive_privkey(BASE_SECRET, PCP)
    assert priv.secret.hex() == RESULTS["localprivkey"]
    assert priv.pubkey.hex() == RESULTS["localpubkey"]


def test_appendix_e_revocationpubkey() -> None:
    """derive_revocation_pubkey gives Appendix E's revocationpubkey."""
    rev = derive_revocation_pubkey(RevocationBasepoint(BASEPOINT), PCP)
    assert rev.hex() == RESULTS["revocationpubkey"]


def test_appendix_e_revocationprivkey() -> None:
    """derive_revocation_privkey gives Appendix E's revocationprivkey (revocationpubkey's key)."""
    priv = derive_revocation_privkey(BASE_SECRET, PCS)
    assert priv.secret.hex() == RESULTS["revocationprivkey"]
    assert priv.pubkey.hex() == RESULTS["revocationpubkey"]


def test_static_payment_pubkey_is_untweaked() -> None:
    """With static_remotekey the remotepubkey is the payment_basepoint itself."""
    assert static_payment_pubkey(PaymentBasepoint(BASEPOINT)).data == BASEPOINT


def test_point_kinds_are_distinct_and_validated() -> None:
    """Points of different kinds never compare equal; invalid encodings are refused."""
    as_htlc: object = HtlcBasepoint(BASEPOINT)
    assert as_htlc != DelayedPaymentBasepoint(BASEPOINT)
    assert HtlcBasepoint(BASEPOINT) == HtlcBasepoint(BASEPOINT)
    with pytest.raises(ValueError):
        FundingPubkey(b"\x02" + b"\x00" * 32)  # x = 0 is not on the curve
    with pytest.raises(ValueError):
        FundingPubkey(BASEPOINT[:32])
    with pytest.raises(ValueError):
        FundingPubkey(b"\x04" + BASEPOINT[1:])
    with pytest.raises(TypeError):
        FundingPubkey(BASEPOINT.hex())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PrivateKey(b"\x00" * 32)
    with pytest.raises(ValueError):
        PrivateKey(N.to_bytes(32, "big"))
    assert BASE_SECRET.secret.hex() not in repr(BASE_SECRET)


def test_sign_is_low_s_compact_and_verifies() -> None:
    """sign gives 64-byte low-S signatures that verify, and fail for another key or digest."""
    other = PrivateKey(b"\x02" * 32)
    for i in range(50):
        digest = hashlib.sha256(i.to_bytes(2, "big")).digest()
        sig = BASE_SECRET.sign(digest)
        assert len(sig) == 64
        assert int.from_bytes(sig[32:], "big") <= N // 2
        assert verify(FundingPubkey(BASE_SECRET.pubkey), digest, sig)
        assert not verify(other.pubkey, digest, sig)
        assert not verify(BASE_SECRET.pubkey, hashlib.sha256(digest).digest(), sig)


def test_verify_rejects_high_s_and_garbage() -> None:
    """The high-S twin of a valid signature, and malformed input, do not verify."""
    digest = b"\x11" * 32
    sig = BASE_SECRET.sign(digest)
    s = int.from_bytes(sig[32:], "big")
    high = sig[:32] + (N - s).to_bytes(32, "big")
    assert not verify(BASE_SECRET.pubkey, digest, high)
    assert not verify(BASE_SECRET.pubkey, digest, b"\xff" * 64)
    assert not verify(BASE_SECRET.pubkey, digest, sig[:63])
    assert not verify(b"\x02" * 33, digest, sig)


def test_der_round_trip_and_witness_form() -> None:
    """DER <-> compact round-trips; the witness form appends the sighash byte."""
    sig = BASE_SECRET.sign(b"\x22" * 32)
    der = der_signature(sig)
    assert der[0] == 0x30 and len(der) <= 72
    assert compact_signature(der) == sig
    assert witness_signature(sig, 0x83) == der + b"\x83"
    with pytest.raises(ValueError):
        compact_signature(b"\x30\x00")


def test_channel_keys_from_seed() -> None:
    """ChannelKeys.from_seed is deterministic; points, secrets and privkeys agree."""
    keys = ChannelKeys.from_seed(b"\x01" * 32)
    again = ChannelKeys.from_seed(b"\x01" * 32)
    assert keys == again
    assert keys != ChannelKeys.from_seed(b"\x02" * 32)
    bp = keys.basepoints()
    points = {bp.funding_pubkey.data, bp.revocation_basepoint.data, bp.payment_basepoint.data,
              bp.delayed_payment_basepoint.data, bp.htlc_basepoint.data}
    assert len(points) == 5
    assert keys.per_commitment_secret(0) == generate_from_seed(keys.per_commitment_seed,
                                                                 2**48 - 1)
    assert keys.per_commitment_secret(7) == generate_from_seed(keys.per_commitment_seed,
                                                                 2**48 - 8)
    pcp = keys.per_commitment_point(7)
    assert pcp == per_commitment_point_from_secret(keys.per_commitment_secret(7))
    assert keys.htlc_privkey(pcp).pubkey == derive_htlc_pubkey(bp.htlc_basepoint, pcp).data
    assert keys.delayed_payment_privkey(pcp).pubkey == derive_delayed_pubkey(
        bp.delayed_payment_basepoint, pcp).data
    assert keys.payment_privkey().pubkey == bp.payment_basepoint.data
    # A peer's revocation key for our commitment 7, once we reveal its secret:
    peer = ChannelKeys.from_seed(b"\x03" * 32)
    rev_priv = peer.revocation_privkey(keys.per_commitment_secret(7))
    assert rev_priv.pubkey == derive_revocation_pubkey(
        peer.basepoints().revocation_basepoint, pcp).data
    assert isinstance(derive_htlc_pubkey(bp.htlc_basepoint, pcp), HtlcPubkey)
    with pytest.raises(ValueError):
        ChannelKeys.from_seed(b"short")
