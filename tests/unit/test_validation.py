"""BOLT 2 bounds on what a peer may ask: each unreasonable value refused with a clear reason.

Every refusal here is checked for its exception class (which decides the node's reaction:
``PeerProtocolError`` fails a channel that is not funded yet, ``PeerWarning`` only warns and
reconnects) and for the reason text the node sends to the peer.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from channel.errors import PeerProtocolError, PeerWarning, RejectedUpdate
from channel.keys import ChannelKeys
from channel.messages import (
    AcceptChannel,
    ChannelReestablish,
    OpenChannel,
    UpdateFee,
    decode_message,
    encode_message,
)
from channel.state import Channel, ChannelConfig, ChannelState, channel_to_record
from channel.types import CommitmentFormat, OutPoint
from channel.validation import MAX_FEERATE_PER_KW, MIN_FUNDING_SAT

SEED_A = b"\xa1" * 32
SEED_B = b"\xb2" * 32
CONFIG = ChannelConfig(to_self_delay=10)
FUNDING_SAT = 1_000_000
TEMP_ID = b"\x77" * 32
FUNDING_OUTPOINT = OutPoint(txid=bytes(range(32)), vout=1)


def _open(feerate_per_kw: int = 1000) -> tuple[Channel, OpenChannel]:
    return Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=feerate_per_kw, temporary_channel_id=TEMP_ID,
        commitment_format=CommitmentFormat.STATIC_REMOTEKEY)


def _accept(msg: OpenChannel, config: ChannelConfig = CONFIG) -> tuple[Channel, AcceptChannel]:
    return Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=config, msg=msg)


def _record(chan: Channel) -> str:
    return json.dumps(channel_to_record(chan), sort_keys=True)


OPEN_BOUNDS: list[tuple[dict[str, Any], str]] = [
    ({"htlc_minimum_msat": 2**64 - 1},
     "htlc_minimum_msat 18446744073709551615 msat exceeds 10% of the 1000000 sat channel"),
    ({"htlc_minimum_msat": 100_000_001}, "htlc_minimum_msat 100000001 msat exceeds 10%"),
    ({"to_self_delay": 2017}, "to_self_delay 2017 blocks exceeds our maximum 2016"),
    ({"to_self_delay": 0xFFFF}, "to_self_delay 65535 blocks exceeds our maximum 2016"),
    ({"max_accepted_htlcs": 484}, "max_accepted_htlcs 484 exceeds 483"),
    ({"max_accepted_htlcs": 0}, "max_accepted_htlcs 0 allows no payment"),
    ({"dust_limit_satoshis": 353}, "dust_limit_satoshis 353 sat is below 354 sat"),
    ({"dust_limit_satoshis": 10_001, "channel_reserve_satoshis": 20_000},
     "dust_limit_satoshis 10001 sat exceeds 10000 sat"),
    ({"dust_limit_satoshis": 2**64 - 1}, "dust_limit_satoshis 18446744073709551615 sat exceeds"),
    ({"dust_limit_satoshis": 5000, "channel_reserve_satoshis": 4999},
     "dust_limit_satoshis 5000 sat exceeds channel_reserve_satoshis 4999 sat"),
    ({"channel_reserve_satoshis": 200_001},
     "channel_reserve_satoshis 200001 sat exceeds 20% of the 1000000 sat channel"),
    ({"feerate_per_kw": 252}, "feerate_per_kw 252 is outside 253..1000000"),
    ({"feerate_per_kw": 1_000_001}, "feerate_per_kw 1000001 is outside 253..1000000"),
    ({"feerate_per_kw": 2**32 - 1}, "feerate_per_kw 4294967295 is outside"),
    ({"funding_satoshis": MIN_FUNDING_SAT - 1},
     "funding_satoshis 19999 sat is outside 20000..16777215 sat"),
    ({"funding_satoshis": 1000}, "funding_satoshis 1000 sat is outside"),
    ({"funding_satoshis": 2**24}, "funding_satoshis 16777216 sat is outside"),
    ({"push_msat": FUNDING_SAT * 1000 + 1},
     "push_msat 1000000001 msat exceeds funding_satoshis 1000000 sat"),
    ({"push_msat": 2**64 - 1}, "push_msat 18446744073709551615 msat exceeds"),
]


@pytest.mark.parametrize(("changes", "reason"), OPEN_BOUNDS,
                         ids=[next(iter(c)) + "=" + str(next(iter(c.values())))
                              for c, _ in OPEN_BOUNDS])
def test_open_channel_bound_is_refused_with_a_reason(changes: dict[str, Any],
                                                     reason: str) -> None:
    """Each unreasonable open_channel field: PeerProtocolError naming the field and the limit,
    also after a trip over the wire (the field fits its wire type)."""
    _, good = _open()
    msg = decode_message(encode_message(dataclasses.replace(good, **changes)))
    assert isinstance(msg, OpenChannel)
    with pytest.raises(PeerProtocolError) as info:
        _accept(msg)
    assert type(info.value) is PeerProtocolError
    assert str(info.value).startswith("open_channel refused: ")
    assert reason in str(info.value)


def test_open_channel_at_every_bound_is_accepted() -> None:
    """The limits themselves are accepted: the bounds are not off by one."""
    _, good = _open()
    accepted: list[dict[str, Any]] = [
        {"htlc_minimum_msat": 100_000_000}, {"to_self_delay": 2016},
        {"max_accepted_htlcs": 483}, {"max_accepted_htlcs": 1},
        {"dust_limit_satoshis": 354, "channel_reserve_satoshis": 354},
        {"dust_limit_satoshis": 10_000, "channel_reserve_satoshis": 10_000},
        {"channel_reserve_satoshis": 200_000}, {"feerate_per_kw": 253},
        {"funding_satoshis": MIN_FUNDING_SAT, "channel_reserve_satoshis": 546},
        {"push_msat": (FUNDING_SAT - 1000) * 1000}]
    for changes in accepted:
        chan, _ = _accept(dataclasses.replace(good, **changes))
        assert chan.state is ChannelState.AWAITING_FUNDING_CREATED, changes


def test_a_configured_to_self_delay_maximum_is_honoured() -> None:
    """``max_to_self_delay`` in our config replaces the 2016-block default."""
    _, good = _open()
    strict = ChannelConfig(to_self_delay=10, max_to_self_delay=144)
    _accept(dataclasses.replace(good, to_self_delay=144), strict)
    with pytest.raises(PeerProtocolError, match="to_self_delay 145 blocks exceeds our "
                                                "maximum 144"):
        _accept(dataclasses.replace(good, to_self_delay=145), strict)


ACCEPT_BOUNDS: list[tuple[dict[str, Any], str]] = [
    ({"htlc_minimum_msat": 2**64 - 1}, "htlc_minimum_msat 18446744073709551615 msat exceeds"),
    ({"to_self_delay": 2017}, "to_self_delay 2017 blocks exceeds our maximum 2016"),
    ({"max_accepted_htlcs": 484}, "max_accepted_htlcs 484 exceeds 483"),
    ({"dust_limit_satoshis": 353}, "dust_limit_satoshis 353 sat is below 354 sat"),
    ({"dust_limit_satoshis": 10_001, "channel_reserve_satoshis": 20_000},
     "dust_limit_satoshis 10001 sat exceeds 10000 sat"),
    ({"channel_reserve_satoshis": 200_001}, "channel_reserve_satoshis 200001 sat exceeds 20%"),
]


@pytest.mark.parametrize(("changes", "reason"), ACCEPT_BOUNDS,
                         ids=[next(iter(c)) + "=" + str(next(iter(c.values())))
                              for c, _ in ACCEPT_BOUNDS])
def test_accept_channel_bound_is_refused_with_a_reason(changes: dict[str, Any],
                                                       reason: str) -> None:
    """The opener applies the same bounds to accept_channel, and stays unchanged."""
    opener, open_msg = _open()
    _, good = _accept(open_msg)
    before = _record(opener)
    with pytest.raises(PeerProtocolError) as info:
        opener.on_accept_channel(dataclasses.replace(good, **changes))
    assert str(info.value).startswith("accept_channel refused: ")
    assert reason in str(info.value)
    assert _record(opener) == before


def _normal_pair(feerate_per_kw: int = 1000) -> tuple[Channel, Channel]:
    a, open_msg = _open(feerate_per_kw)
    b, accept = _accept(open_msg)
    a.on_accept_channel(accept)
    a.on_funding_signed(b.on_funding_created(a.funding_created(FUNDING_OUTPOINT)))
    b.on_channel_ready(a.funding_locked())
    a.on_channel_ready(b.funding_locked())
    return a, b


@pytest.mark.parametrize("feerate_per_kw", [37_500, 56_250])
def test_electrum_regtest_feerates_are_accepted(feerate_per_kw: int) -> None:
    """Electrum's regtest feerates (37,500 and 56,250 sat/kw) in open_channel and update_fee."""
    _, good = _open()
    chan, _ = _accept(dataclasses.replace(good, feerate_per_kw=feerate_per_kw))
    assert chan.state is ChannelState.AWAITING_FUNDING_CREATED
    a, b = _normal_pair(feerate_per_kw)
    b.on_update_fee(a.update_fee(feerate_per_kw))
    b.on_update_fee(a.update_fee(MAX_FEERATE_PER_KW // 10))
    a.on_revoke_and_ack(b.on_commitment_signed(a.sign_commitment()))
    b.on_revoke_and_ack(a.on_commitment_signed(b.sign_commitment()))
    assert a.holder_transactions().commitment.feerate_per_kw == MAX_FEERATE_PER_KW // 10


@pytest.mark.parametrize("feerate_per_kw", [0, 252, 1_000_001, 2**32 - 1])
def test_update_fee_out_of_bounds_is_a_warning_not_a_channel_failure(
        feerate_per_kw: int) -> None:
    """An absurd update_fee: PeerWarning (warn, reconnect) with the reason; never fails the
    funded channel; our own update_fee refuses the same values."""
    a, b = _normal_pair()
    before = _record(b)
    msg = UpdateFee(channel_id=a.channel_id or b"", feerate_per_kw=feerate_per_kw)
    with pytest.raises(PeerWarning, match=f"update_fee refused: feerate_per_kw "
                                          f"{feerate_per_kw} is outside 253..1000000"):
        b.on_update_fee(msg)
    assert _record(b) == before
    assert b.state is ChannelState.NORMAL
    with pytest.raises(RejectedUpdate, match=r"outside 253\.\.1000000"):
        a.update_fee(feerate_per_kw)


@pytest.mark.parametrize("field", ["next_revocation_number", "next_commitment_number"])
@pytest.mark.parametrize("value", [2**48 + 1, 2**63, 2**64 - 1])
def test_reestablish_with_an_impossible_number_is_a_protocol_error(field: str,
                                                                   value: int) -> None:
    """A commitment number no channel can reach (≥ 2^48 + 1, e.g. 2^63) with a non-zero
    secret: PeerProtocolError (error, fail the channel; BOLT 2), not a bare ValueError."""
    a, b = _normal_pair()
    a.on_disconnect()
    b.on_disconnect()
    good = b.channel_reestablish()
    changes: dict[str, Any] = {field: value, "your_last_per_commitment_secret": b"\x01" * 32}
    bad = dataclasses.replace(good, **changes)
    wire = decode_message(encode_message(bad))
    assert isinstance(wire, ChannelReestablish)
    before = _record(a)
    with pytest.raises(PeerProtocolError) as info:
        a.on_channel_reestablish(wire)
    assert type(info.value) is PeerProtocolError
    assert f"{field} {value} exceeds any commitment number" in str(info.value)
    assert _record(a) == before
    assert not a.lost_state
    assert [type(m).__name__ for m in a.on_channel_reestablish(good)] == ["ChannelReady"]
