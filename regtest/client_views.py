"""I/O: what ``chanlab NAME COMMAND`` prints: each answer for people, amounts with their unit.

``trace`` decodes the node's recorded messages (:mod:`channel.trace`), naming peers after the
nodes of this machine; ``graph`` and ``channel`` draw the node's channel facts with bitcoind's
view of the chain (:mod:`regtest.channel_picture`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from channel.trace import Direction, render_trace, trace_bytes
from regtest.channel_picture import channel_picture, node_names
from regtest.control import call_node, chanlab_home, load_endpoint
from regtest.onchain_view import render_onchain_view
from regtest.txgraph_render import render_dot, render_svg

__all__ = ["format_msat", "human_answer", "show_channel", "show_trace"]

FOLLOW_POLL_S = 0.5


def format_msat(amount_msat: int) -> str:
    """``25,000,000 msat (25,000 sat)``: msat always, sat beside it when it is whole."""
    text = f"{amount_msat:,} msat"
    return text + (f" ({amount_msat // 1000:,} sat)" if amount_msat % 1000 == 0 else
                   f" ({amount_msat / 1000:,.3f} sat)")


def _channels(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no channels"
    lines = []
    for c in result:
        line = (f"{c['channel'][:16]}  {c['state']:<18} {c['funding_sat']:,} sat"
                f"  channel_id {c['channel_id'][:16] or '(none yet)'}")
        if "local_msat" in c:
            line += (f"  local {c['local_msat'] // 1000:,} sat"
                     f"  remote {c['remote_msat'] // 1000:,} sat")
        lines.append(line)
    return "\n".join(lines)


def _payments(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no payments"
    lines = []
    for p in result:
        fee = f"  fee {format_msat(p['fee_msat'])}" if "fee_msat" in p else ""
        text = f"  {p['description']!r}" if p.get("description") else ""
        text += f"  ({p['failure']})" if p.get("failure") else ""
        route = f"  via {p['route_text']}" if p.get("route_text") else ""
        lines.append(f"{p['direction']:<8} {p['status']:<9} {format_msat(p['amount_msat'])}"
                     f"{fee}  hash {p['payment_hash']}{text}{route}")
    return "\n".join(lines)


def human_answer(cmd: str, result: Any) -> str:
    """A node's answer to ``cmd`` for people."""
    if cmd == "channels":
        return _channels(result)
    if cmd == "payments":
        return _payments(result)
    if cmd == "invoice":
        return (f"{result['invoice']}\npayment_hash: {result['payment_hash']}\n"
                f"amount: {format_msat(result['amount_msat'])}")
    if cmd == "pay":
        if result.get("status") == "succeeded":
            amount = f" {format_msat(result['amount_msat'])}" if "amount_msat" in result else ""
            return f"paid{amount}: preimage {result['payment_preimage']}"
        tries = result.get("attempts") or []
        return "\n".join([f"payment {result.get('status')}: {result.get('reason', '')}"] + (
            [f"  route {n}: {t['route_text']}: {t.get('reason', 'sent')}"
             for n, t in enumerate(tries, 1)] if len(tries) > 1 else []))
    if cmd == "claimable":
        return "\n".join(
            f"{c['channel'][:16]}  {c['status']:<10} {c['amount_sat']:,} sat"
            + (f" from height {c['claimable_from_height']}" if c.get("claimable_from_height")
               else "") + f"  {c.get('description', '')}" for c in result) or "nothing to claim"
    if cmd == "events":
        return "\n".join(str(e) for e in result) or "no events"
    if cmd == "graph-info":
        return _graph(result)
    if cmd == "balance":
        return (f"on chain:  {result['onchain_sat']:,} sat\n"
                f"off chain: {format_msat(result['offchain_msat'])}")
    if cmd in ("close", "force-close", "update-fee") and isinstance(result, dict):
        lines = [f"channel {result['channel']}"]
        lines += [f"{k}: {v}" + (" blocks" if k == "to_self_delay" else "")
                  for k, v in result.items() if k != "channel"]
        return "\n".join(lines)
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" + (" sat" if k.endswith("_sat") else
                                        " msat" if k.endswith("_msat") else "")
                         for k, v in result.items())
    return json.dumps(result)


def _graph(report: dict[str, Any]) -> str:
    """``graph-info``: one line per node and per channel (each direction's fee and delta),
    then whether the public graph is complete."""
    names = {n["node_id"]: n["alias"] or n["node_id"][:16] for n in report["nodes"]}

    def policy(p: dict[str, int] | None) -> str:
        return "no update" if p is None else (
            f"{p['fee_base_msat']} msat + {p['fee_proportional_millionths']} ppm, "
            f"cltv delta {p['cltv_expiry_delta']}")

    lines = [f"node {names[n['node_id']]:<16} {n['node_id'][:16]}…  "
             + (", ".join(n["addresses"]) or "no address")
             + ("" if n.get("announced") else "  (not announced)") for n in report["nodes"]]
    for c in report["channels"]:
        one, two = names.get(c["node_1"], c["node_1"][:16]), names.get(c["node_2"],
                                                                       c["node_2"][:16])
        capacity = "?" if c["capacity_sat"] is None else f"{c['capacity_sat']:,} sat"
        lines += [f"channel {c['short_channel_id']} {one} - {two}, {capacity}"
                  f"{'' if c['public'] else ' (private)'}",
                  f"  {one} charges {policy(c['policy_1'])}",
                  f"  {two} charges {policy(c['policy_2'])}"]
    lines.append(f"public graph {'complete' if report.get('complete') else 'incomplete'}: "
                 f"{report.get('public_channels_with_both_updates', 0)} of "
                 f"{report.get('public_channels', 0)} public channels with both updates, "
                 f"{report.get('node_announcements', 0)} node announcements")
    return "\n".join(lines)


def show_trace(name: str, *, limit: int, follow: bool, as_json: bool) -> int:
    """Print the node's latest ``limit`` messages; with ``follow``, then each new one."""
    names = node_names(chanlab_home())
    since = 0
    while True:
        records = call_node(name, "trace", {"limit": limit if since == 0 else 0,
                                            "since": since})
        for r in records:
            if as_json:
                print(json.dumps(r))
            else:
                peer = names.get(r["peer_id"], r["peer_id"][:16] + "…")
                stamp = time.strftime("%H:%M:%S", time.localtime(r["time"]))
                print(f"#{r['seq']} {stamp} " + render_trace(
                    trace_bytes(bytes.fromhex(r["data"])), Direction(r["direction"]), peer))
            since = max(since, int(r["seq"]))
        sys.stdout.flush()
        if not follow:
            return 0
        time.sleep(FOLLOW_POLL_S)


def show_channel(name: str, cmd: str, facts: dict[str, Any], *, output: str, dot: bool,
                 as_json: bool) -> int:
    """``graph``: write the picture; ``channel``: print the on-chain view with countdowns."""
    if as_json and cmd == "channel":
        print(json.dumps(facts, indent=2))
        return 0
    peer = node_names(chanlab_home()).get(facts["peer_id"], facts["peer_id"][:16] + "…")
    endpoint = load_endpoint()
    with endpoint.rpc(timeout_s=10.0) as rpc:
        picture = channel_picture(facts, holder=name, peer=peer, rpc=rpc)
    which = f"channel {facts['channel']} (channel_id {facts['channel_id'] or 'none yet'})"
    if cmd == "channel":
        print(which)
        print(render_onchain_view(picture.graph, picture.height), end="")
        return 0
    text = render_dot(picture.graph, picture.title) if dot else \
        render_svg(picture.graph, picture.title)
    path = Path(output if output != "channel.svg" or not dot else "channel.dot")
    path.write_text(text, encoding="utf-8")
    print(f"{which}: {len(picture.graph.nodes)} transactions drawn to {path}")
    return 0
