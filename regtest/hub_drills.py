"""I/O: the *hub down* drill of ``chanlab demo``: a star network loses its hub mid-payment, the
way an operator-run L2 loses its sequencer, and nobody's money waits on it.

Five real node processes on the demo's bitcoind: the hub opens a channel to each of Alice, Bob,
Carol and Dave (pushing half of it, so every leaf can pay and be paid); Bob and Dave, and Dave
and Carol, also have channels of their own, a second path from Bob to Carol that avoids the hub
(Dave charges more, so payers prefer the hub while it is up). The drill:

1. Alice and Bob pay Carol through the hub; the hub keeps exactly its announced fee.
2. Alice pays Carol's hold invoice; with that HTLC in flight on both of the hub's channels the
   hub is killed (SIGKILL, no goodbye).
3. With the hub down, Alice (whose only channel is to the hub) cannot pay Carol: her payment
   fails at once and nothing moves; Bob's payment to Carol goes round the hub through Dave.
4. The hub restarts; Carol settles the held HTLC; it completes across both channels.
5. The hub goes down again for good: Bob force-closes his channel to it, alone, and sweeps his
   balance after to_self_delay; the hub's share sits in its own output on chain.

Every amount is checked (msat off-chain, sat on chain; ``RegtestError`` otherwise) and returned
in a :class:`HubDownOutcome`; ``tests/integration/test_hub_down.py`` checks them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitcoin.core import CBlock, CTransaction

from channel.errors import ChanlabError
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, Narrator, sat, scenario
from regtest.drills import _cluster, mine_synced, owned_by, policy_known
from regtest.errors import RegtestError
from regtest.wait import wait_for

__all__ = [
    "DAVE_FEE_BASE_MSAT",
    "HUB_FEE_BASE_MSAT",
    "HubDownOutcome",
    "Star",
    "fee_msat",
    "hub_down",
    "stage_star",
]

CHANNEL_SAT = 1_000_000
HUB_FEE_BASE_MSAT = 1000
DAVE_FEE_BASE_MSAT = 5000          # the second path costs more: payers prefer the hub
FEE_PPM = 100
CLTV_DELTA = 40
TO_SELF_DELAY = 6
PAYMENT_MSAT = 20_000_000
HELD_MSAT = 30_000_000


def fee_msat(base_msat: int, amount_msat: int) -> int:
    """BOLT 7 "HTLC Fees": what a forwarder with ``base_msat`` and ``FEE_PPM`` keeps."""
    return base_msat + amount_msat * FEE_PPM // 1_000_000


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RegtestError(message)


def _start(cluster: Cluster, name: str, fee_base_msat: int, funds_sat: int) -> NodeProcess:
    return cluster.start_node(name, funds_sat=funds_sat, to_self_delay=TO_SELF_DELAY,
                              start_args=["--fee-base-msat", str(fee_base_msat),
                                          "--fee-proportional-millionths", str(FEE_PPM),
                                          "--cltv-expiry-delta", str(CLTV_DELTA)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Star:
    """The staged network: the nodes and each channel's funding txid, keyed "hub-alice" etc."""

    cluster: Cluster
    hub: NodeProcess
    alice: NodeProcess
    bob: NodeProcess
    carol: NodeProcess
    dave: NodeProcess
    hub_id: str
    channels: dict[str, str]

    def ends(self, key: str) -> tuple[NodeProcess, NodeProcess]:
        left, right = key.split("-")
        return getattr(self, left), getattr(self, right)

    def local_msat(self, node: NodeProcess, key: str) -> int:
        return int(self.cluster.channel(node, self.channels[key])["local_msat"])

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Each channel's (left end's, right end's) balance in msat, as the left end sees it."""
        out: dict[str, tuple[int, int]] = {}
        for key, txid in self.channels.items():
            left, right = self.ends(key)
            if left.running:
                chan = self.cluster.channel(left, txid)
                out[key] = (int(chan["local_msat"]), int(chan["remote_msat"]))
            else:   # the hub is down: its leaf's view, turned round
                chan = self.cluster.channel(right, txid)
                out[key] = (int(chan["remote_msat"]), int(chan["local_msat"]))
        return out

    def settled(self, keys: tuple[str, ...]) -> bool:
        """These channels are normal on both ends, without HTLC, and both ends agree."""
        for key in keys:
            left, right = self.ends(key)
            a = self.cluster.channel(left, self.channels[key])
            b = self.cluster.channel(right, self.channels[key])
            if not (a["state"] == b["state"] == "normal" and a["htlcs"] == b["htlcs"] == 0 and
                    a["local_msat"] == b["remote_msat"] and a["remote_msat"] == b["local_msat"]):
                return False
        return True


def stage_star(cluster: Cluster, say: Narrator, *, tag: str = "") -> Star:
    """Start the hub, four leaves and Dave's second path; open every channel."""
    say.step("Start a star: a hub and four leaves, Alice, Bob, Carol and Dave; Bob-Dave and "
             "Dave-Carol are a second path from Bob to Carol")
    hub = _start(cluster, f"hub{tag}", HUB_FEE_BASE_MSAT, 4 * CHANNEL_SAT + 500_000)
    alice = _start(cluster, f"alice{tag}", HUB_FEE_BASE_MSAT, 0)
    bob = _start(cluster, f"bob{tag}", HUB_FEE_BASE_MSAT, CHANNEL_SAT + 200_000)
    carol = _start(cluster, f"carol{tag}", HUB_FEE_BASE_MSAT, 0)
    dave = _start(cluster, f"dave{tag}", DAVE_FEE_BASE_MSAT, CHANNEL_SAT + 200_000)
    half_msat = CHANNEL_SAT * 1000 // 2
    channels: dict[str, str] = {}
    for key, opener, accepter, push in (("hub-alice", hub, alice, half_msat),
                                        ("hub-bob", hub, bob, half_msat),
                                        ("hub-carol", hub, carol, half_msat),
                                        ("hub-dave", hub, dave, half_msat),
                                        ("bob-dave", bob, dave, 0),
                                        ("dave-carol", dave, carol, 0)):
        opened = cluster.open_channel(opener, accepter, CHANNEL_SAT, push_msat=push)
        channels[key] = str(opened["funding_txid"])
    star = Star(cluster=cluster, hub=hub, alice=alice, bob=bob, carol=carol, dave=dave,
                hub_id=hub.node_id, channels=channels)
    wait_for(lambda: policy_known(carol, hub) and policy_known(carol, dave),
             timeout=30, what="Carol to learn the hub's and Dave's policies")
    say.detail(f"six channels of {sat(CHANNEL_SAT)}; the hub pushed half of each of its own to "
               "the leaf")
    say.detail(f"the hub charges {HUB_FEE_BASE_MSAT} msat + {FEE_PPM} ppm, Dave "
               f"{DAVE_FEE_BASE_MSAT} msat + {FEE_PPM} ppm: while the hub is up, it is the "
               "cheaper route")
    return star


@dataclass(frozen=True, slots=True, kw_only=True)
class HubDownOutcome:
    """What the drill measured: the fee of each payment, the balances in msat after each step,
    and Bob's exit (the commitment, his sweep, the wallet change)."""

    via_hub_fee_msat: dict[str, int]           # "alice", "bob" -> fee paid through the hub
    held_fee_msat: int
    around_fee_msat: int                        # Bob -> Dave -> Carol while the hub is down
    refused_reason: str                         # Alice's payment while the hub is down
    before_kill_msat: dict[str, tuple[int, int]]
    hub_down_msat: dict[str, tuple[int, int]]
    after_restart_msat: dict[str, tuple[int, int]]
    bob_exit_msat: int                          # Bob's balance in the channel he force-closed
    commitment_txid: str
    sweep_txid: str
    bob_wallet_delta_sat: int


def _pay(star: Star, payer: NodeProcess, amount_msat: int, **kw: Any) -> dict[str, Any]:
    invoice = star.carol.call("invoice", amount_msat=amount_msat)["invoice"]
    result: dict[str, Any] = payer.call("pay", invoice=invoice, timeout_s=20.0, **kw)
    return result


def _relink(star: Star) -> None:
    """The hub is back: each leaf redials it if it has not called them yet."""
    leaves = (star.alice, star.bob, star.carol, star.dave)

    def linked() -> bool:
        peers = star.hub.call("info")["peers"]
        missing = [leaf for leaf in leaves if leaf.node_id not in peers]
        for leaf in missing:
            try:
                leaf.call("connect", peer=star.hub.address)
            except (ChanlabError, OSError):   # a redial racing the hub's own: try again
                pass
        return not missing

    wait_for(linked, timeout=30, what="the hub to be back with every leaf")


def _spender(star: Star, txid: str, vout: int, since: int) -> str | None:
    chain = star.cluster.miner
    for height in range(since, chain.height() + 1):
        block = CBlock.deserialize(chain.get_block(chain.rpc.getblockhash(height)))
        for tx in block.vtx:
            for txin in tx.vin:
                if (bytes(txin.prevout.hash)[::-1].hex(), int(txin.prevout.n)) == (txid, vout):
                    return bytes(tx.GetTxid())[::-1].hex()
    return None


def hub_down(cluster: Cluster, say: Narrator, *, tag: str = "") -> HubDownOutcome:
    """The hub dies mid-payment; the others route around it or exit alone on chain."""
    star = stage_star(cluster, say, tag=tag)
    hub, alice, bob, carol = star.hub, star.alice, star.bob, star.carol
    hub_fee = fee_msat(HUB_FEE_BASE_MSAT, PAYMENT_MSAT)

    say.step(f"Alice and Bob each pay Carol {PAYMENT_MSAT:,} msat; both payments go through the "
             "hub")
    via_hub: dict[str, int] = {}
    for payer in (alice, bob):
        result = _pay(star, payer, PAYMENT_MSAT)
        _check(result.get("status") == "succeeded", f"{payer.name}'s payment failed: {result}")
        _check(result["fee_msat"] == hub_fee, f"{payer.name} paid {result['fee_msat']} msat of "
                                              f"fees, not the hub's {hub_fee}")
        via_hub[payer.name.removesuffix(tag)] = int(result["fee_msat"])
        say.detail(f"{payer.name} -> hub -> {carol.name}: succeeded, fee {hub_fee:,} msat")
    wait_for(lambda: star.settled(tuple(star.channels)), timeout=15, what="the star to settle")
    before = star.snapshot()

    say.step(f"Alice pays Carol's hold invoice of {HELD_MSAT:,} msat; while Carol holds the "
             "HTLC, the hub is killed (kill -9), as a sequencer halts")
    held = carol.call("invoice", amount_msat=HELD_MSAT, hold=True)
    alice.call("pay", invoice=held["invoice"], wait=False)

    def htlc_held() -> bool:
        return all(int(cluster.channel(node, star.channels[key])["htlcs"]) == 1
                   for node, key in ((alice, "hub-alice"), (carol, "hub-carol")))

    wait_for(htlc_held, timeout=20, what="the HTLC to reach Carol through the hub")
    hub_id = star.hub_id
    hub.kill()
    say.detail("the HTLC is in flight on both of the hub's channels: Alice -> hub and hub -> "
               "Carol; the hub's process is gone without a word")
    wait_for(lambda: all(hub_id not in n.call("info")["peers"] for n in (alice, bob, carol)),
             timeout=20, what="the leaves to see the hub gone")

    say.step("With the hub down, payments stop only where no other route exists")
    refused = _pay(star, alice, PAYMENT_MSAT)
    _check(refused.get("status") == "failed", f"Alice's payment did not fail: {refused}")
    _check(star.local_msat(alice, "hub-alice") == before["hub-alice"][1] - HELD_MSAT
           - fee_msat(HUB_FEE_BASE_MSAT, HELD_MSAT),
           "Alice's balance moved beyond the held HTLC")
    say.detail(f"Alice -> Carol fails at once, nothing sent: {refused.get('reason')}")
    dave_fee = fee_msat(DAVE_FEE_BASE_MSAT, PAYMENT_MSAT)
    around = _pay(star, bob, PAYMENT_MSAT)
    _check(around.get("status") == "succeeded", f"Bob's payment round the hub failed: {around}")
    _check(around["fee_msat"] == dave_fee, f"Bob paid {around['fee_msat']} msat of fees, not "
                                           f"Dave's {dave_fee}")
    wait_for(lambda: star.settled(("bob-dave", "dave-carol")), timeout=15,
             what="Bob, Dave and Carol to settle")
    down = star.snapshot()
    _check(down["bob-dave"] == (before["bob-dave"][0] - PAYMENT_MSAT - dave_fee,
                                before["bob-dave"][1] + PAYMENT_MSAT + dave_fee),
           f"Bob-Dave moved {before['bob-dave']} -> {down['bob-dave']}")
    _check(down["dave-carol"] == (before["dave-carol"][0] - PAYMENT_MSAT,
                                  before["dave-carol"][1] + PAYMENT_MSAT),
           f"Dave-Carol moved {before['dave-carol']} -> {down['dave-carol']}")
    say.detail(f"Bob -> Dave -> Carol succeeds: Dave keeps {dave_fee:,} msat, Carol gains "
               f"{PAYMENT_MSAT:,} msat; no one asked the hub")

    say.step("The hub restarts; Carol settles the held HTLC and it completes across both "
             "channels")
    hub.start()
    _relink(star)
    carol.call("settle", payment_hash=held["payment_hash"])
    wait_for(lambda: star.settled(tuple(star.channels)), timeout=30,
             what="every HTLC resolved after the hub's restart")
    after = star.snapshot()
    held_fee = fee_msat(HUB_FEE_BASE_MSAT, HELD_MSAT)
    _check(after["hub-alice"] == (before["hub-alice"][0] + HELD_MSAT + held_fee,
                                  before["hub-alice"][1] - HELD_MSAT - held_fee),
           f"hub-Alice moved {before['hub-alice']} -> {after['hub-alice']}")
    _check(after["hub-carol"] == (before["hub-carol"][0] - HELD_MSAT,
                                  before["hub-carol"][1] + HELD_MSAT),
           f"hub-Carol moved {before['hub-carol']} -> {after['hub-carol']}")
    say.detail(f"Carol gained {HELD_MSAT:,} msat, Alice paid {HELD_MSAT + held_fee:,} msat, the "
               f"hub kept its {held_fee:,} msat fee: the in-flight payment lost nothing")

    say.step("The hub goes down again, for good. Bob does not wait for it: he force-closes his "
             "channel to the hub alone")
    hub.kill()
    bob_msat = star.local_msat(bob, "hub-bob")
    hub_msat = after["hub-bob"][0]
    wallet_before = bob.wallet.balance_sat()
    forced = bob.call("force-close", channel=_channel_name(star, bob, "hub-bob"))
    commitment = str(forced["commitment_txid"])
    height = mine_synced(cluster, 1)
    chain = cluster.miner
    ctx = CTransaction.deserialize(chain.get_transaction(commitment))
    fee = CHANNEL_SAT - sum(int(o.nValue) for o in ctx.vout)
    amounts = sorted(int(o.nValue) for o in ctx.vout)
    _check(amounts == sorted([bob_msat // 1000, hub_msat // 1000 - fee]),
           f"Bob's commitment pays {amounts}, not Bob {bob_msat // 1000} and the hub "
           f"{hub_msat // 1000 - fee} sat")
    say.detail(f"commitment {commitment[:16]}… confirmed at height {height}: {bob_msat // 1000:,} "
               f"sat to Bob after {TO_SELF_DELAY} blocks, {hub_msat // 1000 - fee:,} sat to the "
               f"hub's key (the hub opened the channel, so it paid the {fee:,} sat fee)")
    to_local = next(n for n, o in enumerate(ctx.vout) if int(o.nValue) == bob_msat // 1000)
    sweep: str | None = None
    for _ in range(TO_SELF_DELAY + 4):
        sweep = _spender(star, commitment, to_local, height)
        if sweep is not None:
            break
        mine_synced(cluster, 1)
    _check(sweep is not None, "Bob's to_local was not swept after to_self_delay")
    assert sweep is not None
    sweep_tx = CTransaction.deserialize(chain.get_transaction(sweep))
    sweep_fee = bob_msat // 1000 - sum(int(o.nValue) for o in sweep_tx.vout)
    _check(all(owned_by(bob.wallet, bytes(o.scriptPubKey)) for o in sweep_tx.vout),
           "Bob's sweep pays someone else")
    delta = bob.wallet.balance_sat() - wallet_before
    _check(delta == bob_msat // 1000 - sweep_fee,
           f"Bob's wallet gained {delta} sat, not {bob_msat // 1000 - sweep_fee}")
    say.detail(f"Bob's node swept {bob_msat // 1000:,} sat (minus a {sweep_fee:,} sat sweep fee) "
               "into his wallet: he needed bitcoind and his own keys, nothing from the hub")
    say.detail("The difference from a sequencer halt: when a sequencer stops, every user's "
               "withdrawal waits on it (or on a long escape hatch). Here nobody's funds waited "
               "on the hub: payments found another route where one existed, the HTLC in flight "
               "completed when the hub returned, and any leaf can leave alone on chain")
    return HubDownOutcome(
        via_hub_fee_msat=via_hub, held_fee_msat=held_fee, around_fee_msat=dave_fee,
        refused_reason=str(refused.get("reason", "")), before_kill_msat=before,
        hub_down_msat=down, after_restart_msat=after, bob_exit_msat=bob_msat,
        commitment_txid=commitment, sweep_txid=sweep, bob_wallet_delta_sat=delta)


def _channel_name(star: Star, node: NodeProcess, key: str) -> str:
    return str(star.cluster.channel(node, star.channels[key])["channel"])


@scenario("hub-down", "a star's hub is killed mid-payment: the HTLC in flight completes when it "
                      "returns, payments route round it where a path exists, a leaf exits alone")
def _demo(ctx: DemoContext) -> None:
    with _cluster(ctx) as cluster:
        hub_down(cluster, ctx.say)
