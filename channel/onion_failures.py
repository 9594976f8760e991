"""BOLT 4 failure messages as types: every failure code, its flags, its data, encode and decode.

Pure. A ``failuremsg`` is ``u16 failure_code ‖ data ‖ optional TLV stream`` (BOLT 4
"Failure Messages"). The code's high bits are flags: BADONION (the onion could not be read,
sent in ``update_fail_malformed_htlc``), PERM (retrying the same route is pointless), NODE
(the whole node failed, not one channel) and UPDATE (a ``channel_update`` may follow).

Each failure is one frozen dataclass whose fields are its data in wire order; the class
declares its code and layout, so encoding and decoding are one table-driven loop. Decoding
ignores bytes after the known data (the spec's optional TLV and newer fields) and turns an
unknown code into ``UnknownFailure`` rather than an error: the origin must still report it.
``describe()`` gives the payer's one-line reading of each failure. A ``channel_update``
field holds the raw bytes as sent (with the ``0x0102`` type prefix, as BOLT 4 now asks);
``channel_update_body`` strips the prefix when a peer included it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar, Final, Literal

from channel.codec import Reader, encode_bigsize
from channel.errors import MalformedMessage

__all__ = [
    "FAILURE_TYPES",
    "AmountBelowMinimum",
    "ChannelDisabled",
    "ExpiryTooFar",
    "ExpiryTooSoon",
    "FailureCode",
    "FailureFlag",
    "FeeInsufficient",
    "FinalIncorrectCltvExpiry",
    "FinalIncorrectHtlcAmount",
    "IncorrectCltvExpiry",
    "IncorrectOrUnknownPaymentDetails",
    "InvalidOnionBlinding",
    "InvalidOnionHmac",
    "InvalidOnionKey",
    "InvalidOnionPayload",
    "InvalidOnionVersion",
    "MppTimeout",
    "OnionFailure",
    "PermanentChannelFailure",
    "PermanentNodeFailure",
    "RequiredChannelFeatureMissing",
    "RequiredNodeFeatureMissing",
    "TemporaryChannelFailure",
    "TemporaryNodeFailure",
    "UnknownFailure",
    "UnknownNextPeer",
    "channel_update_body",
    "decode_failure_message",
    "malformed_failure",
]


class FailureFlag(IntFlag):
    """The high bits of a ``failure_code`` (BOLT 4 "Failure Messages")."""

    BADONION = 0x8000
    PERM = 0x4000
    NODE = 0x2000
    UPDATE = 0x1000


_BADONION: Final = FailureFlag.BADONION.value
_PERM: Final = FailureFlag.PERM.value
_NODE: Final = FailureFlag.NODE.value
_UPDATE: Final = FailureFlag.UPDATE.value


class FailureCode(IntEnum):
    """Every failure code of BOLT 4, flags included (``PERM|15`` is 0x400f)."""

    TEMPORARY_NODE_FAILURE = _NODE | 2
    PERMANENT_NODE_FAILURE = _PERM | _NODE | 2
    REQUIRED_NODE_FEATURE_MISSING = _PERM | _NODE | 3
    INVALID_ONION_VERSION = _BADONION | _PERM | 4
    INVALID_ONION_HMAC = _BADONION | _PERM | 5
    INVALID_ONION_KEY = _BADONION | _PERM | 6
    TEMPORARY_CHANNEL_FAILURE = _UPDATE | 7
    PERMANENT_CHANNEL_FAILURE = _PERM | 8
    REQUIRED_CHANNEL_FEATURE_MISSING = _PERM | 9
    UNKNOWN_NEXT_PEER = _PERM | 10
    AMOUNT_BELOW_MINIMUM = _UPDATE | 11
    FEE_INSUFFICIENT = _UPDATE | 12
    INCORRECT_CLTV_EXPIRY = _UPDATE | 13
    EXPIRY_TOO_SOON = _UPDATE | 14
    INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = _PERM | 15
    FINAL_INCORRECT_CLTV_EXPIRY = 18
    FINAL_INCORRECT_HTLC_AMOUNT = 19
    CHANNEL_DISABLED = _UPDATE | 20
    EXPIRY_TOO_FAR = 21
    INVALID_ONION_PAYLOAD = _PERM | 22
    MPP_TIMEOUT = 23
    INVALID_ONION_BLINDING = _BADONION | _PERM | 24


# How each data field is written: fixed-width integers, a SHA256, a BigSize, or the
# ``u16 len ‖ channel_update`` pair of the UPDATE failures (one Python field).
_Kind = Literal["u16", "u32", "u64", "sha256", "bigsize", "channel_update"]
_FIXED: Final = {"u16": struct.Struct(">H"), "u32": struct.Struct(">I"),
                 "u64": struct.Struct(">Q")}


def _write(kind: _Kind, value: int | bytes) -> bytes:
    if kind == "sha256":
        assert isinstance(value, bytes)
        return value
    if kind == "channel_update":
        assert isinstance(value, bytes)
        return _FIXED["u16"].pack(len(value)) + value
    assert isinstance(value, int)
    if kind == "bigsize":
        return encode_bigsize(value)
    return _FIXED[kind].pack(value)


def _read(kind: _Kind, reader: Reader) -> int | bytes:
    if kind == "sha256":
        return reader.read(32)
    if kind == "channel_update":
        # optional since bolts#1163; some nodes leave out even its length: read that as none
        return b"" if reader.at_end() else reader.read(reader.u16())
    if kind == "bigsize":
        return reader.bigsize()
    value: int = _FIXED[kind].unpack(reader.read(_FIXED[kind].size))[0]
    return value


def _check(name: str, kind: _Kind, value: object) -> None:
    if kind == "sha256":
        if type(value) is not bytes or len(value) != 32:
            raise MalformedMessage(f"{name} must be 32 bytes")
        return
    if kind == "channel_update":
        if type(value) is not bytes or len(value) > 0xFFFF:
            raise MalformedMessage(f"{name} must be bytes of at most 65535")
        return
    limit = {"u16": 1 << 16, "u32": 1 << 32, "u64": 1 << 64, "bigsize": 1 << 64}[kind]
    if type(value) is not int or not 0 <= value < limit:
        raise MalformedMessage(f"{name} must be an integer that fits a {kind}: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OnionFailure:
    """A BOLT 4 failure message. Subclasses name their code, data layout and summary."""

    CODE: ClassVar[FailureCode]
    LAYOUT: ClassVar[tuple[tuple[str, _Kind], ...]] = ()
    SUMMARY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, kind in self.LAYOUT:
            _check(name, kind, getattr(self, name))

    @property
    def failure_code(self) -> int:
        return int(self.CODE)

    @property
    def flags(self) -> FailureFlag:
        return FailureFlag(self.failure_code & 0xF000)

    @property
    def is_permanent(self) -> bool:
        """PERM: the same route will fail again; a PERM from the payee ends the payment."""
        return bool(self.failure_code & _PERM)

    @property
    def is_node_failure(self) -> bool:
        """NODE: avoid the sending node altogether, not just one of its channels."""
        return bool(self.failure_code & _NODE)

    @property
    def is_bad_onion(self) -> bool:
        """BADONION: sent in ``update_fail_malformed_htlc`` by the node that could not peel."""
        return bool(self.failure_code & _BADONION)

    def encode(self) -> bytes:
        """``failuremsg``: ``u16 failure_code ‖ data`` (no TLV extension)."""
        data = b"".join(_write(kind, getattr(self, name)) for name, kind in self.LAYOUT)
        return self.failure_code.to_bytes(2, "big") + data

    def describe(self) -> str:
        """One line for the payer's report: what went wrong, with the data in its units."""
        values = {name: getattr(self, name) for name, _ in self.LAYOUT}
        if "channel_update" in values:
            update = values.pop("channel_update")
            suffix = f" (channel_update of {len(update)} bytes attached)" if update else ""
        else:
            suffix = ""
        if "sha256_of_onion" in values:
            values["sha256_of_onion"] = values["sha256_of_onion"].hex()
        name = FailureCode(self.failure_code).name.lower()
        return f"{name}: {self.SUMMARY.format(**values)}{suffix}"


# --- node failures -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TemporaryNodeFailure(OnionFailure):
    CODE = FailureCode.TEMPORARY_NODE_FAILURE
    SUMMARY = "the node could not process the payment for now"


@dataclass(frozen=True, slots=True, kw_only=True)
class PermanentNodeFailure(OnionFailure):
    CODE = FailureCode.PERMANENT_NODE_FAILURE
    SUMMARY = "the node will never route this payment"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequiredNodeFeatureMissing(OnionFailure):
    CODE = FailureCode.REQUIRED_NODE_FEATURE_MISSING
    SUMMARY = "the node requires a feature the payment's onion does not offer"


# --- unreadable onions (BADONION: sent in update_fail_malformed_htlc) --------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOnionVersion(OnionFailure):
    CODE = FailureCode.INVALID_ONION_VERSION
    LAYOUT = (("sha256_of_onion", "sha256"),)
    SUMMARY = "a hop could not read the onion's version (onion sha256 {sha256_of_onion})"
    sha256_of_onion: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOnionHmac(OnionFailure):
    CODE = FailureCode.INVALID_ONION_HMAC
    LAYOUT = (("sha256_of_onion", "sha256"),)
    SUMMARY = "a hop found the onion's HMAC wrong (onion sha256 {sha256_of_onion})"
    sha256_of_onion: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOnionKey(OnionFailure):
    CODE = FailureCode.INVALID_ONION_KEY
    LAYOUT = (("sha256_of_onion", "sha256"),)
    SUMMARY = "a hop could not parse the onion's ephemeral key (onion sha256 {sha256_of_onion})"
    sha256_of_onion: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOnionBlinding(OnionFailure):
    CODE = FailureCode.INVALID_ONION_BLINDING
    LAYOUT = (("sha256_of_onion", "sha256"),)
    SUMMARY = "a hop of a blinded path could not read the onion (onion sha256 {sha256_of_onion})"
    sha256_of_onion: bytes


# --- channel failures (sent by a forwarding node) ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TemporaryChannelFailure(OnionFailure):
    CODE = FailureCode.TEMPORARY_CHANNEL_FAILURE
    LAYOUT = (("channel_update", "channel_update"),)
    SUMMARY = "the outgoing channel cannot carry the payment now (capacity or peer offline)"
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class PermanentChannelFailure(OnionFailure):
    CODE = FailureCode.PERMANENT_CHANNEL_FAILURE
    SUMMARY = "the outgoing channel is closed or closing"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequiredChannelFeatureMissing(OnionFailure):
    CODE = FailureCode.REQUIRED_CHANNEL_FEATURE_MISSING
    SUMMARY = "the outgoing channel requires a feature the onion does not offer"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownNextPeer(OnionFailure):
    CODE = FailureCode.UNKNOWN_NEXT_PEER
    SUMMARY = "the forwarding node has no channel with the short_channel_id asked for"


@dataclass(frozen=True, slots=True, kw_only=True)
class AmountBelowMinimum(OnionFailure):
    CODE = FailureCode.AMOUNT_BELOW_MINIMUM
    LAYOUT = (("htlc_msat", "u64"), ("channel_update", "channel_update"))
    SUMMARY = "{htlc_msat} msat is below the outgoing channel's htlc_minimum_msat"
    htlc_msat: int
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeInsufficient(OnionFailure):
    CODE = FailureCode.FEE_INSUFFICIENT
    LAYOUT = (("htlc_msat", "u64"), ("channel_update", "channel_update"))
    SUMMARY = "an incoming {htlc_msat} msat leaves less than the forwarding fee asked"
    htlc_msat: int
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class IncorrectCltvExpiry(OnionFailure):
    CODE = FailureCode.INCORRECT_CLTV_EXPIRY
    LAYOUT = (("cltv_expiry", "u32"), ("channel_update", "channel_update"))
    SUMMARY = "incoming cltv_expiry {cltv_expiry} leaves less than the channel's cltv_expiry_delta"
    cltv_expiry: int
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryTooSoon(OnionFailure):
    CODE = FailureCode.EXPIRY_TOO_SOON
    LAYOUT = (("channel_update", "channel_update"),)
    SUMMARY = "the HTLC expires too close to the forwarding node's block height"
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDisabled(OnionFailure):
    CODE = FailureCode.CHANNEL_DISABLED
    LAYOUT = (("disabled_flags", "u16"), ("channel_update", "channel_update"))
    SUMMARY = "the outgoing channel is disabled"
    disabled_flags: int = 0
    channel_update: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryTooFar(OnionFailure):
    CODE = FailureCode.EXPIRY_TOO_FAR
    SUMMARY = "the HTLC's cltv_expiry is too far in the future"


# --- final-node failures -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IncorrectOrUnknownPaymentDetails(OnionFailure):
    CODE = FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
    LAYOUT = (("htlc_msat", "u64"), ("height", "u32"))
    SUMMARY = ("the payee refused {htlc_msat} msat at its height {height}: unknown payment, "
               "wrong secret or amount, or an expiry too close")
    htlc_msat: int
    height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalIncorrectCltvExpiry(OnionFailure):
    CODE = FailureCode.FINAL_INCORRECT_CLTV_EXPIRY
    LAYOUT = (("cltv_expiry", "u32"),)
    SUMMARY = "the payee got cltv_expiry {cltv_expiry}, below the onion's outgoing_cltv_value"
    cltv_expiry: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalIncorrectHtlcAmount(OnionFailure):
    CODE = FailureCode.FINAL_INCORRECT_HTLC_AMOUNT
    LAYOUT = (("incoming_htlc_amt", "u64"),)
    SUMMARY = "the payee got {incoming_htlc_amt} msat, below the onion's amt_to_forward"
    incoming_htlc_amt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MppTimeout(OnionFailure):
    CODE = FailureCode.MPP_TIMEOUT
    SUMMARY = "the payee did not receive every part of the payment in time"


# --- either node -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOnionPayload(OnionFailure):
    CODE = FailureCode.INVALID_ONION_PAYLOAD
    LAYOUT = (("tlv_type", "bigsize"), ("offset", "u16"))
    SUMMARY = "a hop could not use its payload (TLV type {tlv_type} at offset {offset})"
    tlv_type: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownFailure(OnionFailure):
    """A code this table does not know: kept whole so the payer can still report it."""

    code: int
    data: bytes

    def __post_init__(self) -> None:
        if type(self.code) is not int or not 0 <= self.code <= 0xFFFF:
            raise MalformedMessage(f"failure code must be a u16: {self.code!r}")

    @property
    def failure_code(self) -> int:
        return self.code

    def encode(self) -> bytes:
        return self.code.to_bytes(2, "big") + self.data

    def describe(self) -> str:
        flags = FailureFlag(self.code & 0xF000)
        named = "|".join(flag.name or "" for flag in FailureFlag if flag in flags)
        return (f"unknown failure 0x{self.code:04x} ({named or 'no flags'}) "
                f"with {len(self.data)} data bytes")


FAILURE_TYPES: Final[dict[int, type[OnionFailure]]] = {
    int(cls.CODE): cls
    for cls in (
        TemporaryNodeFailure, PermanentNodeFailure, RequiredNodeFeatureMissing,
        InvalidOnionVersion, InvalidOnionHmac, InvalidOnionKey, InvalidOnionBlinding,
        TemporaryChannelFailure, PermanentChannelFailure, RequiredChannelFeatureMissing,
        UnknownNextPeer, AmountBelowMinimum, FeeInsufficient, IncorrectCltvExpiry,
        ExpiryTooSoon, ChannelDisabled, ExpiryTooFar, IncorrectOrUnknownPaymentDetails,
        FinalIncorrectCltvExpiry, FinalIncorrectHtlcAmount, MppTimeout, InvalidOnionPayload,
    )
}

_MALFORMED_TYPES: Final = (InvalidOnionVersion, InvalidOnionHmac, InvalidOnionKey,
                           InvalidOnionBlinding)


def decode_failure_message(message: bytes) -> OnionFailure:
    """Parse a ``failuremsg``; bytes after the known data are ignored (BOLT 4 "Origin node").

    Raises ``MalformedMessage`` if the message is shorter than its code's data.
    """
    reader = Reader(message)
    code = reader.u16()
    cls = FAILURE_TYPES.get(code)
    if cls is None:
        return UnknownFailure(code=code, data=reader.rest())
    values = {name: _read(kind, reader) for name, kind in cls.LAYOUT}
    return cls(**values)


def malformed_failure(failure_code: int, sha256_of_onion: bytes) -> OnionFailure:
    """The failure a forwarder passes upstream for a downstream ``update_fail_malformed_htlc``.

    BOLT 2 "Removing an HTLC": the forwarder turns it into an ``update_fail_htlc`` built with
    its own shared secret, "using the failure_code given and setting the data to
    sha256_of_onion". A code without the BADONION bit is refused: BOLT 2 says fail the channel.
    """
    if not failure_code & _BADONION:
        raise MalformedMessage(f"update_fail_malformed_htlc code 0x{failure_code:04x} "
                               "lacks the BADONION bit")
    for cls in _MALFORMED_TYPES:
        if cls.CODE == failure_code:
            return cls(sha256_of_onion=sha256_of_onion)
    return UnknownFailure(code=failure_code, data=sha256_of_onion)



_CHANNEL_UPDATE_TYPE: Final = (258).to_bytes(2, "big")


def channel_update_body(channel_update: bytes) -> bytes:
    """The ``channel_update`` of an UPDATE failure without its message type, whichever form.

    BOLT 4 (since bolts#979) writes the update with its ``0x0102`` type prefix, but lnd and
    older nodes omit it; readers accept both. A 64-byte signature starting ``0102`` is the one
    ambiguous case, as in every implementation's compatibility rule.
    """
    if channel_update.startswith(_CHANNEL_UPDATE_TYPE):
        return channel_update[2:]
    return channel_update
