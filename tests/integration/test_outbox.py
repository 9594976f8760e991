"""What a node must broadcast survives bitcoind being down, and the node itself restarting.

Two node processes on a private bitcoind (``fresh_bitcoind``) that the test stops: ``force-close``
while it is down answers that the commitment will be broadcast when bitcoind is back, and it
is, with no further command.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from regtest.cluster import Cluster
from regtest.node import BitcoindNode
from regtest.wallet import Wallet

WaitFor = Callable[..., object]

FUNDING_SAT = 500_000


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on its bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


@pytest.mark.parametrize("node_restarts", [False, True])
def test_force_close_while_bitcoind_is_down_broadcasts_once_it_is_back(
        fresh_bitcoind: BitcoindNode, tmp_path: Path, wait_for: WaitFor,
        node_restarts: bool) -> None:
    """bitcoind stopped, `force-close` says the commitment waits for bitcoind; bitcoind started
    again (and, in one run, the node killed and restarted meanwhile), the commitment reaches
    the mempool by itself and confirms."""
    miner = Wallet(fresh_bitcoind.rpc, "miner")
    with Cluster.running(fresh_bitcoind, tmp_path / "chanlab", miner) as cluster:
        alice = cluster.start_node(_name("alice"), funds_sat=2 * FUNDING_SAT)
        bob = cluster.start_node(_name("bob"))
        opened = cluster.open_channel(alice, bob, FUNDING_SAT)
        funding_txid = str(opened["funding_txid"])
        fresh_bitcoind.stop()
        forced = alice.call("force-close", channel=opened["channel"])
        commitment_txid = str(forced["commitment_txid"])
        assert "will be broadcast as soon as bitcoind is back" in forced["note"]
        if node_restarts:
            alice.kill()
        fresh_bitcoind.start()
        miner = Wallet.open(fresh_bitcoind.rpc, "miner")
        if node_restarts:
            alice.start()
        wait_for(lambda: commitment_txid in fresh_bitcoind.rpc.getrawmempool(), timeout=30,
                 what="the saved commitment to reach the mempool")
        miner.mine(1)
        tx = fresh_bitcoind.rpc.call("getrawtransaction", commitment_txid, True)
        assert tx["confirmations"] == 1
        assert tx["vin"][0]["txid"] == funding_txid
