"""BOLT 2 messages: spec field names and order, exact sizes, round trips and malformed input."""

from __future__ import annotations

import dataclasses
import struct

import coincurve
import pytest

from channel.errors import MalformedMessage, UnknownEvenMessage
from channel.messages import (
    MESSAGE_TYPES,
    ONION_PACKET_SIZE,
    AcceptChannel,
    ChannelReady,
    ChannelReestablish,
    ClosingSigned,
    CommitmentSigned,
    FeeRange,
    FundingCreated,
    FundingSigned,
    OpenChannel,
    RevokeAndAck,
    Shutdown,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFailMalformedHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
    decode_message,
    encode_message,
)
from channel.wire import CHANNEL_TYPE_STATIC_REMOTEKEY, REGTEST_CHAIN_HASH, Message


def _point(n: int) -> bytes:
    return coincurve.PrivateKey(n.to_bytes(32, "big")).public_key.format(compressed=True)


CHANNEL_ID = bytes(range(32))
TEMP_ID = bytes(range(100, 132))
SIG_A = bytes(range(64))
SIG_B = bytes(range(64, 128))
P = [_point(n) for n in range(1, 8)]

OPEN = OpenChannel(
    chain_hash=REGTEST_CHAIN_HASH, temporary_channel_id=TEMP_ID, funding_satoshis=1_000_000,
    push_msat=2_000, dust_limit_satoshis=546, max_htlc_value_in_flight_msat=990_000_000,
    channel_reserve_satoshis=10_000, htlc_minimum_msat=1, feerate_per_kw=253,
    to_self_delay=144, max_accepted_htlcs=483, funding_pubkey=P[0], revocation_basepoint=P[1],
    payment_basepoint=P[2], delayed_payment_basepoint=P[3], htlc_basepoint=P[4],
    first_per_commitment_point=P[5], channel_flags=0,
    upfront_shutdown_script=b"", channel_type=CHANNEL_TYPE_STATIC_REMOTEKEY,
)
ACCEPT = AcceptChannel(
    temporary_channel_id=TEMP_ID, dust_limit_satoshis=546,
    max_htlc_value_in_flight_msat=990_000_000, channel_reserve_satoshis=10_000,
    htlc_minimum_msat=1, minimum_depth=3, to_self_delay=144, max_accepted_htlcs=30,
    funding_pubkey=P[1], revocation_basepoint=P[2], payment_basepoint=P[3],
    delayed_payment_basepoint=P[4], htlc_basepoint=P[5], first_per_commitment_point=P[6],
    upfront_shutdown_script=bytes.fromhex("0014") + bytes(20),
    channel_type=CHANNEL_TYPE_STATIC_REMOTEKEY,
)
ONION = bytes(i % 251 for i in range(ONION_PACKET_SIZE))

# One instance of every BOLT 2 message, and the size of its encoding (type included) from
# the BOLT 2 field tables (open 321 / accept 272 bytes before TLVs, etc.).
SAMPLES: list[tuple[Message, int]] = [
    (dataclasses.replace(OPEN, upfront_shutdown_script=None, channel_type=None), 321),
    (OPEN, 321 + 2 + 4),
    (dataclasses.replace(ACCEPT, upfront_shutdown_script=None, channel_type=None), 272),
    (ACCEPT, 272 + 24 + 4),
    (FundingCreated(temporary_channel_id=TEMP_ID, funding_txid=bytes(range(1, 33)),
                    funding_output_index=1, signature=SIG_A), 132),
    (FundingSigned(channel_id=CHANNEL_ID, signature=SIG_B), 98),
    (ChannelReady(channel_id=CHANNEL_ID, second_per_commitment_point=P[2]), 67),
    (ChannelReady(channel_id=CHANNEL_ID, second_per_commitment_point=P[2],
                  short_channel_id=bytes.fromhex("0000650000010000")), 67 + 10),
    (Shutdown(channel_id=CHANNEL_ID, scriptpubkey=bytes.fromhex("0014") + bytes(20)), 36 + 22),
    (ClosingSigned(channel_id=CHANNEL_ID, fee_satoshis=183, signature=SIG_A), 106),
    (ClosingSigned(channel_id=CHANNEL_ID, fee_satoshis=183, signature=SIG_A,
                   fee_range=FeeRange(min_fee_satoshis=100, max_fee_satoshis=500)), 106 + 18),
    (UpdateAddHtlc(channel_id=CHANNEL_ID, id=7, amount_msat=1_000_000,
                   payment_hash=bytes(range(32, 64)), cltv_expiry=500_123,
                   onion_routing_packet=ONION), 1452),
    (UpdateFulfillHtlc(channel_id=CHANNEL_ID, id=7, payment_preimage=bytes(range(2, 34))), 74),
    (UpdateFailHtlc(channel_id=CHANNEL_ID, id=7, reason=b"r" * 292), 44 + 292),
    (UpdateFailMalformedHtlc(channel_id=CHANNEL_ID, id=7, sha256_of_onion=bytes(32),
                             failure_code=0xC005), 76),
    (CommitmentSigned(channel_id=CHANNEL_ID, signature=SIG_A), 100),
    (CommitmentSigned(channel_id=CHANNEL_ID, signature=SIG_A, htlc_signature=(SIG_B, SIG_A, SIG_B),
                      funding_txid=bytes(range(5, 37))), 100 + 3 * 64 + 34),
    (RevokeAndAck(channel_id=CHANNEL_ID, per_commitment_secret=bytes(range(9, 41)),
                  next_per_commitment_point=P[3]), 99),
    (UpdateFee(channel_id=CHANNEL_ID, feerate_per_kw=2500), 38),
    (ChannelReestablish(channel_id=CHANNEL_ID, next_commitment_number=5,
                        next_revocation_number=4, your_last_per_commitment_secret=bytes(32),
                        my_current_per_commitment_point=P[4]), 115),
]

# Field names and order, straight from the spec's CSV (bolt2.csv): TLV records last.
SPEC_FIELDS: dict[str, list[str]] = {
    "open_channel": (
        "chain_hash temporary_channel_id funding_satoshis push_msat dust_limit_satoshis "
        "max_htlc_value_in_flight_msat channel_reserve_satoshis htlc_minimum_msat "
        "feerate_per_kw to_self_delay max_accepted_htlcs funding_pubkey revocation_basepoint "
        "payment_basepoint delayed_payment_basepoint htlc_basepoint first_per_commitment_point "
        "channel_flags | upfront_shutdown_script channel_type").split(),
    "accept_channel": (
        "temporary_channel_id dust_limit_satoshis max_htlc_value_in_flight_msat "
        "channel_reserve_satoshis htlc_minimum_msat minimum_depth to_self_delay "
        "max_accepted_htlcs funding_pubkey revocation_basepoint payment_basepoint "
        "delayed_payment_basepoint htlc_basepoint first_per_commitment_point "
        "| upfront_shutdown_script channel_type").split(),
    "funding_created": "temporary_channel_id funding_txid funding_output_index signature |".split(),
    "funding_signed": "channel_id signature |".split(),
    "channel_ready": "channel_id second_per_commitment_point | short_channel_id".split(),
    "shutdown": "channel_id scriptpubkey |".split(),
    "closing_signed": "channel_id fee_satoshis signature | fee_range".split(),
    "update_add_htlc": (
        "channel_id id amount_msat payment_hash cltv_expiry onion_routing_packet "
        "| blinded_path").split(),
    "update_fulfill_htlc": "channel_id id payment_preimage |".split(),
    "update_fail_htlc": "channel_id id reason |".split(),
    "update_fail_malformed_htlc": "channel_id id sha256_of_onion failure_code |".split(),
    "commitment_signed": "channel_id signature htlc_signature | funding_txid".split(),
    "revoke_and_ack": "channel_id per_commitment_secret next_per_commitment_point |".split(),
    "update_fee": "channel_id feerate_per_kw |".split(),
    "channel_reestablish": (
        "channel_id next_commitment_number next_revocation_number "
        "your_last_per_commitment_secret my_current_per_commitment_point |").split(),
}
SPEC_TYPES = {
    "open_channel": 32, "accept_channel": 33, "funding_created": 34, "funding_signed": 35,
    "channel_ready": 36, "shutdown": 38, "closing_signed": 39, "update_add_htlc": 128,
    "update_fulfill_htlc": 130, "update_fail_htlc": 131, "commitment_signed": 132,
    "revoke_and_ack": 133, "update_fee": 134, "update_fail_malformed_htlc": 135,
    "channel_reestablish": 136,
}


def _ids(sample: tuple[Message, int]) -> str:
    return f"{sample[0].NAME}-{sample[1]}"


def test_every_bolt2_message_is_registered_under_its_spec_type() -> None:
    """decode_message knows all 15 BOLT 2 messages, each under the spec's type number."""
    registered = {cls.NAME: type_ for type_, cls in MESSAGE_TYPES.items() if 32 <= type_ < 256}
    assert registered == SPEC_TYPES


@pytest.mark.parametrize("name", sorted(SPEC_FIELDS))
def test_field_names_and_order_match_the_spec(name: str) -> None:
    """Attributes are the CSV names in wire order; TLV records carry the CSV record names."""
    cls = MESSAGE_TYPES[SPEC_TYPES[name]]
    fixed, _, tlvs = " ".join(SPEC_FIELDS[name]).partition("|")
    assert [field for field, _ in cls.FIELDS] == fixed.split()
    assert [field.name for _, field in sorted(cls.TLVS.items())] == tlvs.split()
    assert [f.name for f in dataclasses.fields(cls)] == fixed.split() + tlvs.split()


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_round_trip_and_size(sample: tuple[Message, int]) -> None:
    """encode -> decode gives the same message, and the encoding has the spec's size."""
    message, size = sample
    encoded = encode_message(message)
    assert len(encoded) == size
    assert encoded[:2] == message.TYPE.to_bytes(2, "big")
    assert decode_message(encoded) == message


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_every_truncation_of_the_fixed_part_fails(sample: tuple[Message, int]) -> None:
    """Cutting a known message anywhere inside its fixed fields raises MalformedMessage."""
    message, _ = sample
    plain = encode_message(dataclasses.replace(message, **dict.fromkeys(
        (field.name for field in message.TLVS.values()), None)))
    for cut in range(2, len(plain)):
        with pytest.raises(MalformedMessage):
            decode_message(plain[:cut])


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_trailing_odd_tlv_is_ignored(sample: tuple[Message, int]) -> None:
    """An unknown odd TLV appended as extension is skipped; the message decodes unchanged."""
    message, _ = sample
    assert decode_message(encode_message(message) + bytes.fromhex("fd4e2103abcdef")) == message


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_trailing_even_tlv_or_garbage_fails(sample: tuple[Message, int]) -> None:
    """An unknown even TLV in the extension, or bytes that are not a TLV, fail the message."""
    message, _ = sample
    encoded = encode_message(message)
    with pytest.raises(UnknownEvenMessage):
        decode_message(encoded + bytes.fromhex("fd4e2000"))
    with pytest.raises(MalformedMessage):
        decode_message(encoded + b"\x01")


def test_update_add_htlc_wire_layout() -> None:
    """update_add_htlc bytes equal a hand-packed big-endian layout (BOLT 2 field table)."""
    message = SAMPLES[11][0]
    assert isinstance(message, UpdateAddHtlc)
    expected = (struct.pack(">H", 128) + CHANNEL_ID + struct.pack(">QQ", 7, 1_000_000)
                + bytes(range(32, 64)) + struct.pack(">I", 500_123) + ONION)
    assert encode_message(message) == expected


def test_open_channel_wire_layout_and_tlvs() -> None:
    """open_channel: fixed fields hand-packed, then TLV 0 (empty script) and TLV 1 (0x1000)."""
    expected = (
        struct.pack(">H", 32) + REGTEST_CHAIN_HASH + TEMP_ID
        + struct.pack(">QQQQQQIHH", 1_000_000, 2_000, 546, 990_000_000, 10_000, 1, 253, 144, 483)
        + b"".join(P[:6]) + b"\x00"
        + bytes.fromhex("0000" "01021000")
    )
    assert encode_message(OPEN) == expected


def test_closing_signed_fee_range_bytes() -> None:
    """fee_range is TLV 1 of 16 bytes: min_fee_satoshis u64 ‖ max_fee_satoshis u64."""
    message = SAMPLES[10][0]
    assert encode_message(message)[-18:] == bytes.fromhex("0110") + struct.pack(">QQ", 100, 500)


def test_channel_ready_alias_bytes() -> None:
    """channel_ready's short_channel_id alias is TLV 1 of 8 bytes."""
    message = SAMPLES[7][0]
    assert encode_message(message)[-10:] == bytes.fromhex("0108" "0000650000010000")


def test_fee_range_min_above_max_is_refused() -> None:
    """A fee_range whose minimum exceeds its maximum is malformed, also on the wire."""
    with pytest.raises(MalformedMessage):
        FeeRange(min_fee_satoshis=10, max_fee_satoshis=9)
    good = encode_message(SAMPLES[10][0])
    bad = good[:-16] + struct.pack(">QQ", 600, 500)
    with pytest.raises(MalformedMessage):
        decode_message(bad)


def test_fee_range_wrong_length_is_malformed() -> None:
    """A fee_range record of 15 bytes fails the message (known TLV, wrong length)."""
    base = encode_message(dataclasses.replace(SAMPLES[10][0], fee_range=None))
    with pytest.raises(MalformedMessage):
        decode_message(base + b"\x01\x0f" + bytes(15))


def test_commitment_signed_count_overrunning_the_message_fails() -> None:
    """num_htlcs = 2 with only one signature present is malformed."""
    encoded = encode_message(CommitmentSigned(channel_id=CHANNEL_ID, signature=SIG_A,
                                              htlc_signature=(SIG_B,)))
    forged = encoded[:98] + b"\x00\x02" + encoded[100:]
    with pytest.raises(MalformedMessage):
        decode_message(forged)


def test_invalid_point_on_the_wire_fails() -> None:
    """A revoke_and_ack whose point is not on the curve is malformed."""
    encoded = encode_message(SAMPLES[17][0])
    for bad_point in (b"\x04" + P[3][1:], b"\x02" + b"\xff" * 32):
        with pytest.raises(MalformedMessage, match="point"):
            decode_message(encoded[:-33] + bad_point)


def test_update_add_htlc_blinded_path_is_decoded() -> None:
    """The even TLV 0 blinded_path is known, so it decodes (the channel decides to refuse it)."""
    message = dataclasses.replace(SAMPLES[11][0], blinded_path=P[6])
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded, UpdateAddHtlc)
    assert decoded.blinded_path == P[6]


@pytest.mark.parametrize(
    ("cls_sample", "changes"),
    [
        (5, {"channel_id": bytes(31)}),
        (5, {"signature": bytes(65)}),
        (11, {"onion_routing_packet": bytes(1365)}),
        (11, {"amount_msat": -1}),
        (11, {"cltv_expiry": 1 << 32}),
        (1, {"to_self_delay": 70_000}),
        (1, {"funding_pubkey": b"\x02" + bytes(32)}),
        (1, {"channel_flags": 256}),
        (1, {"channel_type": "1000"}),
        (15, {"htlc_signature": (SIG_A, bytes(63))}),
        (15, {"htlc_signature": [SIG_A]}),
        (8, {"scriptpubkey": bytes(65536)}),
        (19, {"next_commitment_number": 1.0}),
    ],
    ids=lambda v: str(v)[:30],
)
def test_wrong_field_shapes_are_refused(cls_sample: int, changes: dict[str, object]) -> None:
    """Constructing a message with a wrong-size or out-of-range field raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        dataclasses.replace(SAMPLES[cls_sample][0], **changes)


def test_messages_are_frozen() -> None:
    """A message cannot be changed after construction."""
    message = UpdateFee(channel_id=CHANNEL_ID, feerate_per_kw=2500)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.feerate_per_kw = 1  # type: ignore[misc]
