"""The classroom page over HTTP: live nodes, channels, balances and blocks; the two buttons."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from xml.etree import ElementTree

import pytest

from regtest.cluster import Cluster
from regtest.web import ACTION_HEADER, Classroom, serve


@pytest.fixture
def page(cluster: Cluster) -> Iterator[tuple[str, Classroom]]:
    classroom = Classroom(home=cluster.home)
    started: list[ThreadingHTTPServer] = []
    ready = threading.Event()

    def on_ready(server: ThreadingHTTPServer) -> None:
        started.append(server)
        ready.set()

    thread = threading.Thread(target=serve, args=(classroom,),
                              kwargs={"port": 0, "ready": on_ready}, daemon=True)
    thread.start()
    assert ready.wait(10)
    host, port = started[0].server_address[:2]
    yield f"http://{host!s}:{port}", classroom
    started[0].shutdown()
    thread.join(10)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if url.endswith("/api/state") else body.decode()


def _post(url: str, *, header: bool = True) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST", data=b"",
                                     headers={ACTION_HEADER: "1"} if header else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _within(seconds: float, check: Any) -> float:
    """Poll the page's API like the browser does; return how long the change took to show."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"the page did not show the change within {seconds} s")


def test_page_shows_a_payment_and_a_block_within_two_seconds(
        cluster: Cluster, page: tuple[str, Classroom]) -> None:
    """A payment and a mined block appear in /api/state within 2 s; the SVG is valid XML; the
    page links each channel's transaction graph, served as SVG naming the funding output."""
    url, _ = page
    alice = cluster.start_node("web_alice", funds_sat=600_000)
    bob = cluster.start_node("web_bob")
    opened = cluster.open_channel(alice, bob, 400_000)
    assert "chanlab classroom" in _get(url + "/")

    def channel_of(name: str) -> dict[str, Any]:
        state = _get(url + "/api/state")
        node = next(n for n in state["nodes"] if n["name"] == name)
        return next(c for c in node["channels"]
                    if c["funding_outpoint"].startswith(opened["funding_txid"]))

    assert channel_of("web_bob")["local_msat"] == 0
    cluster.pay(alice, bob, 21_000_000)
    _within(2.0, lambda: channel_of("web_bob")["local_msat"] == 21_000_000)
    state = _get(url + "/api/state")
    svg = ElementTree.fromstring(state["svg"])
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert "web_alice" in texts and "web_bob" in texts and "web_bob 21,000 sat" in texts

    height = state["height"]
    cluster.mine(1)
    _within(2.0, lambda: _get(url + "/api/state")["height"] == height + 1)

    picture = ElementTree.fromstring(_get(f"{url}/channel/web_alice/{opened['channel'][:8]}.svg"))
    drawn = " ".join(picture.itertext())
    assert "web_alice's funding" in drawn and "400,000 sat" in drawn
    assert "/channel/${encodeURIComponent(n.name)}/" in _get(url + "/")
    with pytest.raises(urllib.error.HTTPError):
        _get(f"{url}/channel/nobody/{opened['channel'][:8]}.svg")


def test_buttons_need_the_action_header_and_mine_exactly_one_block(
        cluster: Cluster, page: tuple[str, Classroom]) -> None:
    """A POST without the header is refused (403) and mines nothing; with it, one block."""
    url, _ = page
    before = cluster.miner.height()
    status, answer = _post(url + "/api/mine", header=False)
    assert status == 403 and "header" in answer["error"]
    assert cluster.miner.height() == before
    status, answer = _post(url + "/api/mine")
    assert status == 200 and answer == {"mined": 1, "height": before + 1}
    assert _post(url + "/api/nothing")[0] == 404


def test_drill_output_streams_into_the_page(page: tuple[str, Classroom]) -> None:
    """The drill button's child process output reaches /api/state line by line."""
    url, classroom = page
    assert classroom.start_drill([sys.executable, "-m", "regtest.cli", "demo", "--list"]) == {
        "started": True}
    _within(20.0, lambda: any("finished, exit code 0" in line
                              for line in _get(url + "/api/state")["drill"]["lines"]))
    lines = _get(url + "/api/state")["drill"]["lines"]
    assert any(line.startswith("breach-victim-returns") for line in lines)


def test_a_node_that_is_down_is_shown_down_not_waited_for(
        cluster: Cluster, page: tuple[str, Classroom]) -> None:
    """A killed node shows as down and the page still answers within a second or two."""
    url, _ = page
    carol = cluster.start_node("web_carol")
    carol.kill()
    start = time.monotonic()
    state = _get(url + "/api/state")
    assert time.monotonic() - start < 2.5
    assert next(n for n in state["nodes"] if n["name"] == "web_carol")["running"] is False
