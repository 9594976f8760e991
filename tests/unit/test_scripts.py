"""BOLT 3 scripts: exact bytes against Appendix C/F and the spec's opcode layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from bitcoin.core import CTransaction

from channel.keys import (
    DelayedPubkey,
    FundingPubkey,
    HtlcPubkey,
    PaymentPubkey,
    RevocationPubkey,
)
from channel.scripts import (
    anchor_script,
    funding_script,
    hash160,
    offered_htlc_script,
    p2wpkh,
    p2wsh,
    received_htlc_script,
    ripemd160,
    to_local_script,
    to_remote_anchors_script,
    to_remote_script_pubkey,
)
from channel.types import CommitmentFormat

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "bolt3.json").read_text())
APP_C = VECTORS["appendix_c_commitment_and_htlc_txs"]
APP_F = VECTORS["appendix_f_anchors"]
COMMON = APP_C["common"]
REV = RevocationPubkey.from_hex(COMMON["local_revocation_pubkey"])
DELAYED = DelayedPubkey.from_hex(COMMON["local_delayedpubkey"])
LOCAL_HTLC = HtlcPubkey.from_hex(COMMON["local_htlcpubkey"])
REMOTE_HTLC = HtlcPubkey.from_hex(COMMON["remote_htlcpubkey"])
REMOTE_PAY = PaymentPubkey.from_hex(COMMON["remote_payment_basepoint"])
LOCAL_FUNDING = FundingPubkey.from_hex(COMMON["local_funding_pubkey"])
REMOTE_FUNDING = FundingPubkey.from_hex(COMMON["remote_funding_pubkey"])
HTLCS = {h["id"]: h for h in APP_C["htlcs"]}


def _hash(htlc_id: int) -> bytes:
    return hashlib.sha256(bytes.fromhex(HTLCS[htlc_id]["payment_preimage"])).digest()


def _f_outputs() -> set[str]:
    return {o["scriptpubkey"] for c in APP_F["cases"] for o in c["_decoded"]["outputs"]}


def test_to_local_matches_vector_and_layout() -> None:
    """to_local is Appendix C's wscript: 63 21<rev> 67 029000 b2 75 21<delayed> 68 ac."""
    script = to_local_script(REV, 144, DELAYED)
    assert script.hex() == APP_C["cases"][0]["to_local_output_comment"]["wscript"]
    assert script == (b"\x63\x21" + REV.data + b"\x67\x02\x90\x00\xb2\x75\x21" + DELAYED.data
                      + b"\x68\xac")
    assert to_local_script(REV, 5, DELAYED)[35:37] == b"\x67\x55"  # small delays are OP_n
    with pytest.raises(ValueError):
        to_local_script(REV, 0, DELAYED)


@pytest.mark.parametrize("htlc_id", [0, 1, 2, 3, 4, 5, 6])
def test_htlc_scripts_match_appendix_c(htlc_id: int) -> None:
    """Offered/received HTLC scripts (static_remotekey) equal Appendix C's wscripts."""
    expected = {info["htlc"]: info["wscript"]
                for case in APP_C["cases"] for info in case["htlc_outputs_info"]}
    entry = HTLCS[htlc_id]
    if entry["direction"] == "local->remote":
        script = offered_htlc_script(
            revocation_pubkey=REV, broadcaster_htlc_pubkey=LOCAL_HTLC,
            countersignatory_htlc_pubkey=REMOTE_HTLC, payment_hash=_hash(htlc_id),
            commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
    else:
        script = received_htlc_script(
            revocation_pubkey=REV, broadcaster_htlc_pubkey=LOCAL_HTLC,
            countersignatory_htlc_pubkey=REMOTE_HTLC, payment_hash=_hash(htlc_id),
            cltv_expiry=entry["expiry"], commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
    assert script.hex() == expected[htlc_id]


def _anchor_htlc_witness_scripts() -> dict[int, str]:
    """HTLC witness scripts as found in Appendix F's resolution transactions (last element)."""
    out = {}
    for case in APP_F["cases"]:
        for desc in case["HtlcDescs"]:
            tx = CTransaction.deserialize(bytes.fromhex(desc["ResolutionTxHex"]))
            out[desc["_decoded"]["htlc"]] = bytes(tx.wit.vtxinwit[0].scriptWitness.stack[-1]).hex()
    return out


@pytest.mark.parametrize("htlc_id", [0, 1, 2, 3, 4, 5, 6])
def test_htlc_scripts_match_appendix_f(htlc_id: int) -> None:
    """With anchors the HTLC scripts gain ``1 OP_CSV OP_DROP`` and match Appendix F's."""
    entry = HTLCS[htlc_id]
    kwargs = {"revocation_pubkey": REV, "broadcaster_htlc_pubkey": LOCAL_HTLC,
              "countersignatory_htlc_pubkey": REMOTE_HTLC, "payment_hash": _hash(htlc_id)}
    if entry["direction"] == "local->remote":
        script = offered_htlc_script(**kwargs, commitment_format=CommitmentFormat.ANCHORS)
        legacy = offered_htlc_script(**kwargs, commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
    else:
        script = received_htlc_script(**kwargs, cltv_expiry=entry["expiry"],
                                      commitment_format=CommitmentFormat.ANCHORS)
        legacy = received_htlc_script(**kwargs, cltv_expiry=entry["expiry"],
                                      commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
    assert script == legacy[:-1] + b"\x51\xb2\x75\x68"
    assert script.hex() == _anchor_htlc_witness_scripts()[htlc_id]


def test_offered_htlc_layout() -> None:
    """The offered HTLC script has the opcode layout BOLT 3 gives, byte for byte."""
    ph = _hash(2)
    script = offered_htlc_script(revocation_pubkey=REV, broadcaster_htlc_pubkey=LOCAL_HTLC,
                                 countersignatory_htlc_pubkey=REMOTE_HTLC, payment_hash=ph,
                                 commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
    assert script == (b"\x76\xa9\x14" + hash160(REV.data) + b"\x87\x63\xac\x67\x21"
                      + REMOTE_HTLC.data + b"\x7c\x82\x01\x20\x87\x64\x75\x52\x7c\x21"
                      + LOCAL_HTLC.data + b"\x52\xae\x67\xa9\x14" + ripemd160(ph)
                      + b"\x88\xac\x68\x68")


def test_anchor_and_to_remote_scripts_match_appendix_f() -> None:
    """Both anchor outputs and the anchors to_remote appear among Appendix F's outputs."""
    outputs = _f_outputs()
    assert anchor_script(LOCAL_FUNDING) == (b"\x21" + LOCAL_FUNDING.data
                                            + b"\xac\x73\x64\x60\xb2\x68")
    assert p2wsh(anchor_script(LOCAL_FUNDING)).hex() in outputs
    assert p2wsh(anchor_script(REMOTE_FUNDING)).hex() in outputs
    assert to_remote_anchors_script(REMOTE_PAY) == b"\x21" + REMOTE_PAY.data + b"\xad\x51\xb2"
    spk = to_remote_script_pubkey(REMOTE_PAY, CommitmentFormat.ANCHORS)
    assert spk == p2wsh(to_remote_anchors_script(REMOTE_PAY))
    assert spk.hex() in outputs


def test_static_to_remote_is_p2wpkh() -> None:
    """static_remotekey's to_remote is P2WPKH of the remote payment basepoint (Appendix C)."""
    spk = to_remote_script_pubkey(REMOTE_PAY, CommitmentFormat.STATIC_REMOTEKEY)
    assert spk == b"\x00\x14" + hash160(REMOTE_PAY.data)
    assert spk == p2wpkh(REMOTE_PAY)
    assert spk.hex() in APP_C["cases"][0]["commit_tx_hex"]


def test_funding_script_rejects_equal_keys() -> None:
    """A 2-of-2 of one key twice is refused."""
    with pytest.raises(ValueError):
        funding_script(LOCAL_FUNDING, LOCAL_FUNDING)


def test_received_htlc_rejects_bad_inputs() -> None:
    """A short payment hash or a timestamp-valued cltv_expiry is refused."""
    with pytest.raises(ValueError):
        received_htlc_script(revocation_pubkey=REV, broadcaster_htlc_pubkey=LOCAL_HTLC,
                             countersignatory_htlc_pubkey=REMOTE_HTLC, payment_hash=b"\x00" * 31,
                             cltv_expiry=500, commitment_format=CommitmentFormat.ANCHORS)
    with pytest.raises(ValueError):
        received_htlc_script(revocation_pubkey=REV, broadcaster_htlc_pubkey=LOCAL_HTLC,
                             countersignatory_htlc_pubkey=REMOTE_HTLC, payment_hash=_hash(0),
                             cltv_expiry=500_000_000, commitment_format=CommitmentFormat.ANCHORS)
