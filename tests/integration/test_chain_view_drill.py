"""The chain-view-stale drill on real node processes and two peered bitcoinds: Bob's node takes
on no new HTLC while its bitcoind is down or its tip too old, and resumes when fresh."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtest.chain_view_drill import (
    BOB_MAX_TIP_AGE_S,
    CHANNEL_SAT,
    STALE_WITHIN_S,
    TEMPORARY_NODE_FAILURE,
    ChainViewOutcome,
    chain_view_stale,
    peered_bitcoind,
)
from regtest.cluster import Cluster
from regtest.demo import Narrator
from regtest.node import BitcoindNode, LocalBitcoind
from regtest.wallet import Wallet


@pytest.fixture()
def outcome(fresh_bitcoind: BitcoindNode, tmp_path: Path) -> Iterator[ChainViewOutcome]:
    a = fresh_bitcoind
    if not isinstance(a, LocalBitcoind):
        pytest.skip("docker backend: the drill stops a bitcoind of its own beside it")
    miner = Wallet(a.rpc, "miner")
    with peered_bitcoind(a, tmp_path / "bitcoind-b") as b, \
            Cluster.running(a, tmp_path / "home-a", miner) as on_a, \
            Cluster.running(b, tmp_path / "home-b", miner) as on_b:
        try:
            yield chain_view_stale(on_a, on_b, b, Narrator(io.StringIO()))
        finally:
            on_a.stop_all()
            on_b.stop_all()


def _msat(alice_sat: int) -> tuple[int, int]:
    return alice_sat * 1000, (CHANNEL_SAT - alice_sat) * 1000


def test_stale_chain_view_refuses_new_htlcs_and_resumes(outcome: ChainViewOutcome) -> None:
    """Stopped bitcoind, then a stalled chain: Bob's pay is refused naming the stale chain
    view, Alice's HTLC is failed back with temporary_node_failure, not one msat moves; fresh
    again, payments go through and the channel ends exactly where they put it; Bob's log
    has one line per transition."""
    assert outcome.balances_msat == {
        "start": _msat(800_000),
        "while unreachable": _msat(800_000),      # nothing moved while Bob could not see
        "after the restart": _msat(820_000),      # +30,000 to Bob, then 50,000 back
        "while stalled": _msat(820_000),
        "end": _msat(790_000),
    }
    for label, needle in (("unreachable", "bitcoind unreachable"),
                          ("stalled", f"over the {BOB_MAX_TIP_AGE_S:g} s limit")):
        bob_pays = outcome.refusals[f"{label}: bob pays"]
        assert bob_pays["status"] == "failed"
        assert bob_pays["reason"].startswith("the chain view is stale since ")
        assert needle in bob_pays["reason"] and "\n" not in bob_pays["reason"]
        assert "attempts" not in bob_pays   # refused before any HTLC was added
        alice_pays = outcome.refusals[f"{label}: alice pays"]
        assert alice_pays["status"] == "failed" and "payment_preimage" not in alice_pays
        assert alice_pays["failure_code"] == TEMPORARY_NODE_FAILURE
        assert alice_pays["hop_index"] == 0
    assert outcome.stale_after_s["bitcoind_unreachable"] < STALE_WITHIN_S
    # counted from the mining of the last block (header times are whole seconds)
    assert BOB_MAX_TIP_AGE_S - 1.5 < outcome.stale_after_s["tip_too_old"] < \
        BOB_MAX_TIP_AGE_S + STALE_WITHIN_S
    _check_transitions(outcome)


def _check_transitions(outcome: ChainViewOutcome) -> None:
    """Bob's log says stale (unreachable), fresh, stale (tip too old), fresh, in that order,
    one line per change, never the same state twice in a row."""
    kinds = ["unreachable" if t.startswith("stale: bitcoind unreachable") else
             "tip" if t.startswith("stale: tip") else
             "fresh" if t.startswith("fresh") else t for t in outcome.transitions]
    assert all(k in ("unreachable", "tip", "fresh") for k in kinds), outcome.transitions
    assert all(x != y for x, y in itertools.pairwise(kinds)), kinds
    wanted = iter(["unreachable", "fresh", "tip", "fresh"])
    step = next(wanted)
    for kind in kinds:
        if kind == step:
            step = next(wanted, "done")
    assert step == "done", kinds
    assert kinds[-1] == "fresh"
