"""BOLT 1 fundamental types and TLV streams against tests/vectors/bolt1.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from channel.codec import (
    POINT,
    SHORT_CHANNEL_ID,
    TU32,
    TU64,
    U16,
    U64,
    Reader,
    TlvField,
    decode_bigsize,
    decode_signed,
    decode_tlv_stream,
    decode_truncated,
    encode_bigsize,
    encode_signed,
    encode_signed_minimal,
    encode_tlv_stream,
    encode_truncated,
)
from channel.errors import MalformedMessage, UnknownEvenMessage

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt1.json").read_text()
)


# --- the two test namespaces of BOLT 1 Appendix B ----------------------------------------


def _decode_tlv3(value: bytes) -> dict[str, Any]:
    reader = Reader(value)
    node_id = POINT.read(reader)
    POINT.check("node_id", node_id)
    result = {"node_id": node_id, "amount_msat_1": U64.read(reader),
              "amount_msat_2": U64.read(reader)}
    if not reader.at_end():
        raise MalformedMessage("tlv3 too long")
    return result


def _encode_tlv3(value: dict[str, Any]) -> bytes:
    node_id: bytes = value["node_id"]
    return node_id + U64.write(value["amount_msat_1"]) + U64.write(value["amount_msat_2"])


def _single(name: str, field: str, codec: Any) -> TlvField:
    """A record holding one named field, decoded to ``{field: value}``."""
    inner = TlvField.of(field, codec)
    return TlvField(
        name=name,
        encode=lambda value: inner.encode(value[field]),
        decode=lambda raw: {field: inner.decode(raw)},
        check=lambda _name, _value: None,
    )


NAMESPACES: dict[str, dict[int, TlvField]] = {
    "n1": {
        1: _single("tlv1", "amount_msat", TU64),
        2: _single("tlv2", "scid", SHORT_CHANNEL_ID),
        3: TlvField(name="tlv3", encode=_encode_tlv3, decode=_decode_tlv3,
                    check=lambda _n, _v: None),
        254: _single("tlv4", "cltv_delta", U16),
    },
    "n2": {
        0: _single("tlv1", "amount_msat", TU64),
        11: _single("tlv2", "cltv_expiry", TU32),
    },
}


def _namespaces_for(scope: str) -> list[str]:
    named = re.findall(r"`(n[12])`", scope)
    return named if named else ["n1", "n2"]


def _expected_values(text: str) -> dict[str, dict[str, Any]]:
    """Parse "`tlv3` `node_id`=02.. `amount_msat_1`=1" into {"tlv3": {"node_id": ..., ...}}."""
    record = re.match(r"`(\w+)`", text)
    assert record is not None
    fields: dict[str, Any] = {}
    for name, raw in re.findall(r"`(\w+)`=(\S+)", text):
        if name == "scid":
            block, tx, out = (int(p) for p in raw.split("x"))
            fields[name] = block.to_bytes(3, "big") + tx.to_bytes(3, "big") + out.to_bytes(2, "big")
        elif name == "node_id":
            fields[name] = bytes.fromhex(raw)
        else:
            fields[name] = int(raw)
    return {record.group(1): fields}


STREAM_CASES = [
    pytest.param(case, namespace, id=f"{namespace}-{case['stream_hex'][:24] or 'empty'}")
    for case in VECTORS["tlv_streams"]
    for namespace in _namespaces_for(case["scope"])
]
VALID_N1 = [
    case for case in VECTORS["tlv_streams"]
    if case["valid"] and "values" in case and "n1" in _namespaces_for(case["scope"])
]
INVALID_N1 = [
    case for case in VECTORS["tlv_streams"]
    if not case["valid"] and "n1" in _namespaces_for(case["scope"])
]


@pytest.mark.parametrize(("case", "namespace"), STREAM_CASES)
def test_tlv_stream_vectors(case: dict[str, Any], namespace: str) -> None:
    """Each BOLT 1 TLV vector decodes (to the given values) or fails, in its namespace."""
    stream = bytes.fromhex(case["stream_hex"])
    known = NAMESPACES[namespace]
    if not case["valid"]:
        with pytest.raises(MalformedMessage):
            decode_tlv_stream(stream, known)
        return
    decoded = decode_tlv_stream(stream, known)
    if "values" in case:
        expected = _expected_values(case["values"])
        assert decoded == expected
        # and the writer produces the very same bytes again
        by_name = {field.name: (tlv_type, field) for tlv_type, field in known.items()}
        records = [(by_name[n][0], by_name[n][1].encode(v)) for n, v in decoded.items()]
        assert encode_tlv_stream(records) == stream
    else:
        assert decoded == {}


@pytest.mark.parametrize("stream_hex", ["1200", "fd010200", "fe0100000200", "ff010000000000000200"])
def test_unknown_even_tlv_raises_unknown_even(stream_hex: str) -> None:
    """An unknown even type raises UnknownEvenMessage, the it's-OK-to-be-odd violation."""
    with pytest.raises(UnknownEvenMessage):
        decode_tlv_stream(bytes.fromhex(stream_hex), NAMESPACES["n1"])


@pytest.mark.parametrize("valid", VALID_N1, ids=lambda c: c["stream_hex"][:20])
def test_valid_then_invalid_stream_fails(valid: dict[str, Any]) -> None:
    """BOLT 1: appending any invalid n1 stream to a valid one makes the whole stream fail."""
    for invalid in INVALID_N1:
        stream = bytes.fromhex(valid["stream_hex"] + invalid["stream_hex"])
        with pytest.raises(MalformedMessage):
            decode_tlv_stream(stream, NAMESPACES["n1"])


def test_lower_then_higher_valid_streams_decode() -> None:
    """BOLT 1: a higher-numbered valid stream appended to a lower-numbered one still decodes."""
    pairs = 0
    for low in VALID_N1:
        for high in VALID_N1:
            low_type = decode_bigsize(bytes.fromhex(low["stream_hex"]))[0]
            high_type = decode_bigsize(bytes.fromhex(high["stream_hex"]))[0]
            if low_type >= high_type:
                continue
            stream = bytes.fromhex(low["stream_hex"] + high["stream_hex"])
            decoded = decode_tlv_stream(stream, NAMESPACES["n1"])
            assert decoded == _expected_values(low["values"]) | _expected_values(high["values"])
            pairs += 1
    assert pairs > 20


@pytest.mark.parametrize("case", VECTORS["bigsize_decoding"], ids=lambda c: c["name"])
def test_bigsize_decoding(case: dict[str, Any]) -> None:
    """BigSize decoding vectors: values, non-canonical forms and EOFs."""
    data = bytes.fromhex(case["bytes"])
    if "exp_error" in case:
        with pytest.raises(MalformedMessage, match=re.escape(case["exp_error"])):
            decode_bigsize(data)
    else:
        assert decode_bigsize(data) == (case["value"], len(data))
        assert Reader(data).bigsize() == case["value"]


@pytest.mark.parametrize("case", VECTORS["bigsize_encoding"], ids=lambda c: c["name"])
def test_bigsize_encoding(case: dict[str, Any]) -> None:
    """BigSize encoding vectors: always the minimal form."""
    assert encode_bigsize(case["value"]).hex() == case["bytes"]


def test_bigsize_out_of_range() -> None:
    """Negative numbers and numbers above 2^64-1 cannot be encoded."""
    for value in (-1, 1 << 64):
        with pytest.raises(MalformedMessage):
            encode_bigsize(value)


@pytest.mark.parametrize("case", VECTORS["signed_integers_minimal_width"],
                         ids=lambda c: str(c["value"]))
def test_signed_integers(case: dict[str, Any]) -> None:
    """BOLT 1 Appendix D: two's complement big-endian, in the narrowest s8/s16/s32/s64."""
    data = bytes.fromhex(case["bytes"])
    assert encode_signed_minimal(case["value"]) == data
    assert encode_signed(case["value"], len(data)) == data
    assert decode_signed(data) == case["value"]


def test_signed_integer_limits() -> None:
    """Values outside a width raise; widths other than 1/2/4/8 do not decode."""
    with pytest.raises(MalformedMessage):
        encode_signed(128, 1)
    with pytest.raises(MalformedMessage):
        encode_signed_minimal(1 << 63)
    with pytest.raises(MalformedMessage):
        decode_signed(b"\x00\x00\x00")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, ""), (1, "01"), (255, "ff"), (256, "0100"), (0xFFFFFFFF, "ffffffff"),
     (1 << 63, "8000000000000000")],
)
def test_truncated_round_trip(value: int, encoded: str) -> None:
    """tu64 drops leading zero bytes (0 is empty) and decodes back."""
    assert encode_truncated(value).hex() == encoded
    assert decode_truncated(bytes.fromhex(encoded)) == value


def test_truncated_rejects_leading_zero_and_overflow() -> None:
    """A leading zero byte, or more bytes than the width, is malformed."""
    with pytest.raises(MalformedMessage, match="not minimal"):
        decode_truncated(b"\x00\x01")
    with pytest.raises(MalformedMessage):
        decode_truncated(b"\x01" * 5, max_bytes=4)
    with pytest.raises(MalformedMessage):
        encode_truncated(1 << 32, max_bytes=4)


def test_reader_short_read_is_malformed() -> None:
    """Reading past the end raises MalformedMessage, never returns a short value."""
    reader = Reader(b"\x00\x01\x02")
    assert reader.u16() == 1
    with pytest.raises(MalformedMessage, match="unexpected EOF"):
        reader.u16()


def test_encode_tlv_stream_sorts_and_refuses_duplicates() -> None:
    """The writer orders records by type and refuses the same type twice."""
    assert encode_tlv_stream([(254, b"\x02\x26"), (1, b"")]).hex() == "0100fd00fe020226"
    with pytest.raises(MalformedMessage):
        encode_tlv_stream([(1, b""), (1, b"\x01")])
