"""Gossip on the wire of a channel node: BOLT 7 types decode, and none of them fails a peer."""

from __future__ import annotations

import hashlib

import pytest

from channel.effects import Effects
from channel.gossip import (
    ChannelUpdate,
    GossipQuery,
    ShortChannelId,
    sign_channel_update,
)
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import MESSAGE_TYPES, decode_message, encode_message
from channel.payments import Payments
from channel.scripts import p2wpkh
from channel.state import ChannelConfig
from channel.wire import REGTEST_CHAIN_HASH


def test_every_bolt7_type_is_registered() -> None:
    """Types 256-259 and 265 decode to the gossip messages, 261-264 to ignorable queries."""
    names = {t: MESSAGE_TYPES[t].NAME for t in range(256, 266) if t != 260}
    assert names == {256: "channel_announcement", 257: "node_announcement",
                     258: "channel_update", 259: "announcement_signatures",
                     261: "query_short_channel_ids", 262: "reply_short_channel_ids_end",
                     263: "query_channel_range", 264: "reply_channel_range",
                     265: "gossip_timestamp_filter"}


@pytest.mark.parametrize("msg_type", [261, 262, 263, 264])
def test_gossip_queries_decode_whole_and_round_trip(msg_type: int) -> None:
    """A query (even 262/264 too) decodes, keeps its payload byte for byte, re-encodes."""
    raw = msg_type.to_bytes(2, "big") + bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c3")
    message = decode_message(raw)
    assert isinstance(message, GossipQuery) and message.TYPE == msg_type
    assert encode_message(message) == raw


def test_a_channel_update_from_a_peer_changes_nothing_and_fails_nothing() -> None:
    """The manager takes a signed channel_update (type 258, even) without error or effect."""
    secret = hashlib.sha256(b"bob").digest()
    node_id = PrivateKey(secret).pubkey
    manager = ChannelManager(node_id=node_id, config=ChannelConfig(),
                             sweep_script=p2wpkh(node_id),
                             payments=Payments(node_id=node_id, node_secret=secret))
    update = sign_channel_update(
        node_key=PrivateKey(hashlib.sha256(b"carol").digest()), chain_hash=REGTEST_CHAIN_HASH,
        short_channel_id=ShortChannelId(103, 1, 0), timestamp=1_700_000_000, direction=1,
        disabled=False, cltv_expiry_delta=40, htlc_minimum_msat=1, fee_base_msat=1000,
        fee_proportional_millionths=1, htlc_maximum_msat=1_000_000_000)
    decoded = decode_message(encode_message(update))
    assert isinstance(decoded, ChannelUpdate) and decoded == update
    fx = Effects()
    manager.handle_message(PrivateKey(hashlib.sha256(b"carol").digest()).pubkey, decoded, fx)
    assert fx.empty
