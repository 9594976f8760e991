"""The node's payments: its invoices, the HTLCs it pays and is paid with, payment pipelines.

Pure: the table of payments (one :class:`~channel.store.PaymentRow` per payment hash) lives in
memory, loaded once by the node; every change is also put into the flight's
:class:`~channel.effects.Effects` so the node persists it with the channel updates that go with
it. Time (the block height) and randomness are given, never taken.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from channel.effects import ChannelHandle, Effects, PaymentResolved, PipelineDone
from channel.errors import InvalidOnion, RejectedUpdate
from channel.htlc_log import HtlcEntry
from channel.invoice import Invoice
from channel.store import PaymentRow

__all__ = ["FINAL_CLTV_DELTA", "Payments", "Pipeline"]

FINAL_CLTV_DELTA = 18

Entropy = Callable[[int], bytes]


@functools.cache
def _onion() -> ModuleType:
    """BOLT 4 onions load with the first payment (about 1 MB an idle node never needs)."""
    import channel.onion
    return channel.onion


@dataclass(slots=True)
class Pipeline:
    """Payments made one batch after another on one channel: the next batch's HTLCs are added
    in the very flight that brings the last preimage of the current one (no round trip lost)."""

    key: str
    invoices: list[Invoice]
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
                 entropy: Entropy = secrets.token_bytes) -> None:
        self._node_id = node_id
        self._node_secret = node_secret
        self._entropy = entropy
        self._rows = {row.payment_hash: row for row in rows}
        self._holds = dict(holds or {})   # payment hash hex -> "hold" | "settle" | "cancel"
        self.in_flight: set[bytes] = set()   # outgoing payment hashes awaiting an outcome
        self.pipelines: dict[str, Pipeline] = {}

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

    def create_invoice(self, amount_msat: int, description: str, hold: bool,
                       fx: Effects) -> Invoice:
        """A BOLT 11 invoice of ours, its preimage kept (``hold``: settled only on demand)."""
        preimage = self._entropy(32)
        payment_hash = hashlib.sha256(preimage).digest()
        secret = self._entropy(32)
        invoice = Invoice(payee_node_id=self._node_id, amount_msat=amount_msat,
                          payment_hash=payment_hash, payment_secret=secret,
                          min_final_cltv_expiry_delta=FINAL_CLTV_DELTA, description=description)
        self._record(PaymentRow(
            payment_hash=payment_hash.hex(), direction="in", amount_msat=amount_msat,
            status="pending", preimage=preimage.hex(), payment_secret=secret.hex(),
            detail=description), fx)
        if hold:
            self.set_hold(payment_hash.hex(), "hold", fx)
        return invoice

    # -- paid to us --------------------------------------------------------------------------

    def settle_incoming(self, handle: ChannelHandle, height: int, fx: Effects) -> list[bytes]:
        """Fulfil (or fail) the HTLCs paid to us that are now irrevocably committed; the
        preimages released (the channel's monitor must learn them)."""
        chan = handle.channel
        released: list[bytes] = []
        for entry in chan.htlcs_to_settle():
            reason = ""
            preimage: bytes | None = None
            payment = self._rows.get(entry.payment_hash.hex())
            try:
                peeled = _onion().peel_onion(onion=entry.onion_routing_packet,
                                             node_key=self._node_secret,
                                             associated_data=entry.payment_hash)
                payload = peeled.payload
                data = payload.payment_data
                hold = self._holds.get(entry.payment_hash.hex())
                if not peeled.is_final:
                    reason = "chanlab does not forward payments"
                elif payment is None or payment.direction != "in" or payment.preimage is None:
                    reason = "unknown payment hash"
                elif data is None or payment.payment_secret != data.payment_secret.hex():
                    reason = "wrong payment secret"
                elif payload.amt_to_forward != entry.amount_msat or \
                        entry.amount_msat < payment.amount_msat:
                    reason = "wrong amount"
                elif payload.outgoing_cltv_value != entry.cltv_expiry or \
                        entry.cltv_expiry < height + FINAL_CLTV_DELTA // 2:
                    reason = "cltv expiry too soon"
                elif payment.status == "succeeded":
                    reason = "invoice already paid"
                elif hold == "cancel":
                    reason = "the payee cancelled the invoice"
                elif hold == "hold":
                    continue  # a hold invoice: the HTLC stays until `settle` or `cancel`
                else:
                    preimage = bytes.fromhex(payment.preimage)
            except InvalidOnion as exc:
                reason = f"bad onion: {exc}"
            if preimage is not None and payment is not None:
                fx.send(handle.peer_id, chan.fulfill_htlc(entry.htlc_id, preimage))
                released.append(preimage)
                self._record(PaymentRow(
                    payment_hash=payment.payment_hash, direction="in",
                    amount_msat=entry.amount_msat, status="succeeded", preimage=payment.preimage,
                    payment_secret=payment.payment_secret, detail=payment.detail), fx)
            else:
                fx.send(handle.peer_id, chan.fail_htlc(entry.htlc_id, reason.encode()))
        return released

    # -- paid by us --------------------------------------------------------------------------

    def add_payments(self, handle: ChannelHandle, decoded: list[Invoice], height: int,
                     fx: Effects) -> list[dict[str, Any] | None]:
        """Add one HTLC per invoice to ``fx`` (not signed yet); per invoice, its failure now or
        None (pending: a :class:`PaymentResolved` comes later).

        An add that raises changes nothing (the state machine's contract), so the HTLCs added
        before it still go out, and none is lost."""
        outcomes: list[dict[str, Any] | None] = []
        fx.touch(handle)
        cltv = height + FINAL_CLTV_DELTA
        payee = handle.peer_id
        for inv in decoded:
            previous = self._rows.get(inv.payment_hash.hex())
            if inv.payment_hash in self.in_flight:
                outcomes.append({"status": "failed",
                                 "reason": "a payment for this invoice is in flight"})
                continue
            if previous is not None and previous.direction == "out" and \
                    previous.status == "succeeded":
                outcomes.append({"status": "failed", "reason": "this invoice is already "
                                 "paid (we hold its preimage)"})
                continue
            onion = _onion().build_single_hop_onion(
                session_key=self._entropy(32), node_id=payee,
                amt_to_forward=inv.amount_msat, outgoing_cltv_value=cltv,
                payment_secret=inv.payment_secret, total_msat=inv.amount_msat,
                payment_hash=inv.payment_hash)
            try:
                add = handle.channel.add_htlc(
                    amount_msat=inv.amount_msat, payment_hash=inv.payment_hash,
                    cltv_expiry=cltv, onion_routing_packet=onion)
            except RejectedUpdate as exc:
                outcomes.append({"status": "failed", "reason": str(exc)})
                continue
            fx.send(payee, add)
            self._record(PaymentRow(payment_hash=inv.payment_hash.hex(), direction="out",
                                    amount_msat=inv.amount_msat, status="pending"), fx)
            self.in_flight.add(inv.payment_hash)
            outcomes.append(None)
        return outcomes

    def on_fulfilled(self, handle: ChannelHandle, entry: HtlcEntry, preimage: bytes,
                     height: int, fx: Effects) -> None:
        """The peer fulfilled our HTLC: the preimage is our proof of payment."""
        self._record(PaymentRow(payment_hash=entry.payment_hash.hex(), direction="out",
                                amount_msat=entry.amount_msat, status="succeeded",
                                preimage=preimage.hex()), fx)
        self._resolve(entry.payment_hash, {"status": "succeeded",
                                           "payment_preimage": preimage.hex(),
                                           "amount_msat": entry.amount_msat}, fx)
        self._advance_pipeline(handle, entry.payment_hash, True, height, fx)

    def on_failed(self, handle: ChannelHandle, entry: HtlcEntry, reason: str, height: int,
                  fx: Effects) -> None:
        self._resolve(entry.payment_hash, {"status": "failed", "reason": reason}, fx)
        self._advance_pipeline(handle, entry.payment_hash, False, height, fx)

    def _resolve(self, payment_hash: bytes, result: dict[str, Any], fx: Effects) -> None:
        self.in_flight.discard(payment_hash)
        fx.resolutions.append(PaymentResolved(payment_hash, result))

    def abandon(self, payment_hash: bytes) -> None:
        """The caller stopped waiting (a timeout): a new attempt may be made."""
        self.in_flight.discard(payment_hash)

    # -- pipelines ---------------------------------------------------------------------------

    def start_pipeline(self, handle: ChannelHandle, decoded: list[Invoice], batch_size: int,
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
