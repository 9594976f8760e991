"""Decode any message chanlab sends into its BOLT field names and human values (``trace``).

Pure. :func:`trace_bytes` takes ``type ‖ payload`` as it crosses the BOLT 8 transport — every
BOLT 1 and BOLT 2 message of :data:`channel.messages.MESSAGE_TYPES` and the two tower messages
of :mod:`channel.tower_wire` — and returns a :class:`TracedMessage`: the BOLT message name, its
type number and one :class:`TracedField` per field in wire order, named as in the spec's CSV
(length fields such as ``len`` exist only on the wire and are left out; absent TLV records
too). It never raises: a message that does not parse is traced with the reason.

Values are written for people: amounts with their unit (``1,000,000 sat``,
``25,000,000 msat``, ``2,500 sat/kw``), delays in blocks, feature bitmaps as BOLT 9 names,
the regtest chain hash by name, long hex shortened (``02a1b2c3d4e5f6a7…c3d4 (33 bytes)``).
:func:`render_trace` prints one message::

    → sent open_channel (type 32)
        chain_hash                     regtest (06226e46…910f)
        funding_satoshis               1,000,000 sat
        ...
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from channel.errors import MalformedMessage, UnknownEvenMessage
from channel.messages import MESSAGE_TYPES, FeeRange, decode_message
from channel.tower import SignedUpload
from channel.tower_wire import TOWER_ACK, TOWER_UPLOAD, TowerAck, decode_tower_message
from channel.wire import REGTEST_CHAIN_HASH, Feature, Features, Message, UnknownMessage

__all__ = [
    "MESSAGE_NAMES",
    "Direction",
    "TraceEntry",
    "TracedField",
    "TracedMessage",
    "format_value",
    "render_trace",
    "render_trace_log",
    "trace_bytes",
    "trace_message",
]

#: Every message type ``trace`` knows, by number: BOLT 1, BOLT 2 and chanlab's tower messages.
MESSAGE_NAMES: Final[Mapping[int, str]] = {
    **{t: cls.NAME for t, cls in MESSAGE_TYPES.items()},
    TOWER_UPLOAD: "tower_upload",
    TOWER_ACK: "tower_ack",
}

_HEX_KEEP = 16     # hex digits kept at the front of a shortened value (8 at the back)


class Direction(enum.Enum):
    """Which way a message went, from the tracing node's side."""

    SENT = "sent"
    RECEIVED = "received"

    @property
    def arrow(self) -> str:
        return "→" if self is Direction.SENT else "←"


@dataclass(frozen=True, slots=True, kw_only=True)
class TracedField:
    """One field: its BOLT name and its value for people."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TracedMessage:
    """One decoded message: BOLT name, type number and fields in wire order."""

    type: int
    name: str
    fields: tuple[TracedField, ...]

    def field(self, name: str) -> str | None:
        """The value of field ``name``, or None if absent."""
        for f in self.fields:
            if f.name == name:
                return f.value
        return None


def shorten_hex(data: bytes, full: bool = False) -> str:
    """``02a1b2c3d4e5f6a7…c3d4e5f6 (33 bytes)`` for long values; short ones whole."""
    text = data.hex()
    if full or len(text) <= _HEX_KEEP + 8 + 8:
        return text if data else "(empty)"
    return f"{text[:_HEX_KEEP]}…{text[-8:]} ({len(data)} bytes)"


def _features(data: bytes) -> str:
    bits = sorted(Features.from_bytes(data).bits)
    if not bits:
        return "none"
    names = []
    for bit in bits:
        try:
            feature = Feature(bit - bit % 2)
            kind = "required" if bit % 2 == 0 else "optional"
            names.append(f"{feature.name.lower()} ({kind}, bit {bit})")
        except ValueError:
            names.append(f"bit {bit}")
    return ", ".join(names)


def _chain(value: bytes) -> str:
    name = "regtest" if value == REGTEST_CHAIN_HASH else "chain"
    return f"{name} ({value.hex()[:8]}…{value.hex()[-4:]})"


def _by_name(name: str, value: object, full: bool) -> str | None:
    """Formatting that depends on what the field means, not only on its wire type."""
    if isinstance(value, int) and not isinstance(value, bool):
        if name.endswith("_msat"):
            return f"{value:,} msat"
        if name.endswith("satoshis"):
            return f"{value:,} sat"
        if name == "feerate_per_kw":
            return f"{value:,} sat/kw ({value * 4 // 1000:,} sat/vB)"
        if name in ("to_self_delay", "minimum_depth"):
            return f"{value:,} block{'s' if value != 1 else ''}"
        if name == "cltv_expiry":
            return f"block height {value:,}"
        if name == "failure_code":
            return f"0x{value:04x}"
        if name == "channel_flags":
            return f"0x{value:02x}" + (" (announce_channel)" if value & 1 else "")
        return f"{value:,}"
    if isinstance(value, bytes):
        if name in ("features", "globalfeatures", "channel_type"):
            return f"{_features(value)} [0x{value.hex() or '0'}]"
        if name == "chain_hash":
            return _chain(value)
        if name == "data":   # error / warning text: printable, never trusted
            return repr(value.decode("ascii", errors="backslashreplace"))
        if name == "onion_routing_packet":
            return f"{len(value):,} bytes (BOLT 4 onion, version {value[0]})"
        if name == "reason":
            return f"{len(value):,} bytes (encrypted BOLT 4 failure)"
        if name in ("ignored", "blob"):
            return f"{len(value):,} bytes"
        if name == "funding_txid":
            # whole and in display order: learners compare it with bitcoin-cli's txid
            return f"{value[::-1].hex()} (bitcoind order)"
        return shorten_hex(value, full)
    if isinstance(value, FeeRange):
        return f"{value.min_fee_satoshis:,} to {value.max_fee_satoshis:,} sat"
    if isinstance(value, tuple):
        if name == "htlc_signature":
            return f"{len(value)} signature{'s' if len(value) != 1 else ''}" + (
                ": " + ", ".join(shorten_hex(v, full) for v in value if isinstance(v, bytes))
                if value and full else "")
        if name == "networks":
            return ", ".join(_chain(v) for v in value if isinstance(v, bytes)) or "none"
    return None


def format_value(name: str, value: object, full: bool = False) -> str:
    """A field's value for people (``full``: no hex shortening)."""
    text = _by_name(name, value, full)
    return text if text is not None else repr(value)


def trace_message(message: Message | UnknownMessage, full: bool = False) -> TracedMessage:
    """Trace a decoded message: fixed fields in wire order, then the TLV records present."""
    if isinstance(message, UnknownMessage):
        return TracedMessage(type=message.type, name=f"unknown_{message.type}", fields=(
            TracedField(name="payload", value=shorten_hex(message.payload, full)),))
    fields = [TracedField(name=name, value=format_value(name, getattr(message, name), full))
              for name, _ in message.FIELDS]
    for tlv in message.TLVS.values():
        value = getattr(message, tlv.name)
        if value is not None:
            fields.append(TracedField(name=tlv.name, value=format_value(tlv.name, value, full)))
    return TracedMessage(type=message.TYPE, name=message.NAME, fields=tuple(fields))


def _trace_tower(msg_type: int, payload: bytes, full: bool) -> TracedMessage:
    decoded = decode_tower_message(msg_type, payload)
    fields: tuple[tuple[str, str], ...]
    if isinstance(decoded, SignedUpload):
        fields = (("client_pubkey", shorten_hex(decoded.client_pubkey, full)),
                  ("hint", shorten_hex(decoded.hint, full)),
                  ("signature", shorten_hex(decoded.signature, full)),
                  ("blob", f"{len(decoded.blob):,} bytes (encrypted justice kit)"))
    else:
        ack: TowerAck = decoded
        fields = (("hint", shorten_hex(ack.hint, full)), ("status", ack.status.name.lower()),
                  ("reason", repr(ack.reason)))
    return TracedMessage(type=msg_type, name=MESSAGE_NAMES[msg_type],
                         fields=tuple(TracedField(name=n, value=v) for n, v in fields))


def trace_bytes(data: bytes, full: bool = False) -> TracedMessage:
    """Trace ``type ‖ payload``; a message that does not parse gets an ``error`` field."""
    msg_type = int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
    name = MESSAGE_NAMES.get(msg_type, f"unknown_{msg_type}")
    try:
        if msg_type in (TOWER_UPLOAD, TOWER_ACK):
            return _trace_tower(msg_type, data[2:], full)
        return trace_message(decode_message(data), full)
    except (MalformedMessage, UnknownEvenMessage) as exc:
        return TracedMessage(type=msg_type, name=name, fields=(
            TracedField(name="error", value=f"does not parse: {exc}"),
            TracedField(name="payload", value=shorten_hex(data[2:], full))))


def render_trace(traced: TracedMessage, direction: Direction | None = None,
                 peer: str = "") -> str:
    """``→ sent open_channel (type 32) to bob`` and one indented line per field."""
    head = f"{traced.name} (type {traced.type})"
    if direction is not None:
        preposition = "to" if direction is Direction.SENT else "from"
        head = f"{direction.arrow} {direction.value} {head}"
        if peer:
            head += f" {preposition} {peer}"
    width = max((len(f.name) for f in traced.fields), default=0)
    lines = [head, *(f"    {f.name:<{width}}  {f.value}" for f in traced.fields)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEntry:
    """One message as a node records it for ``trace``: which way, which peer, the bytes
    (``type ‖ payload``, as handed to or received from the BOLT 8 transport)."""

    direction: Direction
    peer: str
    data: bytes


def render_trace_log(entries: Iterable[TraceEntry], full: bool = False) -> str:
    """Every entry traced and rendered, in order, a blank line between messages."""
    return "\n".join(render_trace(trace_bytes(e.data, full), e.direction, e.peer)
                     for e in entries)
