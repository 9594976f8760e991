"""`chanlab network start|status|stop`: real node processes and the home's own bitcoind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from regtest.bitcoind_binary import BitcoindBinary
from regtest.control import call_node
from regtest.network import (
    FUNDING_MARGIN_SAT,
    NetworkError,
    NetworkStatus,
    NoNetwork,
    network_status,
    process_alive,
    render_status,
    start_network,
)
from regtest.topology import parse_topology
from regtest.wait import wait_for

CHANLAB = [sys.executable, "-m", "regtest.cli"]


def _run(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHANLAB, *args], env={**os.environ, "CHANLAB_HOME": str(home)},
                          capture_output=True, text=True, timeout=timeout)


def _pids(home: Path) -> dict[str, tuple[int, str]]:
    """Every process the network runs, by role: (pid, a word its command line holds)."""
    pids = _pids_without_bitcoind(home)
    pids["bitcoind service"] = (int((home / "bitcoind.pid").read_text()), "bitcoind start")
    pids["bitcoind"] = (int((home / "bitcoind" / "regtest" / "bitcoind.pid").read_text()),
                        "bitcoind")
    return pids


def _pids_without_bitcoind(home: Path) -> dict[str, tuple[int, str]]:
    record = json.loads((home / "network.json").read_text())
    return {name: (int(pid), f"node start --name {name} ")
            for name, pid in record["node_pids"].items()}


def _kill_leftovers(pids: dict[str, tuple[int, str]]) -> None:
    """After a failed assertion: SIGKILL what this test started and still runs (by pid)."""
    for pid, marker in pids.values():
        if process_alive(pid, marker):
            os.kill(pid, signal.SIGKILL)


def _check_channels(home: Path, spec: str, status: dict[str, Any]) -> None:
    """Every planned channel is normal on both ends with the planned msat, in the nodes' own
    `channels` answers and in `status --json` alike."""
    topology = parse_topology(spec)
    assert [(c["opener"], c["accepter"]) for c in status["channels"]] == \
        [(c.opener, c.accepter) for c in topology.channels]
    node_ids = {n["name"]: n["node_id"] for n in status["nodes"]}
    for plan, shown in zip(topology.channels, status["channels"], strict=True):
        assert shown["capacity_sat"] == plan.capacity_sat == 1_000_000
        assert shown["push_msat"] == plan.push_msat == 500_000_000
        opener_msat = plan.capacity_sat * 1000 - plan.push_msat
        assert shown["ends"] == [
            {"node": plan.opener, "state": "normal", "local_msat": opener_msat,
             "remote_msat": plan.push_msat},
            {"node": plan.accepter, "state": "normal", "local_msat": plan.push_msat,
             "remote_msat": opener_msat}]
        for name, peer, side in ((plan.opener, plan.accepter, "holder"),
                                 (plan.accepter, plan.opener, "counterparty")):
            (entry,) = [c for c in call_node(name, "channels", home=home)
                        if c["channel_id"] == shown["channel_id"]]
            assert entry["peer_id"] == node_ids[peer]
            assert entry["opener"] == side
            assert entry["funding_sat"] == plan.capacity_sat
            assert entry["funding_outpoint"].startswith(shown["funding_txid"] + ":")
            assert entry["state"] == "normal"
            assert entry["local_msat"] + entry["remote_msat"] == plan.capacity_sat * 1000
    for node in status["nodes"]:
        assert node["running"] is True
        channels = [c for c in topology.channels if node["name"] in (c.opener, c.accepter)]
        # half of each of its channels: the opener kept half, the accepter was pushed half
        assert node["offchain_msat"] == sum(c.push_msat for c in channels)
        opened = sum(1 for c in channels if c.opener == node["name"])
        # what is left of the fee margin after paying the funding transactions' fees
        assert 0 < node["onchain_sat"] < FUNDING_MARGIN_SAT * opened or \
            node["onchain_sat"] == opened == 0


def _stop_and_check_gone(home: Path, pids: dict[str, tuple[int, str]]) -> str:
    """`network stop` ends every process of ``pids`` and removes the bitcoind service files."""
    stopped = _run(home, "network", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the regtest bitcoind" in stopped.stdout
    still = [role for role, (pid, marker) in pids.items() if process_alive(pid, marker)]
    assert still == []
    assert (home / "network.json").exists()  # kept: `network start` brings it back
    for name in ("bitcoind.json", "bitcoind.pid"):
        assert not (home / name).exists(), name
    return stopped.stdout


def test_line_of_three_starts_shows_and_stops(tmp_path: Path,
                                              bitcoind_binary: BitcoindBinary) -> None:
    """line:3 comes up with both channels normal and half pushed; stop leaves no process."""
    home = tmp_path / "home"
    (home / "nodes" / "carol").mkdir(parents=True)
    refused = _run(home, "network", "start", "--topology", "line:3")
    assert refused.returncode == 1
    assert refused.stderr == (f"chanlab: error: {home} already has a node called carol "
                              f"({home / 'nodes' / 'carol'}): use a fresh CHANLAB_HOME\n")
    assert sorted(p.name for p in home.iterdir()) == ["nodes"]  # nothing was started
    (home / "nodes" / "carol").rmdir()
    started = _run(home, "network", "start", "--topology", "line:3")
    pids = _pids(home) if (home / "network.json").exists() else {}
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        assert started.stderr == ""  # the nodes and bitcoind log to their files, not here
        assert "network line:3 is up: 3 nodes, 2 channels, every graph complete" in \
            started.stdout
        record = json.loads((home / "network.json").read_text())
        assert record["started_bitcoind"] is True
        assert record["topology"] == parse_topology("line:3").to_json()
        shown = _run(home, "network", "status", "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["topology"] == "line:3"
        assert [n["name"] for n in status["nodes"]] == ["alice", "bob", "carol"]
        _check_channels(home, "line:3", status)
        # announced: every node knows both channels, both directions' fees, all three nodes
        assert [(n["graph_complete"], n["graph_gaps"]) for n in status["nodes"]] == \
            [(True, [])] * 3
        public = {c["short_channel_id"] for c in
                  call_node("alice", "graph-info", home=home)["channels"] if c["public"]}
        assert public == {c["short_channel_id"] for c in
                          json.loads((home / "network.json").read_text())["channels"]}
        assert len(public) == 2
        # the rest in-process: the same functions as the CLI, without a Python start each
        table = render_status(network_status(home))
        assert "alice -> bob  1,000,000 sat  alice  normal  500,000,000 msat" in table
        with pytest.raises(NetworkError) as again:
            start_network(home, parse_topology("line:3"))
        assert str(again.value) == (f"the network line:3 of {home} runs (nodes alice, bob, "
                                    "carol): `chanlab network stop` stops it")
        call_node("carol", "stop", home=home)

        def carol_down() -> NetworkStatus | None:
            status = network_status(home)
            return None if status.nodes[2].running else status

        down = wait_for(carol_down, timeout=15, what="status to show carol down")
        assert [n.running for n in down.nodes] == [True, True, False]
        assert down.nodes[2].onchain_sat is None and down.nodes[2].node_id is None
        assert [(e.node, e.state) for e in down.channels[1].ends] == \
            [("bob", "normal"), ("carol", "unreachable")]
        assert "carol  NO" in render_status(down)
        assert "carol was not running" in _stop_and_check_gone(home, pids)
        after = network_status(home)
        assert [n.running for n in after.nodes] == [False, False, False]
        assert {e.state for c in after.channels for e in c.ends} == {"unreachable"}
        assert "0 of 3 nodes running" in render_status(after)
        with pytest.raises(NoNetwork) as empty:
            network_status(tmp_path / "empty")
        assert str(empty.value) == (f"no network in {tmp_path / 'empty'}: start one with "
                                    "`chanlab network start --topology line:3`")
    finally:
        _kill_leftovers(pids)


def test_bolt7_example_has_four_channels_and_the_specs_fees_and_starts_again(
        tmp_path: Path, bitcoind_binary: BitcoindBinary) -> None:
    """bolt7-example: A..D as alice..dave, B and D each joined to A and C, the spec's fees;
    stopped and started again, the same channels are normal again with the same balances."""
    home = tmp_path / "home"
    started = _run(home, "network", "start", "--topology", "bolt7-example")
    pids = _pids(home) if (home / "network.json").exists() else {}
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        status = json.loads(_run(home, "network", "status", "--json").stdout)
        assert [(n["label"], n["name"], n["fee_base_msat"], n["fee_proportional_millionths"],
                 n["cltv_expiry_delta"]) for n in status["nodes"]] == [
            ("A", "alice", 100, 1000, 10), ("B", "bob", 200, 2000, 20),
            ("C", "carol", 300, 3000, 30), ("D", "dave", 400, 4000, 40)]
        assert len(status["channels"]) == 4
        _check_channels(home, "bolt7-example", status)
        # each node forwards with the spec's policy, as `network start` told it to
        assert [(f["fee_base_msat"], f["fee_proportional_millionths"], f["cltv_expiry_delta"])
                for f in (call_node(n, "forwarding", home=home)
                          for n in ("alice", "bob", "carol", "dave"))] == [
            (100, 1000, 10), (200, 2000, 20), (300, 3000, 30), (400, 4000, 40)]
        assert all(n["graph_complete"] for n in status["nodes"])
        peers = {name: {c["peer_id"] for c in call_node(name, "channels", home=home)}
                 for name in ("bob", "dave")}
        ids = {n["name"]: n["node_id"] for n in status["nodes"]}
        assert peers == {"bob": {ids["alice"], ids["carol"]},
                         "dave": {ids["alice"], ids["carol"]}}
        _stop_and_check_gone(home, pids)

        with pytest.raises(NetworkError) as other:
            start_network(home, parse_topology("line:3"))
        assert str(other.value) == (f"{home} holds the network bolt7-example: `chanlab "
                                    "network start` (no --topology) starts it again; use "
                                    "another CHANLAB_HOME for line:3")
        ports = json.loads((home / "network.json").read_text())["node_ports"]
        with socket.socket() as squatter:  # alice's port taken: she cannot come back
            # (alice's closed connections may linger in TIME_WAIT on it)
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", ports["alice"]))
            squatter.listen()
            said: list[str] = []
            with pytest.raises(NetworkError) as failed:
                start_network(home, None, progress=said.append)
            pids = _pids_without_bitcoind(home)
            message = str(failed.value)
            assert message.startswith("node alice exited at start (")
            assert "address already in use" in message
            assert message.endswith(f"see {home / 'nodes' / 'alice' / 'stderr.log'}")
            assert "\n" not in message
            assert "the network did not come back: stopping what was started" in said
            assert [r for r, (pid, mark) in pids.items() if process_alive(pid, mark)] == []
            assert not (home / "bitcoind.pid").exists()
        restarted = _run(home, "network", "start")
        pids = _pids(home)
        assert restarted.returncode == 0, restarted.stderr + restarted.stdout
        assert "network bolt7-example is up again: 4 nodes, 4 channels" in restarted.stdout
        assert json.loads((home / "network.json").read_text())["node_ports"] == ports
        again = json.loads(_run(home, "network", "status", "--json").stdout)
        assert [c["channel_id"] for c in again["channels"]] == \
            [c["channel_id"] for c in status["channels"]]
        _check_channels(home, "bolt7-example", again)
        assert all(n["graph_complete"] for n in again["nodes"])   # graphs kept on disk
        _stop_and_check_gone(home, pids)
    finally:
        _kill_leftovers(pids)


def test_a_channel_closed_by_hand_is_not_waited_for_when_the_network_starts_again(
        tmp_path: Path, bitcoind_binary: BitcoindBinary) -> None:
    """line:3 with alice-bob closed cooperatively and mined: status counts every graph
    complete without it (gossip forgot it), and `network start` brings the rest back with
    bob-carol still public in every graph."""
    home = tmp_path / "home"
    started = _run(home, "network", "start", "--topology", "line:3", timeout=180)
    pids = _pids(home) if (home / "network.json").exists() else {}
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        record = json.loads((home / "network.json").read_text())
        ab, bc = record["channels"]
        closing = call_node("alice", "close", {"channel": ab["channel_id"]}, home=home)

        def gossip_forgot() -> bool:
            # a block at a time until the closing transaction is in one (it reaches the
            # mempool a moment after `close` answers) and every graph dropped the channel
            assert _run(home, "bitcoind", "mine", "1").returncode == 0
            return all(ab["short_channel_id"] not in
                       {c["short_channel_id"] for c in call_node(n, "graph-info", home=home)
                        ["channels"] if c["public"]} for n in ("alice", "bob", "carol"))

        wait_for(gossip_forgot, timeout=60, max_interval=1.0,
                 what=f"every graph to forget alice-bob, closed by {closing['closing_txid']}")
        assert {c["state"] for n in ("alice", "bob") for c in call_node(n, "channels", home=home)
                if c["channel_id"] == ab["channel_id"]} <= {"closing", "closed"}
        status = network_status(home)
        assert [(n.name, n.graph_gaps) for n in status.nodes] == \
            [("alice", ()), ("bob", ()), ("carol", ())]
        _stop_and_check_gone(home, pids)
        again = _run(home, "network", "start", timeout=180)
        pids = _pids(home)
        assert again.returncode == 0, again.stderr + again.stdout
        assert "network line:3 is up again" in again.stdout
        for name in ("alice", "bob", "carol"):
            public = {c["short_channel_id"] for c in
                      call_node(name, "graph-info", home=home)["channels"] if c["public"]}
            assert public == {bc["short_channel_id"]}, name
        _stop_and_check_gone(home, pids)
    finally:
        _kill_leftovers(pids)
