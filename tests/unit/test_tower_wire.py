"""The node-to-tower messages: exact bytes, round trips, and what is refused."""

from __future__ import annotations

import pytest

from channel.errors import MalformedMessage
from channel.keys import PrivateKey
from channel.messages import decode_message
from channel.tower import SignedUpload, TowerClient
from channel.tower_wire import (
    MAX_UPLOAD_BLOB_BYTES,
    TOWER_ACK,
    TOWER_UPLOAD,
    AckStatus,
    TowerAck,
    decode_tower_message,
    encode_tower_ack,
    encode_tower_upload,
)
from channel.wire import UnknownMessage

CLIENT = TowerClient(PrivateKey(b"\x41" * 32))


def test_tower_message_types_are_odd_and_experimental() -> None:
    """Both types are odd and in BOLT 1's experimental range, so a peer that does not know
    them ignores them (the node's decoder yields an UnknownMessage, not an error)."""
    for msg_type in (TOWER_UPLOAD, TOWER_ACK):
        assert msg_type % 2 == 1 and 32768 <= msg_type <= 65535
    decoded = decode_message(encode_tower_ack(TowerAck(hint=bytes(16),
                                                       status=AckStatus.ACCEPTED)))
    assert decoded == UnknownMessage(type=TOWER_ACK, payload=bytes(16) + b"\x00\x00\x00")


def test_upload_encodes_as_type_then_signed_upload_bytes() -> None:
    """``tower_upload`` is 0x8001 followed by SignedUpload.to_bytes(), and decodes back."""
    upload = CLIENT.upload(b"\x07" * 16, b"\x09" * 40)
    encoded = encode_tower_upload(upload)
    assert encoded[:2] == b"\x80\x01"
    assert encoded[2:] == upload.client_pubkey + b"\x07" * 16 + upload.signature + b"\x09" * 40
    assert decode_tower_message(TOWER_UPLOAD, encoded[2:]) == upload


def test_upload_over_one_bolt8_message_is_refused_before_sending() -> None:
    """A blob that would make the message exceed 65535 bytes raises; the largest one fits."""
    largest = CLIENT.upload(bytes(16), bytes(MAX_UPLOAD_BLOB_BYTES))
    assert len(encode_tower_upload(largest)) == 65535
    with pytest.raises(ValueError, match="exceeds one BOLT 8 message"):
        encode_tower_upload(SignedUpload(client_pubkey=largest.client_pubkey, hint=bytes(16),
                                         blob=bytes(MAX_UPLOAD_BLOB_BYTES + 1),
                                         signature=largest.signature))


def test_ack_exact_bytes_and_round_trip() -> None:
    """``tower_ack`` is 0x8003 | hint | u8 status | u16 length | reason."""
    ack = TowerAck(hint=b"\x01" * 16, status=AckStatus.REFUSED, reason="no")
    encoded = encode_tower_ack(ack)
    assert encoded == b"\x80\x03" + b"\x01" * 16 + b"\x02\x00\x02no"
    assert decode_tower_message(TOWER_ACK, encoded[2:]) == ack
    assert AckStatus.ACCEPTED.stored and AckStatus.DUPLICATE.stored
    assert not AckStatus.REFUSED.stored and not AckStatus.UNREGISTERED.stored


@pytest.mark.parametrize("payload", [
    bytes(18),                                  # shorter than hint + status + length
    bytes(16) + b"\x00\x00\x05abc",             # reason shorter than its length
    bytes(16) + b"\x09\x00\x00",                # unknown status
    bytes(16) + b"\x02\x00\x02\xff\xfe",        # reason not UTF-8
])
def test_malformed_acks_are_refused(payload: bytes) -> None:
    """Every defect in a ``tower_ack`` raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        decode_tower_message(TOWER_ACK, payload)


def test_short_upload_and_foreign_type_are_refused() -> None:
    """An upload shorter than its fixed fields, or another message type, raises."""
    with pytest.raises(MalformedMessage):
        decode_tower_message(TOWER_UPLOAD, bytes(120))
    with pytest.raises(MalformedMessage):
        decode_tower_message(32773, bytes(200))
