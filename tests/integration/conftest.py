"""Fixtures for tests that need a real bitcoind on regtest (all tests here get marker ``regtest``).

bitcoind is never skipped for: the ``bitcoind_binary`` fixture finds one (``$BITCOIND``, PATH,
chanlab's cache) or provisions it into the cache, once per machine.

Fixture API
-----------
``bitcoind_binary``, ``bitcoind``, ``node_factory``, ``wait_for``: from chanlab's pytest plugin
    (``chanlab/pytest_plugin.py``, documented there and in ``docs/testing.md``), the plugin any
    project installing chanlab gets. In short:

``bitcoind_binary`` (session) -> ``regtest.bitcoind_binary.BitcoindBinary``
    The binary every node of the run uses.

``bitcoind`` (session) -> ``chanlab.Bitcoind``, which is a ``regtest.node.BitcoindNode`` (a
    ``LocalBitcoind`` inside, unless ``--bitcoind-backend docker``)
    One node shared by the whole run, started with a descriptor wallet ``"miner"`` and at
    least 101 blocks mined to it, so the miner has mature coins. Tests may mine freely; do not
    stop or restart it (use ``fresh_bitcoind`` for that). Useful members: ``rpc`` (blocking
    ``regtest.rpc.Rpc``), ``async_rpc()``, ``rpc_url``, ``rpc_port``, ``cookie_path``,
    ``zmq_rawblock``, ``zmq_rawtx``, ``p2p_port``, ``datadir``, ``chain``; and the plugin's
    ``generate_block(n)``, ``fund(address_or_node, amount_sat)``, ``tx(txid)``, ``miner``.

``node_factory`` (function) -> ``chanlab.NodeFactory``: typed ``chanlab.Node`` objects.

``miner`` (session) -> ``regtest.wallet.Wallet``
    The ``"miner"`` wallet of ``bitcoind``, with mature coins. A ``Wallet`` is also a
    ``regtest.wallet.Chain``: ``mine(n, to_address=None) -> list[block_hash]``,
    ``fund_script(script_pubkey, amount_sat) -> channel.types.OutPoint`` (in the mempool),
    ``confirm(txid, depth=1) -> block_hash`` (mines as needed), ``send_to_address``,
    ``balance_sat()``, ``new_address()``, ``test_mempool_accept(raw) -> MempoolAcceptResult``,
    ``send_raw_transaction(raw) -> txid``, ``get_transaction(txid) -> bytes``,
    ``get_block(hash) -> bytes``, ``get_tx_out(outpoint) -> TxOut | None``, ``height()``,
    ``wait_for_confirmation(txid, depth=1, timeout=30)``.

``wallet_factory`` (function) -> ``(name=None, amount_sat=1_000_000) -> Wallet``
    A new wallet on ``bitcoind`` holding ``amount_sat`` in one confirmed output (0 for empty).
    Names are made unique per test when not given.

``fresh_bitcoind`` (function) -> ``regtest.node.BitcoindNode``
    A node of its own for tests that need isolation (restart, kill, reorgs, exact mempool
    contents), datadir under the test's ``tmp_path``, with a ``"miner"`` wallet holding mature
    coins: ``Wallet(fresh_bitcoind.rpc, "miner")``. Stopped after the test. Costs ~1 s.

``wait_for`` (session, from the plugin) -> ``regtest.wait.wait_for``
    ``wait_for(predicate, timeout=30.0, what="...")``: poll with back-off, raise ``WaitTimeout``.

``cluster`` (function) -> ``regtest.cluster.Cluster``
    chanlab node processes on the shared ``bitcoind``, with ``$CHANLAB_HOME`` under the test's
    ``tmp_path``: ``cluster.start_node(name, funds_sat=..., to_self_delay=...)``,
    ``open_channel``, ``pay``, ``mine``. Every node process still running is killed (SIGKILL)
    at teardown; a failing test's report carries each node's log (the plugin's
    ``attach_logs``). A node's bitcoind wallet is named after the node and bitcoind is shared,
    so give nodes names unique in the run.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chanlab import Bitcoind
from chanlab.pytest_plugin import attach_logs, bitcoind_backend
from regtest.bitcoind_binary import BitcoindBinary
from regtest.cluster import Cluster
from regtest.node import BitcoindNode, LocalBitcoind
from regtest.wallet import Wallet, ensure_mature_coins, fund_new_wallet

MINER = "miner"
WalletFactory = Callable[..., Wallet]
_LOG_TAIL_LINES = 300


def _make_node(config: pytest.Config, binary: BitcoindBinary, datadir: Path) -> BitcoindNode:
    if bitcoind_backend(config) == "local":
        return LocalBitcoind(binary=binary, datadir=datadir)
    from regtest.docker_node import DockerBitcoind

    return DockerBitcoind()


@pytest.fixture(scope="session")
def miner(bitcoind: Bitcoind) -> Wallet:
    return bitcoind.miner


@pytest.fixture()
def wallet_factory(request: pytest.FixtureRequest, miner: Wallet) -> WalletFactory:
    counter = itertools.count(1)
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]

    def make(name: str | None = None, amount_sat: int = 1_000_000) -> Wallet:
        wallet_name = name if name is not None else f"{base}-{next(counter)}"
        return fund_new_wallet(miner, wallet_name, amount_sat)

    return make


@pytest.fixture()
def fresh_bitcoind(
    request: pytest.FixtureRequest, bitcoind_binary: BitcoindBinary, tmp_path: Path
) -> Iterator[BitcoindNode]:
    node = _make_node(request.config, bitcoind_binary, tmp_path / "bitcoind")
    with node:
        ensure_mature_coins(Wallet.open(node.rpc, MINER))
        yield node


def _cluster_logs(cluster: Cluster) -> list[tuple[str, str]]:
    sections = []
    for process in [*cluster.nodes.values(), *cluster.towers.values()]:
        log = process.home / f"{process.kind}.log"
        try:
            text = "\n".join(log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        except OSError:
            text = "(no log)"
        sections.append((f"chanlab {process.kind} {process.name} log ({log})", text))
    return sections


@pytest.fixture()
def cluster(request: pytest.FixtureRequest, bitcoind: Bitcoind, miner: Wallet,
            tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.running(bitcoind, tmp_path / "chanlab", miner) as nodes:
        attach_logs(request, lambda: _cluster_logs(nodes))
        yield nodes
