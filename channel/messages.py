"""BOLT 2 peer-protocol messages, and the one dispatch for every BOLT 1 and BOLT 2 message.

Pure. Each message is a frozen dataclass declared field by field in wire order with the
spec's names (see ``channel.wire.Message`` for how encoding, decoding and validation are
derived). Length fields (``len``, ``num_htlcs``) exist only on the wire; the Python value
is the bytes or the tuple they count.

    decode_message(type ‖ payload) -> Message | UnknownMessage
    encode_message(message)        -> type ‖ payload

``decode_message`` applies BOLT 1's even/odd rule: an unknown odd type comes back as an
``UnknownMessage`` to ignore, an unknown even type raises ``UnknownEvenMessage``, and every
defect in a known message raises ``MalformedMessage``. Both mean: close the connection.

Semantic checks (``push_msat`` against ``funding_satoshis``, reserves, signatures ...) belong
to the channel state machine; here only the shape of each field is enforced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from channel.codec import (
    CHAIN_HASH,
    CHANNEL_ID,
    POINT,
    SHA256,
    SHORT_CHANNEL_ID,
    SIGNATURE,
    U8,
    U16,
    U32,
    U64,
    FixedBytes,
    RawBytes,
    Reader,
    SignatureList16,
    TlvField,
    VarBytes16,
)
from channel.errors import MalformedMessage
from channel.wire import (
    BOLT1_MESSAGES,
    Fields,
    Message,
    UnknownMessage,
    decode_with,
)

__all__ = [
    "MESSAGE_TYPES",
    "ONION_PACKET_SIZE",
    "AcceptChannel",
    "ChannelReady",
    "ChannelReestablish",
    "ClosingSigned",
    "CommitmentSigned",
    "FeeRange",
    "FundingCreated",
    "FundingSigned",
    "OpenChannel",
    "RevokeAndAck",
    "Shutdown",
    "UpdateAddHtlc",
    "UpdateFailHtlc",
    "UpdateFailMalformedHtlc",
    "UpdateFee",
    "UpdateFulfillHtlc",
    "decode_message",
    "encode_message",
]

#: BOLT 4 onion packet: version(1) ‖ public_key(33) ‖ hop_payloads(1300) ‖ hmac(32).
ONION_PACKET_SIZE: Final = 1366

_BYTES32 = FixedBytes(32)


# --- channel establishment (BOLT 2 "Channel Establishment v1") ---------------------------

_OPEN_ACCEPT_TLVS: Final[Mapping[int, TlvField]] = {
    0: TlvField.of("upfront_shutdown_script", RawBytes()),
    1: TlvField.of("channel_type", RawBytes()),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenChannel(Message):
    """``open_channel`` (32): the opener's proposal and its half of the channel keys.

    TLV 0 ``upfront_shutdown_script`` (may be ``b""``), TLV 1 ``channel_type`` (a feature
    bitmap, e.g. ``CHANNEL_TYPE_STATIC_REMOTEKEY``). BOLT 2 wants both whenever the TLV
    stream is sent: set ``upfront_shutdown_script=b""`` rather than leaving it out.
    """

    TYPE: ClassVar[int] = 32
    NAME: ClassVar[str] = "open_channel"
    FIELDS: ClassVar[Fields] = (
        ("chain_hash", CHAIN_HASH),
        ("temporary_channel_id", _BYTES32),
        ("funding_satoshis", U64),
        ("push_msat", U64),
        ("dust_limit_satoshis", U64),
        ("max_htlc_value_in_flight_msat", U64),
        ("channel_reserve_satoshis", U64),
        ("htlc_minimum_msat", U64),
        ("feerate_per_kw", U32),
        ("to_self_delay", U16),
        ("max_accepted_htlcs", U16),
        ("funding_pubkey", POINT),
        ("revocation_basepoint", POINT),
        ("payment_basepoint", POINT),
        ("delayed_payment_basepoint", POINT),
        ("htlc_basepoint", POINT),
        ("first_per_commitment_point", POINT),
        ("channel_flags", U8),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = _OPEN_ACCEPT_TLVS

    chain_hash: bytes
    temporary_channel_id: bytes
    funding_satoshis: int
    push_msat: int
    dust_limit_satoshis: int
    max_htlc_value_in_flight_msat: int
    channel_reserve_satoshis: int
    htlc_minimum_msat: int
    feerate_per_kw: int
    to_self_delay: int
    max_accepted_htlcs: int
    funding_pubkey: bytes
    revocation_basepoint: bytes
    payment_basepoint: bytes
    delayed_payment_basepoint: bytes
    htlc_basepoint: bytes
    first_per_commitment_point: bytes
    channel_flags: int
    upfront_shutdown_script: bytes | None = None
    channel_type: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptChannel(Message):
    """``accept_channel`` (33): the accepter's parameters and keys; echoes ``channel_type``."""

    TYPE: ClassVar[int] = 33
    NAME: ClassVar[str] = "accept_channel"
    FIELDS: ClassVar[Fields] = (
        ("temporary_channel_id", _BYTES32),
        ("dust_limit_satoshis", U64),
        ("max_htlc_value_in_flight_msat", U64),
        ("channel_reserve_satoshis", U64),
        ("htlc_minimum_msat", U64),
        ("minimum_depth", U32),
        ("to_self_delay", U16),
        ("max_accepted_htlcs", U16),
        ("funding_pubkey", POINT),
        ("revocation_basepoint", POINT),
        ("payment_basepoint", POINT),
        ("delayed_payment_basepoint", POINT),
        ("htlc_basepoint", POINT),
        ("first_per_commitment_point", POINT),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = _OPEN_ACCEPT_TLVS

    temporary_channel_id: bytes
    dust_limit_satoshis: int
    max_htlc_value_in_flight_msat: int
    channel_reserve_satoshis: int
    htlc_minimum_msat: int
    minimum_depth: int
    to_self_delay: int
    max_accepted_htlcs: int
    funding_pubkey: bytes
    revocation_basepoint: bytes
    payment_basepoint: bytes
    delayed_payment_basepoint: bytes
    htlc_basepoint: bytes
    first_per_commitment_point: bytes
    upfront_shutdown_script: bytes | None = None
    channel_type: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingCreated(Message):
    """``funding_created`` (34): the funding outpoint and the opener's sig on the peer's tx #0.

    ``funding_txid`` is in internal byte order (as in a tx input), not ``bitcoin-cli`` order.
    """

    TYPE: ClassVar[int] = 34
    NAME: ClassVar[str] = "funding_created"
    FIELDS: ClassVar[Fields] = (
        ("temporary_channel_id", _BYTES32),
        ("funding_txid", SHA256),
        ("funding_output_index", U16),
        ("signature", SIGNATURE),
    )

    temporary_channel_id: bytes
    funding_txid: bytes
    funding_output_index: int
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingSigned(Message):
    """``funding_signed`` (35): the accepter's sig on the opener's commitment #0."""

    TYPE: ClassVar[int] = 35
    NAME: ClassVar[str] = "funding_signed"
    FIELDS: ClassVar[Fields] = (("channel_id", CHANNEL_ID), ("signature", SIGNATURE))

    channel_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelReady(Message):
    """``channel_ready`` (36): funding is deep enough; carries the point for commitment #1.

    TLV 1 ``short_channel_id``: an 8-byte alias (``option_scid_alias``), optional.
    """

    TYPE: ClassVar[int] = 36
    NAME: ClassVar[str] = "channel_ready"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("second_per_commitment_point", POINT),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = {
        1: TlvField.of("short_channel_id", SHORT_CHANNEL_ID),
    }

    channel_id: bytes
    second_per_commitment_point: bytes
    short_channel_id: bytes | None = None


# --- close (BOLT 2 "Channel Close") ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(Message):
    """``shutdown`` (38): start a cooperative close, paying out to ``scriptpubkey``."""

    TYPE: ClassVar[int] = 38
    NAME: ClassVar[str] = "shutdown"
    FIELDS: ClassVar[Fields] = (("channel_id", CHANNEL_ID), ("scriptpubkey", VarBytes16()))

    channel_id: bytes
    scriptpubkey: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeRange:
    """``closing_signed`` TLV 1 ``fee_range``: the fees (in sat) the sender would accept."""

    min_fee_satoshis: int
    max_fee_satoshis: int

    def __post_init__(self) -> None:
        for name in ("min_fee_satoshis", "max_fee_satoshis"):
            U64.check(name, getattr(self, name))
        if self.min_fee_satoshis > self.max_fee_satoshis:
            raise MalformedMessage(
                f"fee_range min {self.min_fee_satoshis} > max {self.max_fee_satoshis}"
            )


def _encode_fee_range(value: FeeRange) -> bytes:
    return U64.write(value.min_fee_satoshis) + U64.write(value.max_fee_satoshis)


def _decode_fee_range(value: bytes) -> FeeRange:
    if len(value) != 16:
        raise MalformedMessage(f"fee_range of {len(value)} bytes, want 16")
    reader = Reader(value)
    return FeeRange(min_fee_satoshis=reader.u64(), max_fee_satoshis=reader.u64())


def _check_fee_range(name: str, value: object) -> None:
    if not isinstance(value, FeeRange):
        raise MalformedMessage(f"{name} must be a FeeRange: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosingSigned(Message):
    """``closing_signed`` (39): a fee proposal and the signature on that closing tx."""

    TYPE: ClassVar[int] = 39
    NAME: ClassVar[str] = "closing_signed"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("fee_satoshis", U64),
        ("signature", SIGNATURE),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = {
        1: TlvField(
            name="fee_range",
            encode=_encode_fee_range,
            decode=_decode_fee_range,
            check=_check_fee_range,
        ),
    }

    channel_id: bytes
    fee_satoshis: int
    signature: bytes
    fee_range: FeeRange | None = None


# --- normal operation (BOLT 2 "Normal Operation") ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateAddHtlc(Message):
    """``update_add_htlc`` (128): offer an HTLC; ``onion_routing_packet`` is 1366 bytes.

    TLV 0 ``blinded_path`` (the ``path_key`` point) is decoded so that it can be refused
    deliberately: chanlab does not support route blinding.
    """

    TYPE: ClassVar[int] = 128
    NAME: ClassVar[str] = "update_add_htlc"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("id", U64),
        ("amount_msat", U64),
        ("payment_hash", SHA256),
        ("cltv_expiry", U32),
        ("onion_routing_packet", FixedBytes(ONION_PACKET_SIZE)),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = {0: TlvField.of("blinded_path", POINT)}

    channel_id: bytes
    id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion_routing_packet: bytes
    blinded_path: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFulfillHtlc(Message):
    """``update_fulfill_htlc`` (130): settle HTLC ``id`` with the preimage of its hash."""

    TYPE: ClassVar[int] = 130
    NAME: ClassVar[str] = "update_fulfill_htlc"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("id", U64),
        ("payment_preimage", _BYTES32),
    )

    channel_id: bytes
    id: int
    payment_preimage: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFailHtlc(Message):
    """``update_fail_htlc`` (131): fail HTLC ``id``; ``reason`` is the encrypted BOLT 4 failure."""

    TYPE: ClassVar[int] = 131
    NAME: ClassVar[str] = "update_fail_htlc"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("id", U64),
        ("reason", VarBytes16()),
    )

    channel_id: bytes
    id: int
    reason: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFailMalformedHtlc(Message):
    """``update_fail_malformed_htlc`` (135): the onion of HTLC ``id`` could not be parsed.

    ``failure_code`` must have the BADONION bit (``channel.onion.BADONION``, 0x8000); the
    receiver checks that, not this class: BOLT 2 makes it a channel failure, not a parse error.
    """

    TYPE: ClassVar[int] = 135
    NAME: ClassVar[str] = "update_fail_malformed_htlc"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("id", U64),
        ("sha256_of_onion", SHA256),
        ("failure_code", U16),
    )

    channel_id: bytes
    id: int
    sha256_of_onion: bytes
    failure_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentSigned(Message):
    """``commitment_signed`` (132): sig on the peer's next commitment + one sig per HTLC output.

    ``htlc_signature`` follows the output order of the signed commitment. TLV 1
    ``funding_txid`` (splicing) is optional here; odd, so older peers ignore it.
    """

    TYPE: ClassVar[int] = 132
    NAME: ClassVar[str] = "commitment_signed"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("signature", SIGNATURE),
        ("htlc_signature", SignatureList16()),
    )
    TLVS: ClassVar[Mapping[int, TlvField]] = {1: TlvField.of("funding_txid", SHA256)}

    channel_id: bytes
    signature: bytes
    htlc_signature: tuple[bytes, ...] = ()
    funding_txid: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeAndAck(Message):
    """``revoke_and_ack`` (133): reveal the previous commitment's secret, give point n+2."""

    TYPE: ClassVar[int] = 133
    NAME: ClassVar[str] = "revoke_and_ack"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("per_commitment_secret", _BYTES32),
        ("next_per_commitment_point", POINT),
    )

    channel_id: bytes
    per_commitment_secret: bytes
    next_per_commitment_point: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFee(Message):
    """``update_fee`` (134): the opener changes the commitment feerate."""

    TYPE: ClassVar[int] = 134
    NAME: ClassVar[str] = "update_fee"
    FIELDS: ClassVar[Fields] = (("channel_id", CHANNEL_ID), ("feerate_per_kw", U32))

    channel_id: bytes
    feerate_per_kw: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelReestablish(Message):
    """``channel_reestablish`` (136): where each side stands after a reconnection.

    ``your_last_per_commitment_secret`` is all zeros when no secret was received yet. The
    splicing TLVs (1 ``next_funding``, 5 ``my_current_funding_locked``) are odd and ignored.
    """

    TYPE: ClassVar[int] = 136
    NAME: ClassVar[str] = "channel_reestablish"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("next_commitment_number", U64),
        ("next_revocation_number", U64),
        ("your_last_per_commitment_secret", _BYTES32),
        ("my_current_per_commitment_point", POINT),
    )

    channel_id: bytes
    next_commitment_number: int
    next_revocation_number: int
    your_last_per_commitment_secret: bytes
    my_current_per_commitment_point: bytes


BOLT2_MESSAGES: Final[Mapping[int, type[Message]]] = {
    cls.TYPE: cls
    for cls in (
        OpenChannel,
        AcceptChannel,
        FundingCreated,
        FundingSigned,
        ChannelReady,
        Shutdown,
        ClosingSigned,
        UpdateAddHtlc,
        UpdateFulfillHtlc,
        UpdateFailHtlc,
        UpdateFailMalformedHtlc,
        CommitmentSigned,
        RevokeAndAck,
        UpdateFee,
        ChannelReestablish,
    )
}

class _MessageTypes(Mapping[int, type[Message]]):
    """:data:`MESSAGE_TYPES`, made on first use: a node that never met a peer does not load
    :mod:`channel.gossip` (idle node RSS, see tests/integration/test_idle_footprint.py)."""

    def __init__(self) -> None:
        self._table: dict[int, type[Message]] | None = None

    @property
    def table(self) -> dict[int, type[Message]]:
        if self._table is None:
            from channel.gossip import GOSSIP_MESSAGES, GOSSIP_QUERY_MESSAGES
            self._table = {**BOLT1_MESSAGES, **BOLT2_MESSAGES, **GOSSIP_MESSAGES,
                           **GOSSIP_QUERY_MESSAGES}
        return self._table

    def __getitem__(self, msg_type: int) -> type[Message]:
        return self.table[msg_type]

    def __iter__(self) -> Iterator[int]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


#: Every message type chanlab understands: BOLT 1, BOLT 2 and BOLT 7 (gossip; the queries
#: only so that their even types never close a connection).
MESSAGE_TYPES: Final = _MessageTypes()


def decode_message(data: bytes) -> Message | UnknownMessage:
    """Decode ``type ‖ payload`` into its message; see the module docstring for the errors."""
    return decode_with(MESSAGE_TYPES.table, data)


def encode_message(message: Message | UnknownMessage) -> bytes:
    """``type ‖ payload``: what ``Transport.send`` encrypts."""
    msg_type = message.type if isinstance(message, UnknownMessage) else message.TYPE
    return msg_type.to_bytes(2, "big") + message.encode()
