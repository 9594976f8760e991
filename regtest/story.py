"""I/O: the channel stories ``chanlab demo`` tells with two real node processes.

``lifecycle`` (the default of ``make demo``): Alice and Bob run separate ``chanlab node``
processes that speak BOLT 8 / BOLT 1 / BOLT 2 to each other and share one regtest bitcoind.
They open a channel, pay each other ten times, close cooperatively; then open a second
channel that Alice force-closes while Bob's node is down, and she still gets her money with
nothing but Bitcoin: the counterexample to an L2 that halts when its operator does.
"""

from __future__ import annotations

from typing import Any

from bitcoin.core import CTransaction

from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, sat, scenario
from regtest.errors import RegtestError
from regtest.rpc import btc_to_sat
from regtest.wait import wait_for

CHANNEL_SAT = 1_000_000
TO_SELF_DELAY = 6


def _balances(say: Any, cluster: Cluster, a: NodeProcess, b: NodeProcess, funding: str) -> None:
    ca = cluster.channel(a, funding)
    cb = cluster.channel(b, funding)
    if ca["local_msat"] != cb["remote_msat"] or ca["remote_msat"] != cb["local_msat"]:
        raise RegtestError("Alice and Bob disagree about the channel's balances")
    say.detail(f"balances: Alice {ca['local_msat'] // 1000:>9,} sat | Bob "
               f"{ca['remote_msat'] // 1000:>9,} sat   (commitment #"
               f"{ca['holder_commitment_number']})")


def _wallet_sat(node: NodeProcess) -> int:
    return node.wallet.balance_sat()


def _wait_claim(node: NodeProcess, kind: str, *, mine: Cluster | None = None,
                ) -> tuple[str, int]:
    """Wait until ``node``'s monitor reports a confirmed claim of ``kind``; (txid, sat)."""
    found: list[tuple[str, int]] = []

    def confirmed() -> bool:
        if mine is not None:
            mine.mine(1)
        for text in node.call("events"):
            marker = f"{kind} "
            if marker in text and " confirmed at height " in text:
                txid = text.split(marker, 1)[1].split(".", 1)[0].rstrip(".…")
                amount = int(text.rsplit(": ", 1)[1].split(" sat", 1)[0])
                found.append((txid, amount))
                return True
        return False

    wait_for(confirmed, timeout=60, what=f"{node.name}'s {kind} to confirm")
    return found[0]


def _wallet_fee_sat(node: NodeProcess, txid: str) -> int:
    info = node.wallet.wallet_rpc.call("gettransaction", txid)
    if not isinstance(info, dict):
        raise RegtestError(f"gettransaction {txid}: unexpected answer")
    return -btc_to_sat(str(info["fee"]))


@scenario("lifecycle", "two node processes: open, ten payments, cooperative close, then a "
                       "force close while the counterparty is down")
def lifecycle(ctx: DemoContext) -> None:
    say, miner = ctx.say, ctx.miner
    with ctx.scratch_folder("chanlab-demo-") as home, \
            Cluster.running(ctx.node, home, miner, ctx.seed) as cluster:
        say.watch(cluster)
        say.step("Start two chanlab nodes, Alice and Bob, as separate processes")
        alice = cluster.start_node("alice", funds_sat=3_000_000, to_self_delay=TO_SELF_DELAY)
        bob = cluster.start_node("bob", funds_sat=1_000_000, to_self_delay=TO_SELF_DELAY)
        for node in (alice, bob):
            info = node.call("info")
            say.detail(f"{node.name:<5} node id {info['node_id'][:20]}… listening on "
                       f"{info['address'].split('@')[1]}; wallet {sat(_wallet_sat(node))}")
        start_wallets = {n.name: _wallet_sat(n) for n in (alice, bob)}

        say.step("Alice connects to Bob: a BOLT 8 Noise_XK handshake authenticates both keys, "
                 "then both send init")
        cluster.connect(alice, bob)
        say.detail("connected; every message from now on is encrypted and authenticated")

        say.step(f"Alice opens a {sat(CHANNEL_SAT)} channel to Bob (open_channel, accept_channel, "
                 "funding_created, funding_signed, then channel_ready after a confirmation)")
        opened = cluster.open_channel(alice, bob, CHANNEL_SAT)
        funding = opened["funding_txid"]
        chan = cluster.channel(alice, funding)
        say.detail(f"funding transaction {funding} confirmed; the channel is output "
                   f"{chan['funding_outpoint']}")
        say.detail("Alice broadcast it only after Bob had signed her first commitment, so she "
                   "could always get her money back alone")
        _balances(say, cluster, alice, bob, funding)

        say.step("Ten payments, back and forth; each is an HTLC added, committed and settled "
                 "with two commitment_signed/revoke_and_ack round trips")
        for i in range(10):
            payer, payee = (alice, bob) if i % 2 == 0 else (bob, alice)
            amount_msat = (50_000 + 10_000 * i) * 1000 if payer is alice else \
                (20_000 + 1_000 * i) * 1000
            result = cluster.pay(payer, payee, amount_msat)
            if result["status"] != "succeeded":
                raise RegtestError(f"payment {i + 1} failed: {result}")
            say.detail(f"payment {i + 1:>2}: {payer.name:<5} -> {payee.name:<5} "
                       f"{amount_msat // 1000:>7,} sat  "
                       f"preimage {result['payment_preimage'][:16]}…")
            _balances(say, cluster, alice, bob, funding)
        say.detail("every old commitment has been revoked: broadcasting one would forfeit "
                   "the whole channel to the other side")

        say.step("Cooperative close: shutdown, then closing_signed fee negotiation")
        final = cluster.channel(alice, funding)
        closed = alice.call("close", channel=opened["channel"])
        cluster.mine(1)
        raw = bytes.fromhex(str(miner.rpc.call("getrawtransaction", closed["closing_txid"])))
        tx = CTransaction.deserialize(raw)
        fee = CHANNEL_SAT - sum(o.nValue for o in tx.vout)
        say.detail(f"closing transaction {closed['closing_txid']} confirmed, fee {fee:,} sat "
                   "(paid by Alice, the opener)")
        expected = sorted([final["local_msat"] // 1000 - fee, final["remote_msat"] // 1000])
        on_chain = sorted(o.nValue for o in tx.vout)
        if on_chain != expected:
            raise RegtestError(f"closing outputs {on_chain} differ from the balances {expected}")
        say.detail(f"outputs on chain: {', '.join(sat(v) for v in on_chain)} — exactly the "
                   "channel balances")

        say.step("A second channel; then Bob's node goes down")
        opened2 = cluster.open_channel(alice, bob, CHANNEL_SAT // 2)
        funding2 = opened2["funding_txid"]
        for amount in (120_000_000, 30_000_000):
            cluster.pay(alice, bob, amount)
        _balances(say, cluster, alice, bob, funding2)
        state2 = cluster.channel(alice, funding2)
        bob.stop()
        say.detail("Bob's node is stopped: no operator, no sequencer, nobody to ask")

        say.step("Alice force-closes alone with her latest commitment transaction")
        forced = alice.call("force-close", channel=opened2["channel"])
        commitment_txid = forced["commitment_txid"]
        block = cluster.mine(1)[0]
        height = int(str(miner.rpc.getblockheader(block)["height"]))
        ctx_tx = CTransaction.deserialize(
            bytes.fromhex(str(miner.rpc.call("getrawtransaction", commitment_txid))))
        say.detail(f"commitment {commitment_txid} confirmed at height {height}")
        to_local = next((o.nValue for o in ctx_tx.vout
                         if o.nValue <= state2["local_msat"] // 1000
                         and o.nValue != state2["remote_msat"] // 1000), None)
        say.detail(f"outputs: Bob's to_remote {sat(state2['remote_msat'] // 1000)} is his at once; "
                   f"Alice's to_local {sat(to_local or 0)} is locked by OP_CHECKSEQUENCEVERIFY "
                   f"for {TO_SELF_DELAY} blocks")

        say.step(f"The CSV countdown: {TO_SELF_DELAY} blocks in which Bob could punish Alice "
                 "had she broadcast a revoked state")
        for left in range(TO_SELF_DELAY - 1, 0, -1):
            cluster.mine(1)
            say.detail(f"height {height + TO_SELF_DELAY - left}: {left} block(s) left; Bob may "
                       "spend to_remote; Alice's to_local is still locked (revocation path open)")
        cluster.mine(1)
        say.detail(f"height {height + TO_SELF_DELAY}: the delay is over; Alice's node sweeps "
                   "to_local to her wallet")

        alice_sweep = _wait_claim(alice, "to_local_sweep", mine=cluster)
        say.detail(f"sweep {alice_sweep[0]}… confirmed: {sat(alice_sweep[1])} back in "
                   "Alice's wallet")

        say.step("Bob's node comes back: it reads the chain it missed and sweeps his to_remote")
        bob.start()
        bob_sweep = _wait_claim(bob, "to_remote_sweep", mine=cluster)
        say.detail(f"sweep {bob_sweep[0]}… confirmed: {sat(bob_sweep[1])} to Bob's wallet")

        say.step("Final wallet balances, checked against the chain")
        fees = sum(_wallet_fee_sat(alice, txid) for txid in (funding, funding2))
        expected_wallet = {
            "alice": start_wallets["alice"] - CHANNEL_SAT - CHANNEL_SAT // 2 - fees
            + final["local_msat"] // 1000 - fee + alice_sweep[1],
            "bob": start_wallets["bob"] + final["remote_msat"] // 1000 + bob_sweep[1],
        }
        for node in (alice, bob):
            now = _wallet_sat(node)
            say.detail(f"{node.name:<5} {sat(now)} (started with {sat(start_wallets[node.name])}, "
                       f"change {now - start_wallets[node.name]:+,} sat)")
            if now != expected_wallet[node.name]:
                raise RegtestError(f"{node.name}'s wallet holds {now} sat, the chain says "
                                   f"{expected_wallet[node.name]}")
        say.detail("both match the sum of what the chain paid them, to the satoshi "
                   f"(Alice paid {fees:,} sat in funding fees and the closing and sweep fees)")
        say.snapshot()
        cluster.stop_all()
    say.detail("both nodes stopped")
