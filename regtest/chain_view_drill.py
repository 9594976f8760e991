"""I/O: the *chain view stale* drill for ``chanlab demo``: a node whose bitcoind is unreachable,
or whose chain has stopped growing, stops taking on new HTLCs and resumes when it can see again.

Two bitcoinds joined over Bitcoin's P2P network share one chain: Alice's node uses the demo's
bitcoind (A), Bob's node a private one (B) that the drill can stop, so Alice keeps a fresh view
while Bob's goes stale. Bob runs with a short ``--max-tip-age-s`` so a stall shows in seconds.

    1. B stops: Bob's ``info`` says stale (bitcoind unreachable) within seconds; his ``pay`` is
       refused with one line naming the stale chain view; Alice's HTLC to him is failed back
       with ``temporary_node_failure``. B starts again, a block comes: fresh, payments go.
    2. Nobody mines for longer than Bob's limit: stale by tip age, the same refusals; a block:
       fresh again.

The balances are checked to the msat after each step (``RegtestError`` otherwise) and returned
as a :class:`ChainViewOutcome`; ``tests/integration/test_chain_view_drill.py`` runs the drill
and checks again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channel.onion_failures import FailureCode
from regtest.bitcoind_lan import peer_args
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, Narrator, sat, scenario
from regtest.errors import RegtestError
from regtest.node import LocalBitcoind
from regtest.wait import wait_for

__all__ = ["BOB_MAX_TIP_AGE_S", "CHANNEL_SAT", "ChainViewOutcome", "chain_view_stale",
           "peered_bitcoind"]

CHANNEL_SAT = 1_000_000
ALICE_FUNDS_SAT = 2_000_000
FIRST_PAYMENT_SAT = 200_000       # gives Bob a balance to pay with
SMALL_PAYMENT_SAT = 30_000        # Alice -> Bob, refused while Bob is stale
BOB_PAYMENT_SAT = 50_000          # Bob -> Alice, refused while Bob is stale
BOB_MAX_TIP_AGE_S = 6.0           # Bob's --max-tip-age-s: a stall shows in seconds
TO_SELF_DELAY = 6
STALE_WITHIN_S = 10.0             # "within a few seconds"
# noban: the bitcoinds relay at once instead of on the few-second trickle (privacy delay)
RELAY_NOW = "-whitelist=noban@127.0.0.1"
TEMPORARY_NODE_FAILURE = int(FailureCode.TEMPORARY_NODE_FAILURE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainViewOutcome:
    """What the drill saw: balances (Alice's, Bob's msat on the channel) at each step, the
    refusals, and how long Bob took to notice."""

    balances_msat: dict[str, tuple[int, int]]
    refusals: dict[str, dict[str, Any]]
    stale_after_s: dict[str, float]
    transitions: tuple[str, ...]   # Bob's log lines "chain view ..."


@contextmanager
def peered_bitcoind(a: LocalBitcoind, datadir: Path) -> Iterator[LocalBitcoind]:
    """A second regtest bitcoind joined to ``a`` over P2P, with ``a``'s blocks."""
    with LocalBitcoind(binary=a.binary, datadir=datadir,
                       extra_args=[*peer_args((f"127.0.0.1:{a.p2p_port}",)), RELAY_NOW]) as b:
        wait_for(lambda: a.rpc.getbestblockhash() == b.rpc.getbestblockhash(), timeout=60,
                 what="the private bitcoind to sync with the shared one")
        yield b


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RegtestError(f"chain-view drill: {message}")


def _chain_view(node: NodeProcess) -> dict[str, Any]:
    view: dict[str, Any] = node.call("info")["chain_view"]
    return view


def _wait_view(node: NodeProcess, state: str, reason: str | None = None,
               timeout: float = STALE_WITHIN_S) -> float:
    """Wait until ``node``'s chain view is ``state`` (for ``reason``); seconds waited."""
    started = time.monotonic()

    def reached() -> bool:
        view = _chain_view(node)
        return bool(view["state"] == state and (reason is None or view["reason"] == reason))

    wait_for(reached, timeout=timeout, what=f"{node.name}'s chain view to be {state}")
    return time.monotonic() - started


def _wait_height(node: NodeProcess, height: int) -> None:
    wait_for(lambda: int(node.call("info")["height"]) >= height, timeout=30,
             what=f"{node.name} to see block {height}")


class _Drill:
    """The two nodes, their bitcoinds, and the checks between steps."""

    def __init__(self, on_a: Cluster, on_b: Cluster, b: LocalBitcoind, say: Narrator) -> None:
        self.on_a, self.on_b, self.b, self.say = on_a, on_b, b, say
        self.balances: dict[str, tuple[int, int]] = {}
        self.refusals: dict[str, dict[str, Any]] = {}
        self.stale_after: dict[str, float] = {}
        self.alice = on_a.start_node("alice", funds_sat=ALICE_FUNDS_SAT,
                                     to_self_delay=TO_SELF_DELAY)
        self.bob = NodeProcess(on_b, "bob", allow_cheating=False, to_self_delay=TO_SELF_DELAY)
        self.bob.start_args = ["--max-tip-age-s", f"{BOB_MAX_TIP_AGE_S:g}"]
        self.bob.start()
        on_b.nodes["bob"] = self.bob
        self.funding_txid = ""
        self.mined_at = 0.0   # time.monotonic() when the last block was mined

    def mine_fresh(self) -> int:
        """Mine one block on A; wait until B and both nodes have it and Bob is fresh."""
        self.on_a.mine(1)
        self.mined_at = time.monotonic()
        tip = self.on_a.miner.height()
        wait_for(lambda: self.b.rpc.getblockcount() >= tip, timeout=30,
                 what="bitcoind B to receive the block")
        for node in (self.alice, self.bob):
            _wait_height(node, tip)
        _wait_view(self.bob, "fresh")
        return tip

    def channel_msat(self) -> tuple[int, int]:
        chan = self.on_a.channel(self.alice, self.funding_txid)
        return int(chan["local_msat"]), int(chan["remote_msat"])

    def expect(self, label: str, alice_msat: int) -> None:
        """Both sides agree the channel is at Alice ``alice_msat`` (Bob the rest)."""
        expected = (alice_msat, CHANNEL_SAT * 1000 - alice_msat)
        wait_for(lambda: self.channel_msat() == expected, timeout=15,
                 what=f"the channel to settle at {expected} ({label})")
        bob_chan = self.on_b.channel(self.bob, self.funding_txid)
        _check((int(bob_chan["remote_msat"]), int(bob_chan["local_msat"])) == expected,
               f"Bob's channel disagrees at {label}: {bob_chan}")
        self.balances[label] = expected
        self.say.detail(f"channel: Alice {expected[0] // 1000:,} sat | Bob "
                        f"{expected[1] // 1000:,} sat")

    def pay(self, payer: NodeProcess, payee: NodeProcess, amount_sat: int) -> dict[str, Any]:
        cluster = self.on_a if payer is self.alice else self.on_b
        return cluster.pay(payer, payee, amount_sat * 1000)

    def refused_both_ways(self, label: str, reason: str) -> None:
        """Bob's pay is refused at once; Alice's HTLC to Bob is failed back by Bob."""
        out = self.pay(self.bob, self.alice, BOB_PAYMENT_SAT)
        _check(out.get("status") == "failed" and "chain view is stale" in out.get("reason", ""),
               f"Bob's payment was not refused for his stale chain view: {out}")
        self.refusals[f"{label}: bob pays"] = out
        self.say.detail(f"Bob pays Alice {sat(BOB_PAYMENT_SAT)}: refused — {out['reason']}")
        _check(reason in out["reason"], f"the refusal does not name {reason!r}: {out}")
        out = self.pay(self.alice, self.bob, SMALL_PAYMENT_SAT)
        _check(out.get("status") == "failed" and
               out.get("failure_code") == TEMPORARY_NODE_FAILURE and
               out.get("node_id") == self.bob.node_id,
               f"Alice's HTLC was not failed back by Bob with temporary_node_failure: {out}")
        self.refusals[f"{label}: alice pays"] = out
        self.say.detail(f"Alice (fresh) pays Bob {sat(SMALL_PAYMENT_SAT)}: Bob fails the HTLC "
                        f"back with temporary_node_failure ({out['reason']})")


def chain_view_stale(on_a: Cluster, on_b: Cluster, b: LocalBitcoind,
                     say: Narrator) -> ChainViewOutcome:
    """The drill on Alice's cluster (bitcoind A) and Bob's (bitcoind ``b``, stoppable)."""
    say.step(f"Alice's node on the shared bitcoind, Bob's on his own bitcoind (joined to it over "
             f"P2P); Bob runs with --max-tip-age-s {BOB_MAX_TIP_AGE_S:g}")
    d = _Drill(on_a, on_b, b, say)
    alice, bob = d.alice, d.bob
    opened = on_a.open_channel(alice, bob, CHANNEL_SAT)
    d.funding_txid = str(opened["funding_txid"])
    d.mine_fresh()
    first = d.pay(alice, bob, FIRST_PAYMENT_SAT)
    _check(first.get("status") == "succeeded", f"the first payment failed: {first}")
    say.detail(f"channel of {sat(CHANNEL_SAT)} open; Alice paid Bob {sat(FIRST_PAYMENT_SAT)}; "
               f"Bob's chain view: {_chain_view(bob)['state']}")
    alice_msat = (CHANNEL_SAT - FIRST_PAYMENT_SAT) * 1000
    d.expect("start", alice_msat)

    say.step("Bob's bitcoind stops")
    b.kill()
    d.stale_after["bitcoind_unreachable"] = _wait_view(bob, "stale", "bitcoind_unreachable")
    view = _chain_view(bob)
    say.detail(f"{d.stale_after['bitcoind_unreachable']:.1f} s later Bob's info says: "
               f"{view['state']} since {view['since']} ({view['detail']})")
    d.refused_both_ways("unreachable", "bitcoind unreachable")
    d.expect("while unreachable", alice_msat)

    say.step("Bob's bitcoind starts again, and a block comes")
    b.start()
    wait_for(lambda: _chain_view(bob)["reason"] != "bitcoind_unreachable", timeout=30,
             what="Bob's node to reach its bitcoind again")
    tip = d.mine_fresh()
    say.detail(f"Bob's node sees block {tip}: chain view {_chain_view(bob)['state']}")
    for payer, payee, amount in ((alice, bob, SMALL_PAYMENT_SAT), (bob, alice, BOB_PAYMENT_SAT)):
        out = d.pay(payer, payee, amount)
        _check(out.get("status") == "succeeded", f"payment after the restart failed: {out}")
        say.detail(f"{payer.name.capitalize()} pays {payee.name.capitalize()} {sat(amount)}: "
                   "succeeded")
    alice_msat += (BOB_PAYMENT_SAT - SMALL_PAYMENT_SAT) * 1000
    d.expect("after the restart", alice_msat)

    say.step(f"Nobody mines for longer than Bob's {BOB_MAX_TIP_AGE_S:g} s limit")
    _wait_view(bob, "stale", "tip_too_old", timeout=BOB_MAX_TIP_AGE_S + STALE_WITHIN_S)
    d.stale_after["tip_too_old"] = time.monotonic() - d.mined_at
    view = _chain_view(bob)
    say.detail(f"{d.stale_after['tip_too_old']:.1f} s after the last block Bob's info says: "
               f"{view['state']} ({view['detail']}); Alice's view is "
               f"{_chain_view(alice)['state']}: her limit is the default")
    _check(_chain_view(alice)["state"] == "fresh", "Alice's chain view went stale too")
    d.refused_both_ways("stalled", "over the")
    d.expect("while stalled", alice_msat)

    say.step("A block is mined")
    tip = d.mine_fresh()
    out = d.pay(alice, bob, SMALL_PAYMENT_SAT)
    _check(out.get("status") == "succeeded", f"payment after the stall failed: {out}")
    say.detail(f"Bob's node sees block {tip}: fresh again; Alice pays Bob "
               f"{sat(SMALL_PAYMENT_SAT)}: succeeded")
    alice_msat -= SMALL_PAYMENT_SAT * 1000
    d.expect("end", alice_msat)

    log = (bob.home / "node.log").read_text(errors="replace").splitlines()
    transitions = tuple(line.split("chain view ", 1)[1] for line in log
                        if "chain view fresh" in line or "chain view stale" in line)
    say.step("What this shows")
    say.detail("an L2 whose sequencer-uptime feed says 'down' pauses every user at once, and "
               "everyone's funds wait on the operator's return")
    say.detail("here each node guards itself: Bob, who could not watch the chain, took on no "
               "new HTLC (an HTLC is safe only for a node that can claim it on chain in time), "
               "while Alice's view stayed fresh; nobody's funds waited on anyone, and the "
               "channel was closable by either side alone throughout")
    return ChainViewOutcome(balances_msat=d.balances, refusals=d.refusals,
                            stale_after_s=d.stale_after, transitions=transitions)


def _run(ctx: DemoContext) -> None:
    a = ctx.node
    if not isinstance(a, LocalBitcoind):
        raise RegtestError("the chain-view-stale drill stops a bitcoind of its own next to the "
                           "demo's: run it with the local backend (without --backend docker)")
    with ctx.scratch_folder("chanlab-drill-") as home, peered_bitcoind(
            a, home / "bitcoind-b") as b, \
            Cluster.running(a, home / "home-a", ctx.miner) as on_a, \
            Cluster.running(b, home / "home-b", ctx.miner) as on_b:
        try:
            chain_view_stale(on_a, on_b, b, ctx.say)
        finally:
            on_a.stop_all()
            on_b.stop_all()


scenario("chain-view-stale", "Bob's bitcoind stops, then the chain stalls: his node takes on "
                             "no new HTLC until its view is fresh; nobody else waits")(_run)
