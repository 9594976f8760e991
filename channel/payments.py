"""The node's payments: its invoices, the HTLCs it pays and is paid with, payment pipelines.

Pure: the table of payments (one :class:`~channel.store.PaymentRow` per payment hash) lives in
memory, loaded once by the node; every change is also put into the flight's
:class:`~channel.effects.Effects` so the node persists it with the channel updates that go with
it. Time (the block height) and randomness are given, never taken.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channel.chain_view import refuse_incoming
from channel.effects import ChannelHandle, Effects, PaymentResolved, PipelineDone
from channel.errors import RejectedUpdate
from channel.htlc_log import HtlcEntry
from channel.payment_attempts import ATTEMPT_KV_PREFIX, FailureReport, OutgoingPayment
from channel.store import PaymentRow

if TYPE_CHECKING:
    from channel.bolt11 import Bolt11Invoice, Network, RouteHint
    from channel.onion import OnionRejected, PeeledFinal
    from channel.payee import Fail
    from channel.route import Route

# BOLT 11 (channel.bolt11), the payee's checks (channel.payee) and onion routes (channel.route)
# are imported in the methods that make an invoice, settle an HTLC or send one: the node builds
# its Payments at start, and an idle node never needs them (``make bench``: idle node RSS).

__all__ = ["FINAL_CLTV_DELTA", "INVOICE_EXPIRY_SECONDS", "Payments", "Pipeline"]

#: Our BOLT 11 ``c``: the blocks a payee needs between the final HTLC's arrival and its expiry
#: (also the least a payer of ours gives, whatever smaller ``c`` an invoice asks).
FINAL_CLTV_DELTA = 18
INVOICE_EXPIRY_SECONDS = 3600

Entropy = Callable[[int], bytes]


@dataclass(slots=True)
class Pipeline:
    """Payments made one batch after another on one channel: the next batch's HTLCs are added
    in the very flight that brings the last preimage of the current one (no round trip lost)."""

    key: str
    invoices: list[Bolt11Invoice]
    batch_size: int
    next_index: int = 0
    outstanding: set[bytes] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    done: bool = False


class Payments:
    """Invoices we issued, payments we made, and the pipelines running."""

    def __init__(self, *, node_id: bytes, node_secret: bytes,
                 rows: Iterable[PaymentRow] = (), holds: dict[str, str] | None = None,
                 outgoing: dict[str, str] | None = None,
                 entropy: Entropy = secrets.token_bytes) -> None:
        self._node_id = node_id
        self._node_secret = node_secret
        self._entropy = entropy
        self._rows = {row.payment_hash: row for row in rows}
        self._holds = dict(holds or {})   # payment hash hex -> "hold" | "settle" | "cancel"
        self.in_flight: set[bytes] = set()   # outgoing payment hashes awaiting an outcome
        self.pipelines: dict[str, Pipeline] = {}
        # set by the node while its chain view is stale: why no new HTLC is taken on
        self.chain_view_refusal: str | None = None
        # our payments' routes and onion secrets (kv "attempt:<hash>"), to read failures
        self.outgoing: dict[bytes, OutgoingPayment] = {
            bytes.fromhex(h): OutgoingPayment.from_json(text)
            for h, text in (outgoing or {}).items() if text}

    @property
    def node_secret(self) -> bytes:
        return self._node_secret

    def payment(self, payment_hash_hex: str) -> PaymentRow | None:
        return self._rows.get(payment_hash_hex)

    def all_payments(self) -> list[PaymentRow]:
        """Every invoice of ours and every payment we made, in the order first seen."""
        return list(self._rows.values())

    def _record(self, row: PaymentRow, fx: Effects) -> None:
        self._rows[row.payment_hash] = row
        fx.payments.append(row)

    def hold_state(self, payment_hash_hex: str) -> str | None:
        return self._holds.get(payment_hash_hex)

    def set_hold(self, payment_hash_hex: str, decision: str, fx: Effects) -> None:
        self._holds[payment_hash_hex] = decision
        fx.kv.append((f"hold:{payment_hash_hex}", decision))

    # -- invoices ----------------------------------------------------------------------------

    def create_invoice(self, amount_msat: int, description: str, hold: bool, fx: Effects, *,
                       now: int, network: Network | None = None,
                       route_hints: Sequence[RouteHint] = ()) -> Bolt11Invoice:
        """A BOLT 11 invoice of ours signed with the node key, its preimage kept (``hold``:
        settled only on demand). ``now`` (seconds since 1970) is its timestamp; ``network``
        None: regtest."""
        from channel.bolt11 import Network, sign_invoice
        if amount_msat <= 0:
            raise RejectedUpdate("an invoice asks for a positive amount_msat")
        preimage = self._entropy(32)
        payment_hash = hashlib.sha256(preimage).digest()
        secret = self._entropy(32)
        invoice = sign_invoice(
            node_secret=self._node_secret, amount_msat=amount_msat,
            network=Network.REGTEST if network is None else network, timestamp=now,
            payment_hash=payment_hash, payment_secret=secret,
            description=description, expiry_seconds=INVOICE_EXPIRY_SECONDS,
            min_final_cltv_expiry_delta=FINAL_CLTV_DELTA, route_hints=route_hints)
        self._record(PaymentRow(
            payment_hash=payment_hash.hex(), direction="in", amount_msat=amount_msat,
            status="pending", preimage=preimage.hex(), payment_secret=secret.hex(),
            detail=description), fx)
        if hold:
            self.set_hold(payment_hash.hex(), "hold", fx)
        return invoice

    # -- paid to us --------------------------------------------------------------------------

    def settle_incoming(self, handle: ChannelHandle, height: int, fx: Effects,
                        peeled: Mapping[int, PeeledFinal | OnionRejected] | None = None,
                        ) -> list[bytes]:
        """Fulfil (or fail, with a BOLT 4 failure onion) the HTLCs paid to us that are now
        irrevocably committed; the preimages released (the channel's monitor must learn them).
        ``peeled``: onions the forwarder already peeled, by HTLC id (the others are peeled here).

        The checks are :func:`channel.payee.decide_incoming`'s; a second HTLC for an invoice
        already paid (even in the same batch) is failed, its preimage not released again."""
        from channel.payee import (
            Fail,
            FailMalformed,
            Forward,
            Fulfil,
            Hold,
            decide_incoming,
        )
        chan = handle.channel
        released: list[bytes] = []
        for entry in chan.htlcs_to_settle():
            payment = self._rows.get(entry.payment_hash.hex())
            stale = self._refused_while_stale(entry)
            if stale is not None:
                fx.send(handle.peer_id, chan.fail_htlc(entry.htlc_id, stale.reason))
                continue
            decision = decide_incoming(
                entry, node_secret=self._node_secret, payment=payment,
                peeled=peeled.get(entry.htlc_id) if peeled is not None else None,
                hold=self._holds.get(entry.payment_hash.hex()), height=height,
                min_final_cltv_expiry_delta=FINAL_CLTV_DELTA)
            if isinstance(decision, Forward):
                continue   # a forward: channel.forwarder offers it on the next channel
            if isinstance(decision, Hold):
                continue  # a hold invoice: the HTLC stays until `settle` or `cancel`
            if isinstance(decision, Fulfil) and payment is not None:
                fx.send(handle.peer_id, chan.fulfill_htlc(entry.htlc_id, decision.preimage))
                released.append(decision.preimage)
                self._record(PaymentRow(
                    payment_hash=payment.payment_hash, direction="in",
                    amount_msat=decision.amount_msat, status="succeeded",
                    preimage=payment.preimage, payment_secret=payment.payment_secret,
                    detail=payment.detail), fx)
            elif isinstance(decision, FailMalformed):
                fx.send(handle.peer_id, chan.fail_malformed_htlc(
                    entry.htlc_id, decision.sha256_of_onion, decision.failure_code))
            elif isinstance(decision, Fail):
                fx.send(handle.peer_id, chan.fail_htlc(entry.htlc_id, decision.reason))
        return released

    def _refused_while_stale(self, entry: HtlcEntry) -> Fail | None:
        """A new HTLC offered while our chain view is stale: failed, not taken on. A hold
        invoice's HTLCs (held already, or to settle) go on: ending an HTLC is always safe."""
        if self.chain_view_refusal is None or \
                self._holds.get(entry.payment_hash.hex()) in ("hold", "settle"):
            return None
        return refuse_incoming(entry, node_secret=self._node_secret)

    # -- paid by us --------------------------------------------------------------------------

    def refusal(self, invoice: Bolt11Invoice) -> dict[str, Any] | None:
        """Why ``invoice`` must not be paid now (one in flight, or paid already), or None."""
        previous = self._rows.get(invoice.payment_hash.hex())
        if invoice.payment_hash in self.in_flight:
            return {"status": "failed", "reason": "a payment for this invoice is in flight"}
        if previous is not None and previous.direction == "out" and \
                previous.status == "succeeded":
            return {"status": "failed",
                    "reason": "this invoice is already paid (we hold its preimage)"}
        if invoice.amount_msat is None:
            return {"status": "failed", "reason": "the invoice names no amount: ask the payee "
                    "for one with an amount"}
        return None

    def new_outgoing(self, invoice: Bolt11Invoice) -> OutgoingPayment:
        """The record of a payment about to start (its first route comes next)."""
        assert invoice.amount_msat is not None
        return OutgoingPayment(
            invoice=invoice.encode(), payment_hash=invoice.payment_hash,
            amount_msat=invoice.amount_msat,
            final_cltv_delta=max(FINAL_CLTV_DELTA, invoice.min_final_cltv_expiry_delta))

    def send_on_route(self, handle: ChannelHandle, invoice: Bolt11Invoice,
                      state: OutgoingPayment, route: Route, height: int,
                      fx: Effects) -> dict[str, Any] | None:
        """Offer the HTLC of ``state`` along ``route`` (its first hop is ``handle``'s peer).

        BOLT 4 final payload: ``payment_data`` (the invoice's secret, ``total_msat``) and the
        invoice's ``payment_metadata``. The route's hop secrets are persisted with the HTLC.
        None: sent; else the failure to report (nothing was added, e.g. while our chain
        view is stale: a new HTLC is safe only for a node that watches the chain)."""
        from channel.route import build_route_onion
        if self.chain_view_refusal is not None:
            return {"status": "failed", "reason": self.chain_view_refusal}
        built = build_route_onion(
            route, payment_hash=invoice.payment_hash, payment_secret=invoice.payment_secret,
            total_msat=state.amount_msat, final_cltv=height + state.final_cltv_delta,
            session_key=self._entropy(32), payment_metadata=invoice.payment_metadata)
        try:
            add = handle.channel.add_htlc(
                amount_msat=built.amount_msat, payment_hash=invoice.payment_hash,
                cltv_expiry=built.cltv_expiry, onion_routing_packet=built.onion)
        except RejectedUpdate as exc:
            return {"status": "failed", "reason": str(exc)}
        fx.touch(handle)
        fx.send(handle.peer_id, add)
        state.route, state.shared_secrets = route, built.shared_secrets
        state.channel_key, state.fee_msat = handle.key, built.fee_msat
        self.outgoing[invoice.payment_hash] = state
        fx.kv.append((ATTEMPT_KV_PREFIX + invoice.payment_hash.hex(), state.to_json()))
        self._record(PaymentRow(payment_hash=invoice.payment_hash.hex(), direction="out",
                                amount_msat=state.amount_msat, status="pending"), fx)
        self.in_flight.add(invoice.payment_hash)
        return None

    def add_payments(self, handle: ChannelHandle, decoded: list[Bolt11Invoice], height: int,
                     fx: Effects) -> list[dict[str, Any] | None]:
        """Add one HTLC per invoice, straight to ``handle``'s peer (the payee), to ``fx`` (not
        signed yet); per invoice, its failure now or None (pending: a
        :class:`PaymentResolved` comes later).

        An add that raises changes nothing (the state machine's contract), so the HTLCs added
        before it still go out, and none is lost."""
        from channel.route import Route, RouteHop
        outcomes: list[dict[str, Any] | None] = []
        fx.touch(handle)
        hop = RouteHop(node_id=handle.peer_id,
                       short_channel_id=handle.short_channel_id or bytes(8))
        with handle.channel.adding_batch():   # only adds until the batch is out
            for inv in decoded:
                refused = self.refusal(inv)
                if refused is None:
                    refused = self.send_on_route(handle, inv, self.new_outgoing(inv),
                                                 Route(hops=(hop,)), height, fx)
                outcomes.append(refused)
        return outcomes

    def on_fulfilled(self, handle: ChannelHandle, entry: HtlcEntry, preimage: bytes,
                     height: int, fx: Effects) -> None:
        """The peer fulfilled our HTLC: the preimage is our proof of payment."""
        state = self.outgoing.get(entry.payment_hash)
        amount_msat = entry.amount_msat if state is None else state.amount_msat
        self._record(PaymentRow(payment_hash=entry.payment_hash.hex(), direction="out",
                                amount_msat=amount_msat, status="succeeded",
                                preimage=preimage.hex()), fx)
        result: dict[str, Any] = {"status": "succeeded", "payment_preimage": preimage.hex(),
                                  "amount_msat": amount_msat}
        if state is not None and state.route is not None:
            result.update({"fee_msat": state.fee_msat,
                           "attempts": [*state.attempts, state.attempt_dict(None)]})
        self._resolve(entry.payment_hash, result, fx)
        self._advance_pipeline(handle, entry.payment_hash, True, height, fx)

    def fail_payment(self, state: OutgoingPayment, reason: str, fx: Effects) -> None:
        """A payment out of routes to try: record and answer ``reason`` and its last
        attempt's failure (code, hop)."""
        last = state.attempts[-1] if state.attempts else {}
        result: dict[str, Any] = {k: last[k] for k in ("hop_index", "node_id", "failure_code",
                                                       "failure") if k in last}
        result.update({"status": "failed", "reason": reason, "attempts": state.attempts})
        fx.kv.append((ATTEMPT_KV_PREFIX + state.payment_hash.hex(), state.to_json()))
        self._record(PaymentRow(payment_hash=state.payment_hash.hex(), direction="out",
                                amount_msat=state.amount_msat, status="failed",
                                detail=reason), fx)
        self._resolve(state.payment_hash, result, fx)

    def on_failed(self, handle: ChannelHandle, entry: HtlcEntry, report: FailureReport,
                  height: int, fx: Effects) -> None:
        """Our payment failed for good: record why, answer the payer with the hop's failure."""
        state = self.outgoing.get(entry.payment_hash)
        result: dict[str, Any] = {"status": "failed", "reason": report.text}
        result.update(report.as_dict())
        if state is not None:
            result["attempts"] = state.attempts
            fx.kv.append((ATTEMPT_KV_PREFIX + entry.payment_hash.hex(), state.to_json()))
        self._record(PaymentRow(payment_hash=entry.payment_hash.hex(), direction="out",
                                amount_msat=entry.amount_msat if state is None
                                else state.amount_msat,
                                status="failed", detail=report.text), fx)
        self._resolve(entry.payment_hash, result, fx)
        self._advance_pipeline(handle, entry.payment_hash, False, height, fx)

    def _resolve(self, payment_hash: bytes, result: dict[str, Any], fx: Effects) -> None:
        self.in_flight.discard(payment_hash)
        fx.resolutions.append(PaymentResolved(payment_hash, result))

    def abandon(self, payment_hash: bytes) -> None:
        """The caller stopped waiting (a timeout): a new attempt may be made."""
        self.in_flight.discard(payment_hash)

    # -- pipelines ---------------------------------------------------------------------------

    def start_pipeline(self, handle: ChannelHandle, decoded: list[Bolt11Invoice],
                       batch_size: int,
                       height: int, fx: Effects) -> Pipeline:
        if handle.key in self.pipelines:
            raise RejectedUpdate("a payment pipeline already runs on this channel")
        pipeline = Pipeline(key=handle.key, invoices=decoded, batch_size=max(1, batch_size))
        self.pipelines[handle.key] = pipeline
        self._pipeline_batch(pipeline, handle, height, fx)
        return pipeline

    def end_pipeline(self, key: str) -> None:
        self.pipelines.pop(key, None)

    def _pipeline_batch(self, pipeline: Pipeline, handle: ChannelHandle, height: int,
                        fx: Effects) -> None:
        """Add the pipeline's next batch to ``fx``; report it done when nothing is left."""
        while not pipeline.outstanding and pipeline.next_index < len(pipeline.invoices):
            first = pipeline.next_index
            batch = pipeline.invoices[first:first + pipeline.batch_size]
            pipeline.next_index += len(batch)
            for inv, outcome in zip(batch, self.add_payments(handle, batch, height, fx),
                                    strict=True):
                if outcome is not None:
                    pipeline.failed += 1
                else:
                    pipeline.outstanding.add(inv.payment_hash)
        if not pipeline.outstanding and not pipeline.done:
            pipeline.done = True
            fx.resolutions.append(PipelineDone(pipeline.key))

    def _advance_pipeline(self, handle: ChannelHandle, payment_hash: bytes, succeeded: bool,
                          height: int, fx: Effects) -> None:
        """A payment of a pipeline resolved: once its batch is all resolved, start the next
        batch in this same flight (its HTLCs go out with this flight's commitment_signed)."""
        pipeline = self.pipelines.get(handle.key)
        if pipeline is None or payment_hash not in pipeline.outstanding:
            return
        pipeline.outstanding.discard(payment_hash)
        if succeeded:
            pipeline.succeeded += 1
        else:
            pipeline.failed += 1
        if not pipeline.outstanding:
            self._pipeline_batch(pipeline, handle, height, fx)
