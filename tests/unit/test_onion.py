"""BOLT 4 onion packets: the spec's construction vector, single-hop payments and bad onions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.codec import decode_bigsize
from channel.errors import InvalidOnion, MalformedMessage
from channel.onion import (
    BADONION,
    INVALID_ONION_HMAC,
    INVALID_ONION_KEY,
    INVALID_ONION_PAYLOAD,
    INVALID_ONION_VERSION,
    ONION_PACKET_SIZE,
    HopPayload,
    OnionHop,
    PaymentData,
    build_onion,
    build_single_hop_onion,
    peel_onion,
)

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt4_onion.json").read_text()
)
SESSION_KEY = bytes.fromhex(VECTOR["generate"]["session_key"])
ASSOCIATED_DATA = bytes.fromhex(VECTOR["generate"]["associated_data"])

NODE_KEY = bytes.fromhex("b0" * 32)
NODE_ID = coincurve.PrivateKey(NODE_KEY).public_key.format(compressed=True)
PREIMAGE = bytes(range(32))
PAYMENT_HASH = hashlib.sha256(PREIMAGE).digest()
PAYMENT_SECRET = bytes(range(100, 132))


def _vector_hops() -> list[OnionHop]:
    hops = []
    for hop in VECTOR["generate"]["hops"]:
        framed = bytes.fromhex(hop["payload"])
        length, start = decode_bigsize(framed)
        assert len(framed) - start == length
        hops.append(OnionHop(node_id=bytes.fromhex(hop["pubkey"]), payload=framed[start:]))
    return hops


def _single_hop_onion(**overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "session_key": bytes.fromhex("a1" * 32), "node_id": NODE_ID,
        "amt_to_forward": 250_000_000, "outgoing_cltv_value": 600,
        "payment_secret": PAYMENT_SECRET, "total_msat": 250_000_000,
        "payment_hash": PAYMENT_HASH,
    } | overrides
    return build_single_hop_onion(**args)


def test_build_matches_spec_vector() -> None:
    """Five hops with a 275-byte final payload build the spec's packet byte for byte."""
    packet = build_onion(session_key=SESSION_KEY, hops=_vector_hops(),
                         associated_data=ASSOCIATED_DATA)
    assert packet.hex() == VECTOR["onion"]


def test_peel_spec_vector_hop_by_hop() -> None:
    """Each hop's key peels its layer: its payload, then the next packet; the last is final."""
    packet = bytes.fromhex(VECTOR["onion"])
    hops = _vector_hops()
    for index, node_key in enumerate(VECTOR["decode"]):
        peeled = peel_onion(onion=packet, node_key=bytes.fromhex(node_key),
                            associated_data=ASSOCIATED_DATA)
        assert peeled.raw_payload == hops[index].payload
        assert peeled.is_final is (index == len(hops) - 1)
        if peeled.next_onion is not None:
            assert len(peeled.next_onion) == ONION_PACKET_SIZE
            packet = peeled.next_onion
    assert peeled.payload == HopPayload(
        amt_to_forward=10_000, outgoing_cltv_value=1_000,
        payment_data=PaymentData(
            payment_secret=bytes.fromhex(
                "24a33562c54507a9334e79f0dc4f17d407e6d7c61f0e2f3d0d38599502f61704"),
            total_msat=10_000),
    )


def test_spec_vector_intermediate_payloads() -> None:
    """The first hop forwards 15000 msat at CLTV 1500 over short_channel_id 0x0x1."""
    peeled = peel_onion(onion=bytes.fromhex(VECTOR["onion"]),
                        node_key=bytes.fromhex(VECTOR["decode"][0]),
                        associated_data=ASSOCIATED_DATA)
    assert peeled.payload == HopPayload(amt_to_forward=15_000, outgoing_cltv_value=1_500,
                                        short_channel_id=(1).to_bytes(8, "big"))


def test_single_hop_payment_round_trip() -> None:
    """The payee peels a single-hop onion: final hop, amount, CLTV, secret and total."""
    onion = _single_hop_onion()
    assert len(onion) == ONION_PACKET_SIZE
    assert onion[0] == 0
    assert onion[1:34] == coincurve.PrivateKey(bytes.fromhex("a1" * 32)).public_key.format()
    peeled = peel_onion(onion=onion, node_key=NODE_KEY, associated_data=PAYMENT_HASH)
    assert peeled.is_final
    assert peeled.payload == HopPayload(
        amt_to_forward=250_000_000, outgoing_cltv_value=600,
        payment_data=PaymentData(payment_secret=PAYMENT_SECRET, total_msat=250_000_000),
    )
    # the payload is the minimal TLV stream: 02 04 0ee6b280 | 04 02 0258 | 08 24 secret 0ee6b280
    assert peeled.raw_payload.hex() == (
        "02040ee6b280" "04020258" "0824" + PAYMENT_SECRET.hex() + "0ee6b280"
    )
    expected_secret = coincurve.PrivateKey(NODE_KEY).ecdh(onion[1:34])
    assert peeled.shared_secret == expected_secret


def test_single_hop_onion_is_deterministic_in_the_session_key() -> None:
    """Same inputs give the same packet; another session key gives another packet."""
    assert _single_hop_onion() == _single_hop_onion()
    assert _single_hop_onion() != _single_hop_onion(session_key=bytes.fromhex("a2" * 32))


def test_wrong_payment_hash_fails_hmac() -> None:
    """Peeling with another payment_hash as associated data fails invalid_onion_hmac."""
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=_single_hop_onion(), node_key=NODE_KEY, associated_data=bytes(32))
    assert raised.value.failure_code == INVALID_ONION_HMAC
    assert raised.value.failure_code & BADONION


def test_wrong_node_key_fails_hmac() -> None:
    """An onion built for another node does not authenticate here."""
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=_single_hop_onion(), node_key=bytes.fromhex("b1" * 32),
                   associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_HMAC


@pytest.mark.parametrize("offset", [40, 700, 1333, 1340, 1365])
def test_any_flipped_bit_fails_hmac(offset: int) -> None:
    """Flipping a bit in the payloads or the HMAC is caught by the HMAC check."""
    onion = bytearray(_single_hop_onion())
    onion[offset] ^= 0x10
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=bytes(onion), node_key=NODE_KEY, associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_HMAC


def test_bad_version_and_bad_key() -> None:
    """Version 1 fails invalid_onion_version; an off-curve key fails invalid_onion_key."""
    onion = _single_hop_onion()
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=b"\x01" + onion[1:], node_key=NODE_KEY, associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_VERSION
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=onion[:1] + b"\x04" + onion[2:], node_key=NODE_KEY,
                   associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_KEY


def _onion_with_payload(payload: bytes) -> bytes:
    return build_onion(session_key=bytes.fromhex("a3" * 32),
                       hops=[OnionHop(node_id=NODE_ID, payload=payload)],
                       associated_data=PAYMENT_HASH)


@pytest.mark.parametrize(
    "payload_hex",
    [
        "04020258",                    # no amt_to_forward
        "020101",                      # no outgoing_cltv_value
        "0201010402025801",            # unknown type 1... after 4: not increasing
        "02010104020258" "0a0100",     # encrypted_recipient_data (10): blinding unsupported
        "0202000104020258",            # amt_to_forward not minimal
        "020101040202580810" + "00" * 16,  # payment_data too short
    ],
)
def test_bad_final_payload_fails_invalid_onion_payload(payload_hex: str) -> None:
    """A payload that authenticates but does not parse fails invalid_onion_payload (no BADONION)."""
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=_onion_with_payload(bytes.fromhex(payload_hex)), node_key=NODE_KEY,
                   associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_PAYLOAD
    assert not raised.value.failure_code & BADONION


def test_unknown_odd_payload_record_is_ignored() -> None:
    """An unknown odd record in the payload (e.g. custom type 65537) is skipped."""
    payload = bytes.fromhex("020101" "04020258" "fe00010001" "01" "ff")
    peeled = peel_onion(onion=_onion_with_payload(payload), node_key=NODE_KEY,
                        associated_data=PAYMENT_HASH)
    assert peeled.payload == HopPayload(amt_to_forward=1, outgoing_cltv_value=600)


def test_forwarding_payload_without_channel_fails() -> None:
    """A non-final hop whose payload lacks short_channel_id fails invalid_onion_payload."""
    other_key = bytes.fromhex("c0" * 32)
    other_id = coincurve.PrivateKey(other_key).public_key.format(compressed=True)
    hops = [OnionHop(node_id=NODE_ID, payload=bytes.fromhex("02010104020258")),
            OnionHop(node_id=other_id, payload=bytes.fromhex("02010104020258"))]
    onion = build_onion(session_key=SESSION_KEY, hops=hops, associated_data=PAYMENT_HASH)
    with pytest.raises(InvalidOnion) as raised:
        peel_onion(onion=onion, node_key=NODE_KEY, associated_data=PAYMENT_HASH)
    assert raised.value.failure_code == INVALID_ONION_PAYLOAD


def test_route_too_long_is_refused() -> None:
    """Payloads that do not fit in 1300 bytes cannot be built."""
    hop = OnionHop(node_id=NODE_ID, payload=b"\x01" * 1266)  # 3 + 1266 + 32 = 1301
    with pytest.raises(MalformedMessage):
        build_onion(session_key=SESSION_KEY, hops=[hop], associated_data=PAYMENT_HASH)
    fits = OnionHop(node_id=NODE_ID, payload=b"\x01" * 1265)  # exactly 1300
    assert len(build_onion(session_key=SESSION_KEY, hops=[fits],
                           associated_data=PAYMENT_HASH)) == ONION_PACKET_SIZE


def test_hop_payload_encode_decode() -> None:
    """HopPayload encodes to the minimal TLV stream and decodes back."""
    payload = HopPayload(amt_to_forward=0, outgoing_cltv_value=144,
                         short_channel_id=bytes(8), payment_metadata=b"meta")
    assert payload.encode().hex() == "0200" "040190" "06080000000000000000" "10046d657461"
    assert HopPayload.decode(payload.encode()) == payload
