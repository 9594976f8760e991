"""BOLT 8 handshake and message cipher against every vector in tests/vectors/bolt8.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.errors import HandshakeFailed, MalformedMessage
from channel.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    MAX_MESSAGE_SIZE,
    InitiatorHandshake,
    NoiseSession,
    ResponderHandshake,
    hkdf,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt8.json").read_text()
)
INITIATOR_TESTS = VECTORS["initiator_tests"]
RESPONDER_TESTS = VECTORS["responder_tests"]
MESSAGE_TEST = VECTORS["message_encryption_test"]
# The responder's static key is not in the initiator cases: it is the secret behind rs_pub.
RESPONDER_STATIC = bytes.fromhex(RESPONDER_TESTS[0]["ls_priv"])
RESPONDER_EPHEMERAL = bytes.fromhex(RESPONDER_TESTS[0]["e_priv"])
# What HandshakeFailed must say for each kind of spec failure, so a case cannot pass by
# failing for another reason.
REASONS = {
    "READ_FAILED": "bytes, want",
    "BAD_VERSION": "unknown handshake version",
    "BAD_PUBKEY": "not a compressed point",
    "BAD_TAG": "bad MAC",
    "BAD_CIPHERTEXT": "static key: bad MAC",
}


def _reason(case: dict[str, Any]) -> str:
    return REASONS[case["expected_error"].split()[0].split("_", 1)[1]]


def _initiator(case: dict[str, Any]) -> InitiatorHandshake:
    return InitiatorHandshake(
        local_static=bytes.fromhex(case["ls_priv"]),
        remote_static=bytes.fromhex(case["rs_pub"]),
        ephemeral=bytes.fromhex(case["e_priv"]),
    )


def _responder(case: dict[str, Any]) -> ResponderHandshake:
    return ResponderHandshake(
        local_static=bytes.fromhex(case["ls_priv"]), ephemeral=bytes.fromhex(case["e_priv"])
    )


def _session_pair() -> tuple[NoiseSession, NoiseSession]:
    case = INITIATOR_TESTS[0]
    initiator = _initiator(case)
    responder = ResponderHandshake(local_static=RESPONDER_STATIC, ephemeral=RESPONDER_EPHEMERAL)
    act_two = responder.read_act_one(initiator.write_act_one())
    act_three, initiator_session = initiator.read_act_two(act_two)
    return initiator_session, responder.read_act_three(act_three)


@pytest.mark.parametrize("case", INITIATOR_TESTS, ids=lambda c: c["name"])
def test_initiator_vectors(case: dict[str, Any]) -> None:
    """The initiator emits the spec's act one/three and keys, and fails every failure case."""
    handshake = _initiator(case)
    act_one = handshake.write_act_one()
    assert act_one.hex() == case["act_one_output"]
    assert len(act_one) == ACT_ONE_SIZE
    act_two = bytes.fromhex(case["act_two_input"])
    if case["expected_result"] == "OK":
        act_three, session = handshake.read_act_two(act_two)
        assert act_three.hex() == case["act_three_output"]
        assert len(act_three) == ACT_THREE_SIZE
        assert session.sending.key.hex() == case["final_keys"]["sk"]
        assert session.receiving.key.hex() == case["final_keys"]["rk"]
        assert session.remote_static.hex() == case["rs_pub"]
    else:
        with pytest.raises(HandshakeFailed, match=_reason(case)):
            handshake.read_act_two(act_two)


@pytest.mark.parametrize("case", RESPONDER_TESTS, ids=lambda c: c["name"])
def test_responder_vectors(case: dict[str, Any]) -> None:
    """The responder emits the spec's act two and keys, and fails every failure case."""
    handshake = _responder(case)
    act_one = bytes.fromhex(case["act_one_input"])
    if "act_two_output" not in case:  # the case fails at act one
        assert case["expected_result"] == "ERROR"
        with pytest.raises(HandshakeFailed, match=_reason(case)):
            handshake.read_act_one(act_one)
        return
    act_two = handshake.read_act_one(act_one)
    assert act_two.hex() == case["act_two_output"]
    assert len(act_two) == ACT_TWO_SIZE
    act_three = bytes.fromhex(case["act_three_input"])
    if case["expected_result"] == "OK":
        session = handshake.read_act_three(act_three)
        assert session.sending.key.hex() == case["final_keys"]["sk"]
        assert session.receiving.key.hex() == case["final_keys"]["rk"]
        initiator_pub = coincurve.PrivateKey(bytes.fromhex(INITIATOR_TESTS[0]["ls_priv"]))
        assert session.remote_static == initiator_pub.public_key.format(compressed=True)
    else:
        with pytest.raises(HandshakeFailed, match=_reason(case)):
            handshake.read_act_three(act_three)


def test_every_spec_failure_case_is_in_the_vectors() -> None:
    """The parametrized cases cover all 13 failure kinds of BOLT 8 Appendix A."""
    codes = sorted(
        c["expected_error"].split()[0]
        for c in INITIATOR_TESTS + RESPONDER_TESTS
        if c["expected_result"] == "ERROR"
    )
    assert codes == sorted([
        "ACT1_READ_FAILED", "ACT1_BAD_VERSION", "ACT1_BAD_PUBKEY", "ACT1_BAD_TAG",
        "ACT2_READ_FAILED", "ACT2_BAD_VERSION", "ACT2_BAD_PUBKEY", "ACT2_BAD_TAG",
        "ACT3_BAD_VERSION", "ACT3_READ_FAILED", "ACT3_BAD_CIPHERTEXT", "ACT3_BAD_PUBKEY",
        "ACT3_BAD_TAG",
    ])


def test_message_encryption_vectors_with_key_rotation() -> None:
    """Messages 0, 1, 500, 501, 1000, 1001 of "hello" match: keys rotate every 500 messages."""
    sender, _ = _session_pair()
    assert sender.sending.key.hex() == MESSAGE_TEST["sk"]
    assert sender.sending.chaining_key.hex() == MESSAGE_TEST["ck"]
    plaintext = bytes.fromhex(MESSAGE_TEST["plaintext_hex"])
    produced = {}
    for index in range(MESSAGE_TEST["messages_sent"] + 1):
        frame = sender.encrypt_message(plaintext)
        if str(index) in MESSAGE_TEST["outputs"]:
            produced[str(index)] = frame.hex()
    assert produced == MESSAGE_TEST["outputs"]


def test_receiver_decrypts_across_rotations() -> None:
    """The responder decrypts 1002 frames in order, rotating its receiving key in step."""
    sender, receiver = _session_pair()
    for index in range(1002):
        message = index.to_bytes(4, "big") * (index % 7)
        assert receiver.decrypt_message(sender.encrypt_message(message)) == message
    assert receiver.receiving.key == sender.sending.key
    assert receiver.receiving.nonce == sender.sending.nonce == 4  # 1002 msgs = 2004 nonces


def test_rotation_derivation_matches_trace() -> None:
    """The first rotation is HKDF(ck, sk) as written in the spec's trace comment."""
    new_ck, new_k = hkdf(bytes.fromhex(MESSAGE_TEST["ck"]), bytes.fromhex(MESSAGE_TEST["sk"]))
    assert new_ck.hex() == "cc2c6e467efc8067720c2d09c139d1f77731893aad1defa14f9bf3c48d3f1d31"
    assert new_k.hex() == "3fbdc101abd1132ca3a0ae34a669d8d9ba69a587e0bb4ddd59524541cf4813d8"


def test_frame_is_one_object_of_header_body_and_macs() -> None:
    """encrypt_message returns 18 + len + 16 bytes: the length header and body together."""
    sender, _ = _session_pair()
    assert len(sender.encrypt_message(b"x" * 300)) == 18 + 300 + 16
    assert len(sender.encrypt_message(b"")) == 18 + 16


def test_tampered_frame_fails_its_mac() -> None:
    """Flipping one bit of the body makes decryption raise MalformedMessage."""
    sender, receiver = _session_pair()
    frame = bytearray(sender.encrypt_message(b"hello"))
    frame[-1] ^= 1
    with pytest.raises(MalformedMessage):
        receiver.decrypt_message(bytes(frame))


def test_tampered_length_header_fails_its_mac() -> None:
    """Flipping one bit of the encrypted length makes decrypt_length raise MalformedMessage."""
    sender, receiver = _session_pair()
    frame = bytearray(sender.encrypt_message(b"hello"))
    frame[0] ^= 0x80
    with pytest.raises(MalformedMessage):
        receiver.decrypt_length(bytes(frame[:18]))


def test_oversized_message_is_refused() -> None:
    """65535 bytes encrypt, 65536 raise MalformedMessage before any nonce is used."""
    sender, receiver = _session_pair()
    big = bytes(MAX_MESSAGE_SIZE)
    assert receiver.decrypt_message(sender.encrypt_message(big)) == big
    with pytest.raises(MalformedMessage):
        sender.encrypt_message(bytes(MAX_MESSAGE_SIZE + 1))
    assert sender.sending.nonce == 2


def test_acts_out_of_order_fail() -> None:
    """Reading act two before writing act one, or act one twice, raises HandshakeFailed."""
    case = INITIATOR_TESTS[0]
    with pytest.raises(HandshakeFailed):
        _initiator(case).read_act_two(bytes.fromhex(case["act_two_input"]))
    responder = ResponderHandshake(local_static=RESPONDER_STATIC, ephemeral=RESPONDER_EPHEMERAL)
    act_one = _initiator(case).write_act_one()
    responder.read_act_one(act_one)
    with pytest.raises(HandshakeFailed):
        responder.read_act_one(act_one)


def test_failed_handshake_cannot_be_resumed() -> None:
    """After a bad act two, the correct act two is refused too: the state is dead."""
    case = INITIATOR_TESTS[0]
    handshake = _initiator(case)
    handshake.write_act_one()
    good = bytes.fromhex(case["act_two_input"])
    with pytest.raises(HandshakeFailed):
        handshake.read_act_two(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(HandshakeFailed):
        handshake.read_act_two(good)


def test_wrong_responder_key_fails_at_act_one() -> None:
    """An initiator dialing the wrong node id is rejected by the responder's MAC check."""
    case = INITIATOR_TESTS[0]
    wrong = coincurve.PrivateKey(b"\x33" * 32).public_key.format(compressed=True)
    initiator = InitiatorHandshake(
        local_static=bytes.fromhex(case["ls_priv"]), remote_static=wrong,
        ephemeral=bytes.fromhex(case["e_priv"]),
    )
    responder = ResponderHandshake(local_static=RESPONDER_STATIC, ephemeral=RESPONDER_EPHEMERAL)
    with pytest.raises(HandshakeFailed):
        responder.read_act_one(initiator.write_act_one())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_static": b"\x00" * 32},
        {"local_static": b"\x11" * 31},
        {"ephemeral": b"\xff" * 32},
        {"remote_static": b"\x02" + b"\x00" * 32},
        {"remote_static": b"\x04" + b"\x11" * 32},
    ],
    ids=["zero-secret", "short-secret", "secret-over-order", "off-curve", "bad-prefix"],
)
def test_bad_keys_are_refused(kwargs: dict[str, bytes]) -> None:
    """Invalid static/ephemeral secrets or a malformed remote key raise HandshakeFailed."""
    case = INITIATOR_TESTS[0]
    args = {
        "local_static": bytes.fromhex(case["ls_priv"]),
        "remote_static": bytes.fromhex(case["rs_pub"]),
        "ephemeral": bytes.fromhex(case["e_priv"]),
    } | kwargs
    with pytest.raises(HandshakeFailed):
        InitiatorHandshake(**args)
