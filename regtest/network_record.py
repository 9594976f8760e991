"""I/O: a lab network's record, ``$CHANLAB_HOME/network.json``: what was planned and opened.

``network.json`` records the topology (with each node's fee policy), the node processes and
their P2P ports, whether the network started bitcoind, and each channel's id, funding txid and
short channel id once known. ``regtest.network`` writes it as the network comes up
(``save_network`` replaces the file whole, so a reader never sees half of it);
``regtest.network_status`` and ``stop_network`` read it (``load_network``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from regtest.errors import RegtestError
from regtest.network_graph import ExpectedChannel, ExpectedGraph
from regtest.topology import ChannelPlan, Topology

__all__ = [
    "ChannelRecord",
    "NetworkError",
    "NetworkRecord",
    "NoNetwork",
    "expected_graph",
    "fill_opened",
    "load_network",
    "network_file",
    "save_network",
]

NETWORK_FILE = "network.json"


class NetworkError(RegtestError):
    """The network could not be started, read or stopped; the message says what to do."""


class NoNetwork(NetworkError):
    """This home has no network (no ``network.json``)."""


# -- the record in network.json ------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRecord:
    """A planned channel and, once its opener's ``open`` answered, which channel it became."""

    plan: ChannelPlan
    channel_id: str | None = None
    funding_txid: str | None = None
    short_channel_id: str | None = None     # BLOCKxTXxOUTPUT, once the funding is mined

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "channel_id": self.channel_id,
                "funding_txid": self.funding_txid, "short_channel_id": self.short_channel_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelRecord:
        return cls(plan=ChannelPlan.from_json(data), channel_id=data.get("channel_id"),
                   funding_txid=data.get("funding_txid"),
                   short_channel_id=data.get("short_channel_id"))


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRecord:
    """What ``network.json`` holds: enough to show and to stop the network later."""

    topology: Topology
    started_bitcoind: bool        # stop the home's bitcoind with the network only if so
    node_pids: tuple[tuple[str, int], ...] = ()
    # each node's P2P port, reused on a restart: peers find each other where they last were
    node_ports: tuple[tuple[str, int], ...] = ()
    channels: tuple[ChannelRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"topology": self.topology.to_json(), "started_bitcoind": self.started_bitcoind,
                "node_pids": dict(self.node_pids), "node_ports": dict(self.node_ports),
                "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkRecord:
        return cls(topology=Topology.from_json(data["topology"]),
                   started_bitcoind=bool(data["started_bitcoind"]),
                   node_pids=tuple((str(k), int(v)) for k, v in data["node_pids"].items()),
                   node_ports=tuple((str(k), int(v))
                                    for k, v in data.get("node_ports", {}).items()),
                   channels=tuple(ChannelRecord.from_json(c) for c in data["channels"]))


def network_file(home: Path) -> Path:
    return home / NETWORK_FILE


def load_network(home: Path) -> NetworkRecord:
    """The network recorded in ``home``; ``NoNetwork`` saying how to start one if none."""
    try:
        data = json.loads(network_file(home).read_text())
    except FileNotFoundError:
        raise NoNetwork(f"no network in {home}: start one with "
                        "`chanlab network start --topology line:3`") from None
    except json.JSONDecodeError as exc:
        raise NetworkError(f"{network_file(home)} is damaged ({exc}): stop the nodes by hand "
                           "and remove it") from None
    return NetworkRecord.from_json(data)


def save_network(home: Path, record: NetworkRecord) -> None:
    tmp = network_file(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n")
    os.replace(tmp, network_file(home))  # a reader never sees half a file



def fill_opened(records: tuple[ChannelRecord, ...], results: dict[str, list[dict[str, Any]]]
                ) -> Iterable[ChannelRecord]:
    """The records with each opener's ``open`` answers (channel id, funding txid) filled in."""
    taken = {opener: iter(answers) for opener, answers in results.items()}
    for rec in records:  # each opener's answers come in its plan order
        answer = next(taken[rec.plan.opener])
        yield replace(rec, channel_id=str(answer["channel_id"]),
                      funding_txid=str(answer["funding_txid"]))


def expected_graph(record: NetworkRecord, node_ids: dict[str, str], *,
                   closed: Collection[str] = ()) -> ExpectedGraph:
    """What every node's graph should hold: the network's channels with a short channel id,
    but those whose channel id is in ``closed`` (gossip forgets a channel spent on chain), and
    the nodes at either end of one of them (only a node with a public channel is announced)."""
    channels = tuple(ExpectedChannel(short_channel_id=c.short_channel_id,
                                     ends=(c.plan.opener, c.plan.accepter))
                     for c in record.channels
                     if c.short_channel_id and c.channel_id not in closed)
    ends = {name for chan in channels for name in chan.ends}
    return ExpectedGraph(
        node_ids=tuple((name, node_ids[name]) for name in record.topology.names
                       if name in ends),
        channels=channels)
