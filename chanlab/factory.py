"""I/O: start chanlab node processes on one bitcoind, each in its own folder, and clean up.

``NodeFactory`` is what the ``node_factory`` fixture hands a test and what ``Lab`` uses: nodes
live under a temp folder of their own (``$CHANLAB_HOME`` of the processes), and ``close()``
stops every process (kill -9 if it does not stop), unloads their bitcoind wallets and removes
the folder, whatever happened before. ``logs()`` reads each node's log, for a failure report.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from chanlab.bitcoind import Bitcoind
from chanlab.node import Node
from chanlab.records import ChannelRecord, NodeError, start_failure
from channel.errors import ChanlabError
from regtest.cluster import Cluster
from regtest.errors import WaitTimeout
from regtest.network_graph import GraphIncomplete, expected_from_forwarding, wait_graphs_complete

__all__ = ["ANNOUNCE_DEPTH", "DEFAULT_TO_SELF_DELAY", "NodeFactory"]

DEFAULT_TO_SELF_DELAY = 10      # blocks; short, so force-close tests mine little
ANNOUNCE_DEPTH = 6              # BOLT 7: announcement_signatures once the funding is 6 deep
_LOG_TAIL_LINES = 300
_STOP_TIMEOUT_S = 5.0


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class NodeFactory:
    """Starts nodes on ``bitcoind`` under a temp folder; ``close()`` cleans everything up."""

    def __init__(self, bitcoind: Bitcoind, *, prefix: str = "chanlab-nodes-",
                 keep: bool = False) -> None:
        self.bitcoind = bitcoind
        self.home = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.nodes: list[Node] = []
        self._by_id: dict[str, Node] = {}
        self._cluster = Cluster(bitcoind, self.home, bitcoind.miner)
        self._count = 0

    def get_node(self, name: str | None = None, *, funds_sat: int = 0,
                 to_self_delay: int = DEFAULT_TO_SELF_DELAY,
                 allow_cheating: bool = False) -> Node:
        """Start a node (named ``name``, else ``node1``, ``node2``...), with ``funds_sat``
        confirmed in its wallet. ``to_self_delay`` is the CSV delay it imposes on its peers'
        to_local; ``allow_cheating`` lets ``cheat`` broadcast revoked commitments (regtest)."""
        self._count += 1
        unique = self.bitcoind.reserve_name(name or f"node{self._count}")
        try:
            process = self._cluster.start_node(unique, to_self_delay=to_self_delay,
                                               allow_cheating=allow_cheating)
        except (ChanlabError, RuntimeError, OSError) as exc:
            raise start_failure(unique, exc) from None
        node = Node(process, self.bitcoind, self._by_id)
        self.nodes.append(node)
        self._by_id[node.node_id] = node
        if funds_sat:
            self.bitcoind.fund(node, funds_sat)
        return node

    def get_nodes(self, n: int, *, funds_sat: int = 0,
                  to_self_delay: int = DEFAULT_TO_SELF_DELAY,
                  allow_cheating: bool = False) -> list[Node]:
        """``n`` nodes with the same options."""
        return [self.get_node(funds_sat=funds_sat, to_self_delay=to_self_delay,
                              allow_cheating=allow_cheating) for _ in range(n)]

    def line_graph(self, n: int, *, fundamount: int = 1_000_000,
                   wait_for_announce: bool = False,
                   to_self_delay: int = DEFAULT_TO_SELF_DELAY,
                   allow_cheating: bool = False) -> list[Node]:
        """``n`` nodes, each opening a channel of ``fundamount`` sat to the next, all confirmed
        and ``normal``. With ``wait_for_announce=True`` the channels are announced (BOLT 7):
        6 blocks are mined and this returns once every node's graph holds every channel with
        both directions' ``channel_update`` and every node's ``node_announcement``, so any node
        can pay any other along the line."""
        if n < 2:
            raise ValueError(f"a line graph needs at least 2 nodes, got {n}")
        nodes = [self.get_node(to_self_delay=to_self_delay, allow_cheating=allow_cheating)
                 for _ in range(n)]
        # the opener also pays the funding fee: fund a little more than the channel
        for node in nodes[:-1]:
            self.bitcoind.fund(node, fundamount + 100_000)
        opened: list[tuple[Node, Node, ChannelRecord]] = []
        for left, right in itertools.pairwise(nodes):
            opened.append((left, right, left.open_channel(right, fundamount, confirm=False,
                                                          announce=wait_for_announce)))
        # BOLT 7: a channel is announced once its funding is 6 deep
        self.bitcoind.generate_block(ANNOUNCE_DEPTH if wait_for_announce else 1)
        for left, right, record in opened:
            for node in (left, right):
                node.wait_for_channel(record.funding_txid or record.channel, "normal")
        if wait_for_announce:
            self.wait_for_graphs(nodes)
        return nodes

    def wait_for_graphs(self, nodes: list[Node], *, timeout: float = 60.0) -> float:
        """Wait until each of ``nodes`` knows all of them and every channel between two of
        them (announced, both ``channel_update``s); the seconds it took. ``WaitTimeout``
        names what each node still lacks."""
        forwarding = {node.name: dict(node.call("forwarding")) for node in nodes}
        expected = expected_from_forwarding({node.name: node.node_id for node in nodes},
                                            forwarding)
        by_name = {node.name: node for node in nodes}

        def graph_of(name: str) -> dict[str, Any] | None:
            try:
                return by_name[name].graph_info()
            except NodeError:
                return None

        try:
            return wait_graphs_complete(list(by_name), graph_of, expected, timeout_s=timeout,
                                        hint="the nodes' logs are in the test report")
        except GraphIncomplete as exc:
            raise WaitTimeout(str(exc)) from None

    def logs(self) -> list[tuple[str, str]]:
        """(title, text) per node: the tail of its ``node.log``, and whatever its process
        wrote to stderr that is not in that log (a traceback, say)."""
        sections: list[tuple[str, str]] = []
        for node in self.nodes:
            log = _tail(node.log_path)
            logged = set(log.splitlines())
            extra = [line for line in _tail(node.home / "stderr.log").splitlines()
                     if line not in logged]
            text = log + ("\n--- stderr ---\n" + "\n".join(extra) if extra else "")
            sections.append((f"chanlab node {node.name} log ({node.log_path})",
                             text or "(empty)"))
        return sections

    def close(self) -> None:
        """Stop every node (kill -9 the ones that do not stop), unload their wallets, remove
        the folder. Safe to call twice."""
        def stop(node: Node) -> None:
            with contextlib.suppress(Exception):
                node.process.stop(_STOP_TIMEOUT_S)
            node.kill()

        if self.nodes:   # all at once: a node slow to stop delays the others by nothing
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                list(pool.map(stop, self.nodes))
        for node in self.nodes:
            # wallets outlive nodes in a shared bitcoind; unloaded ones cost it nothing
            with contextlib.suppress(ChanlabError):
                if node.name in self.bitcoind.rpc.listwallets():
                    self.bitcoind.rpc.unloadwallet(node.name)
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> NodeFactory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
