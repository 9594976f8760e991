"""I/O: the *breach in the middle* drill of ``chanlab demo``: a forwarding node's downstream
peer broadcasts a revoked state while HTLCs from both sides are in flight through it.

Three real node processes in a line, Alice - Bob - Carol; Carol runs with
``--allow-cheating``. After two payments through Bob (one each way), Alice pays Carol's hold
invoice and Carol pays Alice's: each channel carries two HTLCs, one each way. Carol then
broadcasts her commitment holding both HTLCs, revoked by one more payment. Bob's node, online,
answers with its penalty and takes every output of it, HTLC outputs included; the HTLC Alice
offered him, whose downstream half can no longer complete, is failed back to Alice once the
breach is confirmed (she loses nothing); the HTLC Bob offered Alice for Carol's payment is
fulfilled when Alice settles: Bob learns the preimage from Alice and pays it, and his penalty
has already covered him.

Every amount is checked (msat off-chain, sat on chain; ``RegtestError`` otherwise) and
returned in a :class:`BreachMiddleOutcome`; ``tests/integration/test_breach_middle.py`` checks
them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channel.types import OutPoint
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, Narrator, sat, scenario
from regtest.drills import (
    Settlement,
    _cluster,
    mine_synced,
    policy_known,
    settlement,
    wait_all_spent,
)
from regtest.errors import RegtestError
from regtest.wait import wait_for

__all__ = ["BreachMiddleOutcome", "breach_in_the_middle"]

CHANNEL_SAT = 1_000_000
PUSH_MSAT = 400_000_000
FEE_BASE_MSAT = 1000
FEE_PPM = 100
TO_SELF_DELAY = 6
PAID_MSAT = (100_000_000, 50_000_000)    # Alice -> Carol, then Carol -> Alice, settled
HELD_MSAT = (70_000_000, 60_000_000)     # Alice -> Carol, Carol -> Alice, held in flight
EXTRA_MSAT = 10_000_000                  # Carol -> Alice, settled: revokes the state Carol uses


def fee_msat(amount_msat: int) -> int:
    """Bob's fee (BOLT 7 "HTLC Fees")."""
    return FEE_BASE_MSAT + amount_msat * FEE_PPM // 1_000_000


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RegtestError(message)


def _start(cluster: Cluster, name: str, funds_sat: int, cheat: bool = False) -> NodeProcess:
    return cluster.start_node(name, funds_sat=funds_sat, allow_cheating=cheat,
                              to_self_delay=TO_SELF_DELAY,
                              start_args=["--fee-base-msat", str(FEE_BASE_MSAT),
                                          "--fee-proportional-millionths", str(FEE_PPM)])


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachMiddleOutcome:
    """What the drill measured."""

    funding: OutPoint                       # Carol - Bob, breached
    breach_height: int
    breach_txid: str
    revoked_state: int
    revoked_msat: tuple[int, int]           # (Carol's, Bob's) in the revoked state
    bob_wallet_delta_sat: int
    settlement: Settlement
    alice_bob_before_msat: tuple[int, int]  # (Alice's, Bob's) before the holds
    alice_bob_after_msat: tuple[int, int]   # after the failed-back and the fulfilled HTLC
    upstream_status: str                    # Alice's payment of Carol's hold invoice
    downstream_status: str                  # Carol's payment of Alice's hold invoice
    upstream_hash: str
    downstream_hash: str
    bob_in_flight: list[dict[str, Any]]     # Bob's forwards still open at the end


def _payment_status(node: NodeProcess, payment_hash: str) -> str:
    for row in node.call("payments"):
        if row["payment_hash"] == payment_hash and row["direction"] == "sent":
            return str(row["status"])
    return "unknown"


def breach_in_the_middle(cluster: Cluster, say: Narrator, *, tag: str = ""
                         ) -> BreachMiddleOutcome:
    """Carol breaches Bob with HTLCs from both sides in flight through him."""
    say.step("Start Alice, Bob (a forwarder: 1000 msat + 100 ppm) and Carol, who runs with "
             "--allow-cheating; Alice and Carol each open a channel to Bob")
    alice = _start(cluster, f"alice{tag}", 2 * CHANNEL_SAT)
    bob = _start(cluster, f"bob{tag}", 0)
    carol = _start(cluster, f"carol{tag}", 2 * CHANNEL_SAT, cheat=True)
    ab = str(cluster.open_channel(alice, bob, CHANNEL_SAT, push_msat=PUSH_MSAT)["funding_txid"])
    cb = str(cluster.open_channel(carol, bob, CHANNEL_SAT, push_msat=PUSH_MSAT)["funding_txid"])
    wait_for(lambda: policy_known(alice, bob) and policy_known(carol, bob), timeout=30,
             what="Alice and Carol to learn Bob's policy")
    say.detail(f"two channels of {sat(CHANNEL_SAT)}, each pushing {PUSH_MSAT // 1000:,} sat to "
               "Bob so he can forward both ways")

    def view(node: NodeProcess, txid: str) -> dict[str, Any]:
        return cluster.channel(node, txid)

    def settled() -> bool:
        for txid, left, right in ((ab, alice, bob), (cb, carol, bob)):
            a, b = view(left, txid), view(right, txid)
            if not (a["htlcs"] == b["htlcs"] == 0 and a["local_msat"] == b["remote_msat"]):
                return False
        return True

    say.step("Two payments through Bob, one each way")
    for payer, payee, amount in ((alice, carol, PAID_MSAT[0]), (carol, alice, PAID_MSAT[1])):
        invoice = payee.call("invoice", amount_msat=amount)["invoice"]
        result = payer.call("pay", invoice=invoice, timeout_s=20.0)
        _check(result.get("status") == "succeeded", f"{payer.name}'s payment failed: {result}")
        _check(result["fee_msat"] == fee_msat(amount), f"fee {result['fee_msat']} msat")
        wait_for(settled, timeout=15, what="the line to settle")
        say.detail(f"{payer.name} -> Bob -> {payee.name}: {amount:,} msat, Bob kept "
                   f"{fee_msat(amount):,} msat")

    say.step("HTLCs from both sides in flight: Alice pays Carol's hold invoice, Carol pays "
             "Alice's; both payees hold")
    up = carol.call("invoice", amount_msat=HELD_MSAT[0], hold=True)
    down = alice.call("invoice", amount_msat=HELD_MSAT[1], hold=True)
    alice.call("pay", invoice=up["invoice"], wait=False)
    carol.call("pay", invoice=down["invoice"], wait=False)
    wait_for(lambda: all(int(view(n, t)["htlcs"]) == 2 for n, t in ((alice, ab), (carol, cb),
                                                                   (bob, ab), (bob, cb))),
             timeout=20, what="both HTLCs to be in flight on both channels")
    chan = view(carol, cb)
    revoked = int(chan["holder_commitment_number"])
    revoked_msat = (int(chan["local_msat"]), int(chan["remote_msat"]))
    say.detail(f"each of Bob's channels carries two HTLCs, one each way: Carol's commitment "
               f"#{revoked} holds both")
    extra = carol.call("pay", invoice=alice.call("invoice", amount_msat=EXTRA_MSAT)["invoice"],
                       timeout_s=20.0)
    _check(extra.get("status") == "succeeded", f"Carol's extra payment failed: {extra}")

    def extra_settled() -> bool:
        a, b = view(alice, ab), view(bob, ab)
        return int(view(carol, cb)["holder_commitment_number"]) > revoked + 1 and \
            a["htlcs"] == b["htlcs"] == 2 and a["local_msat"] == b["remote_msat"]

    wait_for(extra_settled, timeout=15, what="the extra payment to settle")
    before = (int(view(alice, ab)["local_msat"]), int(view(alice, ab)["remote_msat"]))
    say.detail(f"one more payment, Carol -> Alice {EXTRA_MSAT:,} msat, revokes commitment "
               f"#{revoked}")

    say.step(f"Carol cheats: she broadcasts her REVOKED commitment #{revoked} (Carol "
             f"{revoked_msat[0] // 1000:,} sat, Bob {revoked_msat[1] // 1000:,} sat, both "
             "HTLCs)")
    bob_before = bob.wallet.balance_sat()
    carol_chan = str(view(carol, cb)["channel"])
    txid = str(carol.call("cheat", channel=carol_chan, state=revoked)["revoked_commitment_txid"])
    wait_all_spent(cluster.miner, txid, what="Bob's penalty to reach the mempool")
    height = mine_synced(cluster, 1)
    mine_synced(cluster, 1)
    for event in bob.call("events"):
        say.detail(f"Bob's node: {str(event).split(': ', 1)[-1]}")

    say.step("Bob fails the HTLC Alice offered him back to her: its downstream half can never "
             "complete on a breached channel")
    wait_for(lambda: _payment_status(alice, up["payment_hash"]) == "failed", timeout=30,
             what="Alice's payment of Carol's hold invoice to fail back")
    say.detail("Alice's payment to Carol failed back; she paid nothing")

    say.step("Alice settles her hold invoice: Bob learns the preimage from her and pays her; his "
             "penalty already took Carol's side")
    alice.call("settle", payment_hash=down["payment_hash"])
    wait_for(lambda: int(view(alice, ab)["htlcs"]) == int(view(bob, ab)["htlcs"]) == 0 and
             view(alice, ab)["local_msat"] == view(bob, ab)["remote_msat"], timeout=30,
             what="Alice and Bob's channel to settle")
    after = (int(view(alice, ab)["local_msat"]), int(view(alice, ab)["remote_msat"]))
    refund = HELD_MSAT[0] + fee_msat(HELD_MSAT[0])   # Alice's failed HTLC comes back whole
    _check(after == (before[0] + refund + HELD_MSAT[1], before[1]),
           f"Alice-Bob moved {before} -> {after}, not {refund} + {HELD_MSAT[1]} msat to Alice")
    say.detail(f"Alice-Bob: Alice {before[0]:,} -> {after[0]:,} msat (HTLCs excluded): her "
               f"{refund:,} msat HTLC back whole, +{HELD_MSAT[1]:,} msat from Carol's payment")

    say.step("Check the breached channel on chain, to the satoshi")
    chain = cluster.miner
    txid_hex, vout = str(view(bob, cb)["funding_outpoint"]).split(":")
    funding = OutPoint.from_txid_hex(txid_hex, int(vout))
    s = settlement(chain, funding, height)
    _check(s.closing_txid == txid, "the breach is not what spent the funding output")
    _check(all(leaf in s.leaves_of(bob.wallet) for leaf in s.leaves),
           "an output of the breach went somewhere else than Bob's wallet")
    delta = bob.wallet.balance_sat() - bob_before
    _check(delta == CHANNEL_SAT - s.total_fees_sat == s.amount_to(bob.wallet),
           f"Bob got {delta} sat, not the channel minus fees ({CHANNEL_SAT - s.total_fees_sat})")
    for t in s.order:
        say.detail(f"tx {t[:16]}… fee {s.fee_sat[t]:,} sat")
    say.detail(f"Bob gained {delta:,} sat on chain: the whole {sat(CHANNEL_SAT)} channel minus "
               f"{s.total_fees_sat:,} sat of fees; Carol lost everything she had in it")
    return BreachMiddleOutcome(
        funding=funding, breach_height=height, breach_txid=txid, revoked_state=revoked,
        revoked_msat=revoked_msat, bob_wallet_delta_sat=delta, settlement=s,
        alice_bob_before_msat=before, alice_bob_after_msat=after,
        upstream_status=_payment_status(alice, up["payment_hash"]),
        downstream_status=_payment_status(carol, down["payment_hash"]),
        upstream_hash=str(up["payment_hash"]), downstream_hash=str(down["payment_hash"]),
        bob_in_flight=list(bob.call("forwarding")["in_flight"]))


@scenario("breach-in-the-middle", "a forwarder's downstream peer broadcasts a revoked state "
                                  "with HTLCs from both sides in flight; the penalty takes all")
def _demo(ctx: DemoContext) -> None:
    with _cluster(ctx) as cluster:
        breach_in_the_middle(cluster, ctx.say)
