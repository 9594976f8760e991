"""I/O: is every node's graph complete? Ask each node's ``graph-info`` until it is, or say what
is missing.

A lab network's graph is complete at a node when its ``graph-info`` holds every channel of the
network as a public (announced) channel with both directions' ``channel_update``, and every
node of the network as announced (its ``node_announcement`` arrived): then the node's
pathfinder can route between any two nodes and knows every forwarder's fee (BOLT 7).

``ExpectedGraph`` is what the network should look like (node ids by name, channels by short
channel id); ``graph_gaps`` (pure) compares one node's ``graph-info`` answer to it and returns
one short phrase per missing piece; ``wait_graphs_complete`` polls every node until no gap is
left and raises ``GraphIncomplete`` naming, node by node, what is still missing. The helpers
``direction_policy`` and ``forward_fee_msat`` read the fee a forwarder announces, which is what
tests compare balances to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from regtest.errors import RegtestError

__all__ = [
    "ExpectedChannel",
    "ExpectedGraph",
    "GraphIncomplete",
    "direction_policy",
    "expected_from_forwarding",
    "forward_fee_msat",
    "graph_gaps",
    "node_announced",
    "scid_text",
    "wait_graphs_complete",
]

GraphOf = Callable[[str], dict[str, Any] | None]   # a node's graph-info answer; None: silent
_SHOWN_GAPS = 3          # per node in an error message: enough to act on, short enough to read


class GraphIncomplete(RegtestError):
    """Some node's graph still missed channels, updates or nodes when the time was up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedChannel:
    """One channel of the network: its BOLT 7 short channel id and its two ends (names)."""

    short_channel_id: str        # BLOCKxTXxOUTPUT, as graph-info prints it
    ends: tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedGraph:
    """What every node's graph should hold once gossip has spread: these nodes, these
    channels."""

    node_ids: tuple[tuple[str, str], ...]        # (name, node id hex), in start order
    channels: tuple[ExpectedChannel, ...]

    def node_id(self, name: str) -> str:
        return dict(self.node_ids)[name]

    def name_of(self, node_id: str) -> str:
        return next((n for n, i in self.node_ids if i == node_id), node_id[:16])


def scid_text(wire_hex: str) -> str:
    """``BLOCKxTXxOUTPUT`` from the 8 wire bytes in hex (as ``forwarding`` answers them)."""
    raw = bytes.fromhex(wire_hex)
    if len(raw) != 8:
        raise ValueError(f"a short channel id is 8 bytes, got {wire_hex!r}")
    return f"{int.from_bytes(raw[:3], 'big')}x{int.from_bytes(raw[3:6], 'big')}x" \
           f"{int.from_bytes(raw[6:], 'big')}"


def expected_from_forwarding(node_ids: dict[str, str],
                             forwarding: dict[str, dict[str, Any]]) -> ExpectedGraph:
    """The graph ``node_ids``' nodes should all see: themselves, and every channel between two
    of them that has a short channel id, from each node's ``forwarding`` answer."""
    names = {node_id: name for name, node_id in node_ids.items()}
    channels: dict[str, ExpectedChannel] = {}
    for name, answer in forwarding.items():
        for chan in answer["channels"]:
            peer = names.get(str(chan["peer_id"]))
            if peer is None or not chan.get("short_channel_id"):
                continue   # a channel out of the network, or not yet confirmed
            scid = scid_text(str(chan["short_channel_id"]))
            channels.setdefault(scid, ExpectedChannel(short_channel_id=scid, ends=(name, peer)))
    return ExpectedGraph(node_ids=tuple(node_ids.items()), channels=tuple(channels.values()))


def node_announced(entry: dict[str, Any]) -> bool:
    """Has this ``graph-info`` node entry come from a ``node_announcement``? An explicit
    ``announced`` says so; else an alias or an address, which only an announcement carries."""
    if "announced" in entry:
        return bool(entry["announced"])
    return bool(entry.get("alias")) or bool(entry.get("addresses"))


def graph_gaps(expected: ExpectedGraph, graph_info: dict[str, Any]) -> list[str]:
    """What one node's ``graph-info`` lacks, one phrase each (empty: the graph is complete)."""
    gaps: list[str] = []
    listed = {str(c["short_channel_id"]): c for c in graph_info.get("channels", [])}
    for chan in expected.channels:
        label = f"{chan.short_channel_id} ({chan.ends[0]}-{chan.ends[1]})"
        entry = listed.get(chan.short_channel_id)
        if entry is None or not entry.get("public"):
            gaps.append(f"channel {label}: no channel_announcement")
            continue
        ids = {expected.node_id(chan.ends[0]), expected.node_id(chan.ends[1])}
        if {entry["node_1"], entry["node_2"]} != ids:
            gaps.append(f"channel {label}: announced between other nodes")
            continue
        for side in ("1", "2"):
            if entry.get(f"policy_{side}") is None:
                gaps.append(f"channel {label}: no channel_update from "
                            f"{expected.name_of(str(entry[f'node_{side}']))}")
    nodes = {str(n["node_id"]): n for n in graph_info.get("nodes", [])}
    for name, node_id in expected.node_ids:
        entry = nodes.get(node_id)
        if entry is None or not node_announced(entry):
            gaps.append(f"node {name}: no node_announcement")
    return gaps


def direction_policy(graph_info: dict[str, Any], short_channel_id: str,
                     from_node_id: str) -> dict[str, Any] | None:
    """The policy ``from_node_id`` announces for forwarding out over ``short_channel_id``
    (the ``channel_update`` of its direction), or None if the graph has none."""
    for chan in graph_info.get("channels", []):
        if str(chan["short_channel_id"]) == short_channel_id:
            for side in ("1", "2"):
                if chan[f"node_{side}"] == from_node_id:
                    policy = chan.get(f"policy_{side}")
                    return None if policy is None else dict(policy)
    return None


def forward_fee_msat(policy: dict[str, Any], amount_msat: int) -> int:
    """What a forwarder keeps for sending ``amount_msat`` on (BOLT 7 "HTLC Fees"):
    ``fee_base_msat + amount_msat * fee_proportional_millionths / 1,000,000``, rounded down."""
    return int(policy["fee_base_msat"]) + \
        amount_msat * int(policy["fee_proportional_millionths"]) // 1_000_000


def _describe(missing: dict[str, list[str]]) -> str:
    parts = []
    for name, gaps in missing.items():
        shown = "; ".join(gaps[:_SHOWN_GAPS])
        more = f"; and {len(gaps) - _SHOWN_GAPS} more" if len(gaps) > _SHOWN_GAPS else ""
        parts.append(f"{name} lacks {shown}{more}")
    return ". ".join(parts)


def wait_graphs_complete(names: Iterable[str], graph_of: GraphOf, expected: ExpectedGraph, *,
                         timeout_s: float, hint: str = "") -> float:
    """Poll every node's graph until none lacks anything; return the seconds it took.

    ``graph_of(name)`` is the node's ``graph-info`` answer (None when it does not answer).
    Raises ``GraphIncomplete``: one line naming each node still short and what it lacks, plus
    ``hint`` (where the logs are, say).
    """
    waiting = list(names)
    started = time.monotonic()
    missing: dict[str, list[str]] = {}
    interval = 0.05
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(waiting)))) as pool:
        while True:
            answers = list(pool.map(graph_of, waiting))
            missing = {}
            for name, answer in zip(waiting, answers, strict=True):
                gaps = ["its graph-info (it does not answer)"] if answer is None \
                    else graph_gaps(expected, answer)
                if gaps:
                    missing[name] = gaps
            # a node whose graph is complete stays so (the graph is kept, and persisted)
            waiting = [name for name in waiting if name in missing]
            if not waiting:
                return time.monotonic() - started
            if time.monotonic() - started >= timeout_s:
                break
            time.sleep(interval)
            interval = min(interval * 1.5, 0.5)
    raise GraphIncomplete(
        f"every node's graph was not complete after {timeout_s:.0f} s (channels announced, "
        f"both channel_updates, every node_announcement): {_describe(missing)}"
        + (f"; {hint}" if hint else ""))
