"""The payee's answer to one incoming HTLC: fulfil it, hold it, or fail it with a BOLT 4 error.

Pure. The HTLC's onion is peeled (:func:`~channel.onion.peel_payment_onion`); as the final
hop, the payload is checked against our invoice by :func:`~channel.forwarding.check_final_hop`
(unknown hash, wrong secret, amount below the invoice or above twice it, expiry too soon, an
invoice already paid: all ``incorrect_or_unknown_payment_details`` with ``htlc_msat`` and our
height, so a prober learns nothing). A failure travels back as an encrypted failure onion built
with the peel's shared secret (BOLT 4 "Returning Errors"); an onion we cannot peel at all is
answered with ``update_fail_malformed_htlc`` and its ``sha256_of_onion`` (BOLT 2).
The preimage is only ever released by :class:`Fulfil`: an invoice already paid never gives it
out again.
"""

from __future__ import annotations

from dataclasses import dataclass

from channel.failure_onion import build_failure_onion
from channel.forwarding import AcceptPayment, ExpectedPayment, IncomingHtlc, check_final_hop
from channel.htlc_log import HtlcEntry
from channel.onion import (
    OnionRejected,
    PeeledFinal,
    PeeledForward,
    peel_payment_onion,
    sha256_of_onion,
)
from channel.onion_failures import (
    IncorrectOrUnknownPaymentDetails,
    OnionFailure,
    UnknownNextPeer,
)
from channel.store import PaymentRow

__all__ = ["Decision", "Fail", "FailMalformed", "Forward", "Fulfil", "Hold", "decide_incoming",
           "refuse_forward"]


@dataclass(frozen=True, slots=True)
class Fulfil:
    """Claim the HTLC with the invoice's preimage; ``amount_msat`` was received."""

    preimage: bytes
    amount_msat: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold invoice's HTLC that passed every check: keep it until `settle` or `cancel`."""


@dataclass(frozen=True, slots=True)
class Fail:
    """``update_fail_htlc`` with ``reason`` (the encrypted failure onion of ``failure``)."""

    failure: OnionFailure
    reason: bytes


@dataclass(frozen=True, slots=True)
class FailMalformed:
    """``update_fail_malformed_htlc``: the onion could not be peeled (BADONION code)."""

    failure: OnionFailure
    sha256_of_onion: bytes
    failure_code: int


@dataclass(frozen=True, slots=True)
class Forward:
    """Not ours to pay: the onion names a next hop (the forwarder's business)."""

    peeled: PeeledForward


Decision = Fulfil | Hold | Fail | FailMalformed | Forward


def _fail(shared_secret: bytes, failure: OnionFailure) -> Fail:
    return Fail(failure, build_failure_onion(shared_secret=shared_secret, failure=failure))


def decide_incoming(entry: HtlcEntry, *, node_secret: bytes, payment: PaymentRow | None,
                    hold: str | None, height: int, min_final_cltv_expiry_delta: int,
                    peeled: PeeledFinal | OnionRejected | None = None) -> Decision:
    """What to do with ``entry``, an HTLC offered to us and irrevocably committed.

    ``payment`` is our row for its payment hash (None: no invoice of ours), ``hold`` the hold
    state of that invoice (``hold``/``settle``/``cancel`` or None), ``height`` our tip,
    ``peeled`` its onion if already peeled (the forwarder peels every incoming HTLC first).
    """
    if peeled is None:
        return _decide(entry, peel_payment_onion(onion=entry.onion_routing_packet,
                                                 node_key=node_secret,
                                                 payment_hash=entry.payment_hash),
                       payment, hold, height, min_final_cltv_expiry_delta)
    return _decide(entry, peeled, payment, hold, height, min_final_cltv_expiry_delta)


def _decide(entry: HtlcEntry, peeled: PeeledForward | PeeledFinal | OnionRejected,
            payment: PaymentRow | None, hold: str | None, height: int,
            min_final_cltv_expiry_delta: int) -> Decision:
    if isinstance(peeled, OnionRejected):
        if peeled.shared_secret is None:
            return FailMalformed(peeled.failure, sha256_of_onion(entry.onion_routing_packet),
                                 peeled.failure.failure_code)
        return _fail(peeled.shared_secret, peeled.failure)
    if isinstance(peeled, PeeledForward):
        return Forward(peeled)
    return _final(entry, peeled, payment, hold, height, min_final_cltv_expiry_delta)


def _final(entry: HtlcEntry, final: PeeledFinal, payment: PaymentRow | None, hold: str | None,
           height: int, min_final_cltv_expiry_delta: int) -> Decision:
    incoming = IncomingHtlc(amount_msat=entry.amount_msat, cltv_expiry=entry.cltv_expiry)
    expected: ExpectedPayment | None = None
    if payment is not None and payment.direction == "in" and payment.preimage is not None \
            and payment.payment_secret is not None:
        expected = ExpectedPayment(
            payment_secret=bytes.fromhex(payment.payment_secret),
            amount_msat=payment.amount_msat,
            min_final_cltv_expiry_delta=min_final_cltv_expiry_delta,
            already_paid=payment.status == "succeeded")
    verdict = check_final_hop(incoming=incoming, final=final, expected=expected,
                              current_height=height)
    if not isinstance(verdict, AcceptPayment):
        return _fail(final.shared_secret, verdict)
    if hold == "cancel":  # the payee refused it: to the payer, an unknown payment
        return _fail(final.shared_secret, IncorrectOrUnknownPaymentDetails(
            htlc_msat=entry.amount_msat, height=height))
    if hold == "hold":
        return Hold()
    assert payment is not None and payment.preimage is not None  # expected was built from it
    return Fulfil(bytes.fromhex(payment.preimage), verdict.amount_msat)


def refuse_forward(forward: Forward) -> Fail:
    """A node that does not forward answers a forward payload with ``unknown_next_peer``."""
    return _fail(forward.peeled.shared_secret, UnknownNextPeer())
