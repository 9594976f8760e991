"""BOLT 4 failure onions: the spec's error packet, wrapping per hop, attribution at the origin."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.errors import MalformedMessage
from channel.failure_onion import (
    FAILURE_PADDED_SIZE,
    DecryptedFailure,
    build_failure_onion,
    decrypt_failure_onion,
    wrap_failure_onion,
)
from channel.forwarding import (
    ChannelPolicy,
    IncomingHtlc,
    OutgoingChannel,
    decide_forward,
)
from channel.onion import (
    OnionRejected,
    PeeledForward,
    chacha20_xor,
    generate_key,
    onion_shared_secrets,
    peel_payment_onion,
)
from channel.onion_failures import (
    FeeInsufficient,
    IncorrectOrUnknownPaymentDetails,
    InvalidOnionHmac,
    TemporaryNodeFailure,
    UnknownFailure,
    malformed_failure,
)
from channel.route import Route, RouteHop, build_route_onion

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt4" / "onion-error-test.json").read_text()
)
HOPS = VECTOR["generate"]["hops"]
SECRETS = [bytes.fromhex(hop["hop_shared_secret"]) for hop in HOPS]
PAYMENT_HASH = hashlib.sha256(b"failure onion tests").digest()


def _key(index: int) -> bytes:
    return (index + 1).to_bytes(1, "big") * 32


def _route(length: int) -> Route:
    return Route(hops=tuple(
        RouteHop(node_id=coincurve.PrivateKey(_key(i)).public_key.format(compressed=True),
                 short_channel_id=(i + 1).to_bytes(8, "big"), fee_base_msat=1_000,
                 cltv_expiry_delta=40)
        for i in range(length)
    ))


def test_shared_secrets_and_keys_match_the_vector() -> None:
    """The origin's per-hop secrets and the ammag/um keys are the vector's, hop by hop."""
    secrets = onion_shared_secrets(
        session_key=bytes.fromhex(VECTOR["generate"]["session_key"]),
        node_ids=[bytes.fromhex(hop["pubkey"]) for hop in HOPS])
    assert secrets == SECRETS
    assert [generate_key(b"ammag", s).hex() for s in secrets] == [h["ammag_key"] for h in HOPS]
    assert generate_key(b"um", secrets[4]).hex() == HOPS[4]["um_key"]


def test_erring_node_packet_matches_the_vector_plaintext() -> None:
    """The final hop's packet decrypts to HMAC(um, payload) ‖ the vector's 260-byte payload."""
    packet = build_failure_onion(shared_secret=SECRETS[4], failure=TemporaryNodeFailure())
    plain = chacha20_xor(generate_key(b"ammag", SECRETS[4]), packet)
    payload = bytes.fromhex(HOPS[4]["payload"])
    assert plain[32:] == payload
    assert plain[:32] == hmac.digest(bytes.fromhex(HOPS[4]["um_key"]), payload, "sha256")
    assert len(packet) == 32 + 2 + 2 + 2 + 254 == 292


def test_wrapped_by_every_hop_gives_the_spec_errorpacket() -> None:
    """Hops 3, 2, 1, 0 each wrap the packet: the origin receives errorpacket byte for byte."""
    packet = build_failure_onion(shared_secret=SECRETS[4], failure=bytes.fromhex("2002"))
    for secret in reversed(SECRETS[:4]):
        packet = wrap_failure_onion(shared_secret=secret, packet=packet)
    assert packet.hex() == VECTOR["errorpacket"]


def test_origin_decrypts_the_spec_errorpacket_to_hop_4() -> None:
    """The origin names hop 4 and reads temporary_node_failure (0x2002)."""
    decrypted = decrypt_failure_onion(shared_secrets=SECRETS,
                                      packet=bytes.fromhex(VECTOR["errorpacket"]))
    assert decrypted == DecryptedFailure(hop_index=4, failure=TemporaryNodeFailure(),
                                         failure_message=bytes.fromhex("2002"))
    assert decrypted.failure.is_node_failure and not decrypted.failure.is_permanent


@pytest.mark.parametrize("failing_hop", [0, 7, 19])
def test_each_hop_of_a_20_hop_route_is_identified(failing_hop: int) -> None:
    """Whichever hop fails, after wrapping by every hop upstream the origin names it."""
    built = build_route_onion(_route(20), payment_hash=PAYMENT_HASH, payment_secret=bytes(32),
                              total_msat=1_000_000, final_cltv=800, session_key=_key(30))
    failure = IncorrectOrUnknownPaymentDetails(htlc_msat=1_000_000, height=700)
    packet = build_failure_onion(shared_secret=built.shared_secrets[failing_hop], failure=failure)
    for secret in reversed(built.shared_secrets[:failing_hop]):
        packet = wrap_failure_onion(shared_secret=secret, packet=packet)
    decrypted = decrypt_failure_onion(shared_secrets=built.shared_secrets, packet=packet)
    assert (decrypted.hop_index, decrypted.failure) == (failing_hop, failure)


def test_forwarder_failure_travels_back_through_peeled_secrets() -> None:
    """Three hops: hop 1 refuses a fee its policy does not cover; hop 0 wraps; origin reads it."""
    built = build_route_onion(_route(3), payment_hash=PAYMENT_HASH, payment_secret=bytes(32),
                              total_msat=500_000, final_cltv=800, session_key=_key(31))
    first = peel_payment_onion(onion=built.onion, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(first, PeeledForward)
    second = peel_payment_onion(onion=first.next_onion, node_key=_key(1),
                                payment_hash=PAYMENT_HASH)
    assert isinstance(second, PeeledForward)
    # hop 1's real policy charges more than the 1_000 msat the route assumed
    policy = ChannelPolicy(fee_base_msat=2_000, fee_proportional_millionths=0,
                           cltv_expiry_delta=40, htlc_minimum_msat=1, htlc_maximum_msat=10**9)
    incoming = IncomingHtlc(amount_msat=built.hop_amounts[1].amount_msat,
                            cltv_expiry=built.hop_amounts[1].cltv_expiry)
    decision = decide_forward(incoming=incoming, forward=second,
                              outgoing=OutgoingChannel(policy=policy), current_height=700)
    assert decision == FeeInsufficient(htlc_msat=501_000)
    packet = build_failure_onion(shared_secret=second.shared_secret, failure=decision)
    packet = wrap_failure_onion(shared_secret=first.shared_secret, packet=packet)
    decrypted = decrypt_failure_onion(shared_secrets=built.shared_secrets, packet=packet)
    assert (decrypted.hop_index, decrypted.failure) == (1, FeeInsufficient(htlc_msat=501_000))


def test_malformed_downstream_becomes_an_attributed_failure() -> None:
    """Hop 1 cannot read its layer: hop 0 turns the malformed reply into 0xc005 from hop 0."""
    built = build_route_onion(_route(2), payment_hash=PAYMENT_HASH, payment_secret=bytes(32),
                              total_msat=500_000, final_cltv=800, session_key=_key(32))
    first = peel_payment_onion(onion=built.onion, node_key=_key(0), payment_hash=PAYMENT_HASH)
    assert isinstance(first, PeeledForward)
    garbled = first.next_onion[:100] + bytes([first.next_onion[100] ^ 1]) + first.next_onion[101:]
    rejected = peel_payment_onion(onion=garbled, node_key=_key(1), payment_hash=PAYMENT_HASH)
    assert isinstance(rejected, OnionRejected) and rejected.is_malformed
    digest = hashlib.sha256(garbled).digest()
    assert rejected.failure == InvalidOnionHmac(sha256_of_onion=digest)
    # hop 0 receives update_fail_malformed_htlc(sha256_of_onion, 0xc005) and fails upstream
    upstream = malformed_failure(rejected.failure.failure_code, digest)
    packet = build_failure_onion(shared_secret=first.shared_secret, failure=upstream)
    decrypted = decrypt_failure_onion(shared_secrets=built.shared_secrets, packet=packet)
    assert (decrypted.hop_index, decrypted.failure) == (0, InvalidOnionHmac(sha256_of_onion=digest))


def test_malformed_without_badonion_is_refused() -> None:
    """update_fail_malformed_htlc with a code lacking BADONION cannot be passed upstream."""
    with pytest.raises(MalformedMessage, match="BADONION"):
        malformed_failure(0x4005, bytes(32))
    assert malformed_failure(0xC0FF, bytes(32)) == UnknownFailure(code=0xC0FF, data=bytes(32))


def test_long_failure_message_is_not_truncated() -> None:
    """A failuremsg over 256 bytes gets no padding and round-trips whole."""
    message = bytes.fromhex("400f") + bytes(12) + bytes(300)  # 0x400f + data + 300-byte TLV tail
    packet = build_failure_onion(shared_secret=SECRETS[0], failure=message)
    assert len(packet) == 32 + 2 + len(message) + 2
    decrypted = decrypt_failure_onion(shared_secrets=SECRETS[:1], packet=packet)
    assert decrypted.failure_message == message
    assert decrypted.failure == IncorrectOrUnknownPaymentDetails(htlc_msat=0, height=0)


def test_every_short_message_is_padded_to_the_same_size() -> None:
    """Different failures give packets of one size: 32 + 2 + 256 + 2 bytes."""
    sizes = {len(build_failure_onion(shared_secret=SECRETS[0], failure=failure))
             for failure in (TemporaryNodeFailure(), FeeInsufficient(htlc_msat=5),
                             IncorrectOrUnknownPaymentDetails(htlc_msat=1, height=2))}
    assert sizes == {32 + 2 + FAILURE_PADDED_SIZE + 2}


def test_garbled_failure_is_attributed_to_no_hop() -> None:
    """A bit flipped on the way back: no hop authenticates it, the origin says so."""
    packet = bytearray(bytes.fromhex(VECTOR["errorpacket"]))
    packet[100] ^= 0x01
    with pytest.raises(MalformedMessage, match="no hop of the 5-hop route"):
        decrypt_failure_onion(shared_secrets=SECRETS, packet=bytes(packet))


def test_authenticated_but_unreadable_failure_names_the_hop() -> None:
    """A failure_len beyond the packet, correctly MACed: an error that names the hop."""
    payload = (500).to_bytes(2, "big") + b"\x20\x02"
    packet = hmac.digest(generate_key(b"um", SECRETS[0]), payload, "sha256") + payload
    packet = wrap_failure_onion(shared_secret=SECRETS[0], packet=packet)
    with pytest.raises(MalformedMessage, match="hop 0 sent an unreadable failure"):
        decrypt_failure_onion(shared_secrets=SECRETS, packet=packet)
