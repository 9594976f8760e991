"""I/O: ``chanlab demo electrum``: a chanlab node and an Electrum wallet share a channel.

Electrum is a Lightning implementation chanlab did not write. The story provisions it (once,
into chanlab's cache), starts an ElectrumX server and one Electrum wallet, Erin, next to a
chanlab node, Alice, on the demo's regtest bitcoind; Alice opens an anchors channel to Erin,
each pays a BOLT 11 invoice the other made, and Alice closes cooperatively inside both fee
ranges. Every amount is read back from the chain.

With ``--seed N`` the run repeats: Alice's keys and coins come from the seed as in every demo,
Erin's wallet is restored from seed words derived from it and her channel key seeds too
(``ElectrumWallet(seed=...)``), so every txid and every picture is the same each run.
"""

from __future__ import annotations

import sys

from bitcoin.core import CTransaction

from channel.seeded import seed_from_text
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, sat, scenario
from regtest.electrum import ElectrumChannel, ElectrumWallet, ElectrumX
from regtest.electrum_provision import ensure_electrum
from regtest.errors import RegtestError
from regtest.wait import wait_for

CHANNEL_SAT = 1_000_000
TO_ERIN_SAT = 200_000
TO_ALICE_SAT = 50_000
ELECTRUM_MIN_DEPTH = 3      # Electrum as fundee waits for 3 confirmations
TO_SELF_DELAY = 6


def _erin_channel(erin: ElectrumWallet, funding_txid: str, *states: str) -> ElectrumChannel:
    def reached() -> ElectrumChannel | None:
        for channel in erin.list_channels():
            if channel.channel_point.txid_hex == funding_txid and channel.state in states:
                return channel
        return None

    found: ElectrumChannel = wait_for(reached, timeout=60,
                                      what=f"Erin's channel to be {'/'.join(states)}")
    return found


@scenario("electrum", "a chanlab node and an Electrum wallet: open (anchors), pay both ways "
                      "with BOLT 11 invoices, cooperative close")
def electrum_story(ctx: DemoContext) -> None:
    say, miner = ctx.say, ctx.miner
    say.step("Find or provision Electrum and ElectrumX (pinned versions, in chanlab's cache)")
    install = ensure_electrum(
        progress=lambda line: print(f"   {line}", file=sys.stderr, flush=True))
    say.detail(f"Electrum {install.electrum_version}, ElectrumX {install.electrumx_version}")
    with ctx.scratch_folder("chanlab-demo-electrum-") as home, \
            Cluster.running(ctx.node, home / "chanlab", miner, ctx.seed) as cluster:
        say.watch(cluster)   # the story page draws Alice's channels with Erin
        say.step("Start ElectrumX (Electrum's server, reading our bitcoind) and Erin's "
                 "Electrum wallet, and a chanlab node, Alice")
        _mine_at_the_wall_clock(ctx)
        server = ElectrumX(install, rpc_url=ctx.node.rpc_url, cookie_path=ctx.node.cookie_path,
                           home=home / "electrumx")
        server.start()
        erin = ElectrumWallet(install, home=home / "erin", server=server.server,
                              to_self_delay=TO_SELF_DELAY,
                              seed=None if ctx.seed is None else seed_from_text(f"{ctx.seed}/erin"))
        try:
            erin.start()
            if erin.seed_words is not None:
                say.detail(f"Erin's wallet is restored from the seed words \"{erin.seed_words}\" "
                           "(derived from the seed), and her channel keys from the seed too")
            alice = cluster.start_node("alice", funds_sat=2_000_000,
                                       to_self_delay=TO_SELF_DELAY)
            say.detail(f"ElectrumX on {server.server}; Erin's node id {erin.node_id()[:20]}… "
                       f"listening on {erin.address().split('@')[1]}")
            say.detail(f"Alice's node id {alice.node_id[:20]}…, wallet "
                       f"{sat(alice.wallet.balance_sat())}")
            _open_pay_close(ctx, cluster, alice, erin)
        finally:
            erin.stop()
            server.stop()


def _mine_at_the_wall_clock(ctx: DemoContext) -> None:
    """A seeded run mines at fixed past times (2024); Electrum would then refuse every payment
    to it: it fails HTLCs while its chain tip is over 8 hours old by its own clock (its
    ``Blockchain.is_tip_stale``), to avoid releasing a preimage its payer could already time
    out. So this story's blocks are dated now. Block times and hashes then differ between
    runs, but no transaction of the story commits to either (chanlab's seeded funding and the
    closing transaction have nLockTime 0; coinbases commit to heights), so every txid repeats."""
    if ctx.seed is None:
        return
    ctx.miner.block_time_base = None
    ctx.miner.rpc.call("setmocktime", 0)    # 0: bitcoind's clock is the wall clock again
    ctx.say.detail("Electrum takes payments only on a fresh chain tip: from here on the blocks "
                   "are dated now, not at the seed's fixed times (every txid still repeats)")


def _open_pay_close(ctx: DemoContext, cluster: Cluster, alice: NodeProcess,
                    erin: ElectrumWallet) -> None:
    say, miner = ctx.say, ctx.miner
    say.step("Alice connects to Erin: BOLT 8 handshake, then init")
    alice.call("connect", peer=erin.address())
    say.detail("Erin requires option_anchors (feature bit 22) and Alice offers it (bit 23): "
               "each accepts the other's features")

    say.step(f"Alice opens a {sat(CHANNEL_SAT)} channel to Erin")
    opened = alice.call("open", peer_id=erin.node_id(), amount_sat=CHANNEL_SAT, push_msat=0,
                        anchors=False)
    funding = str(opened["funding_txid"])
    ours = cluster.channel(alice, funding)
    say.detail(f"channel_type {ours['commitment_format']}: Alice picked anchors because Erin "
               "requires them (Electrum refuses static_remotekey-only channels)")
    wait_for(lambda: funding in miner.rpc.getrawmempool(), timeout=30,
             what="the funding transaction in the mempool")
    cluster.mine(ELECTRUM_MIN_DEPTH)
    cluster.wait_channel_state(alice, funding, "normal", timeout=60)
    theirs = _erin_channel(erin, funding, "OPEN")
    say.detail(f"funding {ours['funding_outpoint']} has {ELECTRUM_MIN_DEPTH} confirmations "
               f"(Erin asked for them); Erin sees the channel {theirs.state}, capacity "
               f"{sat(theirs.capacity_sat)}, short channel id {theirs.short_channel_id}")

    say.step(f"Erin makes a BOLT 11 invoice for {sat(TO_ERIN_SAT)}; Alice pays it")
    request = erin.add_request(TO_ERIN_SAT, "from chanlab")
    say.detail(f"invoice {request.bolt11[:40]}… (Electrum asks min_final_cltv_expiry_delta "
               "147: Alice's HTLC expires at least that far ahead)")
    paid = alice.call("pay", invoice=request.bolt11)
    if paid["status"] != "succeeded":
        raise RegtestError(f"Alice could not pay Erin: {paid.get('reason')}")
    wait_for(lambda: erin.get_request(request.request_id).status == 3, timeout=30,
             what="Erin to mark her invoice paid")
    say.detail(f"paid: preimage {paid['payment_preimage'][:16]}…; Erin's request is PAID")
    wait_for(lambda: _erin_channel(erin, funding, "OPEN").local_balance_sat == TO_ERIN_SAT,
             timeout=30, what="Erin's side of the channel to hold the payment")

    say.step(f"Alice makes a BOLT 11 invoice for {sat(TO_ALICE_SAT)}; Erin pays it")
    invoice = alice.call("invoice", amount_msat=TO_ALICE_SAT * 1000,
                         description="from Electrum")["invoice"]
    say.detail(f"invoice {invoice[:40]}…")
    payment = erin.lnpay(invoice, timeout=30)
    if not payment.success:
        raise RegtestError(f"Erin could not pay Alice: {payment.log}")
    say.detail(f"Electrum reports success, preimage {str(payment.preimage)[:16]}…")
    final = cluster.channel(alice, funding)
    say.detail(f"balances: Alice {sat(final['local_msat'] // 1000)} | Erin "
               f"{sat(final['remote_msat'] // 1000)}")

    say.step("Alice closes cooperatively: shutdown, then closing_signed with a fee_range")
    closed = alice.call("close", channel=opened["channel"])
    cluster.mine(1)
    raw = bytes.fromhex(str(miner.rpc.call("getrawtransaction", closed["closing_txid"])))
    tx = CTransaction.deserialize(raw)
    fee = CHANNEL_SAT - sum(o.nValue for o in tx.vout)
    expected = sorted([final["local_msat"] // 1000 - fee, final["remote_msat"] // 1000])
    on_chain = sorted(o.nValue for o in tx.vout)
    if on_chain != expected:
        raise RegtestError(f"closing outputs {on_chain} differ from the balances {expected}")
    say.detail(f"closing transaction {closed['closing_txid']} confirmed, fee {sat(fee)}: "
               "Electrum's regtest fees are high (150 sat/vB) and chanlab's range reaches them")
    say.detail(f"outputs on chain: {', '.join(sat(v) for v in on_chain)} — exactly the "
               "channel balances, Alice (the opener) paying the fee")
    _erin_channel(erin, funding, "CLOSED", "REDEEMED")
    say.detail("Erin's wallet sees the channel CLOSED: two implementations, one channel")
    say.snapshot()   # draw the closed channel while Alice's node still runs
