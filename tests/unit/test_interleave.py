"""Honest peers never force-close each other, whatever the order their messages take.

The seeded random interleavings of :mod:`interleave` (drops, lagging directions, reconnections,
restarts, eager updates, fee jumps, adds/fulfils/fails both ways) run a few hundred times here
and 10,000 times in the ``soak`` suite (``pytest -m soak tests/unit/test_interleave.py``). A
failure names its seed: ``Run(seed).run()`` replays it exactly. Below them, the races they
found, each pinned down deterministically.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
from interleave import Run

from channel.errors import PeerProtocolError, PeerWarning, RejectedUpdate
from channel.keys import ChannelKeys
from channel.messages import UpdateAddHtlc
from channel.state import Channel, ChannelConfig
from channel.transactions import commitment_fee_sat
from channel.types import CommitmentFormat, OutPoint, Side

QUICK_SEEDS = 250
SOAK_SEEDS = 10_000
CHUNK = 50


def _runs(first: int, count: int) -> tuple[int, int, int]:
    """Run seeds ``first .. first+count-1``; return (warnings, reconnections, payments)."""
    warnings = reconnections = payments = 0
    for seed in range(first, first + count):
        run = Run(seed)
        run.run()
        warnings += run.warnings
        reconnections += run.reconnections
        payments += run.payments
    return warnings, reconnections, payments


@pytest.mark.parametrize("first", range(0, QUICK_SEEDS, CHUNK))
def test_random_interleavings_agree_and_never_force_close(first: int) -> None:
    """Seeds ``first..first+49``: no honest force-close, no warning, every msat accounted for."""
    warnings, reconnections, payments = _runs(first, CHUNK)
    assert warnings == 0
    assert reconnections > CHUNK          # the runs did cut the link, often
    assert payments > 20 * CHUNK


@pytest.mark.soak
@pytest.mark.parametrize("first", range(QUICK_SEEDS, QUICK_SEEDS + SOAK_SEEDS, 500))
def test_soak_random_interleavings(first: int) -> None:
    """10,000 more seeds (in chunks of 500): the same assertions."""
    warnings, _, _ = _runs(first, 500)
    assert warnings == 0


# -- the races, one by one ----------------------------------------------------------------

FUNDING_SAT = 1_000_000
FEERATE = 2000
CONFIG = ChannelConfig(to_self_delay=144)
FORMAT = CommitmentFormat.STATIC_REMOTEKEY
ONION = bytes(1366)


def _pair(push_msat: int = 0) -> tuple[Channel, Channel]:
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(b"\x01" * 32), config=CONFIG, funding_sat=FUNDING_SAT,
        push_msat=push_msat, feerate_per_kw=FEERATE, temporary_channel_id=b"\x02" * 32,
        commitment_format=FORMAT)
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"\x03" * 32),
                                       config=CONFIG, msg=open_msg)
    a.on_accept_channel(accept)
    a.on_funding_signed(b.on_funding_created(
        a.funding_created(OutPoint(txid=b"\x04" * 32, vout=0))))
    b.on_channel_ready(a.funding_locked())
    a.on_channel_ready(b.funding_locked())
    return a, b


def _hash(n: int) -> bytes:
    return hashlib.sha256(hashlib.sha256(b"%d" % n).digest()).digest()


def _add(chan: Channel, amount_msat: int, n: int) -> UpdateAddHtlc:
    return chan.add_htlc(amount_msat=amount_msat, payment_hash=_hash(n), cltv_expiry=700,
                         onion_routing_packet=ONION)


def _flush(x: Channel, y: Channel) -> None:
    while x.can_sign() or y.can_sign():
        if x.can_sign():
            x.on_revoke_and_ack(y.on_commitment_signed(x.sign_commitment()))
        if y.can_sign():
            y.on_revoke_and_ack(x.on_commitment_signed(y.sign_commitment()))


def test_the_opener_keeps_a_fee_spike_buffer() -> None:
    """The opener may not add what would leave less than the commitment fee at twice the
    feerate with one more HTLC; the exact buffer is allowed."""
    a, b = _pair()
    reserve_msat = 10_000_000
    # with one HTLC added, the buffer pays 2 x 2000 sat/kw for 2 HTLCs: 4000 * 1068 // 1000
    buffer_msat = commitment_fee_sat(2 * FEERATE, 2, FORMAT) * 1000
    assert buffer_msat == 4_272_000
    most = FUNDING_SAT * 1000 - reserve_msat - buffer_msat
    assert a.available_to_send_msat() == most
    with pytest.raises(RejectedUpdate, match="fee spike buffer"):
        _add(a, most + 1, 1)
    b.on_update_add_htlc(_add(a, most, 1))
    _flush(a, b)
    assert a.balance_msat(Side.HOLDER) == reserve_msat + buffer_msat


def test_an_htlc_crossing_an_update_fee_is_accepted_on_both_sides() -> None:
    """A raises the feerate to the most it can pay (as it sees the channel) while B's HTLC is
    in flight the other way: B must not count its own HTLC, which A had not seen, against A
    (that failed the channel), and both sides end on the same commitments."""
    a, b = _pair(push_msat=500_000_000)
    b.on_update_add_htlc(_add(a, 480_000_000, 1))
    _flush(a, b)
    (h,) = b.htlcs_to_settle()
    a.on_update_fulfill_htlc(b.fulfill_htlc(h.htlc_id, hashlib.sha256(b"1").digest()))
    _flush(a, b)
    assert a.balance_msat() == 20_000_000
    low, high = FEERATE, 1_000_000          # the highest feerate A's update_fee allows
    while low + 1 < high:
        middle = (low + high) // 2
        try:
            copy.deepcopy(a).update_fee(middle)
            low = middle
        except RejectedUpdate:
            high = middle
    feerate = low
    room_sat = 20_000 - 10_000
    assert commitment_fee_sat(feerate, 1, FORMAT) <= room_sat < \
        commitment_fee_sat(feerate, 2, FORMAT)
    fee = a.update_fee(feerate)
    add = _add(b, 50_000_000, 2)
    # each side receives the other's message after sending its own
    a.on_update_add_htlc(add)
    b.on_update_fee(fee)
    _flush(a, b)
    assert a.balance_msat() + b.balance_msat() + 50_000_000 == FUNDING_SAT * 1000
    assert a.holder_commitment_number == b.counterparty_commitment_number
    mine = a._commitment(Side.HOLDER, a.holder_commitment_number)
    theirs = b._commitment(Side.COUNTERPARTY, a.holder_commitment_number)
    assert mine.txid == theirs.txid
    assert mine.feerate_per_kw == feerate


def test_an_htlc_crossing_an_htlc_at_the_limit_is_accepted() -> None:
    """A adds exactly what it may spend while B's HTLC crosses it: B's check counts only what
    A had seen (B's own unacknowledged HTLC raised A's fee), so B accepts instead of failing."""
    a, b = _pair(push_msat=500_000_000)
    theirs = _add(b, 40_000_000, 1)
    ours = _add(a, a.available_to_send_msat(), 2)
    b.on_update_add_htlc(ours)
    a.on_update_add_htlc(theirs)
    _flush(a, b)
    assert len(a.htlcs_in_flight()) == len(b.htlcs_in_flight()) == 2


def test_updates_wait_for_channel_reestablish() -> None:
    """Between a disconnection and the peer's channel_reestablish our own updates are refused
    (RejectedUpdate) and the peer's draw a warning, not a force-close; afterwards both work."""
    a, b = _pair(push_msat=500_000_000)
    b.on_update_add_htlc(_add(a, 20_000_000, 1))
    _flush(a, b)
    eager = _add(b, 1_000_000, 2)
    a.on_disconnect()
    b.on_disconnect()
    with pytest.raises(RejectedUpdate, match="channel_reestablish"):
        _add(a, 1_000_000, 3)
    with pytest.raises(RejectedUpdate, match="channel_reestablish"):
        a.update_fee(FEERATE + 1)
    assert a.htlcs_to_settle() == [] and not a.can_sign()
    with pytest.raises(PeerWarning, match="before channel_reestablish"):
        a.on_update_add_htlc(eager)
    assert not isinstance(PeerWarning("x"), PeerProtocolError)
    assert a.on_channel_reestablish(b.channel_reestablish()) == []
    assert b.on_channel_reestablish(a.channel_reestablish()) == []
    assert [h.htlc_id for h in b.htlcs_to_settle()] == [0]
    b.on_update_add_htlc(_add(a, 1_000_000, 3))
