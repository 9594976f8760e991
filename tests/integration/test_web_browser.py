"""The classroom page in a real headless browser: its script renders nodes, channels, height."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from regtest.cluster import Cluster
from regtest.web import Classroom, serve

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser installed (Debian: apt-get install chromium); "
                            "the page's HTTP API is tested in test_web.py")


@pytest.fixture
def page_url(cluster: Cluster) -> Iterator[str]:
    started: list[ThreadingHTTPServer] = []
    ready = threading.Event()

    def on_ready(server: ThreadingHTTPServer) -> None:
        started.append(server)
        ready.set()

    thread = threading.Thread(target=serve, args=(Classroom(home=cluster.home),),
                              kwargs={"port": 0, "ready": on_ready}, daemon=True)
    thread.start()
    assert ready.wait(10)
    host, port = started[0].server_address[:2]
    yield f"http://{host!s}:{port}/"
    started[0].shutdown()
    thread.join(10)


def test_browser_renders_the_nodes_their_channel_and_the_height(
        cluster: Cluster, page_url: str, tmp_path: Path) -> None:
    """Chromium runs the page's script: the DOM then names both nodes, the channel's split
    balance in sat, and the block height bitcoind reports."""
    alice = cluster.start_node("browser_alice", funds_sat=600_000)
    bob = cluster.start_node("browser_bob")
    cluster.open_channel(alice, bob, 400_000)
    cluster.pay(alice, bob, 30_000_000)
    height = cluster.miner.height()
    assert BROWSER is not None
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page_url],
        capture_output=True, text=True, timeout=90).stdout
    assert f'<b id="height">{height:,}</b>' in dom
    assert "browser_alice" in dom and "browser_bob" in dom
    assert "browser_bob 30,000 sat" in dom     # the channel drawn split where its balance is
    assert "30,000,000 msat" in dom            # Bob's off-chain balance in the table
