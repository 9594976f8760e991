"""An idle node (no peer, no channel) does not import what only payments, routing and channels use.

``make bench`` reports an idle node's resident memory (a classroom runs dozens of nodes on one
laptop; issue 9 asks for at most 40 MB). Each module loaded at start costs resident memory, and
a module-level import added anywhere on the start path brings a whole family back: the channel
monitor (and its sweeps and claims), BOLT 11, the payee's checks, the trace drawer (and the tower's
codecs). The test starts a real ``chanlab node start`` process with
``PYTHONPROFILEIMPORTTIME=1`` (Python's ``-X importtime``: one stderr line per module the
process imports, whenever it imports it), let it start and see a block, and read the list.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from regtest.cluster import Cluster, NodeProcess
from regtest.wait import wait_for

#: Modules an idle node must not have imported: each is loaded by the first channel, invoice,
#: HTLC paid to us or trace read that needs it; the payer, forwarder, graph and gossip
#: (``channel.manager_parts``) by the first peer, channel, payment or persisted graph, the BOLT 7
#: messages by the first message decoded, BOLT 8 (noise, transport) by the first connection;
#: decimal by the first BTC amount read from bitcoind; the channel state machine (state and the
#: modules under it: keys, scripts, transactions, commitments, records) and the BOLT 2 messages
#: by the first channel opened or restored, or the first peer message; BOLT 1 (wire, codec)
#: by the first connection or channel.
NOT_WHILE_IDLE = (
    "channel.add_budget",
    "channel.bech32",
    "channel.bolt11",
    "channel.channel_close",
    "channel.channel_core",
    "channel.channel_open",
    "channel.channel_params",
    "channel.channel_record",
    "channel.codec",
    "channel.commitment",
    "channel.failure_onion",
    "channel.forwarder",
    "channel.forwarding",
    "channel.gossip",
    "channel.gossip_local",
    "channel.gossip_public",
    "channel.graph",
    "channel.keys",
    "channel.messages",
    "channel.monitor",
    "channel.monitor_claims",
    "channel.noise",
    "channel.onion",
    "channel.onion_failures",
    "channel.payee",
    "channel.payer",
    "channel.records",
    "channel.route",
    "channel.scripts",
    "channel.shachain",
    "channel.state",
    "channel.sweeps",
    "channel.tower",
    "channel.tower_wire",
    "channel.trace",
    "channel.transactions",
    "channel.transport",
    "channel.validation",
    "channel.wire",
    "cryptography",
    "decimal",
)


def _imported(stderr_log: Path) -> set[str]:
    """Every module named on an ``import time:`` line of the node's stderr."""
    names = set()
    for line in stderr_log.read_text().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    names.discard("imported package")   # the header line
    return names


def _idle_node(cluster: Cluster) -> NodeProcess:
    """A started node with the import log on, that has seen one more block than at its start."""
    name = f"idle-{secrets.token_hex(3)}"
    node = NodeProcess(cluster, name, allow_cheating=False, to_self_delay=10)
    node.env["PYTHONPROFILEIMPORTTIME"] = "1"
    cluster.nodes[name] = node   # stopped with the cluster
    node.start()
    height = int(node.call("info")["height"])
    cluster.mine(1)
    wait_for(lambda: int(node.call("info")["height"]) > height, timeout=30,
             what=f"{name} to see the new block")
    node.call("channels")
    return node


def test_idle_node_imports_no_monitor_payee_routing_or_trace_module(cluster: Cluster) -> None:
    """A node that started, answered control calls and saw a block imported none of the
    modules of NOT_WHILE_IDLE (and the log read is the node's: it names channel.node)."""
    node = _idle_node(cluster)
    imported = _imported(node.home / "stderr.log")
    assert {"channel.node", "channel.manager", "channel.channel_basics"} <= imported
    assert sorted(imported.intersection(NOT_WHILE_IDLE)) == []

