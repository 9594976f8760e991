"""Payments across every ordered pair of a `chanlab network start` network, fees to the msat.

One network per topology (``line:5``, ``bolt7-example``, ``star:4``, ``ring:4``), started as a
person starts it (``chanlab network start --topology ...``: announced channels, 6 blocks,
complete graphs). For every ordered pair (payer, payee) the payee makes an invoice and the
payer pays it; then every node's off-chain balance is read (``balance``, the same JSON as
``chanlab NAME --json balance``) once no HTLC is left anywhere. The payee gains exactly the
amount, the payer loses exactly amount + fee, each forwarder on the route gains exactly the fee
its ``channel_update`` announces for the amount it sent on (BOLT 7 "HTLC Fees", read from the
payer's graph and equal to the topology's policy), and every other node gains nothing. The
first pair goes through the command line itself (``chanlab dave invoice``, ``chanlab alice
--json pay``, ``--json balance``); the others through the same control socket in-process, to
keep the run short.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regtest.bitcoind_binary import BitcoindBinary
from regtest.control import call_node
from regtest.network import (
    load_network,
    network_status,
    process_alive,
    start_network,
    stop_network,
)
from regtest.network_graph import direction_policy, forward_fee_msat
from regtest.network_record import NetworkRecord
from regtest.topology import parse_topology
from regtest.wait import wait_for

CHANLAB = [sys.executable, "-m", "regtest.cli"]
AMOUNT_MSAT = 10_000_000          # 10,000 sat: the proportional fee is visible (20,000 msat at B)
Balances = dict[str, int]


def _cli(home: Path, *args: str) -> Any:
    done = subprocess.run([*CHANLAB, *args], env={**os.environ, "CHANLAB_HOME": str(home)},
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


class Network:
    """A started network in ``home``: its record, node ids, and ways to ask its nodes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.record: NetworkRecord = load_network(home)
        self.names = self.record.topology.names
        self.ids = {name: str(call_node(name, "info", home=home)["node_id"])
                    for name in self.names}
        self.name_of = {node_id: name for name, node_id in self.ids.items()}
        self.scids = {frozenset((c.plan.opener, c.plan.accepter)): str(c.short_channel_id)
                      for c in self.record.channels}

    def call(self, name: str, cmd: str, **args: Any) -> Any:
        return call_node(name, cmd, args, home=self.home, timeout_s=60)

    def quiet(self) -> bool:
        """No HTLC on any channel, and both ends of each channel agree on the split."""
        listed = {name: self.call(name, "channels") for name in self.names}
        for chan in self.record.channels:
            ends = [next(c for c in listed[name] if c["channel_id"] == chan.channel_id)
                    for name in (chan.plan.opener, chan.plan.accepter)]
            if any(e["htlcs"] != 0 or e["state"] != "normal" for e in ends) or \
                    ends[0]["local_msat"] != ends[1]["remote_msat"]:
                return False
        return True

    def balances(self) -> Balances:
        wait_for(self.quiet, timeout=30, what="every HTLC of the network to be settled")
        return {name: int(self.call(name, "balance")["offchain_msat"]) for name in self.names}


@contextlib.contextmanager
def _network(tmp_path_factory: pytest.TempPathFactory, spec: str) -> Iterator[Network]:
    """``spec`` started in a home of its own; stopped (and SIGKILLed if need be) after."""
    home = tmp_path_factory.mktemp(spec.replace(":", "-")) / "home"
    said: list[str] = []
    try:
        start_network(home, parse_topology(spec), progress=said.append)
        print("\n".join(said))
        yield Network(home)
    finally:
        pids = {}
        if (home / "network.json").exists():
            pids = dict(load_network(home).node_pids)
            stop_network(home)
        for name, pid in pids.items():   # after a failure: SIGKILL what still runs, by pid
            if process_alive(pid, f"node start --name {name} "):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def line5(tmp_path_factory: pytest.TempPathFactory,
          bitcoind_binary: BitcoindBinary) -> Iterator[Network]:
    with _network(tmp_path_factory, "line:5") as net:
        yield net


@pytest.fixture(scope="module")
def bolt7(tmp_path_factory: pytest.TempPathFactory,
          bitcoind_binary: BitcoindBinary) -> Iterator[Network]:
    with _network(tmp_path_factory, "bolt7-example") as net:
        yield net


def _route_of(answer: dict[str, Any], payee_id: str) -> list[str]:
    """The node ids the succeeded attempt went through, first hop first, payee last (a payment
    over a direct channel reports no route: the payee alone)."""
    attempts = answer.get("attempts") or []
    if not attempts:
        return [payee_id]
    return [str(hop["node_id"]) for hop in attempts[-1]["route"]]


def _expected_changes(net: Network, graph: dict[str, Any], payer: str, route: list[str]
                      ) -> tuple[Balances, list[tuple[str, dict[str, Any]]]]:
    """Each node's expected balance change for the route, the fees worked out backwards from
    the payee (each forwarder's fee is on what it sends on), from the announced policies."""
    names = [payer, *(net.name_of[node_id] for node_id in route)]
    change = dict.fromkeys(net.names, 0)
    change[names[-1]] = AMOUNT_MSAT
    sent_on = AMOUNT_MSAT
    policies = []
    for forwarder, next_node in reversed(list(itertools.pairwise(names[1:]))):
        scid = net.scids[frozenset((forwarder, next_node))]
        policy = direction_policy(graph, scid, net.ids[forwarder])
        assert policy is not None, f"{payer}'s graph has no update from {forwarder} on {scid}"
        fee = forward_fee_msat(policy, sent_on)
        change[forwarder] = fee
        sent_on += fee
        policies.append((forwarder, policy))
    change[payer] = -sent_on
    return change, policies


def _pay_every_pair(net: Network, say: Callable[[str], None]) -> dict[str, int]:
    """Every ordered pair pays AMOUNT_MSAT; exact balance changes checked for each; the fee
    each pair paid, by "payer->payee"."""
    topology = net.record.topology
    graphs = {name: net.call(name, "graph-info") for name in net.names}
    fees: dict[str, int] = {}
    before = net.balances()
    for number, (payer, payee) in enumerate(itertools.permutations(net.names, 2)):
        if number == 0:   # the first pair exactly as a person types it
            invoice = _cli(net.home, payee, "--json", "invoice", str(AMOUNT_MSAT))["invoice"]
            answer = _cli(net.home, payer, "--json", "pay", invoice)
        else:
            invoice = net.call(payee, "invoice", amount_msat=AMOUNT_MSAT)["invoice"]
            answer = net.call(payer, "pay", invoice=invoice)
        assert answer["status"] == "succeeded", (payer, payee, answer)
        route = _route_of(answer, net.ids[payee])
        assert route[-1] == net.ids[payee]
        paid_fee = int(answer.get("fee_msat") or 0)
        change, policies = _expected_changes(net, graphs[payer], payer, route)
        for forwarder, policy in policies:   # what it announces is what the topology says
            plan = topology.node(forwarder).policy
            assert (policy["fee_base_msat"], policy["fee_proportional_millionths"],
                    policy["cltv_expiry_delta"]) == (plan.fee_base_msat,
                                                     plan.fee_proportional_millionths,
                                                     plan.cltv_expiry_delta)
        assert paid_fee == -change[payer] - AMOUNT_MSAT
        after = net.balances()
        if number == 0:
            assert {name: int(_cli(net.home, name, "--json", "balance")["offchain_msat"])
                    for name in net.names} == after
        assert {name: after[name] - before[name] for name in net.names} == change, \
            (payer, payee, [net.name_of[r] for r in route])
        fees[f"{payer}->{payee}"] = paid_fee
        say(f"{payer} -> {payee} via {' -> '.join(net.name_of[r] for r in route)}: fee "
            f"{paid_fee} msat")
        before = after
    return fees


def test_line_of_five_pays_across_every_ordered_pair_with_exact_fees(line5: Network) -> None:
    """On line:5 all 20 ordered pairs pay 10,000,000 msat; each forwarder keeps exactly
    1000 msat + 1 ppm of what it sends on (its channel_update), no one else's balance moves."""
    fees = _pay_every_pair(line5, print)
    assert len(fees) == 20
    # the route is the line itself: k forwarders cost k fees, each on a slightly larger amount
    assert fees["alice->bob"] == fees["erin->dave"] == 0
    assert fees["alice->carol"] == 1000 + 10
    # dave sends on 10,000,000 msat, carol 10,001,010, bob 10,002,020: 1000 + 10 msat each
    assert fees["alice->erin"] == 3 * (1000 + 10)
    status = network_status(line5.home)
    assert all(n.running for n in status.nodes)


def test_bolt7_example_pays_across_every_ordered_pair_with_the_specs_fees(
        bolt7: Network) -> None:
    """On BOLT 7's A/B/C/D all 12 ordered pairs pay; a payment between A and C, or B and D,
    goes through one of the other two and pays it exactly its announced fee."""
    fees = _pay_every_pair(bolt7, print)
    assert len(fees) == 12
    neighbours = {("alice", "bob"), ("bob", "carol"), ("carol", "dave"), ("dave", "alice")}
    for pair, fee in fees.items():
        payer, payee = pair.split("->")
        if (payer, payee) in neighbours or (payee, payer) in neighbours:
            assert fee == 0, pair
    # A <-> C through B (200 msat + 2000 ppm) or D (400 + 4000); B <-> D through A or C
    through = {"B": 200 + AMOUNT_MSAT * 2000 // 10**6, "D": 400 + AMOUNT_MSAT * 4000 // 10**6,
               "A": 100 + AMOUNT_MSAT * 1000 // 10**6, "C": 300 + AMOUNT_MSAT * 3000 // 10**6}
    for pair in ("alice->carol", "carol->alice"):
        assert fees[pair] in (through["B"], through["D"]), pair
    for pair in ("bob->dave", "dave->bob"):
        assert fees[pair] in (through["A"], through["C"]), pair


@pytest.mark.parametrize("spec", ["star:4", "ring:4"])
def test_star_and_ring_pay_across_every_ordered_pair(
        spec: str, tmp_path_factory: pytest.TempPathFactory,
        bitcoind_binary: BitcoindBinary) -> None:
    """star:4 (leaves pay each other through the hub) and ring:4 (the far node is two hops
    either way) pay across all 12 ordered pairs, each forwarder keeping exactly its fee."""
    with _network(tmp_path_factory, spec) as net:
        fees = _pay_every_pair(net, print)
        assert len(fees) == 12
        one_forward = 1000 + AMOUNT_MSAT // 1_000_000    # the default policy on 10,000 sat
        if spec == "star:4":   # alice is the hub: every leaf-to-leaf payment crosses her
            assert {pair: fee for pair, fee in fees.items() if "alice" not in pair} == \
                dict.fromkeys(("bob->carol", "bob->dave", "carol->bob", "carol->dave",
                               "dave->bob", "dave->carol"), one_forward)
        else:                  # alice-bob-carol-dave-alice: opposite corners are 2 hops
            assert fees["alice->carol"] == fees["bob->dave"] == one_forward
