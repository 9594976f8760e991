"""The node-to-tower messages: an upload and its acknowledgement, as custom odd BOLT 1 types.

Pure. A node talks to its watchtower over BOLT 8 (the tower authenticates the client by its
static key, which is the node id) and, after both ``init`` messages, uses two message types
from the experimental range (BOLT 1: types 32768-65535 are for experiments; both are odd, so a
peer that does not know them ignores them instead of failing the connection)::

    tower_upload  type 32769 (0x8001)   SignedUpload.to_bytes():
                                        33 client_pubkey | 16 hint | 64 signature | blob
    tower_ack     type 32771 (0x8003)   16 hint | u8 status | u16 len | len bytes reason (UTF-8)

The tower answers every ``tower_upload`` with one ``tower_ack``, in order, and only once the
blob is durably stored (status ``accepted`` or ``duplicate``). ``refused`` is final for that
upload (bad signature, a conflicting blob, a blob too large); ``unregistered`` means the
client's key is not (yet) registered with the operator, so retrying later may succeed.

One BOLT 8 message carries at most 65535 bytes, so an upload's blob is at most
:data:`MAX_UPLOAD_BLOB_BYTES` bytes: about 390 HTLCs with second-stage signatures, or 630
without. A larger kit is not uploaded (the node's own monitor still covers that state).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from channel.errors import MalformedMessage
from channel.tower import HINT_BYTES, SignedUpload

__all__ = [
    "MAX_UPLOAD_BLOB_BYTES",
    "TOWER_ACK",
    "TOWER_UPLOAD",
    "AckStatus",
    "TowerAck",
    "decode_tower_message",
    "encode_tower_ack",
    "encode_tower_upload",
]

TOWER_UPLOAD: Final = 32769
TOWER_ACK: Final = 32771
_UPLOAD_HEADER_BYTES = 33 + HINT_BYTES + 64
MAX_UPLOAD_BLOB_BYTES: Final = 65535 - 2 - _UPLOAD_HEADER_BYTES
_MAX_REASON_BYTES = 500


class AckStatus(enum.Enum):
    """What the tower did with one upload."""

    ACCEPTED = 0       # stored (durably) for the first time
    DUPLICATE = 1      # the same blob was already stored: as good as accepted
    REFUSED = 2        # never retry this upload
    UNREGISTERED = 3   # the client's key is not registered: retry once the operator adds it

    @property
    def stored(self) -> bool:
        """The tower holds the blob."""
        return self in (AckStatus.ACCEPTED, AckStatus.DUPLICATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class TowerAck:
    """The tower's answer to one ``tower_upload``."""

    hint: bytes
    status: AckStatus
    reason: str = ""

    def __post_init__(self) -> None:
        if len(self.hint) != HINT_BYTES:
            raise ValueError(f"TowerAck: hint must be {HINT_BYTES} bytes")
        if len(self.reason.encode()) > _MAX_REASON_BYTES:
            raise ValueError(f"TowerAck: reason longer than {_MAX_REASON_BYTES} bytes")


def encode_tower_upload(upload: SignedUpload) -> bytes:
    """``type ‖ payload`` of a ``tower_upload``; raises ValueError if it exceeds one message."""
    if len(upload.blob) > MAX_UPLOAD_BLOB_BYTES:
        raise ValueError(f"blob of {len(upload.blob)} bytes exceeds one BOLT 8 message "
                         f"({MAX_UPLOAD_BLOB_BYTES} bytes)")
    return TOWER_UPLOAD.to_bytes(2, "big") + upload.to_bytes()


def encode_tower_ack(ack: TowerAck) -> bytes:
    """``type ‖ payload`` of a ``tower_ack``."""
    reason = ack.reason.encode()
    return TOWER_ACK.to_bytes(2, "big") + ack.hint + struct.pack(">BH", ack.status.value,
                                                                 len(reason)) + reason


def decode_tower_message(msg_type: int, payload: bytes) -> SignedUpload | TowerAck:
    """Parse the payload of a ``tower_upload`` or ``tower_ack``; raises MalformedMessage."""
    if msg_type == TOWER_UPLOAD:
        return SignedUpload.from_bytes(payload)
    if msg_type != TOWER_ACK:
        raise MalformedMessage(f"message type {msg_type} is not a tower message")
    if len(payload) < HINT_BYTES + 3:
        raise MalformedMessage("tower_ack too short")
    status, length = struct.unpack_from(">BH", payload, HINT_BYTES)
    reason = payload[HINT_BYTES + 3:]
    if len(reason) != length:
        raise MalformedMessage("tower_ack reason length mismatch")
    try:
        return TowerAck(hint=payload[:HINT_BYTES], status=AckStatus(status),
                        reason=reason.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"tower_ack does not parse: {exc}") from exc
