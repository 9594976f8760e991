"""One outgoing payment as the payer remembers it: the route in flight and the tries so far.

Pure. The origin of a payment is the only node that can read a failure coming back: it needs
every hop's shared secret of the onion it built (BOLT 4 "Returning Errors"). An
:class:`OutgoingPayment` keeps them with the route, serialised as JSON into the node's
key-value table in the flight that adds the HTLC, so a payer restarted before the failure
arrives still decrypts it, and it also keeps what each earlier attempt ran into (the
``attempts`` list ``pay --json`` answers with) and the channels and nodes to avoid next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channel.errors import MalformedMessage

if TYPE_CHECKING:
    from channel.onion_failures import OnionFailure
    from channel.route import Route

# The onion, failure and route modules are imported inside the functions that read or print a
# route: a node imports this module at start for ATTEMPT_KV_PREFIX, and an idle node has no
# route to read (``make bench``: idle node RSS).

__all__ = ["ATTEMPT_KV_PREFIX", "FailureReport", "OutgoingPayment", "route_text"]

#: kv key prefix of a payment's record: ``attempt:<payment hash hex>``.
ATTEMPT_KV_PREFIX = "attempt:"


def route_text(route: Route) -> str:
    """``03ab…cd via 103x1x0 → 02ef…01 via 104x2x1``: each node reached and the channel used."""
    from channel.route import format_short_channel_id
    return " → ".join(f"{hop.node_id.hex()[:8]}… via "
                      f"{format_short_channel_id(hop.short_channel_id)}" for hop in route.hops)


@dataclass(frozen=True, slots=True)
class FailureReport:
    """What the origin read from a failed HTLC: which hop sent it, and what it said."""

    hop_index: int             # 0: our peer; len(route) - 1: the payee; -1: unreadable
    node_id: bytes | None
    failure: OnionFailure | None
    text: str                  # the one line for people
    is_last: bool = False      # the payee itself refused: no other route can help

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hop_index": self.hop_index, "reason": self.text}
        if self.node_id is not None:
            out["node_id"] = self.node_id.hex()
        if self.failure is not None:
            out["failure_code"] = self.failure.failure_code
            out["failure"] = type(self.failure).__name__
        return out


@dataclass(slots=True)
class OutgoingPayment:
    """A payment of ours: the invoice, the HTLC in flight, and the attempts made."""

    invoice: str
    payment_hash: bytes
    amount_msat: int
    final_cltv_delta: int
    channel_key: str = ""
    route: Route | None = None
    shared_secrets: tuple[bytes, ...] = ()
    fee_msat: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    excluded_channels: set[bytes] = field(default_factory=set)
    excluded_nodes: set[bytes] = field(default_factory=set)
    attempts_pending: bool = False   # the last route failed; the next one is yet to be tried

    def read_failure(self, reason: bytes | None, malformed: tuple[int, bytes] | None,
                     ) -> FailureReport:
        """Decrypt an ``update_fail_htlc`` ``reason`` (or take an
        ``update_fail_malformed_htlc``'s code and onion hash, which comes from hop 0)."""
        from channel.failure_onion import decrypt_failure_onion
        from channel.onion_failures import malformed_failure
        route = self.route
        if route is None:
            return FailureReport(-1, None, None, "the payment failed (no route on record)")
        last = len(route.hops) - 1
        if malformed is not None:
            code, sha = malformed
            try:
                failure = malformed_failure(code, sha)
            except MalformedMessage as exc:
                return FailureReport(0, route.hops[0].node_id, None, str(exc))
            return self._report(0, failure, last)
        try:
            decrypted = decrypt_failure_onion(shared_secrets=self.shared_secrets,
                                              packet=reason or b"")
        except MalformedMessage as exc:
            return FailureReport(-1, None, None, f"unreadable failure: {exc}")
        return self._report(decrypted.hop_index, decrypted.failure, last)

    def _report(self, index: int, failure: OnionFailure, last: int) -> FailureReport:
        from channel.route import format_short_channel_id
        assert self.route is not None
        hop = self.route.hops[index]
        who = "the payee" if index == last else f"hop {index}"
        text = (f"{who} ({hop.node_id.hex()[:16]}…, reached over "
                f"{format_short_channel_id(hop.short_channel_id)}) failed: {failure.describe()}")
        return FailureReport(index, hop.node_id, failure, text, is_last=index == last)

    def attempt_dict(self, report: FailureReport | None) -> dict[str, Any]:
        """One entry of ``attempts``: the route tried, its fee, and its failure if any."""
        from channel.route import format_short_channel_id
        assert self.route is not None
        out: dict[str, Any] = {
            "route": [{"node_id": h.node_id.hex(),
                       "short_channel_id": format_short_channel_id(h.short_channel_id)}
                      for h in self.route.hops],
            "route_text": route_text(self.route), "fee_msat": self.fee_msat}
        if report is not None:
            out.update(report.as_dict())
        return out

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        route = [] if self.route is None else [
            [h.node_id.hex(), h.short_channel_id.hex(), h.fee_base_msat,
             h.fee_proportional_millionths, h.cltv_expiry_delta] for h in self.route.hops]
        return json.dumps({
            "invoice": self.invoice, "payment_hash": self.payment_hash.hex(),
            "amount_msat": self.amount_msat, "final_cltv_delta": self.final_cltv_delta,
            "channel_key": self.channel_key, "route": route,
            "shared_secrets": [s.hex() for s in self.shared_secrets],
            "fee_msat": self.fee_msat, "attempts": self.attempts,
            "excluded_channels": sorted(c.hex() for c in self.excluded_channels),
            "excluded_nodes": sorted(n.hex() for n in self.excluded_nodes),
            "attempts_pending": self.attempts_pending},
            separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> OutgoingPayment:
        from channel.route import Route, RouteHop
        rec = json.loads(text)
        hops = tuple(RouteHop(node_id=bytes.fromhex(n), short_channel_id=bytes.fromhex(s),
                              fee_base_msat=b, fee_proportional_millionths=p,
                              cltv_expiry_delta=d) for n, s, b, p, d in rec["route"])
        return cls(invoice=rec["invoice"], payment_hash=bytes.fromhex(rec["payment_hash"]),
                   amount_msat=rec["amount_msat"], final_cltv_delta=rec["final_cltv_delta"],
                   channel_key=rec["channel_key"], route=Route(hops=hops) if hops else None,
                   shared_secrets=tuple(bytes.fromhex(s) for s in rec["shared_secrets"]),
                   fee_msat=rec["fee_msat"], attempts=list(rec["attempts"]),
                   excluded_channels={bytes.fromhex(c) for c in rec["excluded_channels"]},
                   excluded_nodes={bytes.fromhex(n) for n in rec["excluded_nodes"]},
                   attempts_pending=bool(rec.get("attempts_pending", False)))
