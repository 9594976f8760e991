"""The payer: which channel or route carries a payment, and what to do when a hop fails it.

Pure (it reads the manager's channels and graph; time and randomness come from them).
A payment goes straight to the payee over our channel with the most room when the payee is a
connected peer and that room carries the amount (``available_to_send_msat``, not the first
channel found); otherwise :func:`channel.graph.find_route` looks for a route over the node's
:class:`~channel.graph.NetworkGraph`, the invoice's BOLT 11 route hints and our own channels,
each with its real outbound liquidity. When a failure comes back the origin decrypts it
(:class:`~channel.payment_attempts.OutgoingPayment`), applies the ``channel_update`` it may
carry (BOLT 4: "the origin node ... SHOULD apply the channel_update"), avoids the failing
channel (or node, for a NODE failure) and tries again, at most :data:`MAX_ATTEMPTS` routes.
A failure from the payee itself ends the payment: no other route would change its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from channel.codec import MAX_MSAT
from channel.effects import ChannelHandle, Effects
from channel.errors import MalformedMessage
from channel.forwarding import ChannelPolicy
from channel.gossip import ChannelUpdate, ShortChannelId
from channel.graph import NetworkGraph, NoRoute, find_route
from channel.htlc_log import HtlcEntry
from channel.onion_failures import channel_update_body
from channel.payment_attempts import ATTEMPT_KV_PREFIX, FailureReport, OutgoingPayment
from channel.route import Route, RouteHop
from channel.state import ChannelState
from channel.types import Side

if TYPE_CHECKING:
    from channel.bolt11 import Bolt11Invoice, RouteHint
    from channel.manager import ChannelManager

# channel.bolt11 is imported where an invoice is made or read again: the payer is built at
# start, and an idle node reads and makes none (``make bench``: idle node RSS).

__all__ = ["MAX_ATTEMPTS", "Payer", "local_short_channel_id"]

#: Routes tried per payment before giving up (each failure teaches the graph something).
MAX_ATTEMPTS: Final = 5
_OUR_POLICY: Final = ChannelPolicy(fee_base_msat=0, fee_proportional_millionths=0,
                                   cltv_expiry_delta=0, htlc_minimum_msat=0,
                                   htlc_maximum_msat=MAX_MSAT)


def local_short_channel_id(handle: ChannelHandle) -> bytes:
    """The scid we name our channel by: the real one once known, else one made from the
    funding outpoint (never a real regtest position: its top bit is set)."""
    if handle.short_channel_id is not None:
        return handle.short_channel_id
    outpoint = handle.channel.funding_outpoint
    seed = outpoint.txid[:5] if outpoint is not None else bytes.fromhex(handle.key[:10])
    return bytes([0x80 | seed[0]]) + seed[1:5] + bytes(1) + \
        (outpoint.vout if outpoint is not None else 0).to_bytes(2, "big")


class Payer:
    """Route choice, sending and retries for the payments of one manager."""

    def __init__(self, manager: ChannelManager) -> None:
        self._m = manager

    # -- choosing ----------------------------------------------------------------------------

    def _usable(self) -> list[ChannelHandle]:
        m = self._m
        return [h for h in m.handles.values()
                if h.channel.state is ChannelState.NORMAL and h.peer_id in m.connected]

    def direct_channel(self, payee: bytes, amount_msat: int) -> ChannelHandle | None:
        """Our channel to ``payee`` with the most room, if that room carries ``amount_msat``."""
        best = max((h for h in self._usable() if h.peer_id == payee),
                   key=lambda h: h.channel.available_to_send_msat(), default=None)
        if best is None or best.channel.available_to_send_msat() < amount_msat:
            return None
        return best

    def choose(self, invoice: Bolt11Invoice, state: OutgoingPayment,
               ) -> tuple[ChannelHandle, Route]:
        """The first channel and the route for the next attempt; ``NoRoute`` says why not."""
        payee, amount = invoice.payee_node_id, state.amount_msat
        direct = self.direct_channel(payee, amount)
        if direct is not None and local_short_channel_id(direct) not in state.excluded_channels:
            hop = RouteHop(node_id=payee, short_channel_id=local_short_channel_id(direct))
            return direct, Route(hops=(hop,))
        m = self._m
        graph = NetworkGraph(m.graph.chain_hash, channels=dict(m.graph.channels))
        first_hops: dict[bytes, ChannelHandle] = {}
        liquidity: dict[tuple[ShortChannelId, bytes], int] = {}
        for handle in self._usable():
            raw = local_short_channel_id(handle)
            scid = ShortChannelId.from_bytes(raw)
            known = graph.channels.get(scid)
            graph.add_private_channel(
                scid, m.node_id, handle.peer_id, capacity_sat=handle.channel.funding_sat,
                policy_from_a=_OUR_POLICY,
                policy_from_b=None if known is None else known.policy_from(handle.peer_id))
            first_hops[raw] = handle
            liquidity[(scid, m.node_id)] = handle.channel.available_to_send_msat()
        route = find_route(
            graph, source=m.node_id, target=payee, amount_msat=amount,
            final_cltv_expiry_delta=state.final_cltv_delta, route_hints=invoice.route_hints,
            liquidity_msat=liquidity,
            excluded_channels=[ShortChannelId.from_bytes(c) for c in state.excluded_channels],
            excluded_nodes=state.excluded_nodes)
        first = first_hops.get(route.hops[0].short_channel_id)
        if first is None:
            raise NoRoute("the route found does not start on one of our channels")
        return first, route

    # -- short channel ids and route hints ---------------------------------------------------

    def scids_wanted(self) -> list[tuple[str, str]]:
        """(channel key, funding txid) of open channels whose short_channel_id is unknown."""
        return [(h.key, h.channel.funding_outpoint.txid_hex) for h in self._m.handles.values()
                if h.short_channel_id is None and h.channel.funding_outpoint is not None
                and h.channel.state in (ChannelState.AWAITING_LOCKIN, ChannelState.NORMAL)]

    def set_short_channel_id(self, key: str, scid: ShortChannelId, fx: Effects) -> None:
        """The funding tx of channel ``key`` sits at ``scid`` (BOLT 7: block x tx x output)."""
        handle = self._m.handles[key]
        handle.short_channel_id = bytes(scid)
        fx.kv.append((f"scid:{key}", str(scid)))
        # our channel_update again, under the real scid the peer's route hints will name
        self._m.gossip.send_updates([handle], self._m.forwarder.policy, fx)

    def route_hints(self, limit: int = 5) -> list[RouteHint]:
        """BOLT 11 ``r`` hints for our unannounced channels: the peer, the channel's real scid,
        and the peer's fee and delta towards us if gossip told us, else 0/0/1. The channels
        whose peer can send us the most come first (a hint is only worth its inbound room)."""
        from channel.bolt11 import RouteHintHop
        hints: list[RouteHint] = []
        handles = sorted(self._m.handles.values(), reverse=True,
                         key=lambda h: h.channel.balance_msat(Side.COUNTERPARTY)
                         if h.channel.log is not None else 0)
        for h in handles:
            if h.short_channel_id is None or h.channel.state is not ChannelState.NORMAL:
                continue
            known = self._m.graph.channels.get(ShortChannelId.from_bytes(h.short_channel_id))
            if known is not None and known.public:
                continue  # payers find announced channels in their own graph
            policy = None if known is None else known.policy_from(h.peer_id)
            hints.append((RouteHintHop(
                pubkey=h.peer_id, short_channel_id=h.short_channel_id,
                fee_base_msat=0 if policy is None else policy.fee_base_msat,
                fee_proportional_millionths=0 if policy is None
                else policy.fee_proportional_millionths,
                cltv_expiry_delta=1 if policy is None else policy.cltv_expiry_delta),))
        return hints[:limit]

    # -- paying ------------------------------------------------------------------------------

    def pay(self, decoded: list[Bolt11Invoice], fx: Effects) -> list[dict[str, Any] | None]:
        """Start each payment on its best channel or route (HTLCs added to ``fx``; the
        caller signs); per invoice, its failure now or None (the outcome comes later)."""
        payments = self._m.payments
        outcomes: list[dict[str, Any] | None] = []
        for invoice in decoded:
            refused = payments.refusal(invoice)
            if refused is None:
                refused = self._attempt(invoice, payments.new_outgoing(invoice), fx)
            outcomes.append(refused)
        return outcomes

    def _attempt(self, invoice: Bolt11Invoice, state: OutgoingPayment,
                 fx: Effects) -> dict[str, Any] | None:
        try:
            handle, route = self.choose(invoice, state)
        except NoRoute as exc:
            room = [h.channel.available_to_send_msat() for h in self._usable()
                    if h.peer_id == invoice.payee_node_id]
            reason = str(exc) if not room else (
                f"{state.amount_msat} msat exceeds the {max(0, max(room))} msat our channels to "
                f"the payee can send, and no other route can carry it")
            return {"status": "failed", "reason": reason, "attempts": state.attempts}
        return self._m.payments.send_on_route(handle, invoice, state, route, self._m.height,
                                              fx)

    def on_failed(self, handle: ChannelHandle, entry: HtlcEntry, fx: Effects, *,
                  reason: bytes | None = None,
                  malformed: tuple[int, bytes] | None = None) -> None:
        """An HTLC of ours failed: read who failed it; retry on another route or report."""
        payments = self._m.payments
        state = payments.outgoing.get(entry.payment_hash)
        if state is None or state.route is None:
            text = "the payment failed (no route on record to read the failure)"
            payments.on_failed(handle, entry, FailureReport(-1, None, None, text),
                               self._m.height, fx)
            return
        report = state.read_failure(reason, malformed)
        state.attempts.append(state.attempt_dict(report))
        if report.is_last or report.hop_index < 0 or len(state.attempts) >= MAX_ATTEMPTS or \
                entry.payment_hash in self._pipelined():
            payments.on_failed(handle, entry, report, self._m.height, fx)
            return
        self.learn(state, report)
        # the new route may start on another peer's channel, whose turn this flight does not
        # hold: the node retries in a flight of its own (retry), the payment still in flight
        state.attempts_pending = True
        fx.kv.append((ATTEMPT_KV_PREFIX + entry.payment_hash.hex(), state.to_json()))
        fx.retries.append(entry.payment_hash)

    def retry(self, payment_hash: bytes, fx: Effects) -> None:
        """Try the next route of a payment whose last route failed (see :meth:`on_failed`)."""
        payments = self._m.payments
        state = payments.outgoing.get(payment_hash)
        if state is None or not state.attempts_pending:
            return
        state.attempts_pending = False
        last = state.attempts[-1]
        from channel.bolt11 import Bolt11Invoice
        try:
            invoice = Bolt11Invoice.decode(state.invoice)
        except MalformedMessage as exc:
            refused: dict[str, Any] | None = {"reason": f"cannot read the invoice again: {exc}"}
        else:
            payments.in_flight.discard(payment_hash)
            refused = self._attempt(invoice, state, fx)
        if refused is not None:
            payments.fail_payment(state, f"{last['reason']}; then: {refused['reason']}", fx)

    def end_interrupted_retries(self, fx: Effects) -> None:
        """At start: a payment whose route failed and whose next route was not yet sent when
        the node stopped is failed (nothing of it is in flight), so it can be paid again."""
        payments = self._m.payments
        for state in list(payments.outgoing.values()):
            if state.attempts_pending:
                state.attempts_pending = False
                last = state.attempts[-1]["reason"] if state.attempts else "a route failed"
                payments.fail_payment(state, f"{last}; the node restarted before trying "
                                      "another route: pay again", fx)

    def on_dropped(self, entries: list[HtlcEntry], fx: Effects) -> None:
        """Our HTLCs the connection dropped before any commitment covered them (BOLT 2
        "reverse uncommitted updates"): nobody downstream ever saw them, so their payments
        fail now and may be paid again (a pipeline's own HTLCs are left to the pipeline)."""
        payments = self._m.payments
        pipelined = self._pipelined()
        for entry in entries:
            state = payments.outgoing.get(entry.payment_hash)
            if state is None or entry.payment_hash not in payments.in_flight or \
                    entry.payment_hash in pipelined:
                continue
            payments.fail_payment(state, "the connection to the first hop dropped before the "
                                         "HTLC was committed: nothing was sent, pay again", fx)

    def _pipelined(self) -> set[bytes]:
        return {h for p in self._m.payments.pipelines.values() for h in p.outstanding}

    def learn(self, state: OutgoingPayment, report: FailureReport) -> None:
        """Apply the failure's ``channel_update``; avoid the failing channel or node."""
        assert state.route is not None and report.failure is not None
        raw_update = getattr(report.failure, "channel_update", b"")
        if raw_update:
            try:
                update = ChannelUpdate.decode(channel_update_body(raw_update))
                self._m.graph.apply_update(update)
            except (MalformedMessage, ValueError):
                pass  # a garbled update teaches nothing; the exclusion below still applies
        hops = state.route.hops
        index = report.hop_index
        if report.failure.is_node_failure:
            state.excluded_nodes.add(hops[index].node_id)
        elif index + 1 < len(hops):
            state.excluded_channels.add(hops[index + 1].short_channel_id)
        else:
            state.excluded_channels.add(hops[index].short_channel_id)
