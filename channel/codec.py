"""BOLT 1 fundamental types: fixed integers, BigSize, truncated integers and TLV streams.

Pure. Everything here turns bytes into Python values and back, and raises
``MalformedMessage`` (or ``UnknownEvenMessage`` for an unknown even TLV type) on bad input, so
a peer loop has exactly one reaction to a decoding problem: close the connection.

Two kinds of building blocks:

- ``Reader``: a cursor over received bytes whose ``u16()``/``bigsize()``/``read(n)`` methods
  raise ``MalformedMessage`` on a short read instead of silently returning fewer bytes.
- field codecs (``U16``, ``CHANNEL_ID``, ``POINT``, ``VarBytes16`` ...): one object per wire
  type, with ``write(value) -> bytes``, ``read(reader) -> value`` and ``check(name, value)``.
  Messages (``channel.wire``, ``channel.messages``) are declared as lists of
  ``(field_name, codec)`` and encoded/decoded/validated generically from those lists.

TLV streams follow BOLT 1 "Type-Length-Value Format": strictly increasing types, minimal
BigSize for type and length, known records decoded with an exact length, unknown even types
rejected, unknown odd types skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import coincurve

from channel.errors import MalformedMessage, UnknownEvenMessage

__all__ = [
    "CHAIN_HASH",
    "CHANNEL_ID",
    "MAX_MSAT",
    "MAX_SAT",
    "POINT",
    "SHA256",
    "SHORT_CHANNEL_ID",
    "SIGNATURE",
    "TU16",
    "TU32",
    "TU64",
    "U8",
    "U16",
    "U32",
    "U64",
    "ChainHashList",
    "FieldCodec",
    "FixedBytes",
    "Point",
    "RawBytes",
    "Reader",
    "SignatureList16",
    "TlvField",
    "TruncatedUInt",
    "UInt",
    "VarBytes16",
    "decode_bigsize",
    "decode_signed",
    "decode_tlv_stream",
    "decode_truncated",
    "encode_bigsize",
    "encode_signed",
    "encode_signed_minimal",
    "encode_tlv_stream",
    "encode_truncated",
    "is_valid_point",
]

#: BOLT 1: amounts above 21 million BTC are invalid wherever an amount is encoded.
MAX_SAT: Final = 0x000775F05A074000
MAX_MSAT: Final = 0x1D24B2DFAC520000

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """A cursor over received bytes; every short read raises ``MalformedMessage``."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self._data = data
        self._pos = pos

    @property
    def pos(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def read(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise MalformedMessage(
                f"unexpected EOF: wanted {n} bytes at offset {self._pos}, "
                f"{len(self._data) - self._pos} left"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def u8(self) -> int:
        return self.read(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.read(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.read(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack(self.read(8))[0]
        return value

    def bigsize(self) -> int:
        value, self._pos = decode_bigsize(self._data, self._pos)
        return value


# --- BigSize -----------------------------------------------------------------------------


def encode_bigsize(value: int) -> bytes:
    """BOLT 1 BigSize: CompactSize shape, big-endian, always minimal."""
    if value < 0 or value > 0xFFFFFFFFFFFFFFFF:
        raise MalformedMessage(f"bigsize out of range: {value}")
    if value < 0xFD:
        return bytes((value,))
    if value <= 0xFFFF:
        return b"\xfd" + _U16.pack(value)
    if value <= 0xFFFFFFFF:
        return b"\xfe" + _U32.pack(value)
    return b"\xff" + _U64.pack(value)


def decode_bigsize(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode one BigSize at ``pos``; return ``(value, new_pos)``. Rejects non-minimal forms."""
    if pos >= len(data):
        raise MalformedMessage("EOF: no bigsize")
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    if first == 0xFD:
        width, minimum = 2, 0xFD
    elif first == 0xFE:
        width, minimum = 4, 0x10000
    else:
        width, minimum = 8, 0x100000000
    end = pos + 1 + width
    if end > len(data):
        raise MalformedMessage("unexpected EOF inside a bigsize")
    value = int.from_bytes(data[pos + 1 : end], "big")
    if value < minimum:
        raise MalformedMessage("decoded bigsize is not canonical")
    return value, end


# --- truncated and signed integers -------------------------------------------------------


def encode_truncated(value: int, max_bytes: int = 8) -> bytes:
    """``tu16``/``tu32``/``tu64``: big-endian with every leading zero byte dropped (0 -> b"")."""
    if value < 0 or value.bit_length() > 8 * max_bytes:
        raise MalformedMessage(f"value {value} does not fit a tu{8 * max_bytes}")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_truncated(data: bytes, max_bytes: int = 8) -> int:
    """Inverse of ``encode_truncated``; a leading zero byte or an over-long value is malformed."""
    if len(data) > max_bytes:
        raise MalformedMessage(f"tu{8 * max_bytes} longer than {max_bytes} bytes")
    if data[:1] == b"\x00":
        raise MalformedMessage(f"tu{8 * max_bytes} is not minimal (leading zero)")
    return int.from_bytes(data, "big")


def encode_signed(value: int, width: int) -> bytes:
    """``s8``/``s16``/``s32``/``s64``: big-endian two's complement in ``width`` bytes."""
    try:
        return value.to_bytes(width, "big", signed=True)
    except OverflowError as exc:
        raise MalformedMessage(f"{value} does not fit s{8 * width}") from exc


def decode_signed(data: bytes) -> int:
    """Decode an ``s8``/``s16``/``s32``/``s64`` (width given by ``len(data)``)."""
    if len(data) not in (1, 2, 4, 8):
        raise MalformedMessage(f"signed integer of {len(data)} bytes")
    return int.from_bytes(data, "big", signed=True)


def encode_signed_minimal(value: int) -> bytes:
    """The narrowest of s8/s16/s32/s64 that holds ``value`` (BOLT 1 Appendix D's shapes)."""
    for width in (1, 2, 4, 8):
        if -(1 << (8 * width - 1)) <= value < (1 << (8 * width - 1)):
            return value.to_bytes(width, "big", signed=True)
    raise MalformedMessage(f"{value} does not fit s64")


# --- field codecs ------------------------------------------------------------------------


class FieldCodec(Protocol):
    """How one wire field is written, read and checked (``check`` raises ``MalformedMessage``)."""

    def write(self, value: Any) -> bytes: ...

    def read(self, reader: Reader) -> Any: ...

    def check(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class UInt:
    """A fixed-width unsigned big-endian integer (``byte``/``u16``/``u32``/``u64``)."""

    width: int

    def write(self, value: int) -> bytes:
        return value.to_bytes(self.width, "big")

    def read(self, reader: Reader) -> int:
        return int.from_bytes(reader.read(self.width), "big")

    def check(self, name: str, value: Any) -> None:
        if type(value) is not int or value < 0 or value.bit_length() > 8 * self.width:
            raise MalformedMessage(f"{name} must be an int in [0, 2^{8 * self.width}): {value!r}")


@dataclass(frozen=True, slots=True)
class TruncatedUInt:
    """``tu16``/``tu32``/``tu64``: only as the last field of a TLV value (reads to its end)."""

    max_bytes: int

    def write(self, value: int) -> bytes:
        return encode_truncated(value, self.max_bytes)

    def read(self, reader: Reader) -> int:
        return decode_truncated(reader.rest(), self.max_bytes)

    def check(self, name: str, value: Any) -> None:
        if type(value) is not int or value < 0 or value.bit_length() > 8 * self.max_bytes:
            raise MalformedMessage(f"{name} must fit a tu{8 * self.max_bytes}: {value!r}")


@dataclass(frozen=True, slots=True)
class FixedBytes:
    """A fixed-size byte string (``chain_hash``, ``channel_id``, ``sha256``, ``signature`` ...)."""

    size: int

    def write(self, value: bytes) -> bytes:
        return value

    def read(self, reader: Reader) -> bytes:
        return reader.read(self.size)

    def check(self, name: str, value: Any) -> None:
        if type(value) is not bytes or len(value) != self.size:
            raise MalformedMessage(f"{name} must be {self.size} bytes, got {_describe(value)}")


def is_valid_point(data: bytes) -> bool:
    """True when ``data`` is a 33-byte compressed secp256k1 point that lies on the curve."""
    if len(data) != 33 or data[0] not in (2, 3):
        return False
    try:
        coincurve.PublicKey(data)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Point:
    """``point``: 33-byte compressed public key, checked to be on the curve."""

    def write(self, value: bytes) -> bytes:
        return value

    def read(self, reader: Reader) -> bytes:
        return reader.read(33)

    def check(self, name: str, value: Any) -> None:
        if type(value) is not bytes or not is_valid_point(value):
            raise MalformedMessage(f"{name} must be a valid compressed point: {_describe(value)}")


@dataclass(frozen=True, slots=True)
class VarBytes16:
    """``u16 len ‖ len*byte``: the length lives on the wire only, the value is the bytes."""

    def write(self, value: bytes) -> bytes:
        return _U16.pack(len(value)) + value

    def read(self, reader: Reader) -> bytes:
        return reader.read(reader.u16())

    def check(self, name: str, value: Any) -> None:
        if type(value) is not bytes or len(value) > 0xFFFF:
            raise MalformedMessage(f"{name} must be bytes of at most 65535: {_describe(value)}")


@dataclass(frozen=True, slots=True)
class SignatureList16:
    """``u16 num ‖ num*signature`` (``commitment_signed``'s ``htlc_signature``)."""

    def write(self, value: tuple[bytes, ...]) -> bytes:
        return _U16.pack(len(value)) + b"".join(value)

    def read(self, reader: Reader) -> tuple[bytes, ...]:
        count = reader.u16()
        blob = reader.read(64 * count)
        return tuple(blob[i : i + 64] for i in range(0, 64 * count, 64))

    def check(self, name: str, value: Any) -> None:
        if type(value) is not tuple or len(value) > 0xFFFF:
            raise MalformedMessage(f"{name} must be a tuple of signatures: {_describe(value)}")
        for sig in value:
            if type(sig) is not bytes or len(sig) != 64:
                raise MalformedMessage(f"{name} entries must be 64 bytes: {_describe(sig)}")


@dataclass(frozen=True, slots=True)
class RawBytes:
    """``...*byte``: the rest of a TLV value, any length."""

    def write(self, value: bytes) -> bytes:
        return value

    def read(self, reader: Reader) -> bytes:
        return reader.rest()

    def check(self, name: str, value: Any) -> None:
        if type(value) is not bytes:
            raise MalformedMessage(f"{name} must be bytes: {_describe(value)}")


@dataclass(frozen=True, slots=True)
class ChainHashList:
    """``...*chain_hash`` (``init``'s ``networks``): a whole number of 32-byte hashes."""

    def write(self, value: tuple[bytes, ...]) -> bytes:
        return b"".join(value)

    def read(self, reader: Reader) -> tuple[bytes, ...]:
        blob = reader.rest()
        if len(blob) % 32:
            raise MalformedMessage(f"networks of {len(blob)} bytes is not a list of chain_hash")
        return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))

    def check(self, name: str, value: Any) -> None:
        if type(value) is not tuple or any(type(h) is not bytes or len(h) != 32 for h in value):
            raise MalformedMessage(f"{name} must be a tuple of 32-byte hashes: {_describe(value)}")


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return repr(value)[:80]


U8: Final = UInt(1)
U16: Final = UInt(2)
U32: Final = UInt(4)
U64: Final = UInt(8)
TU16: Final = TruncatedUInt(2)
TU32: Final = TruncatedUInt(4)
TU64: Final = TruncatedUInt(8)
CHAIN_HASH: Final = FixedBytes(32)
CHANNEL_ID: Final = FixedBytes(32)
SHA256: Final = FixedBytes(32)
SIGNATURE: Final = FixedBytes(64)
SHORT_CHANNEL_ID: Final = FixedBytes(8)
POINT: Final = Point()


# --- TLV streams -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlvField:
    """One known TLV record: its attribute name and how its whole value decodes.

    ``decode`` receives exactly the record's value bytes and must consume all of them (a
    known type with the wrong length fails the whole stream, BOLT 1).
    """

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    check: Callable[[str, Any], None]

    @classmethod
    def of(cls, name: str, codec: FieldCodec) -> TlvField:
        """A record whose value is exactly one field of ``codec``."""

        def decode(value: bytes) -> Any:
            reader = Reader(value)
            result = codec.read(reader)
            if not reader.at_end():
                raise MalformedMessage(f"TLV {name}: {reader.remaining()} bytes too many")
            return result

        return cls(name=name, encode=codec.write, decode=decode, check=codec.check)


def encode_tlv_stream(records: Iterable[tuple[int, bytes]]) -> bytes:
    """Serialize ``(type, value)`` records; they are sorted, and a duplicate type is refused."""
    out = []
    last = -1
    for tlv_type, value in sorted(records, key=lambda r: r[0]):
        if tlv_type == last:
            raise MalformedMessage(f"duplicate TLV type {tlv_type}")
        last = tlv_type
        out.append(encode_bigsize(tlv_type) + encode_bigsize(len(value)) + value)
    return b"".join(out)


def decode_tlv_stream(
    data: bytes, known: Mapping[int, TlvField], pos: int = 0
) -> dict[str, Any]:
    """Parse a TLV stream from ``pos`` to the end of ``data``; return ``{name: value}``.

    Only known records appear in the result; unknown odd records are skipped; an unknown
    even record raises ``UnknownEvenMessage``; every other rule violation raises
    ``MalformedMessage``.
    """
    result: dict[str, Any] = {}
    last_type = -1
    end = len(data)
    while pos < end:
        tlv_type, pos = decode_bigsize(data, pos)
        if tlv_type <= last_type:
            raise MalformedMessage(f"TLV type {tlv_type} after {last_type}: not increasing")
        last_type = tlv_type
        length, pos = decode_bigsize(data, pos)
        if length > end - pos:
            raise MalformedMessage(f"TLV {tlv_type} length {length} overruns the stream")
        value = data[pos : pos + length]
        pos += length
        field = known.get(tlv_type)
        if field is not None:
            result[field.name] = field.decode(value)
        elif tlv_type % 2 == 0:
            raise UnknownEvenMessage(f"unknown even TLV type {tlv_type}")
    return result
