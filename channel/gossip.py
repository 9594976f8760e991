"""BOLT 7 gossip: the announcement messages, their signatures and their checks.

Pure. The five messages a node needs to announce its channels and learn the network's
(``announcement_signatures``, ``channel_announcement``, ``node_announcement``,
``channel_update``, ``gossip_timestamp_filter``) declared like every other message (see
``channel.wire.Message``), plus:

* ``ShortChannelId``: BOLT 7's ``block_height x tx_index x output_index`` in 8 bytes;
* the signed digest of each announcement (double SHA-256 of the message after its
  signatures, BOLT 7 "The channel_announcement Message" and friends), builders that sign,
  and ``check_*`` functions that raise ``InvalidGossip`` naming the defect;
* the funding-output check: an announced channel must point at an unspent P2WSH 2-of-2 of
  the two ``bitcoin_key``s holding its capacity (the caller looks the output up on chain).

A gossip defect is never a reason to fail a channel: BOLT 7 says to ignore the message (and
optionally warn), which is what ``InvalidGossip`` calls for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Final, TypeVar

from channel.codec import (
    CHAIN_HASH,
    CHANNEL_ID,
    POINT,
    SHORT_CHANNEL_ID,
    SIGNATURE,
    U8,
    U16,
    U32,
    U64,
    FixedBytes,
    RawBytes,
    VarBytes16,
)
from channel.errors import InvalidGossip
from channel.keys import FundingPubkey, PrivateKey, verify
from channel.transactions import funding_script_pubkey
from channel.wire import Fields, Message

__all__ = [
    "GOSSIP_MESSAGES",
    "GOSSIP_QUERY_MESSAGES",
    "AnnouncementSignatures",
    "ChannelAnnouncement",
    "ChannelUpdate",
    "GossipQuery",
    "GossipTimestampFilter",
    "NodeAnnouncement",
    "ShortChannelId",
    "announcement_digest",
    "check_channel_announcement",
    "check_channel_update",
    "check_funding_output",
    "check_node_announcement",
    "sign_channel_update",
    "sign_node_announcement",
    "unsigned_channel_announcement",
    "with_channel_announcement_signatures",
]

#: ``channel_update.message_flags`` bit 0: ``must_be_one`` (``htlc_maximum_msat`` present).
MESSAGE_FLAG_MUST_BE_ONE: Final = 0x01
#: ``channel_update.message_flags`` bit 1: ``dont_forward`` (a private channel's update).
MESSAGE_FLAG_DONT_FORWARD: Final = 0x02
#: ``channel_update.channel_flags`` bit 0: direction (0 = from node_id_1, 1 = from node_id_2).
CHANNEL_FLAG_DIRECTION: Final = 0x01
#: ``channel_update.channel_flags`` bit 1: the channel is disabled in this direction.
CHANNEL_FLAG_DISABLE: Final = 0x02

_ZERO_SIG: Final = bytes(64)


@dataclass(frozen=True, slots=True, order=True)
class ShortChannelId:
    """BOLT 7 ``short_channel_id``: where the funding output is, in 3 + 3 + 2 bytes."""

    block_height: int
    tx_index: int
    output_index: int

    def __post_init__(self) -> None:
        if not (0 <= self.block_height < 1 << 24 and 0 <= self.tx_index < 1 << 24
                and 0 <= self.output_index < 1 << 16):
            raise ValueError(f"short_channel_id out of range: {self}")

    def __bytes__(self) -> bytes:
        return (self.block_height.to_bytes(3, "big") + self.tx_index.to_bytes(3, "big")
                + self.output_index.to_bytes(2, "big"))

    def __str__(self) -> str:
        return f"{self.block_height}x{self.tx_index}x{self.output_index}"

    @classmethod
    def from_bytes(cls, data: bytes) -> ShortChannelId:
        """From the 8 wire bytes."""
        if len(data) != 8:
            raise ValueError(f"short_channel_id must be 8 bytes, got {len(data)}")
        return cls(int.from_bytes(data[0:3], "big"), int.from_bytes(data[3:6], "big"),
                   int.from_bytes(data[6:8], "big"))

    @classmethod
    def parse(cls, text: str) -> ShortChannelId:
        """From ``BLOCKxTXxOUT`` (the notation people and BOLT 11 tools print)."""
        parts = text.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not a short channel id (BLOCKxTXxOUTPUT): {text!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))


_BYTES3: Final = FixedBytes(3)
_BYTES32: Final = FixedBytes(32)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncementSignatures(Message):
    """``announcement_signatures`` (259): our half of a channel_announcement's signatures."""

    TYPE: ClassVar[int] = 259
    NAME: ClassVar[str] = "announcement_signatures"
    FIELDS: ClassVar[Fields] = (
        ("channel_id", CHANNEL_ID),
        ("short_channel_id", SHORT_CHANNEL_ID),
        ("node_signature", SIGNATURE),
        ("bitcoin_signature", SIGNATURE),
    )

    channel_id: bytes
    short_channel_id: bytes
    node_signature: bytes
    bitcoin_signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelAnnouncement(Message):
    """``channel_announcement`` (256): a public channel, proven by four signatures.

    ``node_id_1`` is the lexicographically lesser node id; each node's ``bitcoin_key`` is its
    funding pubkey.
    """

    TYPE: ClassVar[int] = 256
    NAME: ClassVar[str] = "channel_announcement"
    FIELDS: ClassVar[Fields] = (
        ("node_signature_1", SIGNATURE),
        ("node_signature_2", SIGNATURE),
        ("bitcoin_signature_1", SIGNATURE),
        ("bitcoin_signature_2", SIGNATURE),
        ("features", VarBytes16()),
        ("chain_hash", CHAIN_HASH),
        ("short_channel_id", SHORT_CHANNEL_ID),
        ("node_id_1", POINT),
        ("node_id_2", POINT),
        ("bitcoin_key_1", POINT),
        ("bitcoin_key_2", POINT),
    )
    SIGNED_FROM: ClassVar[int] = 4 * 64

    node_signature_1: bytes
    node_signature_2: bytes
    bitcoin_signature_1: bytes
    bitcoin_signature_2: bytes
    features: bytes
    chain_hash: bytes
    short_channel_id: bytes
    node_id_1: bytes
    node_id_2: bytes
    bitcoin_key_1: bytes
    bitcoin_key_2: bytes

    @property
    def scid(self) -> ShortChannelId:
        return ShortChannelId.from_bytes(self.short_channel_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAnnouncement(Message):
    """``node_announcement`` (257): a node's alias, colour and addresses, signed by it."""

    TYPE: ClassVar[int] = 257
    NAME: ClassVar[str] = "node_announcement"
    FIELDS: ClassVar[Fields] = (
        ("signature", SIGNATURE),
        ("features", VarBytes16()),
        ("timestamp", U32),
        ("node_id", POINT),
        ("rgb_color", _BYTES3),
        ("alias", _BYTES32),
        ("addresses", VarBytes16()),
    )
    SIGNED_FROM: ClassVar[int] = 64

    signature: bytes
    features: bytes
    timestamp: int
    node_id: bytes
    rgb_color: bytes
    alias: bytes
    addresses: bytes

    @property
    def alias_text(self) -> str:
        """The alias as text (zero padding stripped, invalid UTF-8 replaced)."""
        return self.alias.rstrip(b"\x00").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelUpdate(Message):
    """``channel_update`` (258): one direction's forwarding policy, signed by its node."""

    TYPE: ClassVar[int] = 258
    NAME: ClassVar[str] = "channel_update"
    FIELDS: ClassVar[Fields] = (
        ("signature", SIGNATURE),
        ("chain_hash", CHAIN_HASH),
        ("short_channel_id", SHORT_CHANNEL_ID),
        ("timestamp", U32),
        ("message_flags", U8),
        ("channel_flags", U8),
        ("cltv_expiry_delta", U16),
        ("htlc_minimum_msat", U64),
        ("fee_base_msat", U32),
        ("fee_proportional_millionths", U32),
        ("htlc_maximum_msat", U64),
    )
    SIGNED_FROM: ClassVar[int] = 64

    signature: bytes
    chain_hash: bytes
    short_channel_id: bytes
    timestamp: int
    message_flags: int
    channel_flags: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    fee_base_msat: int
    fee_proportional_millionths: int
    htlc_maximum_msat: int

    @property
    def scid(self) -> ShortChannelId:
        return ShortChannelId.from_bytes(self.short_channel_id)

    @property
    def direction(self) -> int:
        """0 when node_id_1 sets this policy, 1 when node_id_2 does."""
        return self.channel_flags & CHANNEL_FLAG_DIRECTION

    @property
    def disabled(self) -> bool:
        return bool(self.channel_flags & CHANNEL_FLAG_DISABLE)


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipTimestampFilter(Message):
    """``gossip_timestamp_filter`` (265): send me gossip stamped in this window."""

    TYPE: ClassVar[int] = 265
    NAME: ClassVar[str] = "gossip_timestamp_filter"
    FIELDS: ClassVar[Fields] = (
        ("chain_hash", CHAIN_HASH),
        ("first_timestamp", U32),
        ("timestamp_range", U32),
    )

    chain_hash: bytes
    first_timestamp: int
    timestamp_range: int

    def admits(self, timestamp: int) -> bool:
        """BOLT 7: ``first_timestamp <= timestamp < first_timestamp + timestamp_range``."""
        return self.first_timestamp <= timestamp < self.first_timestamp + self.timestamp_range


GOSSIP_MESSAGES: Final = {
    cls.TYPE: cls
    for cls in (AnnouncementSignatures, ChannelAnnouncement, NodeAnnouncement, ChannelUpdate,
                GossipTimestampFilter)
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipQuery(Message):
    """A BOLT 7 query message chanlab does not answer (``gossip_queries`` is not offered),
    kept whole so that its even types (262, 264) do not close the connection."""

    FIELDS: ClassVar[Fields] = (("payload", RawBytes()),)

    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryShortChannelIds(GossipQuery):
    TYPE: ClassVar[int] = 261
    NAME: ClassVar[str] = "query_short_channel_ids"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyShortChannelIdsEnd(GossipQuery):
    TYPE: ClassVar[int] = 262
    NAME: ClassVar[str] = "reply_short_channel_ids_end"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryChannelRange(GossipQuery):
    TYPE: ClassVar[int] = 263
    NAME: ClassVar[str] = "query_channel_range"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyChannelRange(GossipQuery):
    TYPE: ClassVar[int] = 264
    NAME: ClassVar[str] = "reply_channel_range"


#: The query messages a peer may send although we never asked (ignored, never fatal).
GOSSIP_QUERY_MESSAGES: Final[dict[int, type[Message]]] = {
    cls.TYPE: cls
    for cls in (QueryShortChannelIds, ReplyShortChannelIdsEnd, QueryChannelRange,
                ReplyChannelRange)
}


def announcement_digest(message: ChannelAnnouncement | NodeAnnouncement | ChannelUpdate) -> bytes:
    """BOLT 7: the double SHA-256 of the message after its signature fields (its type excluded)."""
    signed = message.encode()[message.SIGNED_FROM:]
    return hashlib.sha256(hashlib.sha256(signed).digest()).digest()


# --- channel_announcement ------------------------------------------------------------------


def unsigned_channel_announcement(*, chain_hash: bytes, short_channel_id: ShortChannelId,
                                  node_id_a: bytes, node_id_b: bytes, bitcoin_key_a: bytes,
                                  bitcoin_key_b: bytes) -> ChannelAnnouncement:
    """The announcement both peers sign: node ids ordered (node_id_1 the lesser), keys with them.

    Signatures are zero until ``with_channel_announcement_signatures`` fills them in.
    """
    first_is_a = node_id_a < node_id_b
    return ChannelAnnouncement(
        node_signature_1=_ZERO_SIG, node_signature_2=_ZERO_SIG,
        bitcoin_signature_1=_ZERO_SIG, bitcoin_signature_2=_ZERO_SIG,
        features=b"", chain_hash=chain_hash, short_channel_id=bytes(short_channel_id),
        node_id_1=node_id_a if first_is_a else node_id_b,
        node_id_2=node_id_b if first_is_a else node_id_a,
        bitcoin_key_1=bitcoin_key_a if first_is_a else bitcoin_key_b,
        bitcoin_key_2=bitcoin_key_b if first_is_a else bitcoin_key_a,
    )


def with_channel_announcement_signatures(
        unsigned: ChannelAnnouncement, *, node_id: bytes, node_signature: bytes,
        bitcoin_signature: bytes) -> ChannelAnnouncement:
    """Put one side's ``announcement_signatures`` into its slots (by which node it is)."""
    fields = {name: getattr(unsigned, name) for name, _ in ChannelAnnouncement.FIELDS}
    if node_id == unsigned.node_id_1:
        slot = "1"
    elif node_id == unsigned.node_id_2:
        slot = "2"
    else:
        raise InvalidGossip("announcement_signatures from a node not in the channel")
    fields["node_signature_" + slot] = node_signature
    fields["bitcoin_signature_" + slot] = bitcoin_signature
    return ChannelAnnouncement(**fields)


def sign_announcement(unsigned: ChannelAnnouncement, *, node_key: PrivateKey,
                      funding_key: PrivateKey) -> tuple[bytes, bytes]:
    """Our ``(node_signature, bitcoin_signature)`` over the announcement's digest."""
    digest = announcement_digest(unsigned)
    return node_key.sign(digest), funding_key.sign(digest)


def check_channel_announcement(message: ChannelAnnouncement, *, chain_hash: bytes) -> None:
    """BOLT 7 receiver checks that need no chain: chain, ordering, all four signatures."""
    if message.chain_hash != chain_hash:
        raise InvalidGossip("channel_announcement for another chain")
    if not message.node_id_1 < message.node_id_2:
        raise InvalidGossip("channel_announcement node ids not in ascending order")
    digest = announcement_digest(message)
    for name, key in (("node_signature_1", message.node_id_1),
                      ("node_signature_2", message.node_id_2),
                      ("bitcoin_signature_1", message.bitcoin_key_1),
                      ("bitcoin_signature_2", message.bitcoin_key_2)):
        if not verify(key, digest, getattr(message, name)):
            raise InvalidGossip(f"channel_announcement {name} does not verify")


def check_funding_output(message: ChannelAnnouncement, script_pubkey: bytes | None,
                         *, spent: bool) -> None:
    """BOLT 7: the scid's output must be an unspent P2WSH 2-of-2 of the two bitcoin keys.

    ``script_pubkey`` is the output the scid points at (None if there is no such output).
    """
    if script_pubkey is None:
        raise InvalidGossip(f"channel_announcement {message.scid}: no such output on chain")
    if spent:
        raise InvalidGossip(f"channel_announcement {message.scid}: funding output already spent")
    expected = funding_script_pubkey(FundingPubkey(message.bitcoin_key_1),
                                     FundingPubkey(message.bitcoin_key_2))
    if script_pubkey != expected:
        raise InvalidGossip(f"channel_announcement {message.scid}: output is not the 2-of-2 "
                            "of its bitcoin keys")


# --- channel_update / node_announcement ----------------------------------------------------


def sign_channel_update(*, node_key: PrivateKey, chain_hash: bytes,
                        short_channel_id: ShortChannelId, timestamp: int, direction: int,
                        disabled: bool, cltv_expiry_delta: int, htlc_minimum_msat: int,
                        fee_base_msat: int, fee_proportional_millionths: int,
                        htlc_maximum_msat: int, dont_forward: bool = False) -> ChannelUpdate:
    """Our policy for one direction of a channel, signed (BOLT 7 "channel_update");
    ``dont_forward`` for a private channel's update sent only to the channel peer."""
    unsigned = ChannelUpdate(
        signature=_ZERO_SIG, chain_hash=chain_hash, short_channel_id=bytes(short_channel_id),
        timestamp=timestamp,
        message_flags=MESSAGE_FLAG_MUST_BE_ONE | (MESSAGE_FLAG_DONT_FORWARD if dont_forward
                                                  else 0),
        channel_flags=(direction & CHANNEL_FLAG_DIRECTION)
        | (CHANNEL_FLAG_DISABLE if disabled else 0),
        cltv_expiry_delta=cltv_expiry_delta, htlc_minimum_msat=htlc_minimum_msat,
        fee_base_msat=fee_base_msat, fee_proportional_millionths=fee_proportional_millionths,
        htlc_maximum_msat=htlc_maximum_msat)
    signature = node_key.sign(announcement_digest(unsigned))
    return _replace_signature(unsigned, signature)


def check_channel_update(message: ChannelUpdate, *, chain_hash: bytes, node_id: bytes) -> None:
    """BOLT 7 receiver checks: chain, ``must_be_one``, sane maximum, the signer's signature.

    ``node_id`` is the node this direction belongs to (node_id_1 for direction 0).
    """
    if message.chain_hash != chain_hash:
        raise InvalidGossip("channel_update for another chain")
    if not message.message_flags & MESSAGE_FLAG_MUST_BE_ONE:
        raise InvalidGossip("channel_update without htlc_maximum_msat (must_be_one unset)")
    if message.htlc_maximum_msat < message.htlc_minimum_msat:
        raise InvalidGossip("channel_update htlc_maximum_msat below htlc_minimum_msat")
    if not verify(node_id, announcement_digest(message), message.signature):
        raise InvalidGossip(f"channel_update {message.scid} signature does not verify")


def sign_node_announcement(*, node_key: PrivateKey, timestamp: int, alias: str,
                           rgb_color: bytes = b"\x33\x99\xff", features: bytes = b"",
                           addresses: bytes = b"") -> NodeAnnouncement:
    """Our ``node_announcement``; the alias is UTF-8, at most 32 bytes, zero-padded."""
    alias_bytes = alias.encode()
    if len(alias_bytes) > 32:
        raise ValueError(f"alias {alias!r} is longer than 32 bytes")
    unsigned = NodeAnnouncement(
        signature=_ZERO_SIG, features=features, timestamp=timestamp,
        node_id=node_key.pubkey, rgb_color=rgb_color, alias=alias_bytes.ljust(32, b"\x00"),
        addresses=addresses)
    return _replace_signature(unsigned, node_key.sign(announcement_digest(unsigned)))


def check_node_announcement(message: NodeAnnouncement) -> None:
    """BOLT 7 receiver check: signed by the node it announces."""
    if not verify(message.node_id, announcement_digest(message), message.signature):
        raise InvalidGossip("node_announcement signature does not verify")


def encode_ipv4_address(host: str, port: int) -> bytes:
    """BOLT 7 address descriptor type 1 (IPv4): ``1 ‖ 4 bytes ‖ port``."""
    octets = bytes(int(part) for part in host.split("."))
    if len(octets) != 4:
        raise ValueError(f"not an IPv4 address: {host!r}")
    return b"\x01" + octets + port.to_bytes(2, "big")


def decode_ipv4_addresses(addresses: bytes) -> list[tuple[str, int]]:
    """The IPv4 descriptors of a node_announcement (others skipped; stops at an unknown type)."""
    sizes = {1: 6, 2: 18, 4: 37, 5: None}
    found: list[tuple[str, int]] = []
    pos = 0
    while pos < len(addresses):
        kind = addresses[pos]
        if kind == 5:  # DNS hostname: len ‖ name ‖ port
            if pos + 2 > len(addresses):
                break
            pos += 2 + addresses[pos + 1] + 2
            continue
        size = sizes.get(kind)
        if size is None or pos + 1 + size > len(addresses):
            break  # BOLT 7: an unknown type ends the parse; what came before stands
        if kind == 1:
            body = addresses[pos + 1: pos + 7]
            found.append((".".join(str(b) for b in body[:4]), int.from_bytes(body[4:], "big")))
        pos += 1 + size
    return found


_Signed = TypeVar("_Signed", ChannelUpdate, NodeAnnouncement)


def _replace_signature(message: _Signed, signature: bytes) -> _Signed:
    fields = {name: getattr(message, name) for name, _ in message.FIELDS}
    fields["signature"] = signature
    return type(message)(**fields)
