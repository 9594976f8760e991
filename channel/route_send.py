"""Paying along a route the caller names, hop by hop (BOLT 4 "Packet Construction").

Pure. The smallest payer of a multi-hop payment: the route (nodes, channels and their
policies) is given, its onion is built with :func:`channel.route.build_route_onion` and the
first HTLC offered on our channel with the first hop. Path finding over the gossip graph and
retries are the payer's (:mod:`channel.payments`); this is what the forwarding tests drive
a line of nodes with, and what a route found elsewhere is sent with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channel.effects import ChannelHandle, Effects
from channel.errors import MalformedMessage, RejectedUpdate
from channel.forwarder import Forwarder
from channel.route import Route, RouteHop, RouteOnion, build_route_onion

__all__ = ["route_from_json", "send_along_route"]


def route_from_json(hops: list[Mapping[str, Any]]) -> Route:
    """A route from ``[{node_id, short_channel_id, fee_base_msat?, ...}]`` (hex strings)."""
    try:
        return Route(hops=tuple(RouteHop(
            node_id=bytes.fromhex(hop["node_id"]),
            short_channel_id=bytes.fromhex(hop["short_channel_id"]),
            fee_base_msat=int(hop.get("fee_base_msat", 0)),
            fee_proportional_millionths=int(hop.get("fee_proportional_millionths", 0)),
            cltv_expiry_delta=int(hop.get("cltv_expiry_delta", 0))) for hop in hops))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"a route is a list of hops with node_id and "
                               f"short_channel_id in hex: {exc}") from exc


def send_along_route(handles: Mapping[str, ChannelHandle], route: Route, *,
                     payment_hash: bytes, payment_secret: bytes, amount_msat: int,
                     final_cltv: int, session_key: bytes, fx: Effects) -> RouteOnion:
    """Offer the route's first HTLC (added to ``fx``, not signed yet); raises
    ``RejectedUpdate`` when we have no channel to the first hop or it cannot carry it."""
    first = route.hops[0]
    handle = Forwarder.channel_by_scid(handles.values(), first.short_channel_id)
    if handle is None or handle.peer_id != first.node_id:
        raise RejectedUpdate("no channel of ours is the route's first hop: check its "
                             "short_channel_id and node_id")
    built = build_route_onion(route, payment_hash=payment_hash, payment_secret=payment_secret,
                              total_msat=amount_msat, final_cltv=final_cltv,
                              session_key=session_key)
    add = handle.channel.add_htlc(amount_msat=built.amount_msat, payment_hash=payment_hash,
                                  cltv_expiry=built.cltv_expiry,
                                  onion_routing_packet=built.onion)
    fx.touch(handle)
    fx.send(handle.peer_id, add)
    return built
