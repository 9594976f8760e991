"""A payment route and the onion that pays along it (BOLT 4 "Basic Multi-Part Payments" aside).

Pure. The pathfinder hands in the hops it chose, each with the policy of the channel used to
reach it; this module applies the fees and CLTV deltas backwards from the payee (BOLT 4
"Payload for the Last Node", BOLT 7 "HTLC Fees"), writes one TLV payload per hop and
builds the Sphinx packet. The result keeps every hop's shared secret: the origin needs them
to read a failure that comes back.

Convention, per hop ``i``: ``node_id`` is the node the HTLC reaches, ``short_channel_id``
the channel it arrives by, and the fee/CLTV fields that channel's ``channel_update`` in
that direction, i.e. what node ``i-1`` charges to forward to node ``i``. Hop 0's channel
is our own, so its fee and delta are not charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from channel.codec import is_valid_point
from channel.errors import MalformedMessage
from channel.failure_onion import DecryptedFailure, decrypt_failure_onion
from channel.forwarding import forwarding_fee_msat
from channel.onion import (
    MAX_ROUTE_HOPS,
    HopPayload,
    OnionHop,
    PaymentData,
    build_onion_with_secrets,
)

__all__ = [
    "FailedHop",
    "HopAmounts",
    "Route",
    "RouteHop",
    "RouteOnion",
    "build_route_onion",
    "format_short_channel_id",
    "read_route_failure",
    "route_amounts",
]


def format_short_channel_id(short_channel_id: bytes) -> str:
    """BOLT 7 text form ``HEIGHTxTXINDEXxOUTPUT`` (``0000670000010001`` → ``103x1x1``)."""
    value = int.from_bytes(short_channel_id, "big")
    return f"{value >> 40}x{(value >> 16) & 0xFFFFFF}x{value & 0xFFFF}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteHop:
    """One hop: the node reached, the channel reaching it, and that channel's policy."""

    node_id: bytes
    short_channel_id: bytes
    fee_base_msat: int = 0
    fee_proportional_millionths: int = 0
    cltv_expiry_delta: int = 0

    def __post_init__(self) -> None:
        if type(self.node_id) is not bytes or not is_valid_point(self.node_id):
            raise MalformedMessage("route hop node_id must be a valid compressed point")
        if type(self.short_channel_id) is not bytes or len(self.short_channel_id) != 8:
            raise MalformedMessage("route hop short_channel_id must be 8 bytes")
        for name in ("fee_base_msat", "fee_proportional_millionths", "cltv_expiry_delta"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise MalformedMessage(f"route hop {name} must be a non-negative integer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """The hops from our first peer to the payee (last hop), 1 to ``MAX_ROUTE_HOPS``."""

    hops: tuple[RouteHop, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.hops) <= MAX_ROUTE_HOPS:
            raise MalformedMessage(f"a route has 1 to {MAX_ROUTE_HOPS} hops, not {len(self.hops)}")

    @property
    def payee(self) -> bytes:
        return self.hops[-1].node_id


@dataclass(frozen=True, slots=True, kw_only=True)
class HopAmounts:
    """What hop ``i`` receives: its incoming HTLC's amount and expiry height."""

    amount_msat: int
    cltv_expiry: int


def route_amounts(route: Route, *, amount_msat: int, final_cltv: int) -> list[HopAmounts]:
    """Each hop's incoming HTLC, computed backwards from the payee's ``amount_msat``.

    Hop ``i`` forwards ``received[i+1]`` and charges the fee of hop ``i+1``'s channel on it:
    ``received[i] = received[i+1] + fee_{i+1}(received[i+1])`` and
    ``cltv[i] = cltv[i+1] + cltv_expiry_delta_{i+1}``. ``received[0]`` is what we offer.
    """
    if type(amount_msat) is not int or amount_msat <= 0:
        raise MalformedMessage(f"amount_msat must be positive: {amount_msat!r}")
    amounts = [HopAmounts(amount_msat=amount_msat, cltv_expiry=final_cltv)]
    for hop in reversed(route.hops[1:]):
        after = amounts[0]
        fee = forwarding_fee_msat(
            fee_base_msat=hop.fee_base_msat,
            fee_proportional_millionths=hop.fee_proportional_millionths,
            amount_msat=after.amount_msat,
        )
        amounts.insert(0, HopAmounts(amount_msat=after.amount_msat + fee,
                                     cltv_expiry=after.cltv_expiry + hop.cltv_expiry_delta))
    return amounts


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteOnion:
    """The first HTLC to offer, its onion, and what the origin keeps to read failures.

    ``amount_msat``/``cltv_expiry`` go into our ``update_add_htlc`` on
    ``short_channel_id`` (hop 0's channel); ``fee_msat`` is the route's total fee.
    """

    onion: bytes
    short_channel_id: bytes
    amount_msat: int
    cltv_expiry: int
    fee_msat: int
    hop_amounts: tuple[HopAmounts, ...]
    shared_secrets: tuple[bytes, ...]


def _payloads(
    route: Route,
    amounts: Sequence[HopAmounts],
    payment_data: PaymentData,
    payment_metadata: bytes | None,
) -> list[HopPayload]:
    payloads = [
        HopPayload(  # hop i tells where to send what hop i+1 must receive
            amt_to_forward=amounts[index + 1].amount_msat,
            outgoing_cltv_value=amounts[index + 1].cltv_expiry,
            short_channel_id=route.hops[index + 1].short_channel_id,
        )
        for index in range(len(route.hops) - 1)
    ]
    payloads.append(HopPayload(
        amt_to_forward=amounts[-1].amount_msat,
        outgoing_cltv_value=amounts[-1].cltv_expiry,
        payment_data=payment_data,
        payment_metadata=payment_metadata,
    ))
    return payloads


def build_route_onion(
    route: Route,
    *,
    payment_hash: bytes,
    payment_secret: bytes,
    total_msat: int,
    final_cltv: int,
    session_key: bytes,
    amount_msat: int | None = None,
    payment_metadata: bytes | None = None,
) -> RouteOnion:
    """BOLT 4 "Packet Construction" for ``route``: payloads, packet and first HTLC.

    ``final_cltv`` is the payee's absolute ``outgoing_cltv_value`` (our tip + the invoice's
    ``min_final_cltv_expiry_delta``, plus any offset). ``amount_msat`` is what reaches the
    payee (default ``total_msat``: a single-part payment). ``session_key`` is 32 fresh random
    bytes from the caller; the packet is a pure function of it.
    """
    if len(payment_hash) != 32:
        raise MalformedMessage("payment_hash must be 32 bytes")
    delivered_msat = total_msat if amount_msat is None else amount_msat
    amounts = route_amounts(route, amount_msat=delivered_msat, final_cltv=final_cltv)
    payment_data = PaymentData(payment_secret=payment_secret, total_msat=total_msat)
    payloads = _payloads(route, amounts, payment_data, payment_metadata)
    node_ids = [hop.node_id for hop in route.hops]
    onion, shared_secrets = build_onion_with_secrets(
        session_key=session_key,
        hops=[OnionHop(node_id=node_id, payload=payload.encode())
              for node_id, payload in zip(node_ids, payloads, strict=True)],
        associated_data=payment_hash,
    )
    return RouteOnion(
        onion=onion,
        short_channel_id=route.hops[0].short_channel_id,
        amount_msat=amounts[0].amount_msat,
        cltv_expiry=amounts[0].cltv_expiry,
        fee_msat=amounts[0].amount_msat - delivered_msat,
        hop_amounts=tuple(amounts),
        shared_secrets=tuple(shared_secrets),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedHop:
    """A failure read back by the origin, tied to the route: who sent it and over what."""

    hop_index: int
    node_id: bytes
    short_channel_id: bytes
    decrypted: DecryptedFailure

    def describe(self) -> str:
        """The payer's line: ``hop 2 (03ab…, reached over 103x1x1) failed: <failure>``."""
        return (f"hop {self.hop_index} ({self.node_id.hex()[:16]}…, reached over "
                f"{format_short_channel_id(self.short_channel_id)}) failed: "
                f"{self.decrypted.failure.describe()}")


def read_route_failure(route: Route, built: RouteOnion, reason: bytes) -> FailedHop:
    """Decrypt the ``reason`` of an ``update_fail_htlc`` for a payment sent along ``route``.

    Raises ``MalformedMessage`` when no hop authenticates it (see ``decrypt_failure_onion``).
    """
    decrypted = decrypt_failure_onion(shared_secrets=built.shared_secrets, packet=reason)
    hop = route.hops[decrypted.hop_index]
    return FailedHop(hop_index=decrypted.hop_index, node_id=hop.node_id,
                     short_channel_id=hop.short_channel_id, decrypted=decrypted)
