"""The BOLT 2 channel state machine, driven through two in-memory ``Channel``s.

Every commitment both sides hold is rebuilt from each side's view and compared, and every
signature is checked by running the spending witness through the test script interpreter in
``segwit_check`` (python-bitcoinlib 0.12 has no segwit ``VerifyScript``). Hostile messages and
our own invalid requests must raise the right ``channel.errors`` class and leave the channel's
record byte-for-byte unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from bitcoin.core import CTransaction
from segwit_check import ScriptFailed, verify_input

from channel.channel_params import HIGH_CLOSING_FEERATE_PER_KW
from channel.errors import (
    InvalidRevocation,
    InvalidSignature,
    InvalidStateTransition,
    LostState,
    MalformedMessage,
    PeerProtocolError,
    PeerWarning,
    RejectedUpdate,
    UnexpectedMessage,
)
from channel.keys import ChannelKeys, PrivateKey
from channel.messages import (
    AcceptChannel,
    ChannelReady,
    ChannelReestablish,
    ClosingSigned,
    CommitmentSigned,
    FeeRange,
    OpenChannel,
    RevokeAndAck,
    Shutdown,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
    decode_message,
    encode_message,
)
from channel.state import (
    Channel,
    ChannelConfig,
    ChannelState,
    CounterpartyCommitmentSigned,
    CounterpartySecretRevealed,
    HolderCommitmentSigned,
    channel_from_record,
    channel_to_record,
)
from channel.transactions import tx_with_witnesses
from channel.types import CommitmentFormat, OutPoint, Side

FORMATS = [CommitmentFormat.STATIC_REMOTEKEY, CommitmentFormat.ANCHORS]
SEED_A = b"\xa1" * 32
SEED_B = b"\xb2" * 32
CONFIG = ChannelConfig(to_self_delay=10)       # dust 546, reserve 1% = 10_000 sat
FUNDING_SAT = 1_000_000
FEERATE = 1000
FUNDING_OUTPOINT = OutPoint(txid=bytes(range(32)), vout=1)
TEMP_ID = b"\x77" * 32
CLTV = 600
ONION = bytes(1366)
SCRIPT_A = bytes.fromhex("0014" + "11" * 20)
SCRIPT_B = bytes.fromhex("0020" + "22" * 32)
BIG_MSAT = 20_000_000       # 20_000 sat: an output on every commitment in this file
DUST_MSAT = 500_000         # 500 sat: trimmed on every commitment (dust limit 546)
RESERVE_MSAT = 10_000_000   # 1% of FUNDING_SAT
ANCHOR_SAT = 330
ALIEN_KEY = PrivateKey(b"\x07" * 32)


# -- fee arithmetic, re-derived from BOLT 3 "Fee Calculation" (not from channel.transactions) --


def commitment_fee(fmt: CommitmentFormat, feerate: int, untrimmed: int) -> int:
    base = 1124 if fmt is CommitmentFormat.ANCHORS else 724
    return feerate * (base + 172 * untrimmed) // 1000


def opener_charge(fmt: CommitmentFormat, feerate: int, untrimmed: int) -> int:
    """What the opener's output loses on a commitment: fee plus, with anchors, both anchors."""
    anchors = 2 * ANCHOR_SAT if fmt is CommitmentFormat.ANCHORS else 0
    return commitment_fee(fmt, feerate, untrimmed) + anchors


def preimage(n: int) -> bytes:
    return hashlib.sha256(b"preimage" + n.to_bytes(4, "big")).digest()


def payment_hash(n: int) -> bytes:
    return hashlib.sha256(preimage(n)).digest()


# -- two channels in memory ------------------------------------------------------------------


def open_pair(fmt: CommitmentFormat, *, push_msat: int = 0, feerate: int = FEERATE,
              config_a: ChannelConfig = CONFIG, config_b: ChannelConfig = CONFIG,
              keys_b: ChannelKeys | None = None) -> tuple[Channel, Channel]:
    """A (opener) and B, funded and both channel_ready: state NORMAL."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=config_a, funding_sat=FUNDING_SAT,
        push_msat=push_msat, feerate_per_kw=feerate, temporary_channel_id=TEMP_ID,
        commitment_format=fmt)
    b, accept = Channel.accept_inbound(keys=keys_b or ChannelKeys.from_seed(SEED_B),
                                       config=config_b, msg=open_msg)
    a.on_accept_channel(accept)
    a.on_funding_signed(b.on_funding_created(a.funding_created(FUNDING_OUTPOINT)))
    b.on_channel_ready(a.funding_locked())
    a.on_channel_ready(b.funding_locked())
    return a, b


def round_trip(x: Channel, y: Channel) -> None:
    """x signs, y revokes."""
    x.on_revoke_and_ack(y.on_commitment_signed(x.sign_commitment()))


def flush(x: Channel, y: Channel) -> None:
    """commitment_signed / revoke_and_ack round trips until neither side has anything to sign."""
    while x.can_sign() or y.can_sign():
        if x.can_sign():
            round_trip(x, y)
        if y.can_sign():
            round_trip(y, x)


def add(x: Channel, y: Channel, amount_msat: int, n: int) -> int:
    """x offers y an HTLC for payment ``n``; returns its id."""
    msg = x.add_htlc(amount_msat=amount_msat, payment_hash=payment_hash(n), cltv_expiry=CLTV,
                     onion_routing_packet=ONION)
    y.on_update_add_htlc(msg)
    return msg.id


def settle(payee: Channel, payer: Channel) -> None:
    """The payee fulfills every HTLC it may settle (the preimages are ``preimage(n)``)."""
    by_hash = {payment_hash(n): preimage(n) for n in range(1000)}
    for h in payee.htlcs_to_settle():
        payer.on_update_fulfill_htlc(payee.fulfill_htlc(h.htlc_id, by_hash[h.payment_hash]))


def pay(x: Channel, y: Channel, amount_msat: int, n: int = 0) -> None:
    add(x, y, amount_msat, n)
    flush(x, y)
    settle(y, x)
    flush(y, x)


def state(chan: Channel) -> ChannelState:
    """``chan.state`` (a call, so mypy does not narrow it across the method calls that move it)."""
    return chan.state


def record(chan: Channel) -> str:
    return json.dumps(channel_to_record(chan), sort_keys=True)


def expect_unchanged(chan: Channel, error: type[Exception], call: Callable[[], Any], *,
                     exact: bool = True, match: str | None = None) -> None:
    """``call`` raises ``error`` (exactly that class unless ``exact=False``) and ``chan`` is
    left as it was, monitor updates included."""
    before = record(chan)
    updates = list(chan.monitor_updates)
    with pytest.raises(error, match=match) as info:
        call()
    if exact:
        assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert record(chan) == before
    assert chan.monitor_updates == updates


def assert_consistent(a: Channel, b: Channel) -> None:
    """Both sides agree on every commitment, and every signature each side holds verifies."""
    for x, y in ((a, b), (b, a)):
        assert x.counterparty_commitment_number == y.holder_commitment_number
        assert not x.awaiting_revoke_and_ack
        mine = x.holder_transactions()
        theirs = y._commitment(Side.COUNTERPARTY, x.holder_commitment_number)
        assert theirs.txid == mine.commitment.txid
        assert bytes(mine.commitment_tx.GetTxid()) == mine.commitment.txid
        assert x.balance_msat(Side.HOLDER) == y.balance_msat(Side.COUNTERPARTY)
        assert x.balance_msat(Side.COUNTERPARTY) == y.balance_msat(Side.HOLDER)
        check_holder_transactions(x)


def check_holder_transactions(x: Channel) -> None:
    """The finalized commitment spends the funding output; each HTLC tx spends its HTLC output."""
    txs = x.holder_transactions()
    ctx = txs.commitment
    assert verify_input(txs.commitment_tx, 0, x.funding_script_pubkey, FUNDING_SAT) == [1, 1]
    assert sum(o.nValue for o in txs.commitment_tx.vout) == FUNDING_SAT - ctx.fee_sat
    outputs = {o.vout: o for o in ctx.htlc_outputs}
    for htlc_tx in txs.htlc_txs:
        spent = htlc_tx.vin[0].prevout
        assert bytes(spent.hash) == ctx.txid
        out = outputs[spent.n]
        sighash_types = verify_input(htlc_tx, 0, bytes(ctx.tx.vout[spent.n].scriptPubKey),
                                     out.amount_sat)
        remote_type = 0x83 if x.commitment_format is CommitmentFormat.ANCHORS else 0x01
        assert sorted(sighash_types) == sorted([remote_type, 0x01])


def output_values(chan: Channel) -> list[int]:
    return sorted(o.nValue for o in chan.holder_transactions().commitment_tx.vout)


def expected_values(fmt: CommitmentFormat, *, opener_msat: int, other_msat: int,
                    htlc_sat: list[int], feerate: int = FEERATE) -> list[int]:
    """Output values of a commitment with these balances and untrimmed HTLC amounts."""
    opener_sat = opener_msat // 1000 - opener_charge(fmt, feerate, len(htlc_sat))
    other_sat = other_msat // 1000
    values = list(htlc_sat)
    values += [v for v in (opener_sat, other_sat) if v >= 546]
    if fmt is CommitmentFormat.ANCHORS:
        values += [ANCHOR_SAT, ANCHOR_SAT]
    return sorted(values)


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request: pytest.FixtureRequest) -> CommitmentFormat:
    return request.param  # type: ignore[no-any-return]


# -- opening --------------------------------------------------------------------------------


def test_open_to_normal_with_exact_balances(fmt: CommitmentFormat) -> None:
    """open → accept → funding_created/signed → channel_ready: NORMAL, push_msat exact."""
    push = 123_456_789
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT,
        push_msat=push, feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID,
        commitment_format=fmt)
    assert state(a) is ChannelState.AWAITING_ACCEPT
    assert open_msg.channel_type == (bytes.fromhex("401000") if fmt is CommitmentFormat.ANCHORS
                                     else bytes.fromhex("1000"))
    assert open_msg.upfront_shutdown_script == b""
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    assert state(b) is ChannelState.AWAITING_FUNDING_CREATED
    assert accept.channel_type == open_msg.channel_type
    assert b.commitment_format is fmt
    a.on_accept_channel(accept)
    assert state(a) is ChannelState.AWAITING_FUNDING_TX
    created = a.funding_created(FUNDING_OUTPOINT)
    assert state(a) is ChannelState.AWAITING_FUNDING_SIGNED
    signed = b.on_funding_created(created)
    assert state(b) is ChannelState.AWAITING_LOCKIN
    a.on_funding_signed(signed)
    assert state(a) is ChannelState.AWAITING_LOCKIN
    channel_id = bytearray(FUNDING_OUTPOINT.txid)
    channel_id[31] ^= FUNDING_OUTPOINT.vout
    assert a.channel_id == b.channel_id == bytes(channel_id)
    ready_a = a.funding_locked()
    assert state(a) is ChannelState.AWAITING_LOCKIN  # not before the peer's channel_ready
    b.on_channel_ready(ready_a)
    assert state(b) is ChannelState.AWAITING_LOCKIN
    a.on_channel_ready(b.funding_locked())
    assert state(a) is ChannelState.NORMAL and state(b) is ChannelState.NORMAL

    assert a.balance_msat() == FUNDING_SAT * 1000 - push
    assert a.balance_msat(Side.COUNTERPARTY) == b.balance_msat() == push
    for chan in (a, b):
        assert output_values(chan) == expected_values(
            fmt, opener_msat=FUNDING_SAT * 1000 - push, other_msat=push, htlc_sat=[])
    assert_consistent(a, b)
    # both sides' monitors learnt commitment 0 of each side
    kinds_a = [type(u) for u in a.drain_monitor_updates()]
    kinds_b = [type(u) for u in b.drain_monitor_updates()]
    assert kinds_a == [CounterpartyCommitmentSigned, HolderCommitmentSigned]
    assert kinds_b == [HolderCommitmentSigned, CounterpartyCommitmentSigned]
    assert a.drain_monitor_updates() == []


def test_channel_ready_retransmission_is_ignored(fmt: CommitmentFormat) -> None:
    """A second channel_ready (a reestablish retransmission) in NORMAL changes nothing."""
    a, b = open_pair(fmt)
    before = record(a)
    a.on_channel_ready(ChannelReady(channel_id=b.channel_id or b"",
                                    second_per_commitment_point=ALIEN_KEY.pubkey))
    assert record(a) == before


def test_open_rejects_our_own_bad_parameters() -> None:
    """open_outbound refuses funding below 20,000 sat or oversized, push above funding and a
    feerate below 253."""
    keys = ChannelKeys.from_seed(SEED_A)
    good: dict[str, Any] = {"keys": keys, "config": CONFIG, "funding_sat": FUNDING_SAT,
                            "push_msat": 0, "feerate_per_kw": FEERATE,
                            "temporary_channel_id": TEMP_ID}
    for change in ({"funding_sat": 0}, {"funding_sat": 19_999}, {"funding_sat": 2**24},
                   {"push_msat": FUNDING_SAT * 1000 + 1}, {"push_msat": -1},
                   {"feerate_per_kw": 252}):
        with pytest.raises(RejectedUpdate):
            Channel.open_outbound(**{**good, **change})
    chan, _ = Channel.open_outbound(**{**good, "push_msat": FUNDING_SAT * 1000})
    assert chan.log is not None and chan.log.base_balance_msat[Side.HOLDER] == 0


def _open_msg(fmt: CommitmentFormat = CommitmentFormat.STATIC_REMOTEKEY) -> OpenChannel:
    _, msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT,
        push_msat=0, feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID,
        commitment_format=fmt)
    return msg


def _bypass(msg: Any, **changes: Any) -> Any:
    """A copy of ``msg`` with fields set *without* the message layer's validation."""
    copy = dataclasses.replace(msg)
    for name, value in changes.items():
        object.__setattr__(copy, name, value)
    return copy


@pytest.mark.parametrize("changes", [
    {"chain_hash": b"\x6f" * 32},
    {"channel_type": None},
    {"channel_type": bytes.fromhex("02")},                 # bit 1: not a channel type we allow
    {"channel_type": bytes.fromhex("400000")},             # anchors without static_remotekey
    {"dust_limit_satoshis": 353},
    {"dust_limit_satoshis": 20_000, "channel_reserve_satoshis": 10_000},
    {"push_msat": FUNDING_SAT * 1000 + 1},
    {"to_self_delay": 2017},
    {"max_accepted_htlcs": 484},
    {"feerate_per_kw": 252},
    {"funding_satoshis": 2**24},
    {"push_msat": (FUNDING_SAT - 723) * 1000},             # 723 sat left, the fee is 724
    # 5000 sat at 5000 sat/kw: a 3620 sat fee leaves 690 + 690 sat, both within the reserve
    {"funding_satoshis": 5000, "push_msat": 690_000, "feerate_per_kw": 5000,
     "channel_reserve_satoshis": 1000},
], ids=["chain_hash", "no_channel_type", "bad_channel_type", "anchors_only", "dust_353",
        "dust_above_reserve", "push_above_funding", "to_self_delay", "max_accepted_htlcs",
        "feerate_low", "funding_too_large", "fee_unaffordable", "outputs_within_reserve"])
def test_open_channel_bad_parameters_are_refused(changes: dict[str, Any]) -> None:
    """accept_inbound fails the channel (PeerProtocolError) on each bad open_channel field."""
    msg = dataclasses.replace(_open_msg(), **changes)
    with pytest.raises(PeerProtocolError):
        Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG, msg=msg)


@pytest.mark.parametrize("name", ["funding_pubkey", "revocation_basepoint", "payment_basepoint",
                                  "delayed_payment_basepoint", "htlc_basepoint",
                                  "first_per_commitment_point"])
def test_open_channel_invalid_point_is_refused(name: str) -> None:
    """A point that is not on the curve: the wire layer refuses it, and so does the channel."""
    bad = b"\x02" + b"\x00" * 32      # x = 0 is not on secp256k1
    msg = _open_msg()
    wire = bytearray(encode_message(msg))
    offset = 2 + 32 + 32 + 8 * 6 + 4 + 2 + 2
    offset += 33 * ["funding_pubkey", "revocation_basepoint", "payment_basepoint",
                    "delayed_payment_basepoint", "htlc_basepoint",
                    "first_per_commitment_point"].index(name)
    assert wire[offset:offset + 33] == getattr(msg, name)
    wire[offset:offset + 33] = bad
    with pytest.raises(MalformedMessage):
        decode_message(bytes(wire))
    with pytest.raises(PeerProtocolError):
        Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                               msg=_bypass(msg, **{name: bad}))


def _accept_for(open_msg: OpenChannel) -> AcceptChannel:
    _, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    return accept


@pytest.mark.parametrize("changes", [
    {"temporary_channel_id": b"\x01" * 32},
    {"channel_type": bytes.fromhex("401000")},
    {"channel_type": None},
    {"minimum_depth": 101},
    {"channel_reserve_satoshis": 545},
    {"dust_limit_satoshis": 353},
    {"to_self_delay": 5000},
    {"dust_limit_satoshis": 10_001, "channel_reserve_satoshis": 20_000},   # ours is 10_000
], ids=["temp_id", "changed_type", "no_type", "depth", "reserve_below_our_dust", "dust_353",
        "to_self_delay", "dust_above_our_reserve"])
def test_accept_channel_bad_parameters_are_refused(changes: dict[str, Any]) -> None:
    """on_accept_channel fails on a bad accept_channel and leaves the opener unchanged."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID)
    accept = dataclasses.replace(_accept_for(open_msg), **changes)
    expect_unchanged(a, PeerProtocolError, lambda: a.on_accept_channel(accept), exact=False)
    assert state(a) is ChannelState.AWAITING_ACCEPT


def test_bad_funding_signatures_are_refused(fmt: CommitmentFormat) -> None:
    """funding_created / funding_signed with a bad signature: InvalidSignature, nothing changes."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID, commitment_format=fmt)
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    a.on_accept_channel(accept)
    created = a.funding_created(FUNDING_OUTPOINT)
    forged = dataclasses.replace(created, signature=ALIEN_KEY.sign(bytes(32)))
    expect_unchanged(b, InvalidSignature, lambda: b.on_funding_created(forged))
    moved = dataclasses.replace(created, funding_output_index=2)   # signed for another outpoint
    expect_unchanged(b, InvalidSignature, lambda: b.on_funding_created(moved))
    signed = b.on_funding_created(created)
    bad = dataclasses.replace(signed, signature=ALIEN_KEY.sign(bytes(32)))
    expect_unchanged(a, InvalidSignature, lambda: a.on_funding_signed(bad))
    a.on_funding_signed(signed)
    assert state(a) is ChannelState.AWAITING_LOCKIN


# -- payments ---------------------------------------------------------------------------------


def test_single_payment_step_by_step(fmt: CommitmentFormat) -> None:
    """One HTLC above dust through both round trips and its fulfill: every commitment exact."""
    a, b = open_pair(fmt)
    total = FUNDING_SAT * 1000
    htlc_id = add(a, b, BIG_MSAT, 1)
    assert htlc_id == 0
    assert a.has_unsigned_changes() and a.can_sign() and not b.can_sign()
    signed = a.sign_commitment()
    assert len(signed.htlc_signature) == 1
    assert signed.funding_txid == FUNDING_OUTPOINT.txid
    assert a.awaiting_revoke_and_ack and not a.can_sign()
    with pytest.raises(RejectedUpdate):
        a.sign_commitment()
    revoke = b.on_commitment_signed(signed)
    assert b.holder_commitment_number == 1
    assert revoke.per_commitment_secret == ChannelKeys.from_seed(SEED_B).per_commitment_secret(0)
    # B's commitment 1 holds the HTLC as a received output; A's commitment 0 does not yet
    assert output_values(b) == expected_values(fmt, opener_msat=total - BIG_MSAT, other_msat=0,
                                               htlc_sat=[BIG_MSAT // 1000])
    assert b.htlcs_to_settle() == []          # not irrevocably committed on A's side yet
    a.on_revoke_and_ack(revoke)
    assert not a.awaiting_revoke_and_ack and not a.can_sign() and b.can_sign()
    round_trip(b, a)
    assert a.holder_commitment_number == 1 and b.counterparty_commitment_number == 1
    assert output_values(a) == output_values(b)
    assert_consistent(a, b)
    assert [h.htlc_id for h in b.htlcs_to_settle()] == [0]
    assert [h.htlc_id for h in a.htlcs_in_flight()] == [0]
    assert a.balance_msat() == total - BIG_MSAT and b.balance_msat() == 0

    fulfill = b.fulfill_htlc(0, preimage(1))
    assert b.htlcs_to_settle() == []
    entry = a.on_update_fulfill_htlc(fulfill)
    assert entry.payment_preimage == preimage(1)
    flush(b, a)
    assert a.holder_commitment_number == 2 and b.holder_commitment_number == 2
    assert a.balance_msat() == total - BIG_MSAT and b.balance_msat() == BIG_MSAT
    assert output_values(a) == expected_values(fmt, opener_msat=total - BIG_MSAT,
                                               other_msat=BIG_MSAT, htlc_sat=[])
    assert_consistent(a, b)
    assert a.log is not None and b.log is not None
    assert a.log.htlcs == {} and b.log.htlcs == {}
    assert a.log.base_balance_msat == {Side.HOLDER: total - BIG_MSAT, Side.COUNTERPARTY: BIG_MSAT}
    assert list(a.counterparty_points) == [1, 2, 3]


def test_payments_both_ways_exact_balances(fmt: CommitmentFormat) -> None:
    """Payments A→B and B→A, above and below dust: balances exact after each, log empty."""
    a, b = open_pair(fmt)
    balance_a, balance_b = FUNDING_SAT * 1000, 0
    steps = [(a, b, BIG_MSAT), (b, a, 7_000_000), (a, b, DUST_MSAT), (b, a, 123_456),
             (a, b, 3_333_333), (b, a, 6_000_000)]
    for n, (payer, payee, amount) in enumerate(steps):
        pay(payer, payee, amount, n)
        if payer is a:
            balance_a, balance_b = balance_a - amount, balance_b + amount
        else:
            balance_a, balance_b = balance_a + amount, balance_b - amount
        assert (a.balance_msat(), b.balance_msat()) == (balance_a, balance_b)
        assert a.log is not None and a.log.htlcs == {}
        assert b.log is not None and b.log.htlcs == {}
        assert output_values(a) == expected_values(fmt, opener_msat=balance_a,
                                                   other_msat=balance_b, htlc_sat=[])
        assert_consistent(a, b)
    assert a.log is not None and a.log.next_htlc_id == {Side.HOLDER: 3, Side.COUNTERPARTY: 3}
    assert a.holder_commitment_number == b.holder_commitment_number == 12


def test_batched_htlcs_signatures_and_trimming(fmt: CommitmentFormat) -> None:
    """Many HTLCs per commitment_signed: one htlc_signature per untrimmed HTLC, dust trimmed."""
    a, b = open_pair(fmt, push_msat=300_000_000)
    amounts_ab = [BIG_MSAT, DUST_MSAT, 5_000_000, DUST_MSAT, 2_000_000]
    amounts_ba = [DUST_MSAT, 9_000_000, 1_500_000]
    for n, amount in enumerate(amounts_ab):
        add(a, b, amount, n)
    for n, amount in enumerate(amounts_ba, start=100):
        add(b, a, amount, n)
    untrimmed = sorted(x // 1000 for x in amounts_ab + amounts_ba if x != DUST_MSAT)
    sig_counts = []
    while a.can_sign() or b.can_sign():
        for x, y in ((a, b), (b, a)):
            if x.can_sign():
                signed = x.sign_commitment()
                sig_counts.append(len(signed.htlc_signature))
                x.on_revoke_and_ack(y.on_commitment_signed(signed))
    # A signs its 3 untrimmed adds; B's answer carries A's acked adds and its own 2; then all 5
    assert sig_counts == [3, 5, 5]
    balance_a = FUNDING_SAT * 1000 - 300_000_000 - sum(amounts_ab)
    balance_b = 300_000_000 - sum(amounts_ba)
    assert output_values(a) == expected_values(fmt, opener_msat=balance_a, other_msat=balance_b,
                                               htlc_sat=untrimmed)
    ctx = a.holder_transactions().commitment
    assert len(ctx.trimmed_htlcs) == 3
    base = commitment_fee(fmt, FEERATE, len(untrimmed))
    assert ctx.fee_sat == base + 3 * DUST_MSAT // 1000
    assert_consistent(a, b)
    # A's three HTLC-timeouts; no HTLC-success without a preimage
    assert len(a.holder_transactions().htlc_txs) == 3
    settle(b, a)
    settle(a, b)
    flush(a, b)
    flush(b, a)
    balance_a += sum(amounts_ba)
    balance_b += sum(amounts_ab)
    assert (a.balance_msat(), b.balance_msat()) == (balance_a, balance_b)
    assert a.log is not None and b.log is not None
    assert a.log.htlcs == {} and b.log.htlcs == {}
    assert_consistent(a, b)


def test_fail_htlc_returns_the_money(fmt: CommitmentFormat) -> None:
    """update_fail_htlc: after the round trips both balances are exactly as before the add."""
    a, b = open_pair(fmt, push_msat=50_000_000)
    add(a, b, BIG_MSAT, 1)
    add(b, a, 4_000_000, 2)
    flush(a, b)
    assert a.balance_msat() == FUNDING_SAT * 1000 - 50_000_000 - BIG_MSAT
    assert a.available_to_send_msat() < a.balance_msat() - RESERVE_MSAT
    fail = b.fail_htlc(0, b"no thanks")
    entry = a.on_update_fail_htlc(fail)
    assert entry.fail_reason == b"no thanks"
    flush(b, a)
    assert a.balance_msat() == FUNDING_SAT * 1000 - 50_000_000
    assert b.balance_msat() == 50_000_000 - 4_000_000      # B's own HTLC still in flight
    settle(a, b)
    flush(a, b)
    assert a.balance_msat() == FUNDING_SAT * 1000 - 50_000_000 + 4_000_000
    assert b.balance_msat() == 50_000_000 - 4_000_000
    assert a.log is not None and b.log is not None
    assert a.log.htlcs == {} and b.log.htlcs == {}
    assert_consistent(a, b)


def test_update_fee_changes_every_commitment_fee(fmt: CommitmentFormat) -> None:
    """update_fee: each side's next commitment uses the new feerate; fee and trimming exact."""
    a, b = open_pair(fmt, push_msat=100_000_000)
    add(a, b, BIG_MSAT, 1)
    add(a, b, 1_500_000, 2)     # 1500 sat: trimmed at 2000 sat/kw without anchors, kept with
    flush(a, b)
    balance_a = FUNDING_SAT * 1000 - 100_000_000 - BIG_MSAT - 1_500_000
    for chan in (a, b):
        ctx = chan.holder_transactions().commitment
        assert ctx.feerate_per_kw == FEERATE
        assert ctx.fee_sat == commitment_fee(fmt, FEERATE, 2)
    update = a.update_fee(2000)
    assert update.feerate_per_kw == 2000
    b.on_update_fee(update)
    assert a.can_sign() and not b.can_sign()
    round_trip(a, b)
    # B's new commitment has the new feerate; A's is unchanged until B signs
    assert b.holder_transactions().commitment.feerate_per_kw == 2000
    assert a.holder_transactions().commitment.feerate_per_kw == FEERATE
    flush(a, b)
    anchors = fmt is CommitmentFormat.ANCHORS
    untrimmed = [20_000, 1_500] if anchors else [20_000]
    trimmed_sat = 0 if anchors else 1_500
    for chan in (a, b):
        ctx = chan.holder_transactions().commitment
        assert ctx.feerate_per_kw == 2000
        assert ctx.fee_sat == commitment_fee(fmt, 2000, len(untrimmed)) + trimmed_sat
    assert output_values(a) == expected_values(fmt, opener_msat=balance_a,
                                               other_msat=100_000_000, htlc_sat=untrimmed,
                                               feerate=2000)
    assert_consistent(a, b)
    assert a.log is not None and a.log.base_feerate_per_kw == 2000 and a.log.fee_updates == []
    assert b.log is not None and b.log.base_feerate_per_kw == 2000 and b.log.fee_updates == []
    # and the fee counts for what A may still send: 2 HTLCs in flight, one more to add, and
    # BOLT 2's fee spike buffer: twice the feerate with one more HTLC still
    expected_spendable = (balance_a - opener_charge(fmt, 2 * 2000, 4) * 1000 - RESERVE_MSAT)
    assert a.available_to_send_msat() == expected_spendable


def test_unaffordable_fee_is_refused(fmt: CommitmentFormat) -> None:
    """A feerate the opener cannot pay: RejectedUpdate for us, PeerWarning (warn and
    reconnect, never a force-close) from the peer; both for a feerate out of bounds too."""
    a, b = open_pair(fmt, push_msat=900_000_000)
    expect_unchanged(a, RejectedUpdate, lambda: a.update_fee(200_000))
    forged = UpdateFee(channel_id=a.channel_id or b"", feerate_per_kw=200_000)
    expect_unchanged(b, PeerWarning, lambda: b.on_update_fee(forged), match="cannot afford")
    for feerate in (252, 1_000_001):
        bad = UpdateFee(channel_id=a.channel_id or b"", feerate_per_kw=feerate)
        expect_unchanged(b, PeerWarning, lambda: b.on_update_fee(bad),  # noqa: B023
                         match=f"feerate_per_kw {feerate} is outside 253..1000000")
        expect_unchanged(a, RejectedUpdate, lambda: a.update_fee(feerate))  # noqa: B023
    b.on_update_fee(a.update_fee(50_000))       # affordable: 90_000 sat pays 36_200 (+anchors)
    flush(a, b)
    assert a.holder_transactions().commitment.feerate_per_kw == 50_000
    assert_consistent(a, b)


def test_concurrent_updates_cross(fmt: CommitmentFormat) -> None:
    """Both sides add (and A changes the fee) at once, then both sign at once: all converge."""
    a, b = open_pair(fmt, push_msat=200_000_000)
    add_a = a.add_htlc(amount_msat=BIG_MSAT, payment_hash=payment_hash(1), cltv_expiry=CLTV,
                       onion_routing_packet=ONION)
    add_b = b.add_htlc(amount_msat=7_000_000, payment_hash=payment_hash(2), cltv_expiry=CLTV + 1,
                       onion_routing_packet=ONION)
    fee_a = a.update_fee(1500)
    b.on_update_add_htlc(add_a)
    b.on_update_fee(fee_a)
    a.on_update_add_htlc(add_b)
    signed_a, signed_b = a.sign_commitment(), b.sign_commitment()
    assert len(signed_a.htlc_signature) == len(signed_b.htlc_signature) == 1
    revoke_b = b.on_commitment_signed(signed_a)
    revoke_a = a.on_commitment_signed(signed_b)
    a.on_revoke_and_ack(revoke_b)
    b.on_revoke_and_ack(revoke_a)
    flush(a, b)
    assert a.holder_commitment_number == b.holder_commitment_number == 2
    for chan in (a, b):
        ctx = chan.holder_transactions().commitment
        assert sorted(o.amount_sat for o in ctx.htlc_outputs) == [7_000, 20_000]
        assert ctx.feerate_per_kw == 1500
    assert_consistent(a, b)
    settle(a, b)
    settle(b, a)
    flush(a, b)
    flush(b, a)
    assert a.balance_msat() == FUNDING_SAT * 1000 - 200_000_000 - BIG_MSAT + 7_000_000
    assert b.balance_msat() == 200_000_000 + BIG_MSAT - 7_000_000
    assert_consistent(a, b)
    assert a.log is not None and a.log.htlcs == {}


def test_removal_only_after_irrevocable_commitment(fmt: CommitmentFormat) -> None:
    """An HTLC cannot be fulfilled or failed until both sides irrevocably hold it."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(0, preimage(1)))
    early = UpdateFulfillHtlc(channel_id=a.channel_id or b"", id=0, payment_preimage=preimage(1))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fulfill_htlc(early))
    round_trip(a, b)                      # in B's commitment, not yet in A's
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(0, preimage(1)))
    expect_unchanged(b, RejectedUpdate, lambda: b.fail_htlc(0, b""))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fulfill_htlc(early))
    b_signed = b.sign_commitment()
    revoke_a = a.on_commitment_signed(b_signed)
    # A has both commitments revoked-up: from A's view the HTLC is removable now, but B still
    # waits for A's revoke_and_ack
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(0, preimage(1)))
    b.on_revoke_and_ack(revoke_a)
    a.on_update_fulfill_htlc(b.fulfill_htlc(0, preimage(1)))
    flush(b, a)
    assert b.balance_msat() == BIG_MSAT


# -- hostile input from the peer ----------------------------------------------------------------


def _forged_add(chan: Channel, *, htlc_id: int, amount_msat: int = BIG_MSAT,
                cltv_expiry: int = CLTV) -> UpdateAddHtlc:
    return UpdateAddHtlc(channel_id=chan.channel_id or b"", id=htlc_id, amount_msat=amount_msat,
                         payment_hash=payment_hash(htlc_id), cltv_expiry=cltv_expiry,
                         onion_routing_packet=ONION)


def test_bad_commitment_signature(fmt: CommitmentFormat) -> None:
    """commitment_signed whose signature is not over our next commitment: InvalidSignature."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    signed = a.sign_commitment()
    forged = dataclasses.replace(signed, signature=ALIEN_KEY.sign(bytes(32)))
    expect_unchanged(b, InvalidSignature, lambda: b.on_commitment_signed(forged))
    # the peer's key, but the commitment without the HTLC (its previous one, renumbered)
    stale = dataclasses.replace(signed, signature=b.holder_commitment_signature)
    expect_unchanged(b, InvalidSignature, lambda: b.on_commitment_signed(stale))
    a.on_revoke_and_ack(b.on_commitment_signed(signed))   # the real one still works
    flush(a, b)
    assert_consistent(a, b)


def test_bad_htlc_signature(fmt: CommitmentFormat) -> None:
    """commitment_signed with one wrong htlc_signature: InvalidSignature, channel unchanged."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    add(a, b, 5_000_000, 2)
    signed = a.sign_commitment()
    assert len(signed.htlc_signature) == 2
    sigs = signed.htlc_signature
    swapped = dataclasses.replace(signed, htlc_signature=(sigs[1], sigs[0]))
    expect_unchanged(b, InvalidSignature, lambda: b.on_commitment_signed(swapped))
    alien = dataclasses.replace(signed, htlc_signature=(sigs[0], ALIEN_KEY.sign(bytes(32))))
    expect_unchanged(b, InvalidSignature, lambda: b.on_commitment_signed(alien))
    b.on_commitment_signed(signed)


def test_wrong_number_of_htlc_signatures(fmt: CommitmentFormat) -> None:
    """num_htlcs different from the number of HTLC outputs: PeerProtocolError."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    add(a, b, DUST_MSAT, 2)            # trimmed: no signature for it
    signed = a.sign_commitment()
    assert len(signed.htlc_signature) == 1
    for sigs in ((), (*signed.htlc_signature, signed.htlc_signature[0])):
        bad = dataclasses.replace(signed, htlc_signature=sigs)
        expect_unchanged(b, PeerProtocolError, lambda: b.on_commitment_signed(bad))  # noqa: B023


def test_commitment_signed_in_wrong_state() -> None:
    """commitment_signed before the channel is NORMAL: UnexpectedMessage (a peer fault)."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID)
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    a.on_accept_channel(accept)
    a.on_funding_signed(b.on_funding_created(a.funding_created(FUNDING_OUTPOINT)))
    msg = CommitmentSigned(channel_id=a.channel_id or b"", signature=ALIEN_KEY.sign(bytes(32)),
                           htlc_signature=())
    expect_unchanged(a, UnexpectedMessage, lambda: a.on_commitment_signed(msg))
    expect_unchanged(a, RejectedUpdate, lambda: a.sign_commitment())


def test_revoke_and_ack_with_wrong_secret(fmt: CommitmentFormat) -> None:
    """revoke_and_ack whose secret does not open the revoked commitment: InvalidRevocation."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    revoke = b.on_commitment_signed(a.sign_commitment())
    keys_b = ChannelKeys.from_seed(SEED_B)
    for secret in (ALIEN_KEY.secret, keys_b.per_commitment_secret(1), bytes(32), b"\xff" * 32):
        bad = dataclasses.replace(revoke, per_commitment_secret=secret)
        expect_unchanged(a, InvalidRevocation, lambda: a.on_revoke_and_ack(bad))  # noqa: B023
    bad_point = _bypass(revoke, next_per_commitment_point=b"\x02" + bytes(32))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_revoke_and_ack(bad_point))
    a.on_revoke_and_ack(revoke)
    assert a.counterparty_secrets.get_secret_for_commitment(0) == \
        keys_b.per_commitment_secret(0)
    assert isinstance(a.monitor_updates[-1], CounterpartySecretRevealed)


class _NotAShachain(ChannelKeys):
    """Hostile keys: per-commitment secrets that do not come from one shachain seed."""

    def per_commitment_secret(self, commitment_number: int) -> bytes:
        return hashlib.sha256(b"unrelated" + commitment_number.to_bytes(8, "big")).digest()


def test_revoke_and_ack_that_breaks_the_shachain(fmt: CommitmentFormat) -> None:
    """Secrets that match the points but not one shachain: the second one is refused."""
    honest = ChannelKeys.from_seed(SEED_B)
    hostile = _NotAShachain(**{f.name: getattr(honest, f.name)
                               for f in dataclasses.fields(ChannelKeys)})
    a, b = open_pair(fmt, keys_b=hostile)
    add(a, b, BIG_MSAT, 1)
    round_trip(a, b)           # B reveals its secret 0: nothing to check it against yet
    round_trip(b, a)
    settle(b, a)
    round_trip(b, a)
    revoke = b.on_commitment_signed(a.sign_commitment())   # reveals secret 1
    assert revoke.per_commitment_secret == hostile.per_commitment_secret(1)
    expect_unchanged(a, InvalidRevocation, lambda: a.on_revoke_and_ack(revoke),
                     match="does not derive")


def test_revoke_and_ack_without_pending_commitment(fmt: CommitmentFormat) -> None:
    """revoke_and_ack when we signed nothing (or a replay of one): UnexpectedMessage."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    revoke = b.on_commitment_signed(a.sign_commitment())
    a.on_revoke_and_ack(revoke)
    expect_unchanged(a, UnexpectedMessage, lambda: a.on_revoke_and_ack(revoke))
    fresh, _ = open_pair(fmt)
    expect_unchanged(fresh, UnexpectedMessage, lambda: fresh.on_revoke_and_ack(revoke))


def test_update_add_htlc_with_wrong_id(fmt: CommitmentFormat) -> None:
    """HTLC ids must be 0, 1, 2 ... from the peer: a gap or a repeat is a PeerProtocolError."""
    a, b = open_pair(fmt)
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(_forged_add(a, htlc_id=1)))
    b.on_update_add_htlc(_forged_add(a, htlc_id=0))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(_forged_add(a, htlc_id=0)))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(_forged_add(a, htlc_id=2)))
    b.on_update_add_htlc(_forged_add(a, htlc_id=1))


def test_update_add_htlc_over_balance_and_reserve(fmt: CommitmentFormat) -> None:
    """The peer may offer exactly its balance minus our reserve (and, as opener, the fee)."""
    push = 50_000_000
    # B (not the opener) offers A: balance - reserve
    a, b = open_pair(fmt, push_msat=push)
    limit_b = push - RESERVE_MSAT
    over = _forged_add(b, htlc_id=0, amount_msat=limit_b + 1)
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_add_htlc(over))
    a.on_update_add_htlc(_forged_add(b, htlc_id=0, amount_msat=limit_b))
    # A (the opener) offers B: balance - reserve - commitment fee with one more HTLC (+ anchors)
    a, b = open_pair(fmt, push_msat=push)
    limit_a = FUNDING_SAT * 1000 - push - RESERVE_MSAT - opener_charge(fmt, FEERATE, 1) * 1000
    # A itself keeps BOLT 2's fee spike buffer (twice the feerate, one more HTLC); B does not
    # demand it: the buffer is the sender's prudence, not a rule the receiver enforces
    assert a.available_to_send_msat() == \
        limit_a + (opener_charge(fmt, FEERATE, 1) - opener_charge(fmt, 2 * FEERATE, 2)) * 1000
    over = _forged_add(a, htlc_id=0, amount_msat=limit_a + 1)
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(over))
    b.on_update_add_htlc(_forged_add(a, htlc_id=0, amount_msat=limit_a))
    # a second HTLC may not spend what the first one already took
    expect_unchanged(b, PeerProtocolError,
                     lambda: b.on_update_add_htlc(_forged_add(a, htlc_id=1, amount_msat=1000)))


def test_update_add_htlc_limits() -> None:
    """0 msat, below htlc_minimum_msat, too many HTLCs, too much in flight, bad cltv: refused."""
    fmt = CommitmentFormat.STATIC_REMOTEKEY
    strict = ChannelConfig(to_self_delay=10, htlc_minimum_msat=1000, max_accepted_htlcs=3,
                           max_htlc_value_in_flight_msat=30_000_000)
    a, b = open_pair(fmt, config_b=strict)
    for amount in (0, 999):
        bad = _forged_add(a, htlc_id=0, amount_msat=amount)
        expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(bad))  # noqa: B023
    for cltv in (0, 500_000_000, 2**32 - 1):
        bad = _forged_add(a, htlc_id=0, cltv_expiry=cltv)
        expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(bad))  # noqa: B023
    b.on_update_add_htlc(_forged_add(a, htlc_id=0, amount_msat=1000, cltv_expiry=499_999_999))
    b.on_update_add_htlc(_forged_add(a, htlc_id=1, amount_msat=BIG_MSAT))
    over_flight = _forged_add(a, htlc_id=2, amount_msat=30_000_000 - BIG_MSAT - 1000 + 1)
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(over_flight))
    b.on_update_add_htlc(_forged_add(a, htlc_id=2, amount_msat=30_000_000 - BIG_MSAT - 1000))
    fourth = _forged_add(a, htlc_id=3, amount_msat=1000)
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(fourth))


def test_fulfill_from_peer_checks_preimage_and_id(fmt: CommitmentFormat) -> None:
    """update_fulfill_htlc with a wrong preimage or an unknown id: PeerProtocolError."""
    a, b = open_pair(fmt)
    add(a, b, BIG_MSAT, 1)
    flush(a, b)
    cid = a.channel_id or b""
    wrong = UpdateFulfillHtlc(channel_id=cid, id=0, payment_preimage=preimage(2))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fulfill_htlc(wrong))
    unknown = UpdateFulfillHtlc(channel_id=cid, id=1, payment_preimage=preimage(1))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fulfill_htlc(unknown))
    expect_unchanged(a, PeerProtocolError,
                     lambda: a.on_update_fail_htlc(UpdateFailHtlc(channel_id=cid, id=5,
                                                                  reason=b"")))
    a.on_update_fulfill_htlc(b.fulfill_htlc(0, preimage(1)))
    again = UpdateFulfillHtlc(channel_id=cid, id=0, payment_preimage=preimage(1))
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fulfill_htlc(again))
    fail = UpdateFailHtlc(channel_id=cid, id=0, reason=b"")
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fail_htlc(fail))


def test_update_fee_from_the_non_opener() -> None:
    """update_fee sent by the side that did not open: PeerProtocolError; and we refuse to send."""
    a, b = open_pair(CommitmentFormat.STATIC_REMOTEKEY, push_msat=100_000_000)
    msg = UpdateFee(channel_id=a.channel_id or b"", feerate_per_kw=2000)
    expect_unchanged(a, PeerProtocolError, lambda: a.on_update_fee(msg))
    expect_unchanged(b, RejectedUpdate, lambda: b.update_fee(2000))


# -- our own invalid requests ----------------------------------------------------------------


def test_our_invalid_adds_are_rejected(fmt: CommitmentFormat) -> None:
    """add_htlc we may not send raises RejectedUpdate and changes nothing."""
    strict = ChannelConfig(to_self_delay=10, htlc_minimum_msat=1000, max_accepted_htlcs=2,
                           max_htlc_value_in_flight_msat=30_000_000)
    a, b = open_pair(fmt, config_b=strict)

    def try_add(amount_msat: int = BIG_MSAT, *, cltv_expiry: int = CLTV,
                hash_: bytes = payment_hash(0), onion: bytes = ONION) -> None:
        a.add_htlc(amount_msat=amount_msat, payment_hash=hash_, cltv_expiry=cltv_expiry,
                   onion_routing_packet=onion)

    for call in (lambda: try_add(0), lambda: try_add(999), lambda: try_add(cltv_expiry=0),
                 lambda: try_add(cltv_expiry=500_000_000), lambda: try_add(30_000_001),
                 lambda: try_add(hash_=bytes(31)), lambda: try_add(onion=bytes(1365))):
        expect_unchanged(a, RejectedUpdate, call)
    add(a, b, BIG_MSAT, 1)
    add(a, b, 1000, 2)
    expect_unchanged(a, RejectedUpdate, lambda: try_add(1000))          # max_accepted_htlcs
    a2, _ = open_pair(fmt, push_msat=FUNDING_SAT * 1000 - 30_000_000)
    limit = 30_000_000 - RESERVE_MSAT - opener_charge(fmt, 2 * FEERATE, 2) * 1000  # spike buffer
    assert a2.available_to_send_msat() == limit
    expect_unchanged(a2, RejectedUpdate, lambda: a2.add_htlc(
        amount_msat=limit + 1, payment_hash=payment_hash(0), cltv_expiry=CLTV,
        onion_routing_packet=ONION))
    _, b2 = open_pair(fmt)        # B was pushed nothing: below its reserve, it cannot offer
    assert b2.available_to_send_msat() == -RESERVE_MSAT
    expect_unchanged(b2, RejectedUpdate, lambda: b2.add_htlc(
        amount_msat=1000, payment_hash=payment_hash(0), cltv_expiry=CLTV,
        onion_routing_packet=ONION))


def test_our_invalid_removals_are_rejected(fmt: CommitmentFormat) -> None:
    """fulfill/fail of unknown, own, settled HTLCs or with a wrong preimage: RejectedUpdate."""
    a, b = open_pair(fmt, push_msat=100_000_000)
    add(a, b, BIG_MSAT, 1)
    add(b, a, 5_000_000, 2)
    flush(a, b)
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(0, preimage(2)))  # wrong preimage
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(1, preimage(1)))  # unknown id
    expect_unchanged(b, RejectedUpdate, lambda: b.fail_htlc(1, b""))
    # B's own HTLC (id 0 of B's) is not B's to fulfill: B's id 0 names A's HTLC
    expect_unchanged(a, RejectedUpdate, lambda: a.fulfill_htlc(1, preimage(1)))
    b.fulfill_htlc(0, preimage(1))
    expect_unchanged(b, RejectedUpdate, lambda: b.fulfill_htlc(0, preimage(1)))
    expect_unchanged(b, RejectedUpdate, lambda: b.fail_htlc(0, b""))


def test_our_invalid_commitment_requests_are_rejected(fmt: CommitmentFormat) -> None:
    """sign_commitment with nothing to sign or while a revocation is owed: RejectedUpdate."""
    a, b = open_pair(fmt)
    expect_unchanged(a, RejectedUpdate, lambda: a.sign_commitment())
    expect_unchanged(b, RejectedUpdate, lambda: b.sign_commitment())
    add(a, b, BIG_MSAT, 1)
    b.on_commitment_signed(a.sign_commitment())
    add(a, b, 1_000_000, 2)
    expect_unchanged(a, RejectedUpdate, lambda: a.sign_commitment())
    expect_unchanged(b, RejectedUpdate, lambda: b.propose_closing())
    expect_unchanged(a, RejectedUpdate, lambda: a.propose_closing())


def test_force_close_needs_a_signed_commitment() -> None:
    """force_close before funding_signed: RejectedUpdate."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID)
    expect_unchanged(a, RejectedUpdate, lambda: a.force_close())
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    a.on_accept_channel(accept)
    created = a.funding_created(FUNDING_OUTPOINT)
    expect_unchanged(a, RejectedUpdate, lambda: a.force_close())
    a.on_funding_signed(b.on_funding_created(created))
    txs = a.force_close()          # allowed from AWAITING_LOCKIN: the funding may confirm
    assert state(a) is ChannelState.FORCE_CLOSING
    verify_input(txs.commitment_tx, 0, a.funding_script_pubkey, FUNDING_SAT)


# -- reconnection: cut the link at every point of a payment's message flow ------------------------


@dataclass
class Peer:
    """A node around one channel: applies messages, settles what it can, signs when it may."""

    chan: Channel
    preimages: dict[bytes, bytes]
    dropped: list[bytes] = field(default_factory=list)    # payment hashes of our dropped adds

    def receive(self, msg: Any) -> list[Any]:
        chan = self.chan
        if isinstance(msg, UpdateAddHtlc):
            chan.on_update_add_htlc(msg)
        elif isinstance(msg, UpdateFulfillHtlc):
            chan.on_update_fulfill_htlc(msg)
        elif isinstance(msg, UpdateFailHtlc):
            chan.on_update_fail_htlc(msg)
        elif isinstance(msg, UpdateFee):
            chan.on_update_fee(msg)
        elif isinstance(msg, CommitmentSigned):
            return [chan.on_commitment_signed(msg)]
        elif isinstance(msg, RevokeAndAck):
            chan.on_revoke_and_ack(msg)
        elif isinstance(msg, ChannelReady):
            chan.on_channel_ready(msg)
        else:
            raise AssertionError(f"unexpected {type(msg).__name__}")
        return []

    def react(self) -> list[Any]:
        out: list[Any] = []
        for h in self.chan.htlcs_to_settle():
            if h.payment_hash in self.preimages:
                out.append(self.chan.fulfill_htlc(h.htlc_id, self.preimages[h.payment_hash]))
        if self.chan.can_sign():
            out.append(self.chan.sign_commitment())
        return out


class Link:
    """Two peers and the messages in flight between them, delivered in sending order."""

    def __init__(self, a: Peer, b: Peer) -> None:
        self.peers = {"a": a, "b": b}
        self.queue: list[tuple[str, Any]] = []
        self.delivered = 0
        self.retransmitted: list[tuple[str, ...]] = []    # per reconnection and side

    def send(self, sender: str, msgs: list[Any]) -> None:
        dest = "b" if sender == "a" else "a"
        self.queue += [(dest, m) for m in msgs]

    def step(self) -> None:
        dest, msg = self.queue.pop(0)
        # every message goes over the wire: it must survive encoding
        msg = decode_message(encode_message(msg))
        peer = self.peers[dest]
        self.send(dest, peer.receive(msg) + peer.react())
        self.delivered += 1

    def run(self, limit: int = 200) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            self.step()
        raise AssertionError("the peers never went quiet")

    def reconnect(self, *, restart: bool) -> None:
        """Drop everything in flight; optionally restart both from their records; reestablish."""
        self.queue.clear()
        for peer in self.peers.values():
            if restart:
                stored = json.loads(json.dumps(channel_to_record(peer.chan)))
                peer.chan = channel_from_record(stored)
                assert channel_to_record(peer.chan) == stored
            peer.dropped += [h.payment_hash for h in peer.chan.on_disconnect()]
        a, b = self.peers["a"].chan, self.peers["b"].chan
        reestablish_a = decode_message(encode_message(a.channel_reestablish()))
        reestablish_b = decode_message(encode_message(b.channel_reestablish()))
        assert isinstance(reestablish_a, ChannelReestablish)
        assert isinstance(reestablish_b, ChannelReestablish)
        for name, out in (("a", a.on_channel_reestablish(reestablish_b)),
                          ("b", b.on_channel_reestablish(reestablish_a))):
            self.retransmitted.append(tuple(type(m).__name__ for m in out))
            self.send(name, out)
        for name, peer in self.peers.items():
            self.send(name, peer.react())


def _scenario_single(link: Link, *, sign: bool = True) -> None:
    """A pays B one HTLC above dust (``sign=False``: the add is sent, not yet signed)."""
    a = link.peers["a"].chan
    link.send("a", [a.add_htlc(amount_msat=BIG_MSAT, payment_hash=payment_hash(1),
                               cltv_expiry=CLTV, onion_routing_packet=ONION)])
    if sign:
        link.send("a", link.peers["a"].react())


def _scenario_crossing(link: Link, *, sign: bool = True) -> None:
    """A pays B, B pays A (one above, one below dust) and A changes the feerate, all at once."""
    a, b = link.peers["a"].chan, link.peers["b"].chan
    link.send("a", [a.add_htlc(amount_msat=BIG_MSAT, payment_hash=payment_hash(1),
                               cltv_expiry=CLTV, onion_routing_packet=ONION),
                    a.update_fee(1500)])
    link.send("b", [b.add_htlc(amount_msat=7_000_000, payment_hash=payment_hash(2),
                               cltv_expiry=CLTV, onion_routing_packet=ONION),
                    b.add_htlc(amount_msat=DUST_MSAT, payment_hash=payment_hash(3),
                               cltv_expiry=CLTV, onion_routing_packet=ONION)])
    if sign:
        link.send("a", link.peers["a"].react())
        link.send("b", link.peers["b"].react())


PAYMENTS = {payment_hash(1): ("a", BIG_MSAT), payment_hash(2): ("b", 7_000_000),
            payment_hash(3): ("b", DUST_MSAT)}
PUSH = 200_000_000


def _new_link(fmt: CommitmentFormat) -> Link:
    a, b = open_pair(fmt, push_msat=PUSH)
    return Link(Peer(a, {payment_hash(2): preimage(2), payment_hash(3): preimage(3)}),
                Peer(b, {payment_hash(1): preimage(1)}))


def _check_outcome(link: Link, started: set[bytes]) -> None:
    """Quiet, consistent, and each payment either completed or dropped by its payer."""
    pa, pb = link.peers["a"], link.peers["b"]
    a, b = pa.chan, pb.chan
    assert not a.can_sign() and not b.can_sign()
    assert_consistent(a, b)
    balance_a = FUNDING_SAT * 1000 - PUSH
    for h in started:
        payer, amount = PAYMENTS[h]
        dropped = h in (pa.dropped if payer == "a" else pb.dropped)
        if not dropped:
            balance_a += -amount if payer == "a" else amount
    assert a.balance_msat() == balance_a
    assert b.balance_msat() == FUNDING_SAT * 1000 - balance_a
    assert a.log is not None and b.log is not None
    assert a.log.htlcs == {} and b.log.htlcs == {}
    # and the channel carries on: one more payment each way
    pay(a, b, 1_000_000, 10)
    pay(b, a, 2_000_000, 11)
    assert_consistent(a, b)


SCENARIOS = {"single": (_scenario_single, {payment_hash(1)}),
             "crossing": (_scenario_crossing, set(PAYMENTS))}


@pytest.mark.parametrize("restart", [False, True], ids=["reconnect", "restart"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_disconnect_at_every_point(fmt: CommitmentFormat, scenario: str, restart: bool) -> None:
    """Cut the link after each delivered message (the rest lost): reestablish recovers.

    Cut -1 is before any commitment_signed was sent: the adds are dropped, the payments fail.
    """
    start, started = SCENARIOS[scenario]
    reference = _new_link(fmt)
    start(reference)
    reference.run()
    total = reference.delivered
    assert total >= 10
    _check_outcome(reference, started)
    retransmitted: set[str] = set()
    for cut in range(-1, total + 1):
        link = _new_link(fmt)
        start(link, sign=cut >= 0)
        for _ in range(cut):
            link.step()
        link.reconnect(restart=restart)
        link.run()
        _check_outcome(link, started)
        retransmitted.update(*link.retransmitted)
        if cut == -1:
            assert set(link.peers["a"].dropped) | set(link.peers["b"].dropped) == started
    # the cuts exercised every kind of retransmission
    expected = {"ChannelReady", "UpdateAddHtlc", "CommitmentSigned", "RevokeAndAck",
                "UpdateFulfillHtlc"}
    assert retransmitted == (expected | {"UpdateFee"} if scenario == "crossing" else expected)


def test_disconnect_twice_at_every_point(fmt: CommitmentFormat) -> None:
    """A second cut at each point of the recovery itself still converges."""
    start, started = SCENARIOS["single"]
    reference = _new_link(fmt)
    start(reference)
    reference.run()
    for cut in range(reference.delivered + 1):
        probe = _new_link(fmt)
        start(probe)
        for _ in range(cut):
            probe.step()
        probe.reconnect(restart=False)
        probe.run()
        for second in range(probe.delivered - cut + 1):
            link = _new_link(fmt)
            start(link)
            for _ in range(cut):
                link.step()
            link.reconnect(restart=False)
            for _ in range(second):
                link.step()
            link.reconnect(restart=True)
            link.run()
            _check_outcome(link, started)


def test_peer_proves_we_lost_state(fmt: CommitmentFormat) -> None:
    """Restored from an old backup, we learn from the peer's reestablish that we are behind."""
    a, b = open_pair(fmt, push_msat=PUSH)
    pay(a, b, BIG_MSAT, 1)
    backup = json.loads(json.dumps(channel_to_record(a)))
    pay(a, b, BIG_MSAT, 2)
    pay(b, a, 1_000_000, 3)
    old_a = channel_from_record(backup)
    old_a.on_disconnect()
    b.on_disconnect()
    from_b = b.channel_reestablish()
    assert from_b.next_revocation_number == a.holder_commitment_number
    assert a.holder_commitment_number > old_a.holder_commitment_number
    forged_first = copy.deepcopy(old_a)  # the forged-secret check below needs A before this
    with pytest.raises(LostState, match="lost state"):
        old_a.on_channel_reestablish(from_b)
    # the one state change a failure makes: A must never broadcast its stale commitment
    assert old_a.lost_state
    with pytest.raises(RejectedUpdate, match="stale"):
        old_a.force_close()
    old_a = forged_first
    # B, for its part, sees a peer that claims commitments it has long revoked
    expect_unchanged(b, PeerProtocolError,
                     lambda: b.on_channel_reestablish(old_a.channel_reestablish()))
    # a claim of being ahead with a secret that is not ours proves nothing: a bad revocation
    forged = dataclasses.replace(from_b, your_last_per_commitment_secret=ALIEN_KEY.secret)
    expect_unchanged(old_a, InvalidRevocation, lambda: old_a.on_channel_reestablish(forged))


def test_reestablish_bad_fields(fmt: CommitmentFormat) -> None:
    """channel_reestablish for another channel, or with a wrong secret or numbers: refused."""
    a, b = open_pair(fmt)
    pay(a, b, BIG_MSAT, 1)
    a.on_disconnect()
    b.on_disconnect()
    good = b.channel_reestablish()
    assert good.your_last_per_commitment_secret == \
        ChannelKeys.from_seed(SEED_A).per_commitment_secret(good.next_revocation_number - 1)
    for changes, error in (
            ({"channel_id": b"\x00" * 32}, PeerProtocolError),
            ({"your_last_per_commitment_secret": ALIEN_KEY.secret}, InvalidRevocation),
            ({"next_commitment_number": good.next_commitment_number + 1}, PeerProtocolError),
            ({"next_commitment_number": good.next_commitment_number - 2}, PeerProtocolError),
            ({"next_revocation_number": good.next_revocation_number - 2}, PeerProtocolError)):
        bad = dataclasses.replace(good, **changes)
        expect_unchanged(a, error, lambda: a.on_channel_reestablish(bad))  # noqa: B023
    assert a.on_channel_reestablish(good) == []
    assert b.on_channel_reestablish(a.channel_reestablish()) == []


# -- cooperative close ---------------------------------------------------------------------------


def _shutdown_both(a: Channel, b: Channel) -> None:
    reply = b.on_shutdown(a.shutdown(SCRIPT_A), SCRIPT_B)
    assert reply is not None and reply.scriptpubkey == SCRIPT_B
    assert a.on_shutdown(reply, SCRIPT_A) is None
    assert state(a) is ChannelState.SHUTTING_DOWN and state(b) is ChannelState.SHUTTING_DOWN


def _weight(tx: CTransaction) -> int:
    stripped = CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion).serialize()
    return 3 * len(stripped) + len(tx.serialize())


def test_cooperative_close_exact_outputs(fmt: CommitmentFormat) -> None:
    """shutdown both ways, closing_signed at the commitment feerate: outputs and fee exact."""
    a, b = open_pair(fmt)
    pay(a, b, BIG_MSAT + 1_234, 1)         # a balance that is not whole sats
    pay(b, a, 1_000_000, 2)
    bal_a, bal_b = a.balance_msat(), b.balance_msat()
    assert not a.ready_to_negotiate_close()
    _shutdown_both(a, b)
    assert a.ready_to_negotiate_close() and b.ready_to_negotiate_close()
    proposal = a.propose_closing()
    assert state(a) is ChannelState.NEGOTIATING_CLOSE
    # 125 non-witness bytes (P2WPKH + P2WSH outputs) * 4 + 224 witness bytes (73-byte sigs)
    assert proposal.fee_satoshis == 724 * FEERATE // 1000
    # the top of the range: the fee at HIGH_CLOSING_FEERATE_PER_KW (above 5x the commitment's)
    assert proposal.fee_range == FeeRange(min_fee_satoshis=724 * 253 // 1000,
                                          max_fee_satoshis=724 * 75_000 // 1000)
    reply, tx_b = b.on_closing_signed(proposal)
    assert reply is not None and reply.fee_satoshis == proposal.fee_satoshis and tx_b is not None
    echo, tx_a = a.on_closing_signed(reply)
    assert echo is None and tx_a is not None
    assert tx_a.serialize() == tx_b.serialize()
    assert a.closing_tx == b.closing_tx == tx_a.serialize()
    assert state(a) is ChannelState.CLOSING and state(b) is ChannelState.CLOSING
    fee = proposal.fee_satoshis
    outputs = {bytes(o.scriptPubKey): o.nValue for o in tx_a.vout}
    assert outputs == {SCRIPT_A: bal_a // 1000 - fee, SCRIPT_B: bal_b // 1000}
    assert FUNDING_SAT - sum(outputs.values()) == fee + (bal_a % 1000 + bal_b % 1000) // 1000
    assert [o.nValue for o in tx_a.vout] == sorted(o.nValue for o in tx_a.vout)   # BIP 69
    assert tx_a.vin[0].nSequence == 0xFFFFFFFF and tx_a.nLockTime == 0
    assert verify_input(tx_a, 0, a.funding_script_pubkey, FUNDING_SAT) == [1, 1]
    assert _weight(tx_a) * FEERATE // 1000 <= fee      # the estimate never underpays


def test_closing_fee_negotiation(fmt: CommitmentFormat) -> None:
    """A fee above the peer's range: it counter-proposes inside the overlap; 3 messages agree."""
    a, b = open_pair(fmt)
    pay(a, b, BIG_MSAT, 1)
    _shutdown_both(a, b)
    b_max = b.closing_fee_sat(HIGH_CLOSING_FEERATE_PER_KW)
    b_min = b.closing_fee_sat(253)
    high = a._closing_signed(b_max + 100)
    assert high.fee_range is not None
    hostile = dataclasses.replace(high, fee_range=FeeRange(min_fee_satoshis=b_min,
                                                          max_fee_satoshis=b_max + 100))
    counter, tx = b.on_closing_signed(hostile)
    assert tx is None and counter is not None and counter.fee_satoshis == b_max
    assert b.closing_fee_sent_sat == b_max and state(b) is ChannelState.NEGOTIATING_CLOSE
    echo, tx_a = a.on_closing_signed(counter)
    assert echo is not None and echo.fee_satoshis == b_max and tx_a is not None
    done, tx_b = b.on_closing_signed(echo)
    assert done is None and tx_b is not None and tx_b.serialize() == tx_a.serialize()
    assert FUNDING_SAT - sum(o.nValue for o in tx_b.vout) == b_max
    verify_input(tx_b, 0, b.funding_script_pubkey, FUNDING_SAT)


def test_closing_signed_hostile(fmt: CommitmentFormat) -> None:
    """No overlapping range, a fee above the opener's balance, a bad signature: all refused."""
    a, b = open_pair(fmt, push_msat=FUNDING_SAT * 1000 - 20_000_000)   # A keeps 20_000 sat
    expect_unchanged(b, UnexpectedMessage, lambda: b.on_closing_signed(ClosingSigned(
        channel_id=b.channel_id or b"", fee_satoshis=700, signature=ALIEN_KEY.sign(bytes(32)))))
    _shutdown_both(a, b)
    # B's range tops at A's balance (A opened: A pays), not at the fee at the high feerate
    assert b._fee_range().max_fee_satoshis == 20_000 < b.closing_fee_sat(
        HIGH_CLOSING_FEERATE_PER_KW)
    b_min = b.closing_fee_sat(253)
    below = a._closing_signed(b_min - 1)
    apart = dataclasses.replace(below, fee_range=FeeRange(min_fee_satoshis=b_min - 50,
                                                         max_fee_satoshis=b_min - 1))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_closing_signed(apart))
    too_big = ClosingSigned(channel_id=b.channel_id or b"", fee_satoshis=20_001,
                            signature=ALIEN_KEY.sign(bytes(32)))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_closing_signed(too_big))
    proposal = a.propose_closing()
    forged = dataclasses.replace(proposal, signature=ALIEN_KEY.sign(bytes(32)))
    expect_unchanged(b, InvalidSignature, lambda: b.on_closing_signed(forged))
    reply, tx = b.on_closing_signed(proposal)
    assert tx is not None and reply is not None


def test_shutdown_rules(fmt: CommitmentFormat) -> None:
    """No shutdown with unsigned updates, bad scripts refused, no new HTLC after shutdown."""
    a, b = open_pair(fmt, push_msat=PUSH)
    add(a, b, BIG_MSAT, 1)
    expect_unchanged(a, RejectedUpdate, lambda: a.shutdown(SCRIPT_A))     # unsigned add
    round_trip(a, b)
    p2pkh = bytes.fromhex("76a914" + "11" * 20 + "88ac")
    expect_unchanged(a, RejectedUpdate, lambda: a.shutdown(p2pkh))
    cid = a.channel_id or b""
    expect_unchanged(b, PeerProtocolError,
                     lambda: b.on_shutdown(Shutdown(channel_id=cid, scriptpubkey=p2pkh), SCRIPT_B))
    # B has an update of its own not yet signed when A's shutdown arrives: it answers later
    add(b, a, 1_000_000, 2)
    shutdown_a = a.shutdown(SCRIPT_A)
    expect_unchanged(a, RejectedUpdate, lambda: a.shutdown(SCRIPT_A))     # only once
    expect_unchanged(b, RejectedUpdate, lambda: b.on_shutdown(shutdown_a, p2pkh))
    assert b.on_shutdown(shutdown_a, SCRIPT_B) is None
    assert state(b) is ChannelState.SHUTTING_DOWN and b.holder_shutdown_script is None
    expect_unchanged(b, RejectedUpdate, lambda: b.add_htlc(
        amount_msat=1_000_000, payment_hash=payment_hash(3), cltv_expiry=CLTV,
        onion_routing_packet=ONION))
    expect_unchanged(a, RejectedUpdate, lambda: a.add_htlc(
        amount_msat=1_000_000, payment_hash=payment_hash(3), cltv_expiry=CLTV,
        onion_routing_packet=ONION))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(_forged_add(a, htlc_id=1)))
    flush(b, a)
    flush(a, b)
    assert a.on_shutdown(b.shutdown(SCRIPT_B), SCRIPT_A) is None
    # the HTLCs in flight are settled normally, then the fee is negotiated
    assert not a.ready_to_negotiate_close()
    settle(b, a)
    settle(a, b)
    flush(b, a)
    flush(a, b)
    assert a.ready_to_negotiate_close() and b.ready_to_negotiate_close()
    reply, tx = b.on_closing_signed(a.propose_closing())
    assert reply is not None and tx is not None
    outputs = {bytes(o.scriptPubKey): o.nValue for o in tx.vout}
    fee = reply.fee_satoshis
    assert outputs == {SCRIPT_A: (FUNDING_SAT * 1000 - PUSH - BIG_MSAT + 1_000_000) // 1000 - fee,
                       SCRIPT_B: (PUSH + BIG_MSAT - 1_000_000) // 1000}


def test_shutdown_is_retransmitted_on_reestablish(fmt: CommitmentFormat) -> None:
    """After a reconnection, a sent shutdown is sent again."""
    a, b = open_pair(fmt)
    pay(a, b, BIG_MSAT, 1)
    _shutdown_both(a, b)
    a.on_disconnect()
    b.on_disconnect()
    again_a = a.on_channel_reestablish(b.channel_reestablish())
    again_b = b.on_channel_reestablish(a.channel_reestablish())
    assert again_a == [Shutdown(channel_id=a.channel_id or b"", scriptpubkey=SCRIPT_A)]
    assert again_b == [Shutdown(channel_id=b.channel_id or b"", scriptpubkey=SCRIPT_B)]
    assert b.on_shutdown(again_a[0], SCRIPT_B) is None


# -- unilateral close --------------------------------------------------------------------------


def test_holder_transactions_and_force_close(fmt: CommitmentFormat) -> None:
    """HTLC-timeouts always; HTLC-successes only for HTLCs whose preimage we know."""
    a, b = open_pair(fmt, push_msat=PUSH)
    add(a, b, BIG_MSAT, 1)
    add(a, b, 5_000_000, 2)
    add(a, b, DUST_MSAT, 4)                  # trimmed: no second-stage tx
    add(b, a, 9_000_000, 3)
    flush(a, b)
    flush(b, a)
    txs_b = b.holder_transactions()
    assert [(tx.nLockTime, tx.vin[0].nSequence) for tx in txs_b.htlc_txs] == \
        [(CLTV, 1 if fmt is CommitmentFormat.ANCHORS else 0)]       # B's own HTLC-timeout
    b.fulfill_htlc(0, preimage(1))           # B now knows one preimage (not yet signed away)
    txs_b = b.holder_transactions()
    assert len(txs_b.htlc_txs) == 2
    success = [tx for tx in txs_b.htlc_txs if tx.nLockTime == 0]
    assert len(success) == 1
    witness = [bytes(x) for x in success[0].wit.vtxinwit[0].scriptWitness.stack]
    assert witness[3] == preimage(1)
    second_stage_fee = 0 if fmt is CommitmentFormat.ANCHORS else 703 * FEERATE // 1000
    assert success[0].vout[0].nValue == BIG_MSAT // 1000 - second_stage_fee
    check_holder_transactions(b)
    txs_a = a.holder_transactions()
    assert sorted(tx.nLockTime for tx in txs_a.htlc_txs) == [CLTV, CLTV]    # A's two timeouts
    check_holder_transactions(a)
    closed = a.force_close()
    assert state(a) is ChannelState.FORCE_CLOSING
    assert closed.commitment_tx.serialize() == txs_a.commitment_tx.serialize()
    assert [t.serialize() for t in closed.htlc_txs] == [t.serialize() for t in txs_a.htlc_txs]
    expect_unchanged(a, RejectedUpdate, lambda: a.add_htlc(
        amount_msat=1_000_000, payment_hash=payment_hash(5), cltv_expiry=CLTV,
        onion_routing_packet=ONION))
    expect_unchanged(a, UnexpectedMessage,
                     lambda: a.on_commitment_signed(b._signed_commitment(1, record=False)))


def test_local_misuse_is_refused_not_a_protocol_fault() -> None:
    """A local call the state does not allow raises InvalidStateTransition, a RejectedUpdate
    (answer the caller), never a PeerProtocolError (fail the channel); nothing changes."""
    assert issubclass(InvalidStateTransition, RejectedUpdate)
    assert not issubclass(InvalidStateTransition, PeerProtocolError)
    assert issubclass(UnexpectedMessage, PeerProtocolError)
    a, b = open_pair(CommitmentFormat.STATIC_REMOTEKEY)
    expect_unchanged(a, InvalidStateTransition, lambda: a.funding_created(FUNDING_OUTPOINT))
    expect_unchanged(b, InvalidStateTransition, lambda: b.funding_created(FUNDING_OUTPOINT))


def test_fail_channel() -> None:
    """fail_channel: a funded channel goes to FORCE_CLOSING, an unfunded one to CLOSED."""
    a, _ = open_pair(CommitmentFormat.STATIC_REMOTEKEY)
    a.fail_channel()
    assert state(a) is ChannelState.FORCE_CLOSING
    early, _ = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID)
    early.fail_channel()
    assert state(early) is ChannelState.CLOSED


# -- persistence ----------------------------------------------------------------------------------


def test_record_round_trip_resumes_identically(fmt: CommitmentFormat) -> None:
    """A JSON round trip of a busy channel gives one that answers byte for byte the same."""
    a, b = open_pair(fmt, push_msat=PUSH)
    pay(a, b, BIG_MSAT, 1)
    add(a, b, 3_000_000, 2)
    add(b, a, DUST_MSAT, 3)
    flush(a, b)
    b.on_update_fee(a.update_fee(1700))
    a.on_update_fulfill_htlc(b.fulfill_htlc(1, preimage(2)))
    stored = json.loads(json.dumps(channel_to_record(b)))
    b2 = channel_from_record(stored)
    assert channel_to_record(b2) == stored
    assert encode_message(b2.sign_commitment()) == encode_message(b.sign_commitment())
    assert record(b2) == record(b)
    with pytest.raises(ValueError):
        channel_from_record({**stored, "version": 99})


def test_witness_interpreter_catches_tampering(fmt: CommitmentFormat) -> None:
    """The test interpreter itself: a flipped signature, amount or preimage makes it fail."""
    a, b = open_pair(fmt, push_msat=PUSH)
    add(a, b, BIG_MSAT, 1)
    flush(a, b)
    b.fulfill_htlc(0, preimage(1))
    txs = b.holder_transactions()
    spk = b.funding_script_pubkey
    verify_input(txs.commitment_tx, 0, spk, FUNDING_SAT)
    with pytest.raises(ScriptFailed):
        verify_input(txs.commitment_tx, 0, spk, FUNDING_SAT - 1)
    stack = [bytes(x) for x in txs.commitment_tx.wit.vtxinwit[0].scriptWitness.stack]
    stack[1] = stack[1][:10] + bytes([stack[1][10] ^ 1]) + stack[1][11:]
    with pytest.raises(ScriptFailed):
        verify_input(tx_with_witnesses(txs.commitment_tx, [stack]), 0, spk, FUNDING_SAT)
    (success,) = txs.htlc_txs
    out = txs.commitment.htlc_outputs[0]
    spent_spk = bytes(txs.commitment.tx.vout[out.vout].scriptPubKey)
    verify_input(success, 0, spent_spk, out.amount_sat)
    htlc_stack = [bytes(x) for x in success.wit.vtxinwit[0].scriptWitness.stack]
    htlc_stack[3] = preimage(2)
    with pytest.raises(ScriptFailed):
        verify_input(tx_with_witnesses(success, [htlc_stack]), 0, spent_spk, out.amount_sat)


# -- two honest peers at random: no error, every invariant holds --------------------------------


def _check_limits(chan: Channel) -> None:
    """Our newest commitment respects the limits we announced for the peer's HTLCs."""
    offered = [h.amount_msat for h in chan.htlcs_in_flight() if h.offerer is Side.COUNTERPARTY]
    limits = chan.holder_params
    assert len(offered) <= limits.max_accepted_htlcs, f"{len(offered)} HTLCs"
    assert sum(offered) <= limits.max_htlc_value_in_flight_msat, f"{sum(offered)} msat"


RANDOM_STEPS = 400


@pytest.mark.parametrize("seed", range(4))
def test_random_honest_peers(fmt: CommitmentFormat, seed: int) -> None:
    """Random adds (often at the exact limit), settles, fee changes, signatures, deliveries
    in either direction and reconnections: no honest message is ever refused."""
    import random
    rng = random.Random(seed)
    limits = ChannelConfig(to_self_delay=10, max_accepted_htlcs=4,
                           max_htlc_value_in_flight_msat=60_000_000)
    a, b = open_pair(fmt, push_msat=PUSH, config_a=limits, config_b=limits)
    peers = {"a": Peer(a, {}), "b": Peer(b, {})}
    link = Link(peers["a"], peers["b"])
    queues: dict[str, list[Any]] = {"a": [], "b": []}     # messages to each destination
    n = 0
    for _ in range(RANDOM_STEPS):
        name = rng.choice("ab")
        me, other = peers[name], peers["b" if name == "a" else "a"]
        chan = me.chan
        action = rng.random()
        out: list[Any] = []
        if action < 0.25 and state(chan) is ChannelState.NORMAL:
            room = chan.available_to_send_msat()
            amount = room if rng.random() < 0.3 else rng.randrange(1_000, 25_000_000)
            if amount >= 1:
                n += 1
                other.preimages[payment_hash(n)] = preimage(n)
                try:
                    out.append(chan.add_htlc(amount_msat=amount, payment_hash=payment_hash(n),
                                             cltv_expiry=CLTV, onion_routing_packet=ONION))
                except RejectedUpdate:
                    pass
        elif action < 0.35:
            settleable = chan.htlcs_to_settle()
            if settleable:
                h = rng.choice(settleable)
                out.append(chan.fulfill_htlc(h.htlc_id, me.preimages[h.payment_hash])
                           if rng.random() < 0.7 else chan.fail_htlc(h.htlc_id, b"no"))
        elif action < 0.40 and name == "a" and state(chan) is ChannelState.NORMAL:
            try:
                out.append(chan.update_fee(rng.choice([800, 1000, 2500, 6000])))
            except RejectedUpdate:
                pass
        elif action < 0.60:
            if chan.can_sign():
                out.append(chan.sign_commitment())
        elif action < 0.97:
            dest = name
            if queues[dest]:
                msg = decode_message(encode_message(queues[dest].pop(0)))
                out = me.receive(msg)
        else:
            link.queue = []
            for q in queues.values():
                q.clear()
            link.reconnect(restart=rng.random() < 0.5)
            for dest, msg in link.queue:
                queues[dest].append(msg)
            link.queue = []
            a, b = peers["a"].chan, peers["b"].chan
        queues["b" if name == "a" else "a"] += out
        _check_limits(peers["a"].chan)
        _check_limits(peers["b"].chan)
    # drain: deliver everything, settle everything, sign until quiet
    for dest, q in queues.items():
        for msg in q:
            link.queue.append((dest, msg))
    link.run(limit=2000)
    for _ in range(10):
        for name in "ab":
            link.send(name, peers[name].react())
        link.run(limit=2000)
    a, b = peers["a"].chan, peers["b"].chan
    assert a.log is not None and a.log.htlcs == {}
    assert_consistent(a, b)
    assert a.balance_msat() + b.balance_msat() == FUNDING_SAT * 1000


def test_removed_htlc_counts_until_gone_from_both_commitments(fmt: CommitmentFormat) -> None:
    """max_accepted_htlcs: a fulfilled HTLC still occupies the receiver's commitment until the
    removal is signed both ways, so the slot is not free before."""
    limits = ChannelConfig(to_self_delay=10, max_accepted_htlcs=2)
    a, b = open_pair(fmt, config_b=limits)
    add(a, b, BIG_MSAT, 1)
    add(a, b, BIG_MSAT, 2)
    flush(a, b)
    a.on_update_fulfill_htlc(b.fulfill_htlc(0, preimage(1)))
    # were A to add now and sign before B's commitment_signed arrives, B's next commitment
    # would hold three HTLCs
    expect_unchanged(a, RejectedUpdate, lambda: a.add_htlc(
        amount_msat=1_000_000, payment_hash=payment_hash(3), cltv_expiry=CLTV,
        onion_routing_packet=ONION))
    expect_unchanged(b, PeerProtocolError, lambda: b.on_update_add_htlc(
        _forged_add(a, htlc_id=2, amount_msat=1_000_000)))
    flush(b, a)
    add(a, b, 1_000_000, 3)
    flush(a, b)
    assert sorted(h.htlc_id for h in b.htlcs_in_flight()) == [1, 2]


@pytest.mark.parametrize("counter", [False, True], ids=["agree", "counter_proposal"])
def test_disconnect_during_close_negotiation(fmt: CommitmentFormat, counter: bool) -> None:
    """Cut after each closing_signed: shutdown is retransmitted, the opener restarts the
    negotiation, and both end with the same signed closing tx (or the peer that lacks it
    waits for the one the other holds to confirm)."""
    a0, b0 = open_pair(fmt)
    pay(a0, b0, BIG_MSAT, 1)
    _shutdown_both(a0, b0)
    stored = (channel_to_record(a0), channel_to_record(b0))
    b_max = b0.closing_fee_sat(HIGH_CLOSING_FEERATE_PER_KW)
    total = 3 if counter else 2
    for cut in range(total + 1):
        a, b = (channel_from_record(json.loads(json.dumps(r))) for r in stored)
        if counter:
            first = a._closing_signed(b_max + 100)
            msgs: list[tuple[Channel, ClosingSigned | None]] = [(b, dataclasses.replace(
                first, fee_range=FeeRange(min_fee_satoshis=1, max_fee_satoshis=b_max + 100)))]
        else:
            msgs = [(b, a.propose_closing())]
        delivered = 0
        while msgs and delivered < cut:
            dest, msg = msgs.pop(0)
            assert msg is not None
            reply, _ = dest.on_closing_signed(msg)
            delivered += 1
            if reply is not None:
                msgs.append((a if dest is b else b, reply))
        a.on_disconnect()
        b.on_disconnect()
        for chan in (a, b):     # a negotiation in progress starts over
            assert state(chan) in (ChannelState.SHUTTING_DOWN, ChannelState.CLOSING)
        from_a = a.on_channel_reestablish(b.channel_reestablish())
        from_b = b.on_channel_reestablish(a.channel_reestablish())
        assert from_a == [Shutdown(channel_id=a.channel_id or b"", scriptpubkey=SCRIPT_A)]
        assert from_b == [Shutdown(channel_id=b.channel_id or b"", scriptpubkey=SCRIPT_B)]
        # the opener proposes again at once, before B's shutdown reaches it
        pending: list[tuple[Channel, ClosingSigned]] = []
        if state(a) is ChannelState.SHUTTING_DOWN:
            pending.append((b, a.propose_closing()))
        assert b.on_shutdown(from_a[0], SCRIPT_B) is None
        assert a.on_shutdown(from_b[0], SCRIPT_A) is None
        if pending:
            while pending:
                dest, msg = pending.pop(0)
                reply, _ = dest.on_closing_signed(msg)
                if reply is not None:
                    pending.append((a if dest is b else b, reply))
        assert a.closing_tx is not None
        if counter and cut == 2:
            # A's echo was lost: A holds the final tx (and broadcasts it), B sees it confirm
            assert state(b) is ChannelState.SHUTTING_DOWN and b.closing_tx is None
            continue
        assert state(a) is ChannelState.CLOSING and state(b) is ChannelState.CLOSING
        assert a.closing_tx == b.closing_tx
        final = CTransaction.deserialize(a.closing_tx)
        verify_input(final, 0, a.funding_script_pubkey, FUNDING_SAT)


# -- monitor updates --------------------------------------------------------------------------


def _rebuild(chan: Channel, side: Side, number: int, point: Any, to_broadcaster_msat: int,
             to_countersignatory_msat: int, feerate_per_kw: int,
             htlcs: tuple[Any, ...]) -> bytes:
    """A commitment's txid from what a monitor update carries (balances before fees)."""
    from channel.transactions import (
        CommitmentKeys,
        build_commitment_transaction,
        obscuring_factor,
    )
    ours, theirs = chan.holder_params, chan.counterparty_params
    assert theirs is not None and chan.funding_outpoint is not None
    broadcaster, countersignatory = (ours, theirs) if side is Side.HOLDER else (theirs, ours)
    opener, accepter = (ours, theirs) if chan.opener is Side.HOLDER else (theirs, ours)
    keys = CommitmentKeys.derive(per_commitment_point=point, broadcaster=broadcaster.basepoints,
                                 countersignatory=countersignatory.basepoints)
    return build_commitment_transaction(
        funding_outpoint=chan.funding_outpoint, funding_amount_sat=FUNDING_SAT,
        commitment_number=number, obscuring_factor=obscuring_factor(
            opener.basepoints.payment_basepoint, accepter.basepoints.payment_basepoint), keys=keys,
        to_self_delay=countersignatory.to_self_delay, dust_limit_sat=broadcaster.dust_limit_sat,
        feerate_per_kw=feerate_per_kw, broadcaster_is_opener=chan.opener is side,
        to_local_msat=to_broadcaster_msat, to_remote_msat=to_countersignatory_msat,
        htlcs=htlcs, commitment_format=chan.commitment_format).txid


def test_monitor_updates_rebuild_every_commitment(fmt: CommitmentFormat) -> None:
    """Each monitor update carries enough to rebuild exactly the commitment it describes."""
    a, b = open_pair(fmt, push_msat=PUSH)
    add(a, b, BIG_MSAT + 555, 1)          # msat remainders: balances are not whole sats
    add(a, b, DUST_MSAT, 2)
    add(b, a, 3_000_000, 3)
    flush(a, b)
    b.on_update_fee(a.update_fee(1800))
    settle(b, a)
    flush(b, a)
    flush(a, b)
    drained = {id(a): a.drain_monitor_updates(), id(b): b.drain_monitor_updates()}
    for chan, peer in ((a, b), (b, a)):
        updates = drained[id(chan)]
        peer_txids = {u.commitment_number: u.txid for u in drained[id(peer)]
                      if isinstance(u, CounterpartyCommitmentSigned)}
        holder = [u for u in updates if isinstance(u, HolderCommitmentSigned)]
        theirs = [u for u in updates if isinstance(u, CounterpartyCommitmentSigned)]
        secrets = [u for u in updates if isinstance(u, CounterpartySecretRevealed)]
        assert [u.commitment_number for u in holder] == \
            list(range(chan.holder_commitment_number + 1))
        assert [u.commitment_number for u in theirs] == \
            list(range(chan.counterparty_commitment_number + 1))
        assert [u.commitment_number for u in secrets] == \
            list(range(chan.counterparty_commitment_number))
        peer_keys = ChannelKeys.from_seed(SEED_B if chan is a else SEED_A)
        assert all(u.per_commitment_secret == peer_keys.per_commitment_secret(u.commitment_number)
                   for u in secrets)
        for h in holder:
            txid = _rebuild(chan, Side.HOLDER, h.commitment_number,
                            chan.keys.per_commitment_point(h.commitment_number),
                            h.to_broadcaster_msat, h.to_countersignatory_msat,
                            h.feerate_per_kw, h.htlcs)
            assert txid == peer_txids[h.commitment_number]
        last = holder[-1]
        assert last.counterparty_signature == chan.holder_commitment_signature
        assert last.counterparty_htlc_signatures == chan.holder_htlc_signatures
        for c in theirs:
            txid = _rebuild(chan, Side.COUNTERPARTY, c.commitment_number,
                            c.per_commitment_point, c.to_broadcaster_msat,
                            c.to_countersignatory_msat, c.feerate_per_kw, c.htlcs)
            assert txid == c.txid
        assert theirs[-1].txid == peer.holder_transactions().commitment.txid


def test_a_batch_of_adds_refuses_exactly_what_single_adds_refuse(fmt: CommitmentFormat) -> None:
    """Inside ``adding_batch`` (the budget counted once, then kept by each add) a channel with
    settled, failed and pending HTLCs accepts and refuses the same adds, with the same reasons,
    as the same adds made one by one (each checked against a full count: CHECK_BUDGET_MEMO)."""
    from channel import self_checks
    assert self_checks.CHECK_BUDGET_MEMO   # tests/conftest.py: kept budgets are cross-checked

    def outcomes(batched: bool) -> tuple[list[str], int]:
        strict = ChannelConfig(to_self_delay=10, htlc_minimum_msat=1000, max_accepted_htlcs=12)
        a, b = open_pair(fmt, config_b=strict)
        pay(a, b, 50_000_000, n=1)                 # settled: a's balance is lower for good
        failed = add(a, b, 30_000_000, 2)          # failed back and committed: money returns
        flush(a, b)
        a.on_update_fail_htlc(b.fail_htlc(failed, b"\x00" * 32))
        flush(b, a)
        add(a, b, 20_000_000, 3)                   # pending
        seen: list[str] = []
        amounts = [100_000_000] * 9 + [10**12, 999, 5_000_000, 5_000_000, 5_000_000]
        context = a.adding_batch() if batched else contextlib.nullcontext()
        with context:
            for n, amount in enumerate(amounts, start=10):
                try:
                    a.add_htlc(amount_msat=amount, payment_hash=payment_hash(n), cltv_expiry=CLTV,
                               onion_routing_packet=ONION)
                    seen.append("added")
                except RejectedUpdate as exc:
                    seen.append(str(exc))
        return seen, a.available_to_send_msat()

    one_by_one, batch = outcomes(batched=False), outcomes(batched=True)
    assert batch == one_by_one
    seen = one_by_one[0]
    assert seen.count("added") == 11
    assert [s.split()[0] for s in seen if s != "added"] == ["amount_msat", "amount_msat", "more"]
    assert "can spend" in seen[9] and "below" in seen[10] and "max_accepted_htlcs" in seen[13]


def test_a_run_of_peer_adds_refuses_exactly_what_single_adds_refuse(
        fmt: CommitmentFormat) -> None:
    """Inside a run of the peer's adds (``peer_adds_begin``: its budget counted once, then kept
    by each add) the receiver accepts and refuses the same forged adds, for the same reasons,
    as the same adds taken one by one (every kept budget checked: CHECK_BUDGET_MEMO)."""
    def outcomes(run: bool) -> list[str]:
        strict = ChannelConfig(to_self_delay=10, htlc_minimum_msat=1000, max_accepted_htlcs=12)
        a, b = open_pair(fmt, config_b=strict)
        pay(a, b, 50_000_000, n=1)
        failed = add(a, b, 30_000_000, 2)
        flush(a, b)
        a.on_update_fail_htlc(b.fail_htlc(failed, b"\x00" * 32))
        flush(b, a)
        add(a, b, 20_000_000, 3)                     # pending, not yet signed
        if run:
            b.peer_adds_begin()
        seen: list[str] = []
        next_id = 3
        for amount in [100_000_000] * 9 + [10**12, 999, 5_000_000, 5_000_000, 5_000_000]:
            try:
                b.on_update_add_htlc(_forged_add(a, htlc_id=next_id, amount_msat=amount))
                seen.append("added")
                next_id += 1
            except PeerProtocolError as exc:
                seen.append(str(exc))
        b.peer_adds_end()
        return seen

    one_by_one = outcomes(run=False)
    assert outcomes(run=True) == one_by_one
    assert one_by_one.count("added") == 11
    assert "can spend" in one_by_one[9] and "below" in one_by_one[10]
    assert "max_accepted_htlcs" in one_by_one[13]
