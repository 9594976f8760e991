"""The cheat command is a regtest developer power, off unless the node was started for it."""

from __future__ import annotations

import os

import pytest

from channel.errors import ChanlabError
from regtest.cluster import Cluster


def test_cheat_is_refused_by_a_node_not_started_with_allow_cheating(cluster: Cluster) -> None:
    """A node reports the chain bitcoind runs (regtest) and, without --allow-cheating, refuses
    `cheat`, saying it kept no revoked commitments."""
    node = cluster.start_node("honest-" + os.urandom(3).hex())  # wallets are per bitcoind
    assert node.call("info")["chain"] == "regtest"
    with pytest.raises(ChanlabError, match="not started with --allow-cheating"):
        node.call("cheat", channel="00" * 32, state=0)
