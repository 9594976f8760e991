"""I/O: chanlab's pytest plugin (entry point ``pytest11``, name ``chanlab``): real channel
nodes as fixtures, for any project that installs chanlab — no conftest needed.

Fixtures
--------
``bitcoind`` (session) -> ``chanlab.Bitcoind``
    A private regtest bitcoind for the session, provisioned on first use as ``make demo``
    does, with a ``miner`` wallet holding mature coins. ``generate_block(n)``, ``rpc``,
    ``fund(address_or_node, amount_sat)``, ``tx(txid)`` (outputs and fee), ``spending_tx``.
    It is also a ``regtest.node.BitcoindNode`` (``rpc_url``, ``cookie_path``, ZMQ endpoints).
    Do not stop it: it serves the whole session.

``node_factory`` (function) -> ``chanlab.NodeFactory``
    ``get_node(name=None, *, funds_sat=0, to_self_delay=10, allow_cheating=False)``,
    ``get_nodes(n, **options)``, ``line_graph(n, *, fundamount=1_000_000,
    wait_for_announce=False)`` (channels opened along the line, confirmed and ``normal``;
    ``wait_for_announce=True`` announces them, mines 6 blocks and waits until every node's
    graph is complete, so any node pays any other), ``wait_for_graphs(nodes, timeout=60)``.
    After the test, pass or fail, every node is stopped and its folder removed; a failing
    test's report carries each node's log.

``electrum_factory`` (function) -> ``chanlab.electrum.ElectrumFactory``
    ``get_wallet(name=None, *, funds_sat=0, to_self_delay=10)`` -> a started, synced
    ``regtest.electrum.ElectrumWallet`` (Electrum, a Lightning implementation chanlab did not
    write: ``address()``, ``open_channel``, ``add_request``, ``lnpay``, ``close_channel``,
    ``list_channels``...), on the session's ``bitcoind``; ``get_wallets(n, **options)``.
    One ElectrumX serves the whole session (``electrumx``); Electrum and ElectrumX are
    provisioned into chanlab's cache on first use (``electrum_install``). Wallets are stopped
    and their folders removed after the test; a failing test's report carries their logs.

``wait_for`` (session) -> ``wait_for(predicate, *, timeout=30.0, what="...")``
    Poll until ``predicate()`` is truthy and return it, or raise ``WaitTimeout``.

``bitcoind_binary`` (session) -> ``regtest.bitcoind_binary.BitcoindBinary``
    The binary behind ``bitcoind`` (found, or provisioned into chanlab's cache).

Options: ``--bitcoind-backend local|docker`` (or ``$CHANLAB_BACKEND``) picks how ``bitcoind``
runs; ``--chanlab-keep`` keeps the nodes' folders after each test, for reading their logs.

Other fixtures can attach logs to a failing test's report too: ``attach_logs(request, source)``
with ``source() -> [(title, text), ...]``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator

import pytest

from chanlab.bitcoind import Bitcoind, provision_bitcoind
from chanlab.electrum import ElectrumFactory
from chanlab.factory import NodeFactory
from chanlab.lab import WaitFor
from regtest.bitcoind_binary import BitcoindBinary
from regtest.electrum import ElectrumX
from regtest.electrum_provision import ElectrumInstall, ensure_electrum
from regtest.wait import wait_for as _wait_for

__all__ = ["LogSource", "attach_logs", "bitcoind_backend"]

LogSource = Callable[[], list[tuple[str, str]]]
_LOG_SOURCES = pytest.StashKey[list[LogSource]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chanlab", "chanlab regtest nodes")
    group.addoption("--bitcoind-backend", choices=("local", "docker"), default=None,
                    help="run chanlab's bitcoind as a local process (default) or in Docker")
    group.addoption("--chanlab-keep", action="store_true", default=False,
                    help="keep each test's chanlab node folders (logs, databases) after it")


def attach_logs(request: pytest.FixtureRequest, source: LogSource) -> None:
    """Have ``source()``'s (title, text) sections added to the report if the test fails."""
    stash = request.node.stash
    stash.setdefault(_LOG_SOURCES, []).append(source)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for source in item.stash.get(_LOG_SOURCES, []):
            try:
                sections = source()
            except Exception as exc:   # a report must never break on a log
                sections = [("chanlab logs", f"could not read the logs: {exc}")]
            for title, text in sections:
                report.sections.append((title, text))
    return report


def bitcoind_backend(config: pytest.Config) -> str:
    """``local`` or ``docker``: ``--bitcoind-backend``, else ``$CHANLAB_BACKEND``, else local."""
    chosen = config.getoption("--bitcoind-backend") or os.environ.get("CHANLAB_BACKEND", "local")
    return str(chosen)


@pytest.fixture(scope="session")
def bitcoind_binary() -> BitcoindBinary:
    return provision_bitcoind()


@pytest.fixture(scope="session")
def bitcoind(request: pytest.FixtureRequest) -> Iterator[Bitcoind]:
    backend = bitcoind_backend(request.config)
    binary = request.getfixturevalue("bitcoind_binary") if backend == "local" else None
    with Bitcoind.running(backend=backend, binary=binary) as node:
        yield node


@pytest.fixture()
def node_factory(request: pytest.FixtureRequest, bitcoind: Bitcoind) -> Iterator[NodeFactory]:
    with NodeFactory(bitcoind, keep=bool(request.config.getoption("--chanlab-keep"))
                     ) as factory:
        attach_logs(request, factory.logs)
        yield factory


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def electrum_install() -> ElectrumInstall:
    return ensure_electrum(progress=_progress)


@pytest.fixture(scope="session")
def electrumx(electrum_install: ElectrumInstall, bitcoind: Bitcoind,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ElectrumX]:
    server = ElectrumX(electrum_install, rpc_url=bitcoind.rpc_url,
                       cookie_path=bitcoind.cookie_path,
                       home=tmp_path_factory.mktemp("electrumx"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def electrum_factory(request: pytest.FixtureRequest, electrum_install: ElectrumInstall,
                     electrumx: ElectrumX, bitcoind: Bitcoind) -> Iterator[ElectrumFactory]:
    with ElectrumFactory(electrum_install, electrumx, bitcoind,
                         keep=bool(request.config.getoption("--chanlab-keep"))) as factory:
        attach_logs(request, factory.logs)
        yield factory


@pytest.fixture(scope="session")
def wait_for() -> WaitFor:
    return _wait_for
