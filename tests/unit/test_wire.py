"""BOLT 1 messages (init, error, warning, ping, pong), the even/odd rule and feature bits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from channel.errors import MalformedMessage, UnknownEvenMessage
from channel.messages import decode_message, encode_message
from channel.wire import (
    CHANNEL_TYPE_ANCHORS,
    CHANNEL_TYPE_STATIC_REMOTEKEY,
    MAX_FEATURE_BYTES,
    REGTEST_CHAIN_HASH,
    ErrorMessage,
    Feature,
    Features,
    Init,
    Ping,
    Pong,
    UnknownMessage,
    WarningMessage,
    check_compatible,
    incompatible_bits,
    negotiated,
    our_features,
    pong_for,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt1.json").read_text()
)
EXTENSION = VECTORS["message_extension_init"]


@pytest.mark.parametrize("case", EXTENSION["valid"], ids=lambda c: c["note"][:40])
def test_init_extension_valid(case: dict[str, Any]) -> None:
    """BOLT 1 Appendix C: these init messages decode (odd extension records are ignored)."""
    message = decode_message(bytes.fromhex(case["hex"]))
    assert message == Init(globalfeatures=b"", features=b"")
    assert encode_message(message).hex() == EXTENSION["base_init_hex"]


@pytest.mark.parametrize("case", EXTENSION["invalid"], ids=lambda c: c["note"][:40])
def test_init_extension_invalid(case: dict[str, Any]) -> None:
    """BOLT 1 Appendix C: a truncated, even-typed or duplicated extension fails the message."""
    with pytest.raises(MalformedMessage):
        decode_message(bytes.fromhex(case["hex"]))


def test_init_spec_example_bit_nine() -> None:
    """BOLT 1's example ``0010 0000 0002 0200`` is init with only var_onion_optin optional."""
    message = decode_message(bytes.fromhex("0010000000020200"))
    assert isinstance(message, Init)
    assert message.combined_features() == Features(bits=frozenset({9}))
    features = Features.of(optional=[Feature.VAR_ONION_OPTIN])
    assert encode_message(Init(globalfeatures=b"", features=features.to_bytes())).hex() == (
        "0010000000020200"
    )


def test_our_init_bytes() -> None:
    """Our init: minimal features (bits 1, 7, 8, 12, 14, 23, 45), networks = the regtest
    chain."""
    encoded = encode_message(Init.ours(our_features()))
    # bits 45 | 23 | 14, 12, 8 | 7, 1 -> 0x20 00 00 80 51 82 in six bytes
    assert encoded.hex() == (
        "0010" "0000" "0006" "200000805182"
        "01" "20" + REGTEST_CHAIN_HASH.hex()
    )
    decoded = decode_message(encoded)
    assert isinstance(decoded, Init)
    assert decoded.networks == (REGTEST_CHAIN_HASH,)
    assert decoded.supports_chain(REGTEST_CHAIN_HASH)
    assert not decoded.supports_chain(bytes(32))


def test_init_ors_global_and_local_features() -> None:
    """combined_features is the OR of globalfeatures and features, as BOLT 1 requires."""
    message = Init(globalfeatures=b"\x02", features=b"\x20\x00")
    assert message.combined_features().bits == frozenset({1, 13})


def test_init_networks_must_be_whole_hashes() -> None:
    """A networks record that is not a multiple of 32 bytes fails the message."""
    with pytest.raises(MalformedMessage):
        decode_message(bytes.fromhex("001000000000" "01" "1f" + "00" * 31))


def test_init_remote_addr_round_trip() -> None:
    """The odd remote_addr record survives a round trip next to networks."""
    message = Init(globalfeatures=b"", features=b"\x02\x00", networks=(REGTEST_CHAIN_HASH,),
                   remote_addr=bytes.fromhex("017f000001260d"))
    assert decode_message(encode_message(message)) == message


def test_error_and_warning_layout() -> None:
    """error is type 17 and warning type 1, both channel_id ‖ u16 len ‖ data."""
    channel_id = bytes(range(32))
    error = ErrorMessage.with_text(channel_id, "bad sig")
    assert encode_message(error) == b"\x00\x11" + channel_id + b"\x00\x07bad sig"
    warning = WarningMessage.with_text(bytes(32), "hi")
    assert encode_message(warning) == b"\x00\x01" + bytes(32) + b"\x00\x02hi"
    decoded = decode_message(encode_message(warning))
    assert isinstance(decoded, WarningMessage)
    assert not isinstance(decoded, ErrorMessage)
    assert decoded.text == "hi"


def test_error_text_escapes_binary() -> None:
    """Non-ASCII error data is shown escaped, not decoded blindly."""
    assert ErrorMessage(channel_id=bytes(32), data=b"ok\xff").text == "ok\\xff"


def test_error_data_length_mismatch_is_malformed() -> None:
    """An error whose len field overruns the message fails to decode."""
    with pytest.raises(MalformedMessage):
        decode_message(b"\x00\x11" + bytes(32) + b"\x00\x05abc")


def test_ping_pong() -> None:
    """ping asks num_pong_bytes; pong_for answers exactly that many zeros."""
    ping = Ping(num_pong_bytes=4, ignored=b"\x00" * 3)
    assert encode_message(ping).hex() == "0012" "0004" "0003" "000000"
    decoded = decode_message(encode_message(ping))
    assert decoded == ping
    assert isinstance(decoded, Ping)
    pong = pong_for(decoded)
    assert pong == Pong(ignored=bytes(4))
    assert encode_message(pong).hex() == "0013" "0004" "00000000"


def test_ping_asking_too_much_gets_no_pong() -> None:
    """BOLT 1: num_pong_bytes >= 65532 means no pong at all; 65531 still gets one."""
    assert pong_for(Ping(num_pong_bytes=65532)) is None
    answer = pong_for(Ping(num_pong_bytes=65531))
    assert answer is not None and len(answer.ignored) == 65531


def test_unknown_odd_message_is_returned_for_ignoring() -> None:
    """An unknown odd type decodes to UnknownMessage with its payload."""
    assert decode_message(b"\x80\x01hello") == UnknownMessage(type=0x8001, payload=b"hello")
    assert decode_message(b"\x00\x07\x00\x00") == UnknownMessage(type=7, payload=b"\x00\x00")


@pytest.mark.parametrize("msg_type", [0x0002, 0x0064, 0x8000, 0xFFFE])
def test_unknown_even_message_raises(msg_type: int) -> None:
    """An unknown even type raises UnknownEvenMessage (close the connection)."""
    with pytest.raises(UnknownEvenMessage):
        decode_message(msg_type.to_bytes(2, "big") + b"payload")


def test_unknown_message_encodes_with_its_type() -> None:
    """encode_message on an UnknownMessage writes its type then its payload."""
    assert encode_message(UnknownMessage(type=0x8000, payload=b"\x01")) == b"\x80\x00\x01"


def test_message_without_type_is_malformed() -> None:
    """Fewer than two bytes cannot carry a type."""
    for data in (b"", b"\x00"):
        with pytest.raises(MalformedMessage):
            decode_message(data)


# --- feature bits ------------------------------------------------------------------------


def test_features_bytes_round_trip_minimal() -> None:
    """to_bytes is minimal big-endian; from_bytes inverts it and ignores leading zeros."""
    features = Features(bits=frozenset({0, 9, 23}))
    assert features.to_bytes() == bytes.fromhex("800201")
    assert Features.from_bytes(bytes.fromhex("00800201")) == features
    assert Features().to_bytes() == b""


def test_channel_type_constants() -> None:
    """channel_type static_remotekey = 0x1000; anchors + static_remotekey = 0x401000."""
    assert CHANNEL_TYPE_STATIC_REMOTEKEY == bytes.fromhex("1000")
    assert CHANNEL_TYPE_ANCHORS == bytes.fromhex("401000")


def test_our_features_content() -> None:
    """Ours require 8/12/14 and offer 1, 23 (anchors) and 45."""
    assert our_features().bits == frozenset({1, 7, 8, 12, 14, 23, 45})
    assert our_features().requires(Feature.OPTION_STATIC_REMOTEKEY)
    assert our_features().offers(Feature.OPTION_CHANNEL_TYPE)
    assert not our_features().requires(Feature.OPTION_CHANNEL_TYPE)


def test_unknown_even_feature_is_incompatible() -> None:
    """A peer requiring a feature we do not offer is incompatible; optional ones are not."""
    ours = our_features()
    assert incompatible_bits(ours, Features(bits=frozenset({13, 15, 9, 101}))) == frozenset()
    assert incompatible_bits(ours, Features(bits=frozenset({100}))) == frozenset({100})
    # dual_fund compulsory: BOLT 9 knows it, we do not support it
    assert incompatible_bits(ours, Features(bits=frozenset({28, 12}))) == frozenset({28})
    with pytest.raises(UnknownEvenMessage):
        check_compatible(ours, Features(bits=frozenset({28})))
    check_compatible(ours, Features(bits=frozenset({12, 8, 14})))


def test_even_bit_we_offer_as_odd_is_compatible() -> None:
    """The peer requiring channel_type (44), which we offer as optional (45), is fine."""
    assert incompatible_bits(our_features(), Features(bits=frozenset({44}))) == frozenset()


def test_electrum_init_is_compatible_both_ways() -> None:
    """Electrum 4.8.3's init vector and ours accept each other (its rule: each of its even
    bits must be set by us, even or odd)."""
    electrum = Features(bits=frozenset({0, 5, 8, 12, 14, 17, 19, 22, 27, 44, 47, 151}))
    assert incompatible_bits(our_features(), electrum) == frozenset()
    ours = our_features().bits
    assert [b for b in electrum.bits if b % 2 == 0 and b not in ours and b + 1 not in ours] \
        == []
    assert negotiated(our_features(), electrum, Feature.OPTION_ANCHORS)


def test_missing_dependency_is_incompatible() -> None:
    """basic_mpp without payment_secret breaks a BOLT 9 dependency."""
    assert incompatible_bits(our_features(), Features(bits=frozenset({17}))) == frozenset({14})
    assert incompatible_bits(our_features(), Features(bits=frozenset({17, 15}))) == frozenset()


def test_negotiated() -> None:
    """Negotiated = both offer it, or we require it."""
    ours = our_features()
    assert negotiated(ours, Features(bits=frozenset({23})), Feature.OPTION_ANCHORS)
    assert not negotiated(ours, Features(), Feature.OPTION_ANCHORS)
    assert negotiated(ours, Features(), Feature.OPTION_STATIC_REMOTEKEY)


def test_features_reject_bad_bits() -> None:
    """Negative bit numbers are refused at construction."""
    with pytest.raises(MalformedMessage):
        Features(bits=frozenset({-1}))


def test_features_from_bytes_is_linear_for_a_65_kb_field() -> None:
    """A 65 kB feature field parses in well under 50 ms (it took 3.2 s when quadratic)."""
    field = bytearray(0xFFFF)
    field[0] = 0x80                  # bit 8 * 0xFFFF - 1: the highest a u16 length allows
    field[-1] = 0x03                 # bits 0 and 1
    field[0x8000] = 0x10
    timings = []
    for _ in range(3):           # the best of three: a busy machine may pause one run
        started = time.perf_counter()
        features = Features.from_bytes(bytes(field), max_bytes=0xFFFF)
        timings.append(time.perf_counter() - started)
    elapsed = min(timings)
    assert features.bits == frozenset({8 * 0xFFFF - 1, 0, 1, 8 * (0xFFFF - 1 - 0x8000) + 4})
    assert elapsed < 0.025, f"{elapsed * 1000:.1f} ms"
    dense = bytes([0xFF]) * MAX_FEATURE_BYTES
    assert Features.from_bytes(dense).bits == frozenset(range(8 * MAX_FEATURE_BYTES))


def test_an_init_with_a_65_kb_feature_field_is_refused_at_once() -> None:
    """A stranger's 65 kB ``features`` is refused (MalformedMessage) in well under 50 ms."""
    field = b"\x80" + bytes(0xFFFE)
    init = decode_message(encode_message(Init(globalfeatures=b"", features=field)))
    assert isinstance(init, Init)
    started = time.perf_counter()
    with pytest.raises(MalformedMessage, match="65535 bytes exceeds 1024"):
        init.combined_features()
    assert time.perf_counter() - started < 0.01
    ok = Init(globalfeatures=b"", features=b"\x00" * (MAX_FEATURE_BYTES - 2) + b"\x41\x00")
    assert ok.combined_features().bits == frozenset({8, 14})
