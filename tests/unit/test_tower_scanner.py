"""The watchtower's raw-transaction scanner refuses what bitcoind would not call a transaction.

A segwit marker with a flag other than 1 and a CompactSize length in a longer form than needed
(both refused by bitcoind's deserializer) raise ``MalformedMessage``; the same transaction
serialized canonically is scanned to its exact txid and prevouts.
"""

from __future__ import annotations

import hashlib

import pytest
from bitcoin.core import COutPoint, CScript, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import CScriptWitness

from channel.errors import MalformedMessage
from channel.tower import scan_raw_transaction

PREVOUT_TXID = hashlib.sha256(b"spent").digest()
OUTPUT_SCRIPT = bytes.fromhex("0014" + "33" * 20)


def _segwit_tx() -> CTransaction:
    """One input, one output, one witness of two items (a 71-byte and a 33-byte one)."""
    witness = CTxWitness([CTxInWitness(CScriptWitness([b"\x30" * 71, b"\x02" * 33]))])
    return CTransaction([CTxIn(COutPoint(PREVOUT_TXID, 7), CScript(b""), 0xFFFFFFFD)],
                        [CTxOut(50_000, CScript(OUTPUT_SCRIPT))], 0, 2, witness)


def _legacy_tx() -> CTransaction:
    return CTransaction([CTxIn(COutPoint(PREVOUT_TXID, 1), CScript(b"\x51"), 0)],
                        [CTxOut(1, CScript(OUTPUT_SCRIPT))], 0, 1)


def test_canonical_transactions_scan_to_their_txid() -> None:
    """The reference: both forms scan to python-bitcoinlib's txid and the one prevout."""
    for tx in (_segwit_tx(), _legacy_tx()):
        assert scan_raw_transaction(tx.serialize()) == (bytes(tx.GetTxid()), [PREVOUT_TXID])


@pytest.mark.parametrize("flag", [0x02, 0x03, 0x80, 0xFF])
def test_segwit_flag_other_than_one_is_refused(flag: int) -> None:
    """BIP 144 defines only flag 1: any other flag byte is not a transaction."""
    raw = bytearray(_segwit_tx().serialize())
    assert raw[4:6] == b"\x00\x01"
    raw[5] = flag
    with pytest.raises(MalformedMessage, match=f"segwit flag {flag}"):
        scan_raw_transaction(bytes(raw))


def _inflate(raw: bytes, offset: int, form: bytes) -> bytes:
    """Replace the one-byte CompactSize at ``offset`` by ``form`` + the value little-endian."""
    value = raw[offset]
    width = {b"\xfd": 2, b"\xfe": 4, b"\xff": 8}[form]
    return raw[:offset] + form + value.to_bytes(width, "little") + raw[offset + 1:]


def _offsets() -> dict[str, int]:
    """Where each one-byte CompactSize of ``_segwit_tx()`` sits in its serialization."""
    n_in = 6
    script_len = n_in + 1 + 36
    n_out = script_len + 1 + 0 + 4
    out_script_len = n_out + 1 + 8
    n_items = out_script_len + 1 + len(OUTPUT_SCRIPT)
    first_item = n_items + 1
    return {"n_in": n_in, "script_len": script_len, "n_out": n_out,
            "out_script_len": out_script_len, "witness_items": n_items,
            "witness_item_len": first_item}


@pytest.mark.parametrize("form", [b"\xfd", b"\xfe", b"\xff"], ids=["u16", "u32", "u64"])
@pytest.mark.parametrize("where", list(_offsets()))
def test_non_canonical_compact_size_is_refused(where: str, form: bytes) -> None:
    """Each length written in a longer form than its value needs: refused."""
    raw = _segwit_tx().serialize()
    offset = _offsets()[where]
    expected = {"n_in": 1, "script_len": 0, "n_out": 1, "out_script_len": 22,
                "witness_items": 2, "witness_item_len": 71}[where]
    assert raw[offset] == expected
    with pytest.raises(MalformedMessage, match="non-canonical CompactSize"):
        scan_raw_transaction(_inflate(raw, offset, form))


def test_non_canonical_length_in_a_legacy_transaction_is_refused() -> None:
    """Legacy form too: the input script's length 1 written as 0xfd 0x0100."""
    raw = _legacy_tx().serialize()
    offset = 4 + 1 + 36
    assert raw[offset] == 1
    with pytest.raises(MalformedMessage, match="non-canonical CompactSize"):
        scan_raw_transaction(_inflate(raw, offset, b"\xfd"))


def test_a_truncated_compact_size_is_refused() -> None:
    """A 0xfd prefix with one byte left: refused, not read short."""
    raw = _segwit_tx().serialize()
    with pytest.raises(MalformedMessage, match="truncated CompactSize"):
        scan_raw_transaction(raw[:6] + b"\xfd\x01")


def test_the_smallest_values_of_each_wide_form_are_accepted() -> None:
    """253 (0xfd) written in the u16 form is canonical: a 253-byte output script scans."""
    tx = CTransaction([CTxIn(COutPoint(PREVOUT_TXID, 0), CScript(b""), 0)],
                      [CTxOut(0, CScript(b"\x6a" + b"\x00" * 252))], 0, 2)
    raw = tx.serialize()
    assert b"\xfd\xfd\x00" in raw
    assert scan_raw_transaction(raw) == (bytes(tx.GetTxid()), [PREVOUT_TXID])
