"""BOLT 1 base protocol: the message base class, the setup/control messages and feature bits.

Pure. A message is a frozen dataclass whose class declares its wire ``TYPE``, its fixed
``FIELDS`` (name and codec, in wire order, names as in the spec's CSV) and its ``TLVS``
(extension records by type). ``encode()`` and ``decode()`` are derived from those
declarations, and ``__post_init__`` checks every field against its codec (32-byte
``channel_id``, 33-byte valid ``point``, 64-byte ``signature`` ...), so a message object that
exists is a message that can be sent.

``encode()`` returns the payload *without* the 2-byte type; ``decode(payload)`` takes it
without the type as well. The dispatch over every BOLT 1 and BOLT 2 type — and the even/odd
rule for unknown types — lives in ``channel.messages.decode_message``/``encode_message``.

Everything after a message's fixed fields is parsed as its TLV extension (BOLT 1 "Lightning
Message Format"): unknown odd records are ignored, an unknown even record or a malformed
stream closes the connection. Messages the spec gives no TLVs parse their extension with no
known records, so trailing garbage is refused rather than silently accepted.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self

from channel.codec import (
    CHANNEL_ID,
    U16,
    ChainHashList,
    FieldCodec,
    RawBytes,
    Reader,
    TlvField,
    VarBytes16,
    decode_tlv_stream,
    encode_tlv_stream,
)
from channel.errors import MalformedMessage, UnknownEvenMessage

__all__ = [
    "BOLT1_MESSAGES",
    "CHANNEL_TYPE_ANCHORS",
    "CHANNEL_TYPE_STATIC_REMOTEKEY",
    "MAX_FEATURE_BYTES",
    "MAX_PONG_BYTES",
    "REGTEST_CHAIN_HASH",
    "ErrorMessage",
    "Feature",
    "Features",
    "Init",
    "Message",
    "Ping",
    "Pong",
    "UnknownMessage",
    "WarningMessage",
    "check_compatible",
    "decode_with",
    "incompatible_bits",
    "negotiated",
    "our_features",
    "pong_for",
]

#: Regtest genesis block hash in internal byte order (the reverse of ``getblockhash 0``).
REGTEST_CHAIN_HASH: Final = bytes.fromhex(
    "06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"
)

#: BOLT 1: a ``ping`` asking for this many pong bytes or more must not be answered.
MAX_PONG_BYTES: Final = 65531

#: The longest feature field we parse. BOLT 9 assigns bits below 300 today; 1 kB (8192 bits)
#: leaves room for growth while bounding what a stranger's ``init`` costs us.
MAX_FEATURE_BYTES: Final = 1024

#: For each byte value, the positions of its set bits (0 = least significant).
_BITS_OF_BYTE: Final = tuple(tuple(i for i in range(8) if b >> i & 1) for b in range(256))

Fields = tuple[tuple[str, FieldCodec], ...]


class Message:
    """Base of every known message: generic encode/decode/validation from the declarations.

    Subclasses are ``@dataclass(frozen=True, slots=True, kw_only=True)`` and set ``TYPE``,
    ``NAME``, ``FIELDS`` and optionally ``TLVS``; each TLV attribute defaults to ``None``
    (record absent).
    """

    __slots__ = ()

    # Declared so that type checkers accept dataclasses.replace()/fields() on any Message.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    FIELDS: ClassVar[Fields]
    TLVS: ClassVar[Mapping[int, TlvField]] = {}

    def __post_init__(self) -> None:
        for name, codec in self.FIELDS:
            codec.check(name, getattr(self, name))
        for field in self.TLVS.values():
            value = getattr(self, field.name)
            if value is not None:
                field.check(field.name, value)

    def encode(self) -> bytes:
        """The payload: fixed fields in wire order, then the TLV records that are set."""
        parts = [codec.write(getattr(self, name)) for name, codec in self.FIELDS]
        if self.TLVS:
            records = []
            for tlv_type, field in self.TLVS.items():
                value = getattr(self, field.name)
                if value is not None:
                    records.append((tlv_type, field.encode(value)))
            parts.append(encode_tlv_stream(records))
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse a payload (without the type); raise ``MalformedMessage`` on any defect."""
        reader = Reader(payload)
        kwargs: dict[str, Any] = {name: codec.read(reader) for name, codec in cls.FIELDS}
        kwargs.update(decode_tlv_stream(payload, cls.TLVS, reader.pos))
        factory: Callable[..., Self] = cls
        return factory(**kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownMessage:
    """A message whose type we do not know. Only odd types become one (BOLT 1: ignore it)."""

    type: int
    payload: bytes

    def __post_init__(self) -> None:
        if type(self.type) is not int or not 0 <= self.type <= 0xFFFF:
            raise MalformedMessage(f"message type must be a u16: {self.type!r}")
        if type(self.payload) is not bytes:
            raise MalformedMessage("payload must be bytes")

    def encode(self) -> bytes:
        return self.payload


def decode_with(registry: Mapping[int, type[Message]], data: bytes) -> Message | UnknownMessage:
    """Split ``type ‖ payload`` and decode with ``registry``, applying the even/odd rule.

    Unknown odd type -> ``UnknownMessage`` (the caller ignores it); unknown even type ->
    ``UnknownEvenMessage`` (the caller closes the connection).
    """
    if len(data) < 2:
        raise MalformedMessage(f"message of {len(data)} bytes has no type")
    msg_type = (data[0] << 8) | data[1]
    cls = registry.get(msg_type)
    if cls is not None:
        return cls.decode(data[2:])
    if msg_type % 2 == 0:
        raise UnknownEvenMessage(f"unknown even message type {msg_type}")
    return UnknownMessage(type=msg_type, payload=data[2:])


# --- feature bits (BOLT 9) ---------------------------------------------------------------


class Feature(enum.IntEnum):
    """A BOLT 9 feature, valued by its even (compulsory) bit; the odd (optional) bit is +1."""

    OPTION_DATA_LOSS_PROTECT = 0
    OPTION_UPFRONT_SHUTDOWN_SCRIPT = 4
    GOSSIP_QUERIES = 6
    VAR_ONION_OPTIN = 8
    GOSSIP_QUERIES_EX = 10
    OPTION_STATIC_REMOTEKEY = 12
    PAYMENT_SECRET = 14
    BASIC_MPP = 16
    OPTION_SUPPORT_LARGE_CHANNEL = 18
    OPTION_ANCHORS = 22
    OPTION_ROUTE_BLINDING = 24
    OPTION_SHUTDOWN_ANYSEGWIT = 26
    OPTION_DUAL_FUND = 28
    OPTION_QUIESCE = 34
    OPTION_ONION_MESSAGES = 38
    OPTION_PROVIDE_STORAGE = 42
    OPTION_CHANNEL_TYPE = 44
    OPTION_SCID_ALIAS = 46
    OPTION_PAYMENT_METADATA = 48
    OPTION_ZEROCONF = 50
    OPTION_SIMPLE_CLOSE = 60
    OPTION_SPLICE = 62


#: BOLT 9 dependencies: a vector offering the key feature must offer the value feature too.
FEATURE_DEPENDENCIES: Final[Mapping[Feature, Feature]] = {
    Feature.BASIC_MPP: Feature.PAYMENT_SECRET,
    Feature.OPTION_ZEROCONF: Feature.OPTION_SCID_ALIAS,
    Feature.OPTION_SIMPLE_CLOSE: Feature.OPTION_SHUTDOWN_ANYSEGWIT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Features:
    """A feature vector as the set of bit numbers that are set (bit 0 = least significant)."""

    bits: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if any(type(b) is not int or b < 0 or b >= 8 * 0xFFFF for b in self.bits):
            raise MalformedMessage(f"feature bits out of range: {sorted(self.bits)}")

    @classmethod
    def of(
        cls, *, required: Iterable[Feature] = (), optional: Iterable[Feature] = ()
    ) -> Features:
        """Set the even bit of each ``required`` feature and the odd bit of each ``optional``."""
        return cls(bits=frozenset(int(f) for f in required) | {int(f) + 1 for f in optional})

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_FEATURE_BYTES) -> Features:
        """Parse a big-endian bitmap in time linear in its length.

        Byte by byte, never shifting one big integer (a 65 kB field from a stranger once cost
        3 s of CPU that way). Raises ``MalformedMessage`` above ``max_bytes``.
        """
        if len(data) > max_bytes:
            raise MalformedMessage(f"feature field of {len(data)} bytes exceeds {max_bytes}")
        last = len(data) - 1
        bits: set[int] = set()
        for index, byte in enumerate(data):
            if byte:
                base = 8 * (last - index)
                bits.update(base + i for i in _BITS_OF_BYTE[byte])
        return cls(bits=frozenset(bits))

    def to_bytes(self) -> bytes:
        """Big-endian bitmap of minimal length (empty when no bit is set), as BOLT 1 asks."""
        value = 0
        for bit in self.bits:
            value |= 1 << bit
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    def __or__(self, other: Features) -> Features:
        return Features(bits=self.bits | other.bits)

    def offers(self, feature: Feature) -> bool:
        """Either bit of the pair is set."""
        return int(feature) in self.bits or int(feature) + 1 in self.bits

    def requires(self, feature: Feature) -> bool:
        """The even (compulsory) bit is set."""
        return int(feature) in self.bits


#: ``channel_type`` of a v1 channel with ``option_static_remotekey`` (bit 12): ``0x1000``.
CHANNEL_TYPE_STATIC_REMOTEKEY: Final = Features(
    bits=frozenset({Feature.OPTION_STATIC_REMOTEKEY.value})
).to_bytes()
#: ``channel_type`` of ``option_anchors`` + ``option_static_remotekey`` (bits 22+12): ``0x401000``.
CHANNEL_TYPE_ANCHORS: Final = Features(
    bits=frozenset({Feature.OPTION_ANCHORS.value, Feature.OPTION_STATIC_REMOTEKEY.value})
).to_bytes()


def our_features() -> Features:
    """The vector chanlab puts in ``init``.

    Compulsory: ``var_onion_optin`` (we only build TLV onions), ``option_static_remotekey``
    (every commitment format of ours has it), ``payment_secret`` (we refuse payments without
    one). Optional: ``option_data_loss_protect`` (our ``channel_reestablish`` always carries
    its fields), ``option_anchors`` (we build and claim anchors commitments; a peer that
    requires it, such as Electrum, refuses us without it), ``option_channel_type`` (we
    always send ``channel_type``) and ``gossip_queries`` (BOLT 7: peers send us
    ``gossip_timestamp_filter``; ``channel.gossip_queries`` answers their queries).
    """
    return Features.of(
        required=[
            Feature.VAR_ONION_OPTIN,
            Feature.OPTION_STATIC_REMOTEKEY,
            Feature.PAYMENT_SECRET,
        ],
        optional=[Feature.OPTION_DATA_LOSS_PROTECT, Feature.GOSSIP_QUERIES,
                  Feature.OPTION_ANCHORS, Feature.OPTION_CHANNEL_TYPE],
    )


def incompatible_bits(local: Features, remote: Features) -> frozenset[int]:
    """Bits that make ``remote`` unacceptable to ``local`` (empty set: compatible).

    BOLT 1 ``init``: an even bit the peer sets for a feature we do not offer ("unknown" to
    us, whether or not BOLT 9 names it), and a known feature offered without its BOLT 9
    dependency.
    """
    bad = {bit for bit in remote.bits if bit % 2 == 0 and bit not in local.bits
           and bit + 1 not in local.bits}
    for feature, needed in FEATURE_DEPENDENCIES.items():
        if remote.offers(feature) and not remote.offers(needed):
            bad.add(int(needed))
    return frozenset(bad)


def check_compatible(local: Features, remote: Features) -> None:
    """Raise ``UnknownEvenMessage`` (close the connection) if ``incompatible_bits`` finds any."""
    bad = incompatible_bits(local, remote)
    if bad:
        raise UnknownEvenMessage(f"peer features incompatible at bits {sorted(bad)}")


def negotiated(local: Features, remote: Features, feature: Feature) -> bool:
    """BOLT 1: both offered the feature, or we set it compulsory (the peer stayed connected)."""
    return (local.offers(feature) and remote.offers(feature)) or local.requires(feature)


# --- BOLT 1 messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Init(Message):
    """``init`` (16): the first message in each direction of every connection."""

    TYPE: ClassVar[int] = 16
    NAME: ClassVar[str] = "init"
    FIELDS: ClassVar[Fields] = (("globalfeatures", VarBytes16()), ("features", VarBytes16()))
    TLVS: ClassVar[Mapping[int, TlvField]] = {
        1: TlvField.of("networks", ChainHashList()),
        3: TlvField.of("remote_addr", RawBytes()),
    }

    globalfeatures: bytes
    features: bytes
    networks: tuple[bytes, ...] | None = None
    remote_addr: bytes | None = None

    @classmethod
    def ours(cls, features: Features, chain_hash: bytes = REGTEST_CHAIN_HASH) -> Init:
        """Our ``init``: no ``globalfeatures``, minimal ``features``, ``networks`` = our chain."""
        return cls(globalfeatures=b"", features=features.to_bytes(), networks=(chain_hash,))

    def combined_features(self) -> Features:
        """``globalfeatures`` OR ``features``, the one logical vector BOLT 1 asks for."""
        return Features.from_bytes(self.globalfeatures) | Features.from_bytes(self.features)

    def supports_chain(self, chain_hash: bytes) -> bool:
        """False only when the peer listed ``networks`` and ours is not among them."""
        return self.networks is None or chain_hash in self.networks


class _ChannelText(Message):
    """Shared shape of ``error`` and ``warning``: ``channel_id ‖ u16 len ‖ data``.

    Deliberately not a parent of one by the other, so ``isinstance(msg, ErrorMessage)`` never
    matches a warning (a warning must not fail a channel).
    """

    __slots__ = ()

    FIELDS: ClassVar[Fields] = (("channel_id", CHANNEL_ID), ("data", VarBytes16()))
    channel_id: bytes
    data: bytes

    @classmethod
    def with_text(cls, channel_id: bytes, text: str) -> Self:
        factory: Callable[..., Self] = cls
        return factory(channel_id=channel_id, data=text.encode())

    @property
    def text(self) -> str:
        """``data`` for humans; undecodable bytes are escaped, never trusted."""
        return self.data.decode("ascii", errors="backslashreplace")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage(_ChannelText):
    """``error`` (17): fail the channel ``channel_id`` (all zeros = every channel with the peer)."""

    TYPE: ClassVar[int] = 17
    NAME: ClassVar[str] = "error"

    channel_id: bytes
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningMessage(_ChannelText):
    """``warning`` (1): same layout as ``error``; the receiver logs it, no channel fails."""

    TYPE: ClassVar[int] = 1
    NAME: ClassVar[str] = "warning"

    channel_id: bytes
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    """``ping`` (18): ask for ``num_pong_bytes`` zero bytes back; ``ignored`` pads the request."""

    TYPE: ClassVar[int] = 18
    NAME: ClassVar[str] = "ping"
    FIELDS: ClassVar[Fields] = (("num_pong_bytes", U16), ("ignored", VarBytes16()))

    num_pong_bytes: int
    ignored: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    """``pong`` (19): the answer to a ``ping``."""

    TYPE: ClassVar[int] = 19
    NAME: ClassVar[str] = "pong"
    FIELDS: ClassVar[Fields] = (("ignored", VarBytes16()),)

    ignored: bytes = b""


def pong_for(ping: Ping) -> Pong | None:
    """BOLT 1: answer with exactly ``num_pong_bytes`` zeros, or not at all if it is >= 65532."""
    if ping.num_pong_bytes > MAX_PONG_BYTES:
        return None
    return Pong(ignored=bytes(ping.num_pong_bytes))


BOLT1_MESSAGES: Final[Mapping[int, type[Message]]] = {
    cls.TYPE: cls for cls in (Init, ErrorMessage, WarningMessage, Ping, Pong)
}
