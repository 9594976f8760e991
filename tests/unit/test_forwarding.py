"""The forwarding decision and the payee's check: each BOLT 4 failure, and the accepted cases."""

from __future__ import annotations

import dataclasses
import hashlib

import coincurve
import pytest

from channel.errors import MalformedMessage
from channel.forwarding import (
    AcceptPayment,
    ChannelPolicy,
    ExpectedPayment,
    ForwardHtlc,
    IncomingHtlc,
    OutgoingChannel,
    check_final_hop,
    decide_forward,
    forwarding_fee_msat,
)
from channel.onion import (
    HopPayload,
    OnionHop,
    PaymentData,
    PeeledFinal,
    PeeledForward,
    build_onion,
    peel_payment_onion,
)
from channel.onion_failures import (
    AmountBelowMinimum,
    ChannelDisabled,
    ExpiryTooFar,
    ExpiryTooSoon,
    FeeInsufficient,
    FinalIncorrectCltvExpiry,
    FinalIncorrectHtlcAmount,
    IncorrectCltvExpiry,
    IncorrectOrUnknownPaymentDetails,
    OnionFailure,
    TemporaryChannelFailure,
    UnknownNextPeer,
)
from channel.route import Route, RouteHop, build_route_onion

HEIGHT = 700
SCID = bytes.fromhex("0000670000010001")  # 103x1x1
NEXT_ONION = bytes(1366)
SECRET = bytes(range(32, 64))
UPDATE = bytes.fromhex("0102") + bytes(10)

# forwards 1_000_000 msat at CLTV 800; the policy asks 1_000 + 1_000_000 * 100 / 1e6 = 1_100
POLICY = ChannelPolicy(fee_base_msat=1_000, fee_proportional_millionths=100,
                       cltv_expiry_delta=40, htlc_minimum_msat=1_000,
                       htlc_maximum_msat=50_000_000)
FORWARD = PeeledForward(
    short_channel_id=SCID, amt_to_forward=1_000_000, outgoing_cltv_value=800,
    next_onion=NEXT_ONION, shared_secret=bytes(32),
    payload=HopPayload(amt_to_forward=1_000_000, outgoing_cltv_value=800, short_channel_id=SCID),
)
EXACT = IncomingHtlc(amount_msat=1_001_100, cltv_expiry=840)
OUTGOING = OutgoingChannel(policy=POLICY)


def _decide(incoming: IncomingHtlc = EXACT, forward: PeeledForward = FORWARD,
            outgoing: OutgoingChannel | None = OUTGOING,
            height: int = HEIGHT) -> ForwardHtlc | OnionFailure:
    return decide_forward(incoming=incoming, forward=forward, outgoing=outgoing,
                          current_height=height)


def _forward(amt_to_forward: int, outgoing_cltv_value: int) -> PeeledForward:
    return dataclasses.replace(FORWARD, amt_to_forward=amt_to_forward,
                               outgoing_cltv_value=outgoing_cltv_value)


def test_fee_formula_rounds_down() -> None:
    """BOLT 7: base + amount * millionths // 1e6 (1_000 + 1_234_567 * 250 // 1e6 = 1_308)."""
    assert forwarding_fee_msat(fee_base_msat=1_000, fee_proportional_millionths=250,
                               amount_msat=1_234_567) == 1_308
    assert POLICY.fee_msat(1_000_000) == 1_100


def test_exact_fee_and_delta_forward() -> None:
    """Exactly the fee and exactly the delta: forward 1_000_000 msat at 800, keep 1_100 msat."""
    assert _decide() == ForwardHtlc(short_channel_id=SCID, amount_msat=1_000_000,
                                    cltv_expiry=800, onion_routing_packet=NEXT_ONION,
                                    fee_msat=1_100)


def test_overpaid_fee_is_kept() -> None:
    """A generous payer: the extra msat and blocks stay with the forwarder."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=1_005_000, cltv_expiry=900))
    assert isinstance(decision, ForwardHtlc)
    assert (decision.amount_msat, decision.cltv_expiry, decision.fee_msat) == (
        1_000_000, 800, 5_000)


def test_unknown_next_peer() -> None:
    """No channel with the payload's short_channel_id: unknown_next_peer (PERM|10)."""
    assert _decide(outgoing=None) == UnknownNextPeer()


def test_disabled_channel() -> None:
    """Our channel_update says disabled: channel_disabled with flags 0 and the update."""
    outgoing = OutgoingChannel(policy=dataclasses.replace(POLICY, enabled=False),
                               channel_update=UPDATE)
    assert _decide(outgoing=outgoing) == ChannelDisabled(disabled_flags=0, channel_update=UPDATE)


def test_peer_offline_is_temporary() -> None:
    """The next peer is not connected: temporary_channel_failure."""
    outgoing = OutgoingChannel(policy=POLICY, peer_connected=False)
    assert _decide(outgoing=outgoing) == TemporaryChannelFailure()


def test_amount_below_minimum_reports_the_incoming_amount() -> None:
    """Forwarding 999 msat over a 1_000 msat minimum: amount_below_minimum(htlc_msat=incoming)."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=2_000, cltv_expiry=840),
                       forward=_forward(999, 800))
    assert decision == AmountBelowMinimum(htlc_msat=2_000)


def test_amount_above_maximum_is_temporary() -> None:
    """Forwarding more than htlc_maximum_msat: temporary_channel_failure."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=60_000_000, cltv_expiry=840),
                       forward=_forward(50_000_001, 800))
    assert decision == TemporaryChannelFailure()


def test_one_msat_short_of_the_fee() -> None:
    """1_001_099 msat in for 1_000_000 out at a 1_100 msat fee: fee_insufficient."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=1_001_099, cltv_expiry=840),
                       outgoing=OutgoingChannel(policy=POLICY, channel_update=UPDATE))
    assert decision == FeeInsufficient(htlc_msat=1_001_099, channel_update=UPDATE)


def test_incoming_below_outgoing_is_fee_insufficient() -> None:
    """An incoming HTLC smaller than the amount to forward can never pay a fee."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=900_000, cltv_expiry=840))
    assert decision == FeeInsufficient(htlc_msat=900_000)


def test_one_block_short_of_the_delta() -> None:
    """Incoming 839 with delta 40 for outgoing 800: incorrect_cltv_expiry(cltv_expiry=839)."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=1_001_100, cltv_expiry=839))
    assert decision == IncorrectCltvExpiry(cltv_expiry=839)


def test_expiry_too_soon() -> None:
    """Outgoing CLTV within 3 blocks of the tip: expiry_too_soon; 4 blocks ahead is fine."""
    assert _decide(height=797) == ExpiryTooSoon()
    assert isinstance(_decide(height=796), ForwardHtlc)


def test_expiry_too_far() -> None:
    """Outgoing CLTV more than 2016 blocks ahead: expiry_too_far."""
    far = _forward(1_000_000, HEIGHT + 2_017)
    incoming = IncomingHtlc(amount_msat=1_001_100, cltv_expiry=HEIGHT + 2_057)
    assert _decide(incoming=incoming, forward=far) == ExpiryTooFar()
    at_limit = _forward(1_000_000, HEIGHT + 2_016)
    assert isinstance(_decide(incoming=incoming, forward=at_limit), ForwardHtlc)


def test_not_enough_outbound_liquidity() -> None:
    """The channel can offer 999_999 msat only: temporary_channel_failure with the update."""
    outgoing = OutgoingChannel(policy=POLICY, available_msat=999_999, channel_update=UPDATE)
    assert _decide(outgoing=outgoing) == TemporaryChannelFailure(channel_update=UPDATE)
    enough = OutgoingChannel(policy=POLICY, available_msat=1_000_000)
    assert isinstance(_decide(outgoing=enough), ForwardHtlc)


def test_first_failure_in_order_wins() -> None:
    """Both fee and CLTV are short: fee_insufficient (checked first, as BOLT 4 lists it)."""
    decision = _decide(incoming=IncomingHtlc(amount_msat=1_000_500, cltv_expiry=810))
    assert decision == FeeInsufficient(htlc_msat=1_000_500)


def test_policy_is_validated() -> None:
    """A policy with max below min or a negative fee, an HTLC beyond u32 CLTV: refused."""
    with pytest.raises(MalformedMessage):
        dataclasses.replace(POLICY, htlc_maximum_msat=999)
    with pytest.raises(MalformedMessage):
        dataclasses.replace(POLICY, fee_base_msat=-1)
    with pytest.raises(MalformedMessage):
        IncomingHtlc(amount_msat=1, cltv_expiry=1 << 32)


def test_route_built_with_the_policy_passes_the_forwarder() -> None:
    """An onion built by build_route_onion from our policy is forwarded with exactly its fee."""
    keys = [bytes([0x21]) * 32, bytes([0x22]) * 32]
    ids = [coincurve.PrivateKey(k).public_key.format(compressed=True) for k in keys]
    route = Route(hops=(
        RouteHop(node_id=ids[0], short_channel_id=bytes(8)),
        RouteHop(node_id=ids[1], short_channel_id=SCID, fee_base_msat=POLICY.fee_base_msat,
                 fee_proportional_millionths=POLICY.fee_proportional_millionths,
                 cltv_expiry_delta=POLICY.cltv_expiry_delta),
    ))
    built = build_route_onion(route, payment_hash=bytes(32), payment_secret=SECRET,
                              total_msat=1_000_000, final_cltv=800, session_key=bytes([7]) * 32)
    peeled = peel_payment_onion(onion=built.onion, node_key=keys[0], payment_hash=bytes(32))
    assert isinstance(peeled, PeeledForward)
    decision = decide_forward(
        incoming=IncomingHtlc(amount_msat=built.amount_msat, cltv_expiry=built.cltv_expiry),
        forward=peeled, outgoing=OutgoingChannel(policy=POLICY), current_height=HEIGHT)
    assert isinstance(decision, ForwardHtlc)
    assert (decision.amount_msat, decision.cltv_expiry, decision.fee_msat) == (
        1_000_000, 800, 1_100)


# --- the payee ---------------------------------------------------------------------------

INVOICE = ExpectedPayment(payment_secret=SECRET, amount_msat=1_000_000,
                          min_final_cltv_expiry_delta=18)
FINAL = PeeledFinal(
    amt_to_forward=1_000_000, outgoing_cltv_value=HEIGHT + 18,
    payment_data=PaymentData(payment_secret=SECRET, total_msat=1_000_000),
    payment_metadata=None, shared_secret=bytes(32),
    payload=HopPayload(amt_to_forward=1_000_000, outgoing_cltv_value=HEIGHT + 18,
                       payment_data=PaymentData(payment_secret=SECRET, total_msat=1_000_000)),
)
PAID = IncomingHtlc(amount_msat=1_000_000, cltv_expiry=HEIGHT + 18)


def _check(incoming: IncomingHtlc = PAID, final: PeeledFinal = FINAL,
           expected: ExpectedPayment | None = INVOICE) -> AcceptPayment | OnionFailure:
    return check_final_hop(incoming=incoming, final=final, expected=expected,
                           current_height=HEIGHT)


def _details(htlc_msat: int = 1_000_000) -> IncorrectOrUnknownPaymentDetails:
    return IncorrectOrUnknownPaymentDetails(htlc_msat=htlc_msat, height=HEIGHT)


def test_final_hop_accepts_the_invoice() -> None:
    """Right secret, amount and expiry: accept 1_000_000 msat."""
    assert _check() == AcceptPayment(amount_msat=1_000_000)


def test_unknown_payment_hash() -> None:
    """No invoice for the hash: incorrect_or_unknown_payment_details with amount and height."""
    assert _check(expected=None) == _details()
    assert _details().encode().hex() == "400f" "00000000000f4240" "000002bc"


def test_wrong_or_missing_secret() -> None:
    """Another payment_secret, or none: the same incorrect_or_unknown_payment_details."""
    wrong = dataclasses.replace(FINAL, payment_data=PaymentData(payment_secret=bytes(32),
                                                                total_msat=1_000_000))
    assert _check(final=wrong) == _details()
    assert _check(final=dataclasses.replace(FINAL, payment_data=None)) == _details()


def test_amount_below_invoice_and_far_above() -> None:
    """999_999 msat or more than twice the invoice: incorrect_or_unknown_payment_details."""
    short = IncomingHtlc(amount_msat=999_999, cltv_expiry=HEIGHT + 18)
    onion_short = dataclasses.replace(FINAL, amt_to_forward=999_999, payment_data=PaymentData(
        payment_secret=SECRET, total_msat=999_999))
    assert _check(incoming=short, final=onion_short) == _details(999_999)
    double = IncomingHtlc(amount_msat=2_000_001, cltv_expiry=HEIGHT + 18)
    assert _check(incoming=double) == _details(2_000_001)
    assert _check(incoming=dataclasses.replace(double, amount_msat=2_000_000)) == AcceptPayment(
        amount_msat=2_000_000)


def test_invoice_without_amount_takes_any() -> None:
    """An invoice without amount accepts what the onion says it pays."""
    assert _check(expected=dataclasses.replace(INVOICE, amount_msat=None)) == AcceptPayment(
        amount_msat=1_000_000)


def test_multi_part_total_is_refused() -> None:
    """total_msat above this HTLC's amount (a multi-part payment): refused, not held."""
    part = dataclasses.replace(FINAL, payment_data=PaymentData(payment_secret=SECRET,
                                                               total_msat=2_000_000))
    assert _check(final=part) == _details()


def test_expiry_too_close_for_the_invoice() -> None:
    """cltv_expiry below height + 18 - 3 grace blocks: incorrect_or_unknown_payment_details."""
    close = IncomingHtlc(amount_msat=1_000_000, cltv_expiry=HEIGHT + 14)
    onion_close = dataclasses.replace(FINAL, outgoing_cltv_value=HEIGHT + 14)
    assert _check(incoming=close, final=onion_close) == _details()
    grace = IncomingHtlc(amount_msat=1_000_000, cltv_expiry=HEIGHT + 15)
    onion_grace = dataclasses.replace(FINAL, outgoing_cltv_value=HEIGHT + 15)
    assert _check(incoming=grace, final=onion_grace) == AcceptPayment(amount_msat=1_000_000)


def test_missing_payment_metadata() -> None:
    """An invoice with metadata paid without it: incorrect_or_unknown_payment_details."""
    with_metadata = dataclasses.replace(INVOICE, payment_metadata=b"order 42")
    assert _check(expected=with_metadata) == _details()
    carried = dataclasses.replace(FINAL, payment_metadata=b"order 42")
    assert _check(final=carried, expected=with_metadata) == AcceptPayment(amount_msat=1_000_000)


def test_already_paid() -> None:
    """A second payment of a paid invoice: incorrect_or_unknown_payment_details."""
    assert _check(expected=dataclasses.replace(INVOICE, already_paid=True)) == _details()


def test_htlc_expiry_below_the_onion() -> None:
    """HTLC cltv_expiry 1 below the onion's outgoing_cltv_value: final_incorrect_cltv_expiry."""
    onion_later = dataclasses.replace(FINAL, outgoing_cltv_value=HEIGHT + 19)
    assert _check(final=onion_later) == FinalIncorrectCltvExpiry(cltv_expiry=HEIGHT + 18)


def test_htlc_amount_below_the_onion() -> None:
    """A forwarder skimmed 1 msat but the invoice is covered: final_incorrect_htlc_amount."""
    onion_more = dataclasses.replace(FINAL, amt_to_forward=1_000_001, payment_data=PaymentData(
        payment_secret=SECRET, total_msat=1_000_001))
    assert _check(final=onion_more) == FinalIncorrectHtlcAmount(incoming_htlc_amt=1_000_000)


def test_payee_reads_a_real_single_hop_onion() -> None:
    """The payee peels an onion and the check accepts the HTLC it arrived with."""
    key = bytes([0x33]) * 32
    node_id = coincurve.PrivateKey(key).public_key.format(compressed=True)
    payment_hash = hashlib.sha256(b"preimage").digest()
    onion = build_onion(session_key=bytes([9]) * 32, hops=[OnionHop(
        node_id=node_id, payload=FINAL.payload.encode())], associated_data=payment_hash)
    peeled = peel_payment_onion(onion=onion, node_key=key, payment_hash=payment_hash)
    assert isinstance(peeled, PeeledFinal)
    assert check_final_hop(incoming=PAID, final=peeled, expected=INVOICE,
                           current_height=HEIGHT) == AcceptPayment(amount_msat=1_000_000)
