"""While a node's chain view is stale it adds no HTLC and takes on none; ending HTLCs goes on.

Managers in memory (tests/unit/test_manager.py's Net): the node shell sets
``payments.chain_view_refusal`` on each transition of its ChainView; these tests set it.
"""

from __future__ import annotations

import pytest
from test_manager import NOW, Net, _balances

from channel.chain_view import ChainView
from channel.effects import Effects, PaymentResolved
from channel.manager import ChannelManager
from channel.onion_failures import FailureCode

AMOUNT_MSAT = 25_000_000
T0 = 1_800_000_000.0


@pytest.fixture
def net() -> Net:
    return Net()


def _stale_refusal() -> str:
    view = ChainView(max_tip_age_s=10, now_s=T0)
    view.unreachable(T0, "connection refused")
    refusal = view.status.refusal()
    assert refusal is not None
    return refusal


def _pair(net: Net) -> tuple[ChannelManager, ChannelManager]:
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    net.open(alice, bob)
    return alice, bob


def test_stale_payer_adds_no_htlc_and_says_why(net: Net) -> None:
    """A pay while stale fails at once with the chain view's one-line reason; nothing moves."""
    alice, bob = _pair(net)
    before = _balances(alice, bob)
    fx = Effects()
    invoice = bob.payments.create_invoice(AMOUNT_MSAT, "coffee", False, fx, now=NOW)
    net.complete(bob.node_id, fx)
    alice.payments.chain_view_refusal = _stale_refusal()
    fx = Effects()
    [outcome] = alice.pay([invoice], fx)
    assert outcome == {"status": "failed", "reason": _stale_refusal()}
    assert outcome["reason"].startswith("the chain view is stale since 2027-01-15 08:00:00 UTC")
    assert fx.outgoing == []
    net.complete(alice.node_id, fx)
    net.run()
    assert _balances(alice, bob) == before
    alice.payments.chain_view_refusal = None   # fresh again: the same invoice pays
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    assert _balances(alice, bob) == (before[0] - AMOUNT_MSAT, before[1] + AMOUNT_MSAT)


def test_stale_payee_fails_a_new_htlc_with_temporary_node_failure(net: Net) -> None:
    """Bob, stale, fails Alice's HTLC back (BOLT 4 temporary_node_failure from hop 0) and
    keeps his preimage; both balances end where they began; fresh again, it pays."""
    alice, bob = _pair(net)
    before = _balances(alice, bob)
    fx = Effects()
    invoice = bob.payments.create_invoice(AMOUNT_MSAT, "coffee", False, fx, now=NOW)
    net.complete(bob.node_id, fx)
    bob.payments.chain_view_refusal = _stale_refusal()
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    done = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    assert len(done) == 1
    result = done[0].result
    assert result["status"] == "failed" and "payment_preimage" not in result
    assert (result["failure_code"], result["hop_index"], result["node_id"]) == \
        (int(FailureCode.TEMPORARY_NODE_FAILURE), 0, bob.node_id.hex())
    assert _balances(alice, bob) == before
    row = bob.payments.payment(invoice.payment_hash.hex())
    assert row is not None and row.status == "pending"
    bob.payments.chain_view_refusal = None
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    assert _balances(alice, bob) == (before[0] - AMOUNT_MSAT, before[1] + AMOUNT_MSAT)


def test_a_held_htlc_is_still_settled_while_stale(net: Net) -> None:
    """An HTLC held before the chain view went stale is settled with its preimage after."""
    alice, bob = _pair(net)
    before = _balances(alice, bob)
    fx = Effects()
    invoice = bob.payments.create_invoice(AMOUNT_MSAT, "held", True, fx, now=NOW)
    net.complete(bob.node_id, fx)
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    assert bob.holding(invoice.payment_hash.hex())
    bob.payments.chain_view_refusal = _stale_refusal()
    fx = Effects()
    bob.release_hold(invoice.payment_hash.hex(), "settle", fx)
    for handle in bob.holding(invoice.payment_hash.hex()):
        bob.settle_held(handle, fx)
    net.complete(bob.node_id, fx)
    net.run()
    assert _balances(alice, bob) == (before[0] - AMOUNT_MSAT, before[1] + AMOUNT_MSAT)
