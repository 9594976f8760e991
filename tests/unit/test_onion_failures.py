"""BOLT 4 failure messages: codes and flags, exact encodings, decoding, the payer's lines."""

from __future__ import annotations

import dataclasses

import pytest

from channel.errors import MalformedMessage
from channel.onion_failures import (
    FAILURE_TYPES,
    AmountBelowMinimum,
    ChannelDisabled,
    ExpiryTooFar,
    ExpiryTooSoon,
    FailureCode,
    FailureFlag,
    FeeInsufficient,
    FinalIncorrectCltvExpiry,
    FinalIncorrectHtlcAmount,
    IncorrectCltvExpiry,
    IncorrectOrUnknownPaymentDetails,
    InvalidOnionBlinding,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
    MppTimeout,
    OnionFailure,
    PermanentChannelFailure,
    PermanentNodeFailure,
    RequiredChannelFeatureMissing,
    RequiredNodeFeatureMissing,
    TemporaryChannelFailure,
    TemporaryNodeFailure,
    UnknownFailure,
    UnknownNextPeer,
    channel_update_body,
    decode_failure_message,
)

UPDATE = bytes.fromhex("0102") + bytes(128)  # a channel_update-shaped blob (type 258 + body)
DIGEST = bytes(range(32))

# every failure with sample data, and its exact encoding (code ‖ data in wire order)
EXAMPLES: list[tuple[OnionFailure, str]] = [
    (TemporaryNodeFailure(), "2002"),
    (PermanentNodeFailure(), "6002"),
    (RequiredNodeFeatureMissing(), "6003"),
    (InvalidOnionVersion(sha256_of_onion=DIGEST), "c004" + DIGEST.hex()),
    (InvalidOnionHmac(sha256_of_onion=DIGEST), "c005" + DIGEST.hex()),
    (InvalidOnionKey(sha256_of_onion=DIGEST), "c006" + DIGEST.hex()),
    (TemporaryChannelFailure(), "1007" "0000"),
    (TemporaryChannelFailure(channel_update=UPDATE), "1007" "0082" + UPDATE.hex()),
    (PermanentChannelFailure(), "4008"),
    (RequiredChannelFeatureMissing(), "4009"),
    (UnknownNextPeer(), "400a"),
    (AmountBelowMinimum(htlc_msat=999), "100b" "00000000000003e7" "0000"),
    (FeeInsufficient(htlc_msat=1_000_000, channel_update=UPDATE),
     "100c" "00000000000f4240" "0082" + UPDATE.hex()),
    (IncorrectCltvExpiry(cltv_expiry=500), "100d" "000001f4" "0000"),
    (ExpiryTooSoon(), "100e" "0000"),
    (IncorrectOrUnknownPaymentDetails(htlc_msat=250_000_000, height=432),
     "400f" "000000000ee6b280" "000001b0"),
    (FinalIncorrectCltvExpiry(cltv_expiry=600), "0012" "00000258"),
    (FinalIncorrectHtlcAmount(incoming_htlc_amt=70_000), "0013" "0000000000011170"),
    (ChannelDisabled(), "1014" "0000" "0000"),
    (ExpiryTooFar(), "0015"),
    (InvalidOnionPayload(tlv_type=2, offset=1), "4016" "02" "0001"),
    (InvalidOnionPayload(tlv_type=65_537, offset=7), "4016" "fe00010001" "0007"),
    (MppTimeout(), "0017"),
    (InvalidOnionBlinding(sha256_of_onion=DIGEST), "c018" + DIGEST.hex()),
]


@pytest.mark.parametrize(("failure", "wire_hex"), EXAMPLES,
                         ids=[type(f).__name__ + str(i) for i, (f, _) in enumerate(EXAMPLES)])
def test_exact_encoding_and_round_trip(failure: OnionFailure, wire_hex: str) -> None:
    """Each failure encodes to code ‖ data exactly and decodes back to an equal value."""
    assert failure.encode().hex() == wire_hex
    assert decode_failure_message(bytes.fromhex(wire_hex)) == failure


def test_every_code_has_a_type_and_an_example() -> None:
    """The table covers every FailureCode, and the examples above use each type."""
    assert set(FAILURE_TYPES) == {int(code) for code in FailureCode}
    assert {type(f) for f, _ in EXAMPLES} == set(FAILURE_TYPES.values())


def test_layouts_name_the_dataclass_fields_in_order() -> None:
    """Each LAYOUT lists exactly its class's fields, in wire order."""
    for cls in FAILURE_TYPES.values():
        assert tuple(name for name, _ in cls.LAYOUT) == tuple(
            field.name for field in dataclasses.fields(cls))


def test_codes_and_flags_match_bolt4() -> None:
    """The spec's symbolic codes: PERM|15 = 0x400f, BADONION|PERM|5 = 0xc005, UPDATE|7 = 0x1007."""
    assert int(FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS) == 0x400F
    assert int(FailureCode.INVALID_ONION_HMAC) == 0xC005
    assert int(FailureCode.TEMPORARY_CHANNEL_FAILURE) == 0x1007
    assert int(FailureCode.PERMANENT_NODE_FAILURE) == 0x6002
    assert int(FailureCode.MPP_TIMEOUT) == 23
    hmac_failure = InvalidOnionHmac(sha256_of_onion=DIGEST)
    assert hmac_failure.flags == FailureFlag.BADONION | FailureFlag.PERM
    assert hmac_failure.is_bad_onion and hmac_failure.is_permanent
    assert not hmac_failure.is_node_failure
    assert PermanentNodeFailure().flags == FailureFlag.PERM | FailureFlag.NODE
    assert TemporaryChannelFailure().flags == FailureFlag.UPDATE
    assert FinalIncorrectCltvExpiry(cltv_expiry=1).flags == FailureFlag(0)


def test_descriptions_are_one_line_with_units() -> None:
    """The payer's line names the failure and shows its data in msat and heights."""
    assert IncorrectOrUnknownPaymentDetails(htlc_msat=1_000, height=105).describe() == (
        "incorrect_or_unknown_payment_details: the payee refused 1000 msat at its height 105: "
        "unknown payment, wrong secret or amount, or an expiry too close")
    assert FeeInsufficient(htlc_msat=5_000, channel_update=UPDATE).describe() == (
        "fee_insufficient: an incoming 5000 msat leaves less than the forwarding fee asked "
        "(channel_update of 130 bytes attached)")
    assert InvalidOnionHmac(sha256_of_onion=DIGEST).describe().endswith(
        f"(onion sha256 {DIGEST.hex()})")
    assert UnknownFailure(code=0x5099, data=b"xy").describe() == (
        "unknown failure 0x5099 (PERM|UPDATE) with 2 data bytes")
    for failure, _ in EXAMPLES:
        line = failure.describe()
        assert "\n" not in line and line.startswith(FailureCode(failure.failure_code).name.lower())


def test_extra_bytes_after_the_data_are_ignored() -> None:
    """A TLV extension (or a newer field) after the known data does not break decoding."""
    message = bytes.fromhex("400f" "00000000000003e8" "00000069" "0103aabbcc")
    assert decode_failure_message(message) == IncorrectOrUnknownPaymentDetails(
        htlc_msat=1_000, height=105)


def test_unknown_code_is_kept_whole() -> None:
    """An unknown code decodes to UnknownFailure with its flags and data, and re-encodes."""
    failure = decode_failure_message(bytes.fromhex("20ff" "0102"))
    assert failure == UnknownFailure(code=0x20FF, data=bytes.fromhex("0102"))
    assert failure.is_node_failure and not failure.is_permanent
    assert failure.encode().hex() == "20ff0102"


@pytest.mark.parametrize("wire_hex", ["", "40", "400f0000", "100b00000000000003e700",
                                      "100c00000000000003e70005aabb", "c005" + "00" * 31])
def test_truncated_messages_are_malformed(wire_hex: str) -> None:
    """A message shorter than its code's data raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        decode_failure_message(bytes.fromhex(wire_hex))


def test_field_values_are_checked() -> None:
    """Out-of-range data is refused when the failure is built, not when it is sent."""
    with pytest.raises(MalformedMessage):
        IncorrectOrUnknownPaymentDetails(htlc_msat=-1, height=0)
    with pytest.raises(MalformedMessage):
        IncorrectCltvExpiry(cltv_expiry=1 << 32)
    with pytest.raises(MalformedMessage):
        InvalidOnionKey(sha256_of_onion=bytes(31))
    with pytest.raises(MalformedMessage):
        ChannelDisabled(channel_update=bytes(0x10000))
    with pytest.raises(MalformedMessage):
        UnknownFailure(code=0x10000, data=b"")


def test_channel_update_body_accepts_both_forms() -> None:
    """An update with the 0x0102 type prefix (BOLT 4) or without (lnd) gives the same body."""
    body = bytes(range(3, 131))
    assert channel_update_body(bytes.fromhex("0102") + body) == body
    assert channel_update_body(body) == body


def test_update_failure_without_its_update_field() -> None:
    """An UPDATE failure that leaves out even the update's length reads as no update."""
    assert decode_failure_message(bytes.fromhex("1007")) == TemporaryChannelFailure()
    assert decode_failure_message(bytes.fromhex("100c" "00000000000003e8")) == FeeInsufficient(
        htlc_msat=1_000)
