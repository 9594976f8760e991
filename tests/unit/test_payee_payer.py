"""The payee's BOLT 4 checks and the payer's channel choice and retries, on managers in memory."""

from __future__ import annotations

import hashlib

import pytest
from test_manager import HEIGHT, NOW, Net, _balances

from channel.bolt11 import Bolt11Invoice, Network, sign_invoice
from channel.effects import Effects, PaymentResolved
from channel.failure_onion import build_failure_onion, wrap_failure_onion
from channel.forwarding import ChannelPolicy
from channel.gossip import ShortChannelId, sign_channel_update
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import UpdateFailHtlc, UpdateFulfillHtlc
from channel.onion_failures import (
    FailureCode,
    TemporaryChannelFailure,
)
from channel.payment_attempts import FailureReport, OutgoingPayment
from channel.payments import FINAL_CLTV_DELTA
from channel.route import Route, RouteHop, build_route_onion
from channel.types import Side
from channel.wire import REGTEST_CHAIN_HASH

AMOUNT_MSAT = 40_000_000
DETAILS = int(FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)


@pytest.fixture
def net() -> Net:
    return Net()


def _pair(net: Net) -> tuple[ChannelManager, ChannelManager]:
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    net.open(alice, bob)
    return alice, bob


def _send_raw(net: Net, payer: ChannelManager, payee: ChannelManager, invoice: Bolt11Invoice,
              *, amount_msat: int | None = None, final_cltv_delta: int = FINAL_CLTV_DELTA,
              ) -> PaymentResolved:
    """An HTLC for ``invoice`` straight to ``payee``, past the payer's own refusals (the way
    a hostile or buggy payer would send it); the payer's outcome."""
    handle = payer.usable_channel(payee.node_id)
    state = OutgoingPayment(invoice=invoice.encode(), payment_hash=invoice.payment_hash,
                            amount_msat=amount_msat or AMOUNT_MSAT,
                            final_cltv_delta=final_cltv_delta)
    route = Route(hops=(RouteHop(node_id=payee.node_id, short_channel_id=bytes(8)),))
    fx = Effects()
    assert payer.payments.send_on_route(handle, invoice, state, route, HEIGHT, fx) is None
    payer.end_of_batch(fx)
    net.complete(payer.node_id, fx)
    net.run()
    done = [r for r in net.resolutions[payer.node_id] if isinstance(r, PaymentResolved)
            and r.payment_hash == invoice.payment_hash]
    return done[-1]


def _invoice(net: Net, payee: ChannelManager) -> Bolt11Invoice:
    """What `invoice` makes: with route hints for the payee's unannounced channels."""
    fx = Effects()
    invoice = payee.payments.create_invoice(AMOUNT_MSAT, "test", False, fx, now=NOW,
                                            route_hints=payee.payer.route_hints())
    net.complete(payee.node_id, fx)
    return invoice


def _assert_refused(done: PaymentResolved, payee: ChannelManager, htlc_msat: int) -> None:
    """Failed by the payee with incorrect_or_unknown_payment_details(htlc_msat, height)."""
    result = done.result
    assert result["status"] == "failed"
    assert "payment_preimage" not in result
    assert (result["failure_code"], result["hop_index"], result["node_id"]) == \
        (DETAILS, 0, payee.node_id.hex())
    assert result["reason"].startswith(f"the payee ({payee.node_id.hex()[:16]}")
    assert f"refused {htlc_msat} msat at its height {HEIGHT}" in result["reason"]


def test_invoice_is_bolt11_signed_by_the_node_with_our_cltv_delta(net: Net) -> None:
    """`invoice` writes lnbcrt… with the node's signature, payment secret, c = 18 and 8+14."""
    alice, _ = _pair(net)
    invoice = _invoice(net, alice)
    text = invoice.encode()
    assert text.startswith("lnbcrt400u1")
    decoded = Bolt11Invoice.decode(text)
    assert decoded.payee_node_id == alice.node_id
    assert (decoded.amount_msat, decoded.min_final_cltv_expiry_delta, decoded.timestamp,
            decoded.expiry_seconds, decoded.description) == (AMOUNT_MSAT, 18, NOW, 3600, "test")
    assert sorted(decoded.features.bits) == [8, 14]
    row = alice.payments.payment(decoded.payment_hash.hex())
    assert row is not None and row.payment_secret == decoded.payment_secret.hex()


def test_second_htlc_for_a_paid_invoice_is_failed_and_the_preimage_not_released(
        net: Net) -> None:
    """An invoice pays once: a second HTLC for it gets incorrect_or_unknown_payment_details,
    the payer learns no preimage and the payee's balance grows only by the first."""
    alice, bob = _pair(net)
    invoice = _invoice(net, bob)
    sent_by_bob: list[object] = []
    complete = net.complete

    def spy(node_id: bytes, fx: Effects) -> None:
        if node_id == bob.node_id:
            sent_by_bob.extend(message for _, message in fx.outgoing)
        complete(node_id, fx)

    net.complete = spy  # type: ignore[method-assign]
    first = _send_raw(net, alice, bob, invoice)
    assert first.result["status"] == "succeeded"
    second = _send_raw(net, alice, bob, invoice)
    _assert_refused(second, bob, AMOUNT_MSAT)
    assert _balances(bob, alice) == (AMOUNT_MSAT, 1_000_000_000 - AMOUNT_MSAT)
    assert [type(m).__name__ for m in sent_by_bob
            if isinstance(m, UpdateFulfillHtlc | UpdateFailHtlc)] == \
        ["UpdateFulfillHtlc", "UpdateFailHtlc"]


def test_underpaying_and_overpaying_htlcs_are_refused(net: Net) -> None:
    """1 msat below the invoice, or more than twice it: incorrect_or_unknown_payment_details
    with the HTLC's amount; exactly twice the invoice is accepted (BOLT 4)."""
    alice, bob = _pair(net)
    invoice = _invoice(net, bob)
    _assert_refused(_send_raw(net, alice, bob, invoice, amount_msat=AMOUNT_MSAT - 1), bob,
                    AMOUNT_MSAT - 1)
    _assert_refused(_send_raw(net, alice, bob, invoice, amount_msat=2 * AMOUNT_MSAT + 1), bob,
                    2 * AMOUNT_MSAT + 1)
    assert _balances(bob, alice)[0] == 0
    paid = _send_raw(net, alice, bob, invoice, amount_msat=2 * AMOUNT_MSAT)
    assert paid.result["status"] == "succeeded"
    assert _balances(bob, alice)[0] == 2 * AMOUNT_MSAT


def test_too_soon_expiry_is_refused(net: Net) -> None:
    """A final HTLC expiring sooner than our c (18) minus 3 blocks of grace is refused; the
    earliest accepted expiry is height + 15."""
    alice, bob = _pair(net)
    invoice = _invoice(net, bob)
    _assert_refused(_send_raw(net, alice, bob, invoice, final_cltv_delta=14), bob, AMOUNT_MSAT)
    assert _balances(bob, alice)[0] == 0
    assert _send_raw(net, alice, bob, invoice, final_cltv_delta=15).result["status"] == \
        "succeeded"


def test_wrong_secret_and_unknown_hash_are_refused(net: Net) -> None:
    """An HTLC with another payment secret, or for a hash we never invoiced, is refused the
    same way (a prober cannot tell them apart)."""
    alice, bob = _pair(net)
    real = _invoice(net, bob)
    bob_secret = hashlib.sha256(b"bob").digest()
    forged = sign_invoice(node_secret=bob_secret, network=Network.REGTEST,
                          amount_msat=AMOUNT_MSAT, timestamp=NOW,
                          payment_hash=real.payment_hash, payment_secret=bytes(32),
                          description="x")
    _assert_refused(_send_raw(net, alice, bob, forged), bob, AMOUNT_MSAT)
    unknown = sign_invoice(node_secret=bob_secret, network=Network.REGTEST,
                           amount_msat=AMOUNT_MSAT, timestamp=NOW,
                           payment_hash=hashlib.sha256(b"never").digest(),
                           payment_secret=real.payment_secret, description="x")
    _assert_refused(_send_raw(net, alice, bob, unknown), bob, AMOUNT_MSAT)
    assert _balances(bob, alice)[0] == 0


def test_unpeelable_onion_gets_update_fail_malformed_htlc(net: Net) -> None:
    """An onion of the wrong version is answered with update_fail_malformed_htlc carrying its
    SHA256; the payer reports invalid_onion_version from hop 0."""
    alice, bob = _pair(net)
    invoice = _invoice(net, bob)
    handle = alice.usable_channel(bob.node_id)
    onion = b"\x01" + bytes(1365)
    alice.payments.outgoing[invoice.payment_hash] = OutgoingPayment(
        invoice=invoice.encode(), payment_hash=invoice.payment_hash, amount_msat=AMOUNT_MSAT,
        final_cltv_delta=18,
        route=Route(hops=(RouteHop(node_id=bob.node_id, short_channel_id=bytes(8)),)))
    fx = Effects()
    fx.send(bob.node_id, handle.channel.add_htlc(
        amount_msat=AMOUNT_MSAT, payment_hash=invoice.payment_hash, cltv_expiry=HEIGHT + 18,
        onion_routing_packet=onion))
    fx.touch(handle)
    alice.end_of_batch(fx)
    net.complete(alice.node_id, fx)
    net.run()
    [done] = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    assert done.result["failure_code"] == int(FailureCode.INVALID_ONION_VERSION)
    assert done.result["hop_index"] == 0
    assert hashlib.sha256(onion).hexdigest() in done.result["reason"]
    assert _balances(bob, alice)[0] == 0


def test_a_restarted_payer_still_reads_the_failure_of_its_route() -> None:
    """The persisted record of a 3-hop payment decrypts a failure built by hop 1 after a
    JSON round trip (what a restarted payer loads from its kv table)."""
    nodes = [PrivateKey(hashlib.sha256(bytes([i])).digest()).pubkey for i in range(3)]
    route = Route(hops=tuple(RouteHop(node_id=n, short_channel_id=bytes(ShortChannelId(
        100 + i, 1, 0)), fee_base_msat=1000, cltv_expiry_delta=40)
        for i, n in enumerate(nodes)))
    built = build_route_onion(route, payment_hash=bytes(32), payment_secret=bytes(32),
                              total_msat=5_000, final_cltv=300, session_key=b"\x42" * 32)
    state = OutgoingPayment(invoice="lnbcrt1", payment_hash=bytes(32), amount_msat=5_000,
                            final_cltv_delta=18, route=route,
                            shared_secrets=built.shared_secrets, fee_msat=built.fee_msat)
    loaded = OutgoingPayment.from_json(state.to_json())
    assert loaded == state
    reason = build_failure_onion(shared_secret=built.shared_secrets[1],
                                 failure=TemporaryChannelFailure(channel_update=b""))
    reason = wrap_failure_onion(shared_secret=built.shared_secrets[0], packet=reason)
    report = loaded.read_failure(reason, None)
    assert (report.hop_index, report.node_id, report.is_last) == (1, nodes[1], False)
    assert report.failure == TemporaryChannelFailure(channel_update=b"")
    assert report.text.startswith(f"hop 1 ({nodes[1].hex()[:16]}…, reached over 101x1x0)")


def test_pay_uses_the_channel_that_can_carry_the_amount(net: Net) -> None:
    """With two channels to the payee, the first without outbound liquidity, the payment
    goes over the second one."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    empty = net.open(bob, alice)      # Bob's money: Alice cannot send over it
    funded = net.open(alice, bob)
    net.pay(alice, bob, AMOUNT_MSAT)
    assert alice.handles[empty].channel.balance_msat(Side.HOLDER) == 0
    assert alice.handles[funded].channel.balance_msat(Side.HOLDER) == \
        1_000_000_000 - AMOUNT_MSAT


def _scid(net: Net, a: ChannelManager, b: ChannelManager, key: str,
          scid: ShortChannelId) -> None:
    for manager in (a, b):
        fx = Effects()
        manager.payer.set_short_channel_id(key, scid, fx)
        assert fx.kv == [(f"scid:{key}", str(scid))]


def test_payer_retries_another_route_after_a_hop_fails(net: Net) -> None:
    """Alice pays Carol (no channel to her) over the route hints of Carol's invoice: the first
    route's hop fails, Alice excludes its channel and tries the other; each attempt is
    reported with its route and the hop's decoded failure."""
    alice, bob, carol, dave = (net.add(n) for n in ("alice", "bob", "carol", "dave"))
    for x, y in ((alice, bob), (alice, dave), (bob, carol), (dave, carol)):
        net.connect(x, y)
    net.open(alice, bob)
    net.open(alice, dave)
    bc = net.open(carol, bob)
    dc = net.open(carol, dave)
    _scid(net, bob, carol, bc, ShortChannelId(110, 1, 0))
    _scid(net, dave, carol, dc, ShortChannelId(111, 2, 1))
    invoice = _invoice(net, carol)
    assert sorted(hint[0].short_channel_id_text for hint in invoice.route_hints) == \
        ["110x1x0", "111x2x1"]
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    [done] = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    result = done.result
    assert result["status"] == "failed"
    attempts = result["attempts"]
    assert len(attempts) == 2
    via = {bob.node_id.hex(): "110x1x0", dave.node_id.hex(): "111x2x1"}
    for attempt in attempts:
        first, last = attempt["route"]
        assert last == {"node_id": carol.node_id.hex(),
                        "short_channel_id": via[first["node_id"]]}
        assert attempt["hop_index"] == 0 and attempt["node_id"] == first["node_id"]
        # the hints carry no fee (Carol never heard Bob's or Dave's update under the real
        # scid), so the forwarders refuse the HTLC for its fee (BOLT 4 fee_insufficient)
        assert attempt["failure_code"] in (int(FailureCode.UNKNOWN_NEXT_PEER),
                                           int(FailureCode.TEMPORARY_CHANNEL_FAILURE),
                                           int(FailureCode.FEE_INSUFFICIENT))
    assert {a["node_id"] for a in attempts} == {bob.node_id.hex(), dave.node_id.hex()}
    assert "no route" in result["reason"]
    for manager, peer in ((alice, bob), (alice, dave)):
        assert _balances(manager, peer) == (1_000_000_000, 0)
    assert carol.payments.payment(invoice.payment_hash.hex()).status == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize("decision", ["settle", "cancel"])
def test_hold_invoice_keeps_the_htlc_until_settle_or_cancel(net: Net, decision: str) -> None:
    """A hold invoice's HTLC passes the checks and waits; `settle` fulfils it, `cancel` fails
    it with incorrect_or_unknown_payment_details (the preimage stays with the payee)."""
    alice, bob = _pair(net)
    fx = Effects()
    invoice = bob.payments.create_invoice(AMOUNT_MSAT, "held", True, fx, now=NOW)
    net.complete(bob.node_id, fx)
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    assert not [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    [held] = bob.holding(invoice.payment_hash.hex())
    fx = Effects()
    bob.release_hold(invoice.payment_hash.hex(), decision, fx)
    bob.settle_held(held, fx)
    net.complete(bob.node_id, fx)
    net.run()
    [done] = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    if decision == "settle":
        assert done.result["status"] == "succeeded"
        assert _balances(bob, alice)[0] == AMOUNT_MSAT
    else:
        _assert_refused(done, bob, AMOUNT_MSAT)
        assert _balances(bob, alice)[0] == 0


def test_a_failure_s_channel_update_is_applied_and_its_channel_avoided(net: Net) -> None:
    """temporary_channel_failure from Bob carrying his signed channel_update for Bob→Carol:
    Alice's graph takes Bob's new fee and delta, and the next route avoids that channel."""
    alice, bob, carol = net.add("alice"), net.add("bob"), net.add("carol")
    scid = ShortChannelId(120, 3, 1)
    alice.graph.add_private_channel(scid, bob.node_id, carol.node_id, capacity_sat=1_000_000)
    update = sign_channel_update(
        node_key=PrivateKey(hashlib.sha256(b"bob").digest()), chain_hash=REGTEST_CHAIN_HASH,
        short_channel_id=scid, timestamp=NOW, direction=int(bob.node_id > carol.node_id),
        disabled=False, cltv_expiry_delta=40, htlc_minimum_msat=1, fee_base_msat=1_000,
        fee_proportional_millionths=7, htlc_maximum_msat=500_000_000)
    route = Route(hops=(RouteHop(node_id=bob.node_id, short_channel_id=bytes(8)),
                        RouteHop(node_id=carol.node_id, short_channel_id=bytes(scid))))
    state = OutgoingPayment(invoice="", payment_hash=bytes(32), amount_msat=AMOUNT_MSAT,
                            final_cltv_delta=18, route=route)
    failure = TemporaryChannelFailure(channel_update=(258).to_bytes(2, "big") + update.encode())
    alice.payer.learn(state, FailureReport(0, bob.node_id, failure, "hop 0 failed"))
    assert alice.graph.channels[scid].policy_from(bob.node_id) == ChannelPolicy(
        fee_base_msat=1_000, fee_proportional_millionths=7, cltv_expiry_delta=40,
        htlc_minimum_msat=1, htlc_maximum_msat=500_000_000)
    assert state.excluded_channels == {bytes(scid)} and state.excluded_nodes == set()


def test_a_retry_interrupted_by_a_restart_ends_as_failed(net: Net) -> None:
    """A payment whose route failed and whose next route was not sent before a restart is
    failed at start with its last failure (nothing of it is in flight), not left pending."""
    alice = net.add("alice")
    state = OutgoingPayment(invoice="", payment_hash=b"\x07" * 32, amount_msat=AMOUNT_MSAT,
                            final_cltv_delta=18, attempts=[{"reason": "hop 0 failed: x"}],
                            attempts_pending=True)
    alice.payments.outgoing[state.payment_hash] = OutgoingPayment.from_json(state.to_json())
    fx = Effects()
    alice.payer.end_interrupted_retries(fx)
    [row] = fx.payments
    assert (row.payment_hash, row.status, row.detail) == (
        state.payment_hash.hex(), "failed",
        "hop 0 failed: x; the node restarted before trying another route: pay again")
    [done] = fx.resolutions
    assert isinstance(done, PaymentResolved) and done.result["status"] == "failed"
    assert not alice.payments.outgoing[state.payment_hash].attempts_pending


def test_payee_decides_on_the_onion_the_forwarder_already_peeled() -> None:
    """decide_incoming reads a given peel instead of peeling again: with the peel the forwarder
    made, the HTLC is fulfilled even under a node key that could not peel it; without it, that
    key fails the HTLC as malformed (so the peel given is the one used)."""
    from channel.htlc_log import HtlcEntry
    from channel.onion import peel_payment_onion
    from channel.payee import FailMalformed, Fulfil, decide_incoming
    from channel.store import PaymentRow

    node_key = hashlib.sha256(b"payee").digest()
    payee_id = PrivateKey(node_key).pubkey
    preimage, secret = bytes(range(32)), bytes([7]) * 32
    payment_hash = hashlib.sha256(preimage).digest()
    built = build_route_onion(
        Route(hops=(RouteHop(node_id=payee_id, short_channel_id=bytes(8)),)),
        payment_hash=payment_hash, payment_secret=secret, total_msat=AMOUNT_MSAT,
        final_cltv=HEIGHT + FINAL_CLTV_DELTA, session_key=bytes([9]) * 32)
    entry = HtlcEntry(offerer=Side.COUNTERPARTY, htlc_id=0, amount_msat=AMOUNT_MSAT,
                      payment_hash=payment_hash, cltv_expiry=built.cltv_expiry,
                      onion_routing_packet=built.onion)
    row = PaymentRow(payment_hash=payment_hash.hex(), direction="in", amount_msat=AMOUNT_MSAT,
                     status="pending", preimage=preimage.hex(), payment_secret=secret.hex())
    peeled = peel_payment_onion(onion=built.onion, node_key=node_key, payment_hash=payment_hash)
    other_key = hashlib.sha256(b"not the payee").digest()
    given = decide_incoming(entry, node_secret=other_key, payment=row, hold=None, height=HEIGHT,
                            min_final_cltv_expiry_delta=FINAL_CLTV_DELTA, peeled=peeled)
    assert given == Fulfil(preimage=preimage, amount_msat=AMOUNT_MSAT)
    fresh = decide_incoming(entry, node_secret=other_key, payment=row, hold=None, height=HEIGHT,
                            min_final_cltv_expiry_delta=FINAL_CLTV_DELTA)
    assert isinstance(fresh, FailMalformed)
