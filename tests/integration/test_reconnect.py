"""Restarted nodes find their peers again by themselves, and a crash between persist and send
loses nothing.

Real ``chanlab node start`` processes on the shared bitcoind: one node is killed (kill -9, or
the test hook that makes it die right after a flight is persisted and before its messages are
sent) and started again; no test step ever tells a node to connect.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import pytest

from channel.node import CRASH_BEFORE_SEND_ENV, CRASH_EXIT_CODE
from regtest.cluster import Cluster, NodeProcess

WaitFor = Callable[..., object]

FUNDING_SAT = 1_000_000
PAYMENT_MSAT = 7_000_000


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


def _pair(cluster: Cluster) -> tuple[NodeProcess, NodeProcess, str]:
    """alice opened a channel to bob (alice dialled: only she knows bob's address)."""
    alice = cluster.start_node(_name("alice"), funds_sat=2 * FUNDING_SAT)
    bob = cluster.start_node(_name("bob"))
    opened = cluster.open_channel(alice, bob, FUNDING_SAT)
    return alice, bob, str(opened["funding_txid"])


def _balances(cluster: Cluster, node: NodeProcess, funding_txid: str) -> tuple[int, int]:
    chan = cluster.channel(node, funding_txid)
    return int(chan["local_msat"]), int(chan["remote_msat"])


def _linked(a: NodeProcess, b: NodeProcess) -> bool:
    return b.node_id in a.call("info")["peers"] and a.node_id in b.call("info")["peers"]


@pytest.mark.parametrize("victim_role", ["opener", "accepter"])
def test_killed_node_and_its_peer_reconnect_by_themselves(
        cluster: Cluster, wait_for: WaitFor, victim_role: str) -> None:
    """kill -9 either node and start it again: with no `connect`, the two link up, reestablish,
    and a payment succeeds."""
    alice, bob, funding_txid = _pair(cluster)
    alice_before, _ = _balances(cluster, alice, funding_txid)
    victim = alice if victim_role == "opener" else bob
    victim.kill()
    victim.start()
    wait_for(lambda: _linked(alice, bob), timeout=30, what="the nodes to reconnect by themselves")
    cluster.wait_channel_state(alice, funding_txid, "normal")
    cluster.wait_channel_state(bob, funding_txid, "normal")
    assert cluster.pay(alice, bob, PAYMENT_MSAT)["status"] == "succeeded"
    assert _balances(cluster, alice, funding_txid) == (alice_before - PAYMENT_MSAT,
                                                      PAYMENT_MSAT)
    assert _balances(cluster, bob, funding_txid) == (PAYMENT_MSAT, alice_before - PAYMENT_MSAT)


def test_crash_after_persist_before_send_recovers_on_restart(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """The payee dies right after persisting the flight that revokes its old commitment, before
    sending revoke_and_ack; restarted, it reconnects, retransmits, and the payment completes
    with both sides agreeing to the msat."""
    alice, bob, funding_txid = _pair(cluster)
    alice_before, _ = _balances(cluster, alice, funding_txid)
    bob.stop()
    bob.env = {CRASH_BEFORE_SEND_ENV: "revoke_and_ack"}
    bob.start()
    wait_for(lambda: _linked(alice, bob), timeout=30, what="alice to redial bob")
    cluster.wait_channel_state(bob, funding_txid, "normal")
    invoice = bob.call("invoice", amount_msat=PAYMENT_MSAT)["invoice"]
    outcome: dict[str, Any] = {}

    def pay() -> None:
        outcome.update(alice.call("pay", invoice=invoice))

    payer = threading.Thread(target=pay)
    payer.start()
    assert bob.proc is not None
    assert bob.proc.wait(30) == CRASH_EXIT_CODE   # died between the persist and the send
    bob.env = {}
    bob.start()
    payer.join(90)
    assert not payer.is_alive()
    assert outcome["status"] == "succeeded"
    wait_for(lambda: _balances(cluster, bob, funding_txid)[0] == PAYMENT_MSAT, timeout=30,
             what="bob's side to settle")
    assert _balances(cluster, alice, funding_txid) == (alice_before - PAYMENT_MSAT,
                                                      PAYMENT_MSAT)
    assert _balances(cluster, bob, funding_txid) == (PAYMENT_MSAT, alice_before - PAYMENT_MSAT)
