"""I/O: the watchtower drill for ``chanlab demo breach-tower``: the victim is offline, its tower
punishes the breach alone, and the victim later finds the money in its wallet.

Three real processes share the demo's bitcoind: Alice's node (``--allow-cheating``), Bob's node
(``--tower``: after every revocation it uploads an encrypted justice kit) and the tower
(``chanlab tower start``). :func:`breach_tower` narrates each step, checks the chain to the
satoshi (``RegtestError`` otherwise) and returns a :class:`TowerBreachOutcome`, which
``tests/integration/test_tower_daemon.py`` checks again on its own. Variants, for the breach matrix:

* ``htlc="offered"``: the revoked state carries an HTLC Alice offered (she paid Bob's hold
  invoice), ``htlc="received"``: one she received (Bob paid hers);
* ``second_stage=True`` (with an ``htlc``): the tower is down (``kill -9``) while Alice's
  commitment *and* her HTLC tx confirm. ``htlc="received"``: her HTLC-success tx goes out with
  the commitment and confirms in the same block. ``htlc="offered"``: her HTLC-timeout tx is
  non-final until ``cltv_expiry`` (its nLockTime), so the chain first climbs to two blocks
  short of it, Alice broadcasts the commitment, and retries the HTLC-timeout tx block by block
  (``cheat --htlc-txs`` again) until bitcoind takes it. Restarted, the tower reads the blocks
  it missed and takes the HTLC tx's output with its second-stage signature.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bitcoin.core import CTransaction

from channel.node import FINAL_CLTV_DELTA
from channel.types import OutPoint
from regtest.cluster import Cluster, NodeProcess, TowerProcess
from regtest.demo import DemoContext, Narrator, sat, scenario
from regtest.drills import (
    Settlement,
    mine_synced,
    owned_by,
    settlement,
    sync_nodes,
    wait_all_spent,
)
from regtest.errors import RegtestError
from regtest.wait import wait_for

__all__ = ["CHANNEL_SAT", "HTLC_SAT", "TowerBreachOutcome", "TowerStaged", "breach_tower",
           "broadcast_all", "stage_tower_channel", "wait_tower_height"]

CHANNEL_SAT = 1_000_000
PAYMENTS_SAT = (300_000, 200_000)
HTLC_SAT = 150_000
TO_SELF_DELAY = 6
ALICE_FUNDS_SAT = 2_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TowerBreachOutcome:
    """How the breach ended. ``justice`` is what the tower reported (txid, fee_sat,
    amount_sat, ...); ``wallet_delta_sat`` is per node, from just before the breach;
    ``balances_msat`` is (Alice, Bob) in the revoked state, ``htlc_sat`` the HTLCs it held,
    ``cltv_expiry`` its HTLC's; ``second_stage_txid`` is Alice's confirmed HTLC tx (second-stage
    variant only)."""

    funding: OutPoint
    breach_txid: str
    breach_height: int
    state: int
    balances_msat: tuple[int, int]
    htlc_sat: int
    cltv_expiry: int | None
    second_stage_txid: str | None
    justice: tuple[dict[str, Any], ...]
    blobs_before_restart: int | None
    blobs_after_restart: int | None
    wallet_delta_sat: dict[str, int]
    settlement: Settlement


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RegtestError(message)


def _snapshot(cluster: Cluster, node: NodeProcess, funding_txid: str
              ) -> tuple[int, int, int, int, int]:
    chan = cluster.channel(node, funding_txid)
    return (int(chan["holder_commitment_number"]), int(chan["counterparty_commitment_number"]),
            int(chan["htlcs"]), int(chan["local_msat"]), int(chan["remote_msat"]))


def _wait_quiet(cluster: Cluster, nodes: tuple[NodeProcess, NodeProcess], funding_txid: str,
                *, htlcs: int) -> tuple[int, tuple[int, int]]:
    """Wait until both sides hold ``htlcs`` HTLCs and stop signing (same commitment numbers
    over several polls); then Alice's commitment number and (her, Bob's) balance in msat."""
    seen: list[tuple[tuple[int, int, int, int, int], ...]] = []

    def quiet() -> bool:
        now = tuple(_snapshot(cluster, n, funding_txid) for n in nodes)
        seen.append(now)
        a, b = now
        settled = a[2] == b[2] == htlcs and a[0] == b[1] and a[1] == b[0]
        return settled and len(seen) >= 3 and seen[-3] == seen[-2] == now

    wait_for(quiet, timeout=15, first_interval=0.05, max_interval=0.05,
             what=f"the channel to settle with {htlcs} HTLC(s)")
    alice = seen[-1][0]
    return alice[0], (alice[3], alice[4])


def _wait_uploaded(bob: NodeProcess, tower: TowerProcess) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = bob.call("towers")
        entry = next((t for t in status if t["tower"] == tower.address), None)
        return entry if entry is not None and entry["connected"] and \
            entry["pending"] == 0 else None

    return wait_for(done, timeout=20, what=f"{bob.name} to upload every revoked state")


def wait_tower_height(tower: TowerProcess, height: int) -> None:
    wait_for(lambda: int(tower.call("info")["scanned_height"]) >= height, timeout=20,
             what=f"tower {tower.name} to scan block {height}")


def _hold_payment(payer: NodeProcess, payee: NodeProcess, amount_sat: int) -> str:
    """``payer`` pays a hold invoice of ``payee``: the HTLC stays until ``settle``."""
    invoice = payee.call("invoice", amount_msat=amount_sat * 1000, hold=True,
                         description="held")
    payer.call("pay", invoice=invoice["invoice"], wait=False)
    return str(invoice["payment_hash"])


def broadcast_all(tower: TowerProcess, breach_txid: str) -> list[dict[str, Any]] | None:
    """The tower's justice txs for ``breach_txid`` once each had its first broadcast."""
    justice = [j for j in tower.call("justice") if j["breach_txid"] == breach_txid]
    return justice if justice and all(j["status"] != "new" for j in justice) else None


def _leaves_all_of(chain_view: Settlement, node: NodeProcess) -> bool:
    return bool(chain_view.leaves) and all(owned_by(node.wallet, leaf.script_pubkey)
                                           for leaf in chain_view.leaves)


@dataclass(frozen=True, slots=True, kw_only=True)
class TowerStaged:
    """Alice's channel to Bob, whose node uploads to ``tower``; Alice's commitment ``state``
    is revoked (balances ``revoked`` msat, Alice's then Bob's; ``htlc_sat`` in an HTLC expiring
    at ``cltv_expiry``) and the tower holds a kit for every revoked state."""

    alice: NodeProcess
    bob: NodeProcess
    tower: TowerProcess
    channel: str
    funding: OutPoint
    state: int
    revoked: tuple[int, int]
    htlc_sat: int
    cltv_expiry: int | None
    blobs: int


def stage_tower_channel(cluster: Cluster, say: Narrator, *,
                        names: tuple[str, str, str] = ("alice", "bob", "watchtower"),
                        htlc: str | None = None) -> TowerStaged:
    """Start the tower, Alice (``--allow-cheating``) and Bob (``--tower``), open Alice's
    channel, pay, and (``htlc``) leave a revoked state holding an HTLC offered or received by
    Alice; wait until Bob's node uploaded every revoked state."""
    if htlc not in (None, "offered", "received"):
        raise ValueError(f"htlc must be None, 'offered' or 'received', not {htlc!r}")
    say.step("Start a watchtower, its own process: a BOLT 8 listener that watches bitcoind "
             "through ZMQ")
    tower = cluster.start_tower(names[2])
    say.detail(f"tower {tower.name} at {tower.address[:20]}…@{tower.address.split('@')[1]}")

    say.step(f"Start Alice's node (--allow-cheating) and Bob's node with --tower; "
             f"to_self_delay {TO_SELF_DELAY} blocks")
    alice = cluster.start_node(names[0], funds_sat=ALICE_FUNDS_SAT, allow_cheating=True,
                               to_self_delay=TO_SELF_DELAY)
    bob = cluster.start_node(names[1], to_self_delay=TO_SELF_DELAY, towers=(tower,))
    say.detail(f"the tower operator registered Bob's node id {bob.node_id[:20]}…: only a "
               "registered key may store, and the BOLT 8 handshake proves the key")

    say.step(f"Alice opens a {sat(CHANNEL_SAT)} channel to Bob and pays him "
             f"{' and '.join(f'{p:,}' for p in PAYMENTS_SAT)} sat")
    opened = cluster.open_channel(alice, bob, CHANNEL_SAT)
    funding_txid = str(opened["funding_txid"])
    chan = cluster.channel(alice, funding_txid)
    txid_hex, vout = str(chan["funding_outpoint"]).split(":")
    funding = OutPoint.from_txid_hex(txid_hex, int(vout))
    states: list[tuple[int, tuple[int, int]]] = []
    for amount in PAYMENTS_SAT:
        result = cluster.pay(alice, bob, amount * 1000)
        _check(result.get("status") == "succeeded", f"payment of {amount} sat failed: {result}")
        states.append(_wait_quiet(cluster, (alice, bob), funding_txid, htlcs=0))
    state, revoked = states[-2]   # settled, no HTLC, revoked by the last payment
    htlc_sat, cltv_expiry = 0, None
    if htlc is not None:
        payer, payee = (alice, bob) if htlc == "offered" else (bob, alice)
        # the payer sets cltv_expiry from the tip it has seen: make that the chain's tip
        cltv_expiry = sync_nodes(cluster) + FINAL_CLTV_DELTA
        say.step(f"{payer.name} pays a {HTLC_SAT:,} sat hold invoice of {payee.name}: the HTLC "
                 "stays in the commitments until the payee settles it")
        payment_hash = _hold_payment(payer, payee, HTLC_SAT)
        state, revoked = _wait_quiet(cluster, (alice, bob), funding_txid, htlcs=1)
        say.detail(f"Alice's commitment #{state} holds the HTLC ({htlc} by Alice, "
                   f"cltv_expiry {cltv_expiry})")
        payee.call("settle", payment_hash=payment_hash)
        _wait_quiet(cluster, (alice, bob), funding_txid, htlcs=0)
        say.detail(f"{payee.name} settles; newer commitments revoke #{state}")
        htlc_sat = HTLC_SAT
    now = cluster.channel(alice, funding_txid)
    uploaded = _wait_uploaded(bob, tower)
    blobs = int(tower.call("info")["blobs"])
    say.detail(f"Alice now holds {int(now['local_msat']) // 1000:,} sat, Bob "
               f"{int(now['remote_msat']) // 1000:,} sat")
    say.detail(f"after each revocation Bob's node uploaded a justice kit: {uploaded['uploaded']} "
               f"acknowledged, the tower stores {blobs} encrypted blobs. It cannot read "
               "one until the breach it punishes appears: the key is the hash of its txid")
    return TowerStaged(alice=alice, bob=bob, tower=tower, channel=str(opened["channel"]),
                       funding=funding, state=state, revoked=revoked, htlc_sat=htlc_sat,
                       cltv_expiry=cltv_expiry, blobs=blobs)


def _cheat_htlc_tx(staged: TowerStaged, answer: dict[str, Any]) -> dict[str, Any]:
    """bitcoind's answer for the one HTLC tx of a ``cheat --htlc-txs`` call."""
    htlc_txs = answer.get("htlc_txs", [])
    _check(len(htlc_txs) == 1, f"Alice's commitment #{staged.state} should have one HTLC tx: "
                               f"{answer}")
    return dict(htlc_txs[0])


def _confirm_second_stage(cluster: Cluster, say: Narrator, staged: TowerStaged,
                          cheat: dict[str, Any], kind: str) -> tuple[int, str]:
    """Confirm Alice's commitment (just broadcast, answer ``cheat``) and then her HTLC tx:
    (the commitment's height, the HTLC tx's txid).

    An HTLC-success tx went out with the commitment and confirms in its block; an HTLC-timeout
    tx is non-final until the tip reaches its nLockTime (``cltv_expiry``), so Alice retries it
    block by block, as a cheater would.
    """
    chain = cluster.miner
    breach_txid = str(cheat["revoked_commitment_txid"])
    _check(bool(cheat.get("commitment", {}).get("accepted")),
           f"Alice's revoked commitment was not accepted: {cheat}")
    attempt = _cheat_htlc_tx(staged, cheat)
    breach_height = mine_synced(cluster, 1)
    _check(chain.confirmations(breach_txid) == 1, "Alice's revoked commitment did not confirm")
    for _ in range(4):
        if attempt["accepted"]:
            break
        _check("non-final" in str(attempt.get("error")),
               f"Alice's {kind} tx was refused for another reason than its locktime: {attempt}")
        say.detail(f"her {kind} tx is still non-final at height {chain.height()}: "
                   f"nLockTime {staged.cltv_expiry}")
        attempt = _cheat_htlc_tx(staged, staged.alice.call(
            "cheat", channel=staged.channel, state=staged.state, htlc_txs=True))
        if not attempt["accepted"]:
            mine_synced(cluster, 1)
    _check(bool(attempt["accepted"]), f"Alice's {kind} tx never became valid: {attempt}")
    htlc_txid = str(attempt["txid"])
    if chain.confirmations(htlc_txid) == 0:
        mine_synced(cluster, 1)
    _check(chain.confirmations(htlc_txid) == 1, f"Alice's {kind} tx did not confirm")
    locktime = int(CTransaction.deserialize(chain.get_transaction(htlc_txid)).nLockTime)
    _check(locktime == (staged.cltv_expiry if kind == "HTLC-timeout" else 0),
           f"Alice's {kind} tx has nLockTime {locktime}")
    return breach_height, htlc_txid


def breach_tower(cluster: Cluster, say: Narrator, *,
                 names: tuple[str, str, str] = ("alice", "bob", "watchtower"),
                 htlc: str | None = None, second_stage: bool = False) -> TowerBreachOutcome:
    """Alice breaches while Bob is offline; Bob's watchtower alone punishes her."""
    if second_stage and htlc not in ("offered", "received"):
        raise ValueError("the second-stage variant needs an HTLC: htlc='offered' (Alice's "
                         "HTLC-timeout) or htlc='received' (Alice's HTLC-success)")
    kind = "HTLC-timeout" if htlc == "offered" else "HTLC-success"
    chain = cluster.miner
    staged = stage_tower_channel(cluster, say, names=names, htlc=htlc)
    alice, bob, tower = staged.alice, staged.bob, staged.tower
    state, revoked, htlc_sat, funding = staged.state, staged.revoked, staged.htlc_sat, \
        staged.funding

    say.step("Bob's node goes offline")
    bob.stop()
    blobs_before = blobs_after = None
    second_stage_txid: str | None = None
    if second_stage:
        blobs_before = staged.blobs
        tower.kill()
        say.detail(f"and the tower crashes too (kill -9), holding {blobs_before} blobs")
    if second_stage and kind == "HTLC-timeout" and staged.cltv_expiry is not None:
        say.step(f"Alice waits: her HTLC-timeout tx is valid only in a block after "
                 f"{staged.cltv_expiry} (its nLockTime is the HTLC's cltv_expiry)")
        say.detail("a running tower would take the HTLC output with the revocation key as "
                   "soon as the commitment appears, long before that: hence the crash")
        # two blocks short: the commitment confirms while the HTLC-timeout tx is still
        # non-final, which then goes in a block or two later, well inside to_self_delay
        mine_synced(cluster, max(0, staged.cltv_expiry - 2 - chain.height()))
        say.detail(f"nobody watches Bob's channel; the chain is at height {chain.height()}")

    say.step(f"Alice cheats: she broadcasts her REVOKED commitment #{state} (Alice "
             f"{revoked[0] // 1000:,} sat, Bob {revoked[1] // 1000:,} sat"
             + (f", an HTLC of {htlc_sat:,} sat" if htlc_sat else "") + ")")
    before = {n.name: n.wallet.balance_sat() for n in (alice, bob)}
    cheat = alice.call("cheat", channel=staged.channel, state=state,
                       htlc_txs=second_stage)
    breach_txid = str(cheat["revoked_commitment_txid"])
    started = time.monotonic()
    if second_stage:
        breach_height, second_stage_txid = _confirm_second_stage(cluster, say, staged, cheat,
                                                                 kind)
        second_height = chain.height() - chain.confirmations(second_stage_txid) + 1
        say.detail(f"her commitment {breach_txid[:16]}… confirms at height {breach_height} and "
                   f"her {kind} tx {second_stage_txid[:16]}… at height {second_height}, "
                   "nobody watching: the HTLC output is gone, its second-stage output waits "
                   f"{TO_SELF_DELAY} blocks for Alice")
        say.step("The tower restarts, reads the blocks it missed, and punishes")
        tower.start()
        blobs_after = int(tower.call("info")["blobs"])
        _check(blobs_after == blobs_before, f"the tower lost blobs: {blobs_before} before the "
                                            f"crash, {blobs_after} after")
        say.detail(f"all {blobs_after} blobs survived the crash (SQLite, synchronous=FULL)")
        wait_tower_height(tower, chain.height())   # every block it missed is read
    justice = wait_for(lambda: broadcast_all(tower, breach_txid), timeout=20,
                       what="the tower to broadcast justice")
    reaction_ms = (time.monotonic() - started) * 1000
    if not second_stage:
        for j in justice:
            _check(chain.in_mempool(j["txid"]), f"justice {j['txid']} is not in the mempool")
        say.detail(f"the tower saw the breach in bitcoind's mempool (ZMQ rawtx): its justice "
                   f"was in the mempool within {reaction_ms:.0f} ms of Alice's broadcast (as "
                   "polled from here; `make bench` times it on bitcoind's feed), before any "
                   "block")
    for j in justice:
        say.detail(f"justice {j['txid'][:16]}… spends {j['spends'][:16]}…:{j['spends'][-1]}, "
                   f"{j['amount_sat']:,} sat to Bob after a {j['fee_sat']:,} sat fee")

    say.step("Blocks confirm the penalty; Bob is still offline")
    for _ in range(3):
        height = mine_synced(cluster, 1)
        wait_tower_height(tower, height)
        justice = [j for j in tower.call("justice") if j["breach_txid"] == breach_txid]
        if all(j["status"].startswith(("confirmed", "superseded")) for j in justice):
            break
    landed = [j for j in justice if j["status"].startswith("confirmed")]
    _check(bool(landed) and all(j["status"].startswith(("confirmed", "superseded"))
                                for j in justice), f"the tower's justice did not land: {justice}")
    breach_height = chain.height() - chain.confirmations(breach_txid) + 1
    for j in justice:
        say.detail(f"justice {j['txid'][:16]}…: {j['status'][:40]}")

    say.step("Bob's node comes back: the penalty already paid his wallet; his node sweeps his "
             "to_remote")
    bob.start()
    wait_all_spent(chain, breach_txid, what="Bob's node to sweep its to_remote")
    mine_synced(cluster, 1)
    for text in bob.call("events"):
        say.detail(f"{bob.name}'s node: {text.split(': ', 1)[-1]}")
    say.detail("the tower's justice txs pay Bob's wallet script, so his node takes them as its "
               "own penalty and only adds the sweep of his to_remote")

    say.step("Check the outcome on chain, to the satoshi")
    s = settlement(chain, funding, breach_height)
    delta = {n.name: n.wallet.balance_sat() - before[n.name] for n in (alice, bob)}
    for txid in s.order:
        who = "tower's justice" if any(j["txid"] == txid for j in landed) else \
            "breach" if txid == breach_txid else "tx"
        say.detail(f"{who:<15} {txid[:16]}… fee {s.fee_sat[txid]:,} sat")
    _check(_leaves_all_of(s, bob), "some of the channel's money is not in Bob's wallet")
    _check(delta[alice.name] == 0, f"Alice's wallet changed by {delta[alice.name]} sat")
    _check(delta[bob.name] == CHANNEL_SAT - s.total_fees_sat == s.amount_to(bob.wallet),
           f"Bob got {delta[bob.name]} sat, not the channel minus fees "
           f"({CHANNEL_SAT - s.total_fees_sat})")
    say.detail(f"Bob gained {delta[bob.name]:,} sat: the whole {sat(CHANNEL_SAT)} channel minus "
               f"{s.total_fees_sat:,} sat of fees. His node was offline the whole time; the "
               "tower never held a key, only signatures Bob made for exactly these transactions")
    return TowerBreachOutcome(
        funding=funding, breach_txid=breach_txid, breach_height=breach_height, state=state,
        balances_msat=revoked, htlc_sat=htlc_sat, cltv_expiry=staged.cltv_expiry,
        second_stage_txid=second_stage_txid, justice=tuple(landed),
        blobs_before_restart=blobs_before, blobs_after_restart=blobs_after,
        wallet_delta_sat=delta, settlement=s)


@contextmanager
def _cluster(ctx: DemoContext) -> Iterator[Cluster]:
    with ctx.scratch_folder("chanlab-tower-") as home, \
            Cluster.running(ctx.node, home, ctx.miner, ctx.seed) as cluster:
        ctx.say.watch(cluster)
        try:
            yield cluster
        finally:
            ctx.say.snapshot()
            cluster.stop_all()


@scenario("breach-tower", "Alice broadcasts a revoked state while Bob is offline; Bob's "
                          "watchtower punishes her alone, and Bob later finds the money")
def _breach_tower_demo(ctx: DemoContext) -> None:
    with _cluster(ctx) as cluster:
        breach_tower(cluster, ctx.say)
