"""The BOLT 2 channel state machine, driven through two in-memory ``Channel``s.

Every commitment both sides hold is rebuilt from each side's view and compared, and every
signature is checked by running the spending witness through a small independent script
interpreter (python-bitcoinlib 0.12 has no segwit ``VerifyScript``). Hostile messages and our own
invalid requests must raise the right ``channel.errors`` class and leave the channel's record
byte-for-byte unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import coincurve
import pytest
from bitcoin.core import CTransaction
from bitcoin.core.script import (
    OP_1,
    OP_16,
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_CHECKSIGVERIFY,
    OP_DROP,
    OP_DUP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_IF,
    OP_NOTIF,
    OP_PUSHDATA4,
    OP_SIZE,
    OP_SWAP,
    SIGVERSION_WITNESS_V0,
    CScript,
    SignatureHash,
)

from channel.errors import (
    InvalidRevocation,
    InvalidSignature,
    InvalidStateTransition,
    MalformedMessage,
    PeerProtocolError,
    RejectedUpdate,
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


# -- an independent P2WSH witness interpreter (just the opcodes BOLT 3 scripts use) -------------


def _ripemd160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", data).digest()


def _script_num(data: bytes) -> int:
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


def _encode_num(n: int) -> bytes:
    if n == 0:
        return b""
    out = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return out + b"\x00" if out[-1] & 0x80 else out


def _truthy(data: bytes) -> bool:
    return any(data[:-1]) or (bool(data) and data[-1] not in (0, 0x80))


@dataclass
class WitnessCheck:
    """Result of running one input's witness: which sighash types its signatures carried."""

    sighash_types: list[int] = field(default_factory=list)


def run_witness(tx: CTransaction, vin: int, script_pubkey: bytes, amount_sat: int) -> WitnessCheck:
    """Execute input ``vin``'s P2WSH witness against ``script_pubkey``; raise if it fails."""
    items = [bytes(x) for x in tx.wit.vtxinwit[vin].scriptWitness.stack]
    witness_script, stack = items[-1], items[:-1]
    assert script_pubkey == b"\x00\x20" + hashlib.sha256(witness_script).digest(), "not P2WSH"
    result = WitnessCheck()

    def checksig(sig: bytes, pubkey: bytes) -> bool:
        if not sig:
            return False
        digest = SignatureHash(CScript(witness_script), tx, vin, sig[-1], amount=amount_sat,
                               sigversion=SIGVERSION_WITNESS_V0)
        ok = coincurve.PublicKey(pubkey).verify(sig[:-1], bytes(digest), hasher=None)
        if ok:
            result.sighash_types.append(sig[-1])
        return bool(ok)

    branches: list[bool] = []
    for op, data, _ in CScript(witness_script).raw_iter():
        if op in (OP_IF, OP_NOTIF):
            taken = False
            if all(branches):
                top = stack.pop()
                assert top in (b"", b"\x01"), "MINIMALIF"
                taken = (top == b"\x01") == (op == OP_IF)
            branches.append(taken)
            continue
        if op == OP_ELSE:
            branches[-1] = not branches[-1]
            continue
        if op == OP_ENDIF:
            branches.pop()
            continue
        if not all(branches):
            continue
        if op <= OP_PUSHDATA4:
            stack.append(bytes(data))
        elif OP_1 <= op <= OP_16:
            stack.append(bytes([op - OP_1 + 1]))
        elif op == OP_DUP:
            stack.append(stack[-1])
        elif op == OP_DROP:
            stack.pop()
        elif op == OP_SWAP:
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op == OP_SIZE:
            stack.append(_encode_num(len(stack[-1])))
        elif op == OP_HASH160:
            stack.append(_ripemd160(hashlib.sha256(stack.pop()).digest()))
        elif op in (OP_EQUAL, OP_EQUALVERIFY):
            equal = stack.pop() == stack.pop()
            if op == OP_EQUALVERIFY:
                assert equal, "OP_EQUALVERIFY failed"
            else:
                stack.append(b"\x01" if equal else b"")
        elif op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
            pubkey = stack.pop()
            ok = checksig(stack.pop(), pubkey)
            if op == OP_CHECKSIGVERIFY:
                assert ok, "OP_CHECKSIGVERIFY failed"
            else:
                stack.append(b"\x01" if ok else b"")
        elif op == OP_CHECKMULTISIG:
            keys = [stack.pop() for _ in range(_script_num(stack.pop()))]
            sigs = [stack.pop() for _ in range(_script_num(stack.pop()))]
            assert stack.pop() == b"", "NULLDUMMY"
            ok = True
            for sig in sigs:   # each signature must match a later key, in order
                while keys and not checksig(sig, keys[0]):
                    keys.pop(0)
                if not keys:
                    ok = False
                    break
                keys.pop(0)
            stack.append(b"\x01" if ok else b"")
        elif op == OP_CHECKSEQUENCEVERIFY:
            sequence = tx.vin[vin].nSequence
            assert tx.nVersion >= 2 and not sequence & (1 << 31), "CSV disabled"
            assert sequence & 0xFFFF >= _script_num(stack[-1]), "CSV not met"
        elif op == OP_CHECKLOCKTIMEVERIFY:
            assert tx.vin[vin].nSequence != 0xFFFFFFFF, "CLTV with final sequence"
            assert tx.nLockTime >= _script_num(stack[-1]), "CLTV not met"
        else:
            raise AssertionError(f"opcode {op} not supported by the test interpreter")
    assert not branches, "unbalanced IF"
    assert len(stack) == 1 and _truthy(stack[0]), f"script left {stack!r}"
    return result


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


def record(chan: Channel) -> str:
    return json.dumps(channel_to_record(chan), sort_keys=True)


def expect_unchanged(chan: Channel, error: type[Exception], call: Callable[[], Any], *,
                     exact: bool = True) -> None:
    """``call`` raises ``error`` (exactly that class unless ``exact=False``) and ``chan`` is
    left as it was, monitor updates included."""
    before = record(chan)
    updates = list(chan.monitor_updates)
    with pytest.raises(error) as info:
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
    funding = run_witness(txs.commitment_tx, 0, x.funding_script_pubkey, FUNDING_SAT)
    assert funding.sighash_types == [1, 1]
    assert sum(o.nValue for o in txs.commitment_tx.vout) == FUNDING_SAT - ctx.fee_sat
    outputs = {o.vout: o for o in ctx.htlc_outputs}
    for htlc_tx in txs.htlc_txs:
        spent = htlc_tx.vin[0].prevout
        assert bytes(spent.hash) == ctx.txid
        out = outputs[spent.n]
        checked = run_witness(htlc_tx, 0, bytes(ctx.tx.vout[spent.n].scriptPubKey), out.amount_sat)
        remote_type = 0x83 if x.commitment_format is CommitmentFormat.ANCHORS else 0x01
        assert sorted(checked.sighash_types) == sorted([remote_type, 0x01])


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
    """open → accept → funding_created/signed → channel_ready: NORMAL, push_msat credited exactly."""
    push = 123_456_789
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT,
        push_msat=push, feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID,
        commitment_format=fmt)
    assert a.state is ChannelState.AWAITING_ACCEPT
    assert open_msg.channel_type == (bytes.fromhex("401000") if fmt is CommitmentFormat.ANCHORS
                                     else bytes.fromhex("1000"))
    assert open_msg.upfront_shutdown_script == b""
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(SEED_B), config=CONFIG,
                                       msg=open_msg)
    assert b.state is ChannelState.AWAITING_FUNDING_CREATED
    assert accept.channel_type == open_msg.channel_type
    assert b.commitment_format is fmt
    a.on_accept_channel(accept)
    assert a.state is ChannelState.AWAITING_FUNDING_TX
    created = a.funding_created(FUNDING_OUTPOINT)
    assert a.state is ChannelState.AWAITING_FUNDING_SIGNED
    signed = b.on_funding_created(created)
    assert b.state is ChannelState.AWAITING_LOCKIN
    a.on_funding_signed(signed)
    assert a.state is ChannelState.AWAITING_LOCKIN
    channel_id = bytearray(FUNDING_OUTPOINT.txid)
    channel_id[31] ^= FUNDING_OUTPOINT.vout
    assert a.channel_id == b.channel_id == bytes(channel_id)
    ready_a = a.funding_locked()
    assert a.state is ChannelState.AWAITING_LOCKIN  # not before the peer's channel_ready
    b.on_channel_ready(ready_a)
    assert b.state is ChannelState.AWAITING_LOCKIN
    a.on_channel_ready(b.funding_locked())
    assert a.state is ChannelState.NORMAL and b.state is ChannelState.NORMAL

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
    """open_outbound refuses zero/oversized funding, push above funding and a feerate below 253."""
    keys = ChannelKeys.from_seed(SEED_A)
    good: dict[str, Any] = {"keys": keys, "config": CONFIG, "funding_sat": FUNDING_SAT,
                            "push_msat": 0, "feerate_per_kw": FEERATE,
                            "temporary_channel_id": TEMP_ID}
    for change in ({"funding_sat": 0}, {"funding_sat": 2**24},
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
], ids=["chain_hash", "no_channel_type", "bad_channel_type", "anchors_only", "dust_353",
        "dust_above_reserve", "push_above_funding", "to_self_delay", "max_accepted_htlcs",
        "feerate_low", "funding_too_large", "fee_unaffordable"])
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
], ids=["temp_id", "changed_type", "no_type", "depth", "reserve_below_our_dust", "dust_353",
        "to_self_delay"])
def test_accept_channel_bad_parameters_are_refused(changes: dict[str, Any]) -> None:
    """on_accept_channel fails on a bad accept_channel and leaves the opener unchanged."""
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(SEED_A), config=CONFIG, funding_sat=FUNDING_SAT, push_msat=0,
        feerate_per_kw=FEERATE, temporary_channel_id=TEMP_ID)
    accept = dataclasses.replace(_accept_for(open_msg), **changes)
    expect_unchanged(a, PeerProtocolError, lambda: a.on_accept_channel(accept), exact=False)
    assert a.state is ChannelState.AWAITING_ACCEPT


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
    assert a.state is ChannelState.AWAITING_LOCKIN


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
