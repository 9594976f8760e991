"""Multi-hop onions: the spec's packet, 20-hop routes built from policies, typed peeling."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.codec import decode_bigsize
from channel.errors import MalformedMessage
from channel.failure_onion import build_failure_onion, wrap_failure_onion
from channel.onion import (
    MAX_ROUTE_HOPS,
    ONION_PACKET_SIZE,
    HopPayload,
    OnionHop,
    OnionRejected,
    PaymentData,
    PeeledFinal,
    PeeledForward,
    build_onion,
    build_onion_with_secrets,
    onion_shared_secrets,
    peel_payment_onion,
)
from channel.onion_failures import (
    ExpiryTooSoon,
    FailureCode,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
)
from channel.route import (
    HopAmounts,
    Route,
    RouteHop,
    build_route_onion,
    format_short_channel_id,
    read_route_failure,
    route_amounts,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "bolt4"
ONION_VECTOR: dict[str, Any] = json.loads((VECTORS / "onion-test.json").read_text())
ERROR_VECTOR: dict[str, Any] = json.loads((VECTORS / "onion-error-test.json").read_text())

PREIMAGE = bytes(range(32))
PAYMENT_HASH = hashlib.sha256(PREIMAGE).digest()
PAYMENT_SECRET = bytes(range(200, 232))
SESSION_KEY = bytes.fromhex("5e" * 32)


def _key(index: int) -> bytes:
    return (index + 1).to_bytes(1, "big") * 32


def _node_id(index: int) -> bytes:
    return coincurve.PrivateKey(_key(index)).public_key.format(compressed=True)


def _scid(index: int) -> bytes:
    return (100 + index).to_bytes(3, "big") + (1).to_bytes(3, "big") + (0).to_bytes(2, "big")


def _route(length: int) -> Route:
    return Route(hops=tuple(
        RouteHop(node_id=_node_id(index), short_channel_id=_scid(index),
                 fee_base_msat=1_000, fee_proportional_millionths=100 * (index + 1),
                 cltv_expiry_delta=40 + index)
        for index in range(length)
    ))


def test_spec_vector_from_copied_file() -> None:
    """onion-test.json builds byte for byte; its hop secrets are the error file's."""
    hops = []
    for hop in ONION_VECTOR["generate"]["hops"]:
        framed = bytes.fromhex(hop["payload"])
        length, start = decode_bigsize(framed)
        assert len(framed) - start == length
        hops.append(OnionHop(node_id=bytes.fromhex(hop["pubkey"]), payload=framed[start:]))
    session_key = bytes.fromhex(ONION_VECTOR["generate"]["session_key"])
    packet, secrets = build_onion_with_secrets(
        session_key=session_key, hops=hops,
        associated_data=bytes.fromhex(ONION_VECTOR["generate"]["associated_data"]))
    assert packet.hex() == ONION_VECTOR["onion"]
    expected = [hop["hop_shared_secret"] for hop in ERROR_VECTOR["generate"]["hops"]]
    assert [secret.hex() for secret in secrets] == expected
    assert [s.hex() for s in onion_shared_secrets(
        session_key=session_key, node_ids=[hop.node_id for hop in hops])] == expected


def test_spec_vector_peels_to_typed_results() -> None:
    """Peeling the spec packet: four forwards over scids 1..4, then the final payment_data."""
    packet = bytes.fromhex(ONION_VECTOR["onion"])
    associated_data = bytes.fromhex(ONION_VECTOR["generate"]["associated_data"])
    forwards = []
    for node_key in ONION_VECTOR["decode"][:4]:
        peeled = peel_payment_onion(onion=packet, node_key=bytes.fromhex(node_key),
                                    payment_hash=associated_data)
        assert isinstance(peeled, PeeledForward)
        forwards.append((int.from_bytes(peeled.short_channel_id, "big"),
                         peeled.amt_to_forward, peeled.outgoing_cltv_value))
        packet = peeled.next_onion
    assert forwards == [(1, 15_000, 1_500), (2, 14_000, 1_400), (3, 12_500, 1_250),
                        (4, 10_000, 1_000)]
    final = peel_payment_onion(onion=packet, node_key=bytes.fromhex(ONION_VECTOR["decode"][4]),
                               payment_hash=associated_data)
    assert isinstance(final, PeeledFinal)
    assert (final.amt_to_forward, final.outgoing_cltv_value) == (10_000, 1_000)
    assert final.payment_data == PaymentData(
        payment_secret=bytes.fromhex(
            "24a33562c54507a9334e79f0dc4f17d407e6d7c61f0e2f3d0d38599502f61704"),
        total_msat=10_000)
    assert final.shared_secret.hex() == ERROR_VECTOR["generate"]["hops"][4]["hop_shared_secret"]


def test_route_amounts_apply_fees_and_deltas_backwards() -> None:
    """Three hops: each forwarder's fee is charged on what it forwards, deltas add up."""
    route = Route(hops=(
        RouteHop(node_id=_node_id(0), short_channel_id=_scid(0),
                 fee_base_msat=999_999, fee_proportional_millionths=999_999,
                 cltv_expiry_delta=999),  # our own channel: never charged
        RouteHop(node_id=_node_id(1), short_channel_id=_scid(1), fee_base_msat=1_000,
                 fee_proportional_millionths=1_000, cltv_expiry_delta=40),
        RouteHop(node_id=_node_id(2), short_channel_id=_scid(2), fee_base_msat=2_000,
                 fee_proportional_millionths=500, cltv_expiry_delta=144),
    ))
    amounts = route_amounts(route, amount_msat=10_000_000, final_cltv=518)
    # hop 1 forwards 10_000_000 over hop 2's channel: 2_000 + 10_000_000 * 500 // 1e6 = 7_000
    # hop 0 forwards 10_007_000 over hop 1's channel: 1_000 + 10_007 = 11_007
    assert amounts == [HopAmounts(amount_msat=10_018_007, cltv_expiry=702),
                       HopAmounts(amount_msat=10_007_000, cltv_expiry=662),
                       HopAmounts(amount_msat=10_000_000, cltv_expiry=518)]


def test_twenty_hop_route_builds_and_every_hop_peels() -> None:
    """A 20-hop route: each hop learns the next scid, amount and CLTV; the payee its secret."""
    route = _route(MAX_ROUTE_HOPS)
    built = build_route_onion(route, payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                              total_msat=5_000_000, final_cltv=1_000, session_key=SESSION_KEY,
                              payment_metadata=b"order 42")
    assert len(built.onion) == ONION_PACKET_SIZE
    assert built.short_channel_id == _scid(0)
    assert (built.amount_msat, built.cltv_expiry) == (
        built.hop_amounts[0].amount_msat, built.hop_amounts[0].cltv_expiry)
    assert built.cltv_expiry == 1_000 + sum(40 + index for index in range(1, 20))
    assert built.fee_msat == built.amount_msat - 5_000_000
    assert built.fee_msat == sum(
        1_000 + built.hop_amounts[index].amount_msat * 100 * (index + 1) // 1_000_000
        for index in range(1, 20))
    packet = built.onion
    for index in range(MAX_ROUTE_HOPS - 1):
        peeled = peel_payment_onion(onion=packet, node_key=_key(index), payment_hash=PAYMENT_HASH)
        assert isinstance(peeled, PeeledForward)
        assert peeled.shared_secret == built.shared_secrets[index]
        assert peeled.short_channel_id == _scid(index + 1)
        assert peeled.amt_to_forward == built.hop_amounts[index + 1].amount_msat
        assert peeled.outgoing_cltv_value == built.hop_amounts[index + 1].cltv_expiry
        packet = peeled.next_onion
    final = peel_payment_onion(onion=packet, node_key=_key(19), payment_hash=PAYMENT_HASH)
    assert isinstance(final, PeeledFinal)
    assert (final.amt_to_forward, final.outgoing_cltv_value) == (5_000_000, 1_000)
    assert final.payment_data == PaymentData(payment_secret=PAYMENT_SECRET, total_msat=5_000_000)
    assert final.payment_metadata == b"order 42"


def test_single_hop_route_matches_the_single_hop_builder() -> None:
    """A one-hop route pays the peer directly: no fee, the HTLC is the final payload."""
    from channel.onion import build_single_hop_onion

    route = Route(hops=(RouteHop(node_id=_node_id(0), short_channel_id=_scid(0),
                                 fee_base_msat=5, cltv_expiry_delta=9),))
    built = build_route_onion(route, payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                              total_msat=123_000, final_cltv=600, session_key=SESSION_KEY)
    assert (built.amount_msat, built.cltv_expiry, built.fee_msat) == (123_000, 600, 0)
    assert built.onion == build_single_hop_onion(
        session_key=SESSION_KEY, node_id=_node_id(0), amt_to_forward=123_000,
        outgoing_cltv_value=600, payment_secret=PAYMENT_SECRET, total_msat=123_000,
        payment_hash=PAYMENT_HASH)


def test_route_length_limits() -> None:
    """No route of 0 or 21 hops; a 20-hop route whose metadata overflows 1300 bytes is refused."""
    with pytest.raises(MalformedMessage):
        Route(hops=())
    with pytest.raises(MalformedMessage):
        Route(hops=_route(20).hops + _route(1).hops)
    with pytest.raises(MalformedMessage, match="exceed 1300"):
        build_route_onion(_route(20), payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                          total_msat=5_000_000, final_cltv=1_000, session_key=SESSION_KEY,
                          payment_metadata=bytes(300))


def _two_hop_onion() -> bytes:
    return build_route_onion(_route(2), payment_hash=PAYMENT_HASH,
                             payment_secret=PAYMENT_SECRET, total_msat=1_000,
                             final_cltv=700, session_key=SESSION_KEY).onion


def test_wrong_hmac_maps_to_malformed_invalid_onion_hmac() -> None:
    """A flipped payload bit: update_fail_malformed_htlc with 0xc005 and the packet's SHA256."""
    onion = bytearray(_two_hop_onion())
    onion[500] ^= 1
    rejected = peel_payment_onion(onion=bytes(onion), node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert rejected == OnionRejected(
        failure=InvalidOnionHmac(sha256_of_onion=hashlib.sha256(bytes(onion)).digest()),
        shared_secret=None, reason="onion HMAC mismatch")
    assert rejected.is_malformed
    assert rejected.failure.failure_code == 0xC005


def test_wrong_payment_hash_and_wrong_node_fail_hmac() -> None:
    """Another payment_hash, or the second hop's key on the first layer: invalid_onion_hmac."""
    onion = _two_hop_onion()
    for node_key, payment_hash in ((_key(0), bytes(32)), (_key(1), PAYMENT_HASH)):
        rejected = peel_payment_onion(onion=onion, node_key=node_key, payment_hash=payment_hash)
        assert isinstance(rejected, OnionRejected)
        assert rejected.failure == InvalidOnionHmac(sha256_of_onion=hashlib.sha256(onion).digest())


def test_bad_version_and_key_map_to_their_codes() -> None:
    """Version 1 → invalid_onion_version 0xc004; an off-curve key → invalid_onion_key 0xc006."""
    onion = _two_hop_onion()
    bad_version = b"\x01" + onion[1:]
    rejected = peel_payment_onion(onion=bad_version, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected)
    assert rejected.failure == InvalidOnionVersion(
        sha256_of_onion=hashlib.sha256(bad_version).digest())
    assert rejected.failure.failure_code == int(FailureCode.INVALID_ONION_VERSION) == 0xC004
    bad_key = onion[:1] + b"\x04" + onion[2:]
    rejected = peel_payment_onion(onion=bad_key, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected)
    assert rejected.failure == InvalidOnionKey(sha256_of_onion=hashlib.sha256(bad_key).digest())
    short = onion[:-1]
    rejected = peel_payment_onion(onion=short, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected)
    assert rejected.failure.failure_code == 0xC004


@pytest.mark.parametrize(("payload_hex", "tlv_type"), [
    ("04020258", 2),            # no amt_to_forward
    ("020101", 4),              # no outgoing_cltv_value
    ("02010104020258" "0a0100", 0),  # unknown even TLV 10 (route blinding)
])
def test_unusable_payload_maps_to_invalid_onion_payload(payload_hex: str, tlv_type: int) -> None:
    """A payload that authenticates but cannot be used: encrypted invalid_onion_payload."""
    onion = build_onion(session_key=SESSION_KEY,
                        hops=[OnionHop(node_id=_node_id(0), payload=bytes.fromhex(payload_hex))],
                        associated_data=PAYMENT_HASH)
    rejected = peel_payment_onion(onion=onion, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected)
    assert rejected.failure == InvalidOnionPayload(tlv_type=tlv_type, offset=1)
    assert not rejected.is_malformed
    assert rejected.shared_secret == coincurve.PrivateKey(_key(0)).ecdh(onion[1:34])


def test_forward_without_short_channel_id_names_type_6() -> None:
    """A non-final layer without short_channel_id fails invalid_onion_payload for type 6."""
    plain = HopPayload(amt_to_forward=1_000, outgoing_cltv_value=700).encode()
    onion = build_onion(session_key=SESSION_KEY,
                        hops=[OnionHop(node_id=_node_id(0), payload=plain),
                              OnionHop(node_id=_node_id(1), payload=plain)],
                        associated_data=PAYMENT_HASH)
    rejected = peel_payment_onion(onion=onion, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected)
    assert rejected.failure == InvalidOnionPayload(tlv_type=6, offset=1)


def test_short_channel_id_text_form() -> None:
    """BOLT 7: 0000670000010001 reads 103x1x1."""
    assert format_short_channel_id(bytes.fromhex("0000670000010001")) == "103x1x1"
    assert format_short_channel_id(_scid(2)) == "102x1x0"


def test_payer_report_names_the_failing_hop_and_channel() -> None:
    """A failure from hop 2 of 4 reads back as that node, the channel reaching it, the failure."""
    route = _route(4)
    built = build_route_onion(route, payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                              total_msat=1_000, final_cltv=900, session_key=SESSION_KEY)
    reason = build_failure_onion(shared_secret=built.shared_secrets[2], failure=ExpiryTooSoon())
    for secret in reversed(built.shared_secrets[:2]):
        reason = wrap_failure_onion(shared_secret=secret, packet=reason)
    failed = read_route_failure(route, built, reason)
    assert (failed.hop_index, failed.node_id, failed.short_channel_id) == (2, _node_id(2), _scid(2))
    assert failed.describe() == (
        f"hop 2 ({_node_id(2).hex()[:16]}…, reached over 102x1x0) failed: expiry_too_soon: "
        "the HTLC expires too close to the forwarding node's block height")
