"""BOLT 7 gossip messages: encodings, signed digests, and every receiver check."""

from __future__ import annotations

from typing import Any

import pytest

from channel.errors import InvalidGossip
from channel.gossip import (
    GOSSIP_MESSAGES,
    ChannelAnnouncement,
    ChannelUpdate,
    GossipTimestampFilter,
    ShortChannelId,
    check_channel_announcement,
    check_channel_update,
    check_funding_output,
    check_node_announcement,
    decode_ipv4_addresses,
    encode_ipv4_address,
    sign_announcement,
    sign_channel_update,
    sign_node_announcement,
    unsigned_channel_announcement,
    with_channel_announcement_signatures,
)
from channel.keys import FundingPubkey, PrivateKey
from channel.transactions import funding_script_pubkey
from channel.wire import REGTEST_CHAIN_HASH, decode_with

NODE_A = PrivateKey.from_int(0x11)
NODE_B = PrivateKey.from_int(0x22)
FUND_A = PrivateKey.from_int(0x33)
FUND_B = PrivateKey.from_int(0x44)
SCID = ShortChannelId(103, 1, 1)


def _announcement() -> ChannelAnnouncement:
    unsigned = unsigned_channel_announcement(
        chain_hash=REGTEST_CHAIN_HASH, short_channel_id=SCID, node_id_a=NODE_A.pubkey,
        node_id_b=NODE_B.pubkey, bitcoin_key_a=FUND_A.pubkey, bitcoin_key_b=FUND_B.pubkey)
    signed = unsigned
    for node, fund in ((NODE_A, FUND_A), (NODE_B, FUND_B)):
        node_sig, btc_sig = sign_announcement(unsigned, node_key=node, funding_key=fund)
        signed = with_channel_announcement_signatures(
            signed, node_id=node.pubkey, node_signature=node_sig, bitcoin_signature=btc_sig)
    return signed


def test_short_channel_id_matches_the_spec_example() -> None:
    """103x1x1 is 0000670000010001 on the wire and in text (BOLT 7 definition)."""
    assert bytes(SCID).hex() == "0000670000010001"
    assert ShortChannelId.from_bytes(bytes.fromhex("0000670000010001")) == SCID
    assert ShortChannelId.parse("103x1x1") == SCID and str(SCID) == "103x1x1"
    with pytest.raises(ValueError):
        ShortChannelId.parse("103:1:1")


def test_channel_announcement_signed_by_both_sides_verifies_and_roundtrips() -> None:
    """Both halves of announcement_signatures make a channel_announcement that passes."""
    ann = _announcement()
    check_channel_announcement(ann, chain_hash=REGTEST_CHAIN_HASH)
    raw = ann.TYPE.to_bytes(2, "big") + ann.encode()
    assert decode_with(GOSSIP_MESSAGES, raw) == ann
    assert ann.node_id_1 < ann.node_id_2


def test_channel_announcement_with_one_bad_signature_is_rejected() -> None:
    """Each of the four signatures is checked: one copied into another's slot fails there."""
    ann = _announcement()
    fields = {name: getattr(ann, name) for name, _ in ann.FIELDS}
    fields["bitcoin_signature_2"] = fields["bitcoin_signature_1"]
    forged = type(ann)(**fields)
    with pytest.raises(InvalidGossip, match="bitcoin_signature_2"):
        check_channel_announcement(forged, chain_hash=REGTEST_CHAIN_HASH)
    with pytest.raises(InvalidGossip, match="another chain"):
        check_channel_announcement(ann, chain_hash=bytes(32))


def test_funding_output_must_be_the_unspent_two_of_two() -> None:
    """The scid's output must be the P2WSH 2-of-2 of the announced bitcoin keys, unspent."""
    ann = _announcement()
    good = funding_script_pubkey(FundingPubkey(FUND_A.pubkey), FundingPubkey(FUND_B.pubkey))
    check_funding_output(ann, good, spent=False)
    with pytest.raises(InvalidGossip, match="already spent"):
        check_funding_output(ann, good, spent=True)
    with pytest.raises(InvalidGossip, match="no such output"):
        check_funding_output(ann, None, spent=False)
    with pytest.raises(InvalidGossip, match="not the 2-of-2"):
        check_funding_output(ann, b"\x00\x20" + bytes(32), spent=False)


def _update(**overrides: Any) -> ChannelUpdate:
    args: dict[str, Any] = dict(
        node_key=NODE_A, chain_hash=REGTEST_CHAIN_HASH, short_channel_id=SCID,
        timestamp=1_700_000_000, direction=0, disabled=False, cltv_expiry_delta=40,
        htlc_minimum_msat=1, fee_base_msat=1000, fee_proportional_millionths=100,
        htlc_maximum_msat=990_000_000)
    args.update(overrides)
    return sign_channel_update(**args)


def test_channel_update_signature_binds_every_field() -> None:
    """A signed channel_update verifies for its signer only, and any field change breaks it."""
    update = _update()
    assert update.message_flags == 1 and update.direction == 0 and not update.disabled
    check_channel_update(update, chain_hash=REGTEST_CHAIN_HASH, node_id=NODE_A.pubkey)
    with pytest.raises(InvalidGossip, match="does not verify"):
        check_channel_update(update, chain_hash=REGTEST_CHAIN_HASH, node_id=NODE_B.pubkey)
    fields = {name: getattr(update, name) for name, _ in update.FIELDS}
    fields["fee_base_msat"] = 0
    with pytest.raises(InvalidGossip, match="does not verify"):
        check_channel_update(ChannelUpdate(**fields), chain_hash=REGTEST_CHAIN_HASH,
                             node_id=NODE_A.pubkey)
    disabled = _update(disabled=True, direction=1, node_key=NODE_B)
    assert disabled.channel_flags == 3 and disabled.disabled and disabled.direction == 1


def test_channel_update_with_maximum_below_minimum_is_rejected() -> None:
    """htlc_maximum_msat below htlc_minimum_msat is refused before the signature is checked."""
    update = _update(htlc_minimum_msat=5000, htlc_maximum_msat=4999)
    with pytest.raises(InvalidGossip, match="below htlc_minimum_msat"):
        check_channel_update(update, chain_hash=REGTEST_CHAIN_HASH, node_id=NODE_A.pubkey)


def test_node_announcement_alias_addresses_and_signature() -> None:
    """A node_announcement carries a zero-padded alias and IPv4 addresses, signed by its node."""
    addresses = encode_ipv4_address("127.0.0.1", 9735)
    ann = sign_node_announcement(node_key=NODE_B, timestamp=5, alias="bob",
                                 addresses=addresses)
    check_node_announcement(ann)
    assert ann.alias == b"bob" + bytes(29) and ann.alias_text == "bob"
    assert decode_ipv4_addresses(ann.addresses) == [("127.0.0.1", 9735)]
    raw = ann.TYPE.to_bytes(2, "big") + ann.encode()
    assert decode_with(GOSSIP_MESSAGES, raw) == ann
    fields = {name: getattr(ann, name) for name, _ in ann.FIELDS}
    fields["timestamp"] = 6
    with pytest.raises(InvalidGossip):
        check_node_announcement(type(ann)(**fields))


def test_unknown_address_type_ends_the_parse_but_keeps_what_came_before() -> None:
    """BOLT 7: addresses after an unknown descriptor type are ignored, earlier ones kept."""
    blob = encode_ipv4_address("10.0.0.1", 1) + b"\x09\x01\x02" + encode_ipv4_address(
        "10.0.0.2", 2)
    assert decode_ipv4_addresses(blob) == [("10.0.0.1", 1)]


def test_gossip_timestamp_filter_window() -> None:
    """first_timestamp <= t < first_timestamp + timestamp_range admits t, nothing else."""
    flt = GossipTimestampFilter(chain_hash=REGTEST_CHAIN_HASH, first_timestamp=100,
                                timestamp_range=10)
    assert [flt.admits(t) for t in (99, 100, 109, 110)] == [False, True, True, False]
    opt_out = GossipTimestampFilter(chain_hash=REGTEST_CHAIN_HASH,
                                    first_timestamp=0xFFFFFFFF, timestamp_range=0)
    assert not opt_out.admits(0xFFFFFFFF)
