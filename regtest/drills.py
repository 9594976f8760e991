"""I/O: outage drills for ``chanlab demo``: who still gets their money when a node, its peer or
bitcoind goes away, and what broadcasting a revoked state costs the cheater.

Each drill runs two real node processes (Alice, who may cheat, and Bob) on the demo's bitcoind,
narrates every step, checks the on-chain outcome to the satoshi (``RegtestError`` otherwise) and
returns it as a :class:`DrillOutcome`. ``tests/integration/test_drills.py`` runs the same
functions and checks the chain again on its own.

    peer-down               Bob's node is down; Alice force-closes and gets her money with
                            nothing but bitcoind; Bob sweeps his share when he comes back
    breach-victim-returns   Alice broadcasts a revoked state while Bob is offline for fewer
                            blocks than to_self_delay; Bob returns and takes everything
    breach-too-late         Bob stays offline longer than to_self_delay: the cheat succeeds,
                            the honest limit of the security model
    bitcoind-restart-reorg  bitcoind restarts mid-channel; a breach's block is reorganised out
                            and back in after bitcoind lost its mempool; the penalty still lands

The building blocks (:func:`stage_channel`, :func:`breach`, :func:`settlement`, the waits) are
public: the breach matrix tests compose them, and so can variants in which a watchtower guards
the offline victim (replace "Bob comes back" by "Bob's tower acts").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import CBlock, CTransaction
from bitcoin.wallet import CBitcoinAddressError

from channel.gossip import ShortChannelId
from channel.types import OutPoint
from regtest.chain import address_of
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import DemoContext, Narrator, sat, scenario
from regtest.errors import RegtestError
from regtest.node import LocalBitcoind
from regtest.wait import wait_for
from regtest.wallet import Chain, Wallet

__all__ = [
    "ALICE_FUNDS_SAT",
    "CHANNEL_SAT",
    "PAYMENTS_SAT",
    "TO_SELF_DELAY",
    "DrillOutcome",
    "Leaf",
    "Settlement",
    "Staged",
    "breach",
    "breach_too_late",
    "breach_victim_returns",
    "mine_synced",
    "owned_by",
    "peer_down",
    "policy_known",
    "restart_reorg",
    "settlement",
    "stage_channel",
    "sync_nodes",
    "unspent_vouts",
    "wait_all_spent",
]

CHANNEL_SAT = 1_000_000
PAYMENTS_SAT = (300_000, 200_000)   # Alice pays Bob twice: states #2 and #4 hold no HTLC
TO_SELF_DELAY = 6                   # both sides; Alice's to_local waits Bob's
ALICE_FUNDS_SAT = 2_000_000
_BLOCK_PAUSE_S = 0.2                # lets nodes answer a block before the next one


def policy_known(payee: NodeProcess, forwarder: NodeProcess) -> bool:
    """``payee`` knows ``forwarder``'s policy under the real scid of their channel: its
    invoices' route hints carry the forwarder's fee."""
    forwarder_id = forwarder.node_id
    scids = [str(ShortChannelId.from_bytes(bytes.fromhex(c["short_channel_id"])))
             for c in payee.call("forwarding")["channels"]
             if c["peer_id"] == forwarder_id and c["short_channel_id"]]
    for channel in payee.call("graph-info")["channels"]:
        if channel["short_channel_id"] in scids:
            key = "policy_1" if channel["node_1"] == forwarder_id else "policy_2"
            return channel[key] is not None
    return False


# ---------------------------------------------------------------------------------------------
# Reading the chain: where the channel's money went


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    """An output downstream of the funding output that nothing has spent (yet)."""

    txid: str
    vout: int
    amount_sat: int
    script_pubkey: bytes
    height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """Every confirmed transaction downstream of a funding output, and the unspent ends.

    ``fee_sat`` maps txid -> fee; ``order`` lists those txids by height. A transaction with
    inputs from outside the tree (a fee input) would break "funding = leaves + fees": it is
    reported in ``foreign_inputs_sat``.
    """

    funding: OutPoint
    funding_sat: int
    order: tuple[str, ...]
    fee_sat: dict[str, int]
    leaves: tuple[Leaf, ...]
    foreign_inputs_sat: int

    @property
    def total_fees_sat(self) -> int:
        return sum(self.fee_sat.values())

    @property
    def closing_txid(self) -> str | None:
        """The transaction that spent the funding output."""
        return self.order[0] if self.order else None

    def leaves_of(self, wallet: Wallet) -> list[Leaf]:
        return [leaf for leaf in self.leaves if owned_by(wallet, leaf.script_pubkey)]

    def amount_to(self, wallet: Wallet) -> int:
        return sum(leaf.amount_sat for leaf in self.leaves_of(wallet))


def owned_by(wallet: Wallet, script_pubkey: bytes) -> bool:
    """Is ``script_pubkey`` an address of ``wallet`` (bitcoind's ``ismine``)?"""
    try:
        address = address_of(script_pubkey, "regtest")
    except CBitcoinAddressError:  # a script with no address form is nobody's wallet
        return False
    return bool(wallet.wallet_rpc.getaddressinfo(address).get("ismine"))


def _txid(tx: CTransaction) -> str:
    return bytes(tx.GetTxid())[::-1].hex()


def settlement(chain: Chain, funding: OutPoint, since_height: int) -> Settlement:
    """Follow ``funding`` through every confirmed spend from ``since_height`` to the tip."""
    spenders: dict[tuple[str, int], tuple[CTransaction, int]] = {}
    known: dict[str, CTransaction] = {}
    for height in range(since_height, chain.height() + 1):
        block = CBlock.deserialize(chain.get_block(chain.rpc.getblockhash(height)))
        for tx in block.vtx:
            known[_txid(tx)] = tx
            for txin in tx.vin:
                prev = (bytes(txin.prevout.hash)[::-1].hex(), int(txin.prevout.n))
                spenders[prev] = (tx, height)

    def value_of(txid: str, vout: int) -> int:
        tx = known.get(txid)
        if tx is None:
            tx = CTransaction.deserialize(chain.get_transaction(txid))
            known[txid] = tx
        return int(tx.vout[vout].nValue)

    funding_sat = value_of(funding.txid_hex, funding.vout)
    fees: dict[str, int] = {}
    heights: dict[str, int] = {}
    leaves: list[Leaf] = []
    foreign = 0
    frontier = [(funding.txid_hex, funding.vout)]
    in_tree = {(funding.txid_hex, funding.vout)}
    while frontier:
        outpoint = frontier.pop(0)
        spent = spenders.get(outpoint)
        if spent is None:
            if outpoint != (funding.txid_hex, funding.vout):
                tx = known[outpoint[0]]
                leaves.append(Leaf(txid=outpoint[0], vout=outpoint[1],
                                   amount_sat=int(tx.vout[outpoint[1]].nValue),
                                   script_pubkey=bytes(tx.vout[outpoint[1]].scriptPubKey),
                                   height=heights[outpoint[0]]))
            continue
        tx, height = spent
        txid = _txid(tx)
        if txid in fees:
            continue
        inputs = [(bytes(i.prevout.hash)[::-1].hex(), int(i.prevout.n)) for i in tx.vin]
        fees[txid] = sum(value_of(*i) for i in inputs) - sum(int(o.nValue) for o in tx.vout)
        foreign += sum(value_of(*i) for i in inputs if i not in in_tree)
        heights[txid] = height
        for vout in range(len(tx.vout)):
            in_tree.add((txid, vout))
            frontier.append((txid, vout))
    order = tuple(sorted(fees, key=lambda t: heights[t]))
    return Settlement(funding=funding, funding_sat=funding_sat, order=order, fee_sat=fees,
                      leaves=tuple(sorted(leaves, key=lambda leaf: (leaf.height, leaf.txid))),
                      foreign_inputs_sat=foreign)


def unspent_vouts(chain: Chain, txid: str) -> list[int]:
    """Outputs of ``txid`` that neither a block nor the mempool spends."""
    tx = CTransaction.deserialize(chain.get_transaction(txid))
    return [n for n in range(len(tx.vout))
            if chain.get_tx_out(OutPoint.from_txid_hex(txid, n)) is not None]


def wait_all_spent(chain: Chain, txid: str, *, what: str, timeout: float = 30.0) -> None:
    """Wait until every output of ``txid`` is spent, in a block or in the mempool."""
    wait_for(lambda: not unspent_vouts(chain, txid), timeout=timeout, what=what)


def _wait_height(node: NodeProcess, height: int) -> None:
    wait_for(lambda: int(node.call("info")["height"]) >= height, timeout=30,
             what=f"{node.name} to see block {height}")


def sync_nodes(cluster: Cluster) -> int:
    """Wait until every running node has seen the tip; returns the tip height."""
    tip = cluster.miner.height()
    for node in cluster.nodes.values():
        if node.running:
            _wait_height(node, tip)
    time.sleep(_BLOCK_PAUSE_S)
    return tip


def mine_synced(cluster: Cluster, n: int = 1) -> int:
    """Mine ``n`` blocks one by one; after each, wait until every running node has seen it."""
    for _ in range(n):
        cluster.mine(1)
        sync_nodes(cluster)
    return cluster.miner.height()


# ---------------------------------------------------------------------------------------------
# Staging a channel with history


@dataclass(frozen=True, slots=True, kw_only=True)
class Staged:
    """Alice's channel to Bob after ``PAYMENTS_SAT``: ``states`` maps each of Alice's settled
    commitment numbers (no HTLC) to (Alice's, Bob's) balance in msat at that state."""

    alice: NodeProcess
    bob: NodeProcess
    channel: str
    funding: OutPoint
    funding_height: int
    states: dict[int, tuple[int, int]]


def stage_channel(cluster: Cluster, say: Narrator, *, names: tuple[str, str] = ("alice", "bob"),
                  payments_sat: tuple[int, ...] = PAYMENTS_SAT,
                  to_self_delay: int = TO_SELF_DELAY, anchors: bool = False) -> Staged:
    """Start Alice (``--allow-cheating``) and Bob, open Alice's channel, make the payments."""
    say.step(f"Start Alice's and Bob's nodes (to_self_delay {to_self_delay} blocks each); Alice "
             "runs with --allow-cheating, so she keeps her old signed commitments")
    alice = cluster.start_node(names[0], funds_sat=ALICE_FUNDS_SAT, allow_cheating=True,
                               to_self_delay=to_self_delay)
    bob = cluster.start_node(names[1], to_self_delay=to_self_delay)
    opened = cluster.open_channel(alice, bob, CHANNEL_SAT, anchors=anchors)
    funding_txid = str(opened["funding_txid"])
    chan = cluster.channel(alice, funding_txid)
    txid_hex, vout = str(chan["funding_outpoint"]).split(":")
    funding = OutPoint.from_txid_hex(txid_hex, int(vout))
    funding_height = cluster.miner.height() - int(
        cluster.miner.confirmations(funding_txid)) + 1
    say.detail(f"channel {funding} of {sat(CHANNEL_SAT)} is open "
               f"({chan['commitment_format']})")
    states = {int(chan["holder_commitment_number"]): (int(chan["local_msat"]),
                                                     int(chan["remote_msat"]))}
    for amount in payments_sat:
        result = cluster.pay(alice, bob, amount * 1000)
        if result.get("status") != "succeeded":
            raise RegtestError(f"payment of {amount} sat failed: {result}")
        chan = cluster.channel(alice, funding_txid)
        states[int(chan["holder_commitment_number"])] = (int(chan["local_msat"]),
                                                         int(chan["remote_msat"]))
    for number, (local, remote) in states.items():
        say.detail(f"Alice's commitment #{number}: Alice {local // 1000:>9,} sat | Bob "
                   f"{remote // 1000:>9,} sat")
    say.detail("each newer state revoked the one before: Bob holds the per-commitment secret "
               "of every old one")
    return Staged(alice=alice, bob=bob, channel=str(opened["channel"]), funding=funding,
                  funding_height=funding_height, states=states)


def breach(staged: Staged, state: int, *, htlc_txs: bool = False) -> str:
    """Alice broadcasts her revoked commitment ``state``; returns its txid."""
    result = staged.alice.call("cheat", channel=staged.channel, state=state, htlc_txs=htlc_txs)
    return str(result["revoked_commitment_txid"])


def _try_sweep(staged: Staged, state: int) -> dict[str, Any]:
    """Alice tries to sweep the to_local of her revoked commitment ``state``."""
    result = staged.alice.call("cheat", channel=staged.channel, state=state, sweep=True)
    sweep: dict[str, Any] = result.get("to_local_sweep") or {}
    return sweep


# ---------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillOutcome:
    """What a drill ended with: the channel, how it closed, and what each wallet gained.

    ``wallet_delta_sat`` is per node, measured from just before the channel closed;
    ``balances_msat`` the channel balances (Alice's, Bob's) the close started from (the revoked
    state's for a breach); ``current_msat`` the latest state's.
    """

    funding: OutPoint
    funding_height: int
    closing_txid: str
    balances_msat: tuple[int, int]
    current_msat: tuple[int, int]
    wallet_delta_sat: dict[str, int]
    settlement: Settlement
    notes: tuple[str, ...] = field(default=())


def _wallets(*nodes: NodeProcess) -> dict[str, int]:
    return {node.name: node.wallet.balance_sat() for node in nodes}


def _show_events(say: Narrator, node: NodeProcess, since: int = 0) -> int:
    events = [str(e) for e in node.call("events")]
    for text in events[since:]:
        say.detail(f"{node.name}'s node: {text.split(': ', 1)[-1]}")
    return len(events)


def _show_settlement(say: Narrator, s: Settlement, staged: Staged) -> None:
    for txid in s.order:
        say.detail(f"tx {txid[:16]}… fee {s.fee_sat[txid]:,} sat")
    for leaf in s.leaves:
        owner = next((n.name for n in (staged.alice, staged.bob)
                      if owned_by(n.wallet, leaf.script_pubkey)), "someone else")
        say.detail(f"  -> {leaf.amount_sat:>9,} sat in {owner}'s wallet "
                   f"({leaf.txid[:16]}…:{leaf.vout}, height {leaf.height})")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RegtestError(message)


def _mine_until(cluster: Cluster, done: Callable[[], bool], *, max_blocks: int,
                what: str) -> int:
    """Mine block by block until ``done()``; returns how many blocks it took."""
    for mined in range(max_blocks + 1):
        if done():
            return mined
        if mined < max_blocks:
            mine_synced(cluster, 1)
    raise RegtestError(f"{what}: not done after {max_blocks} blocks")


# ---------------------------------------------------------------------------------------------
# The drills


def peer_down(cluster: Cluster, say: Narrator, *,
              names: tuple[str, str] = ("alice", "bob")) -> DrillOutcome:
    """Bob's node is down: Alice force-closes and gets her money with nothing but bitcoind."""
    staged = stage_channel(cluster, say, names=names)
    alice, bob = staged.alice, staged.bob
    current = max(staged.states)
    local_msat, remote_msat = staged.states[current]
    chain = cluster.miner
    before = _wallets(alice, bob)

    say.step("Bob's node goes down: no operator, no sequencer, nobody to ask")
    bob.stop()
    say.detail("Bob's process is stopped; Alice has only her node and bitcoind")

    say.step("Alice force-closes alone: she broadcasts her latest commitment, which Bob signed")
    forced = alice.call("force-close", channel=staged.channel)
    commitment = str(forced["commitment_txid"])
    height = mine_synced(cluster, 1)
    ctx = CTransaction.deserialize(chain.get_transaction(commitment))
    fee = CHANNEL_SAT - sum(int(o.nValue) for o in ctx.vout)
    say.detail(f"commitment #{current} {commitment[:16]}… confirmed at height {height}; fee "
               f"{fee:,} sat, paid by Alice as the opener")
    say.detail(f"Alice's to_local ({local_msat // 1000 - fee:,} sat) is locked for "
               f"{TO_SELF_DELAY} blocks (Bob's to_self_delay): the window in which Bob could "
               "punish her had she broadcast an old state")

    say.step("Alice waits out to_self_delay; her node sweeps to_local as soon as bitcoind allows")
    blocks = _mine_until(cluster, lambda: settlement(chain, staged.funding, height)
                         .amount_to(alice.wallet) > 0, max_blocks=TO_SELF_DELAY + 3,
                         what="Alice's to_local sweep")
    _show_events(say, alice)
    say.detail(f"{blocks} blocks after the commitment: to_local is in Alice's wallet")

    say.step("Bob's node comes back: it finds the commitment on chain and sweeps his to_remote")
    bob.start()
    _mine_until(cluster, lambda: settlement(chain, staged.funding, height)
                .amount_to(bob.wallet) > 0, max_blocks=3, what="Bob's to_remote sweep")
    _show_events(say, bob)

    say.step("Check the outcome on chain, to the satoshi")
    s = settlement(chain, staged.funding, height)
    _show_settlement(say, s, staged)
    delta = {name: sat_now - before[name] for name, sat_now in _wallets(alice, bob).items()}
    alice_fees = sum(s.fee_sat[leaf.txid] for leaf in s.leaves_of(alice.wallet))
    bob_fees = sum(s.fee_sat[leaf.txid] for leaf in s.leaves_of(bob.wallet))
    expected = {alice.name: local_msat // 1000 - fee - alice_fees,
                bob.name: remote_msat // 1000 - bob_fees}
    _check(delta == expected, f"wallet changes {delta} differ from the channel balances minus "
                              f"fees {expected}")
    _check(sum(delta.values()) == CHANNEL_SAT - s.total_fees_sat,
           "some of the channel's money went elsewhere")
    for node in (alice, bob):
        say.detail(f"{node.name:<5} gained {delta[node.name]:,} sat = its channel balance minus "
                   "the fees of the transactions that paid it")
    return DrillOutcome(funding=staged.funding, funding_height=staged.funding_height,
                        closing_txid=commitment, balances_msat=(local_msat, remote_msat),
                        current_msat=(local_msat, remote_msat), wallet_delta_sat=delta,
                        settlement=s)


def _stage_breach(cluster: Cluster, say: Narrator, names: tuple[str, str],
                  ) -> tuple[Staged, int, str, int, dict[str, int]]:
    """Stage, take Bob offline, let Alice broadcast her revoked state #2 and confirm it.
    Returns (staged, revoked state, breach txid, its height, wallets before)."""
    staged = stage_channel(cluster, say, names=names)
    alice, bob = staged.alice, staged.bob
    current = max(staged.states)
    state = sorted(staged.states)[-2]
    old_local, old_remote = staged.states[state]
    now_local, _ = staged.states[current]
    before = _wallets(alice, bob)

    say.step("Bob's node goes offline")
    bob.stop()

    say.step(f"Alice cheats: she broadcasts her REVOKED commitment #{state}, in which she still "
             f"had {old_local // 1000:,} sat instead of {now_local // 1000:,}")
    txid = breach(staged, state)
    height = mine_synced(cluster, 1)
    say.detail(f"revoked commitment {txid[:16]}… confirmed at height {height}; Bob's "
               f"to_remote there is {old_remote // 1000:,} sat")
    say.detail(f"its to_local can be spent two ways: by Alice after {TO_SELF_DELAY} blocks, or "
               "at once by whoever holds the revocation key — and only Bob can compute that "
               "key, from the per-commitment secret Alice gave him when she revoked the state")
    return staged, state, txid, height, before


def breach_victim_returns(cluster: Cluster, say: Narrator, *,
                          names: tuple[str, str] = ("alice", "bob")) -> DrillOutcome:
    """Alice breaches while Bob is offline for fewer than to_self_delay blocks; Bob punishes."""
    staged, state, txid, height, before = _stage_breach(cluster, say, names)
    alice, bob = staged.alice, staged.bob
    chain = cluster.miner
    offline = TO_SELF_DELAY - 2

    say.step(f"Bob stays offline for {offline} blocks; Alice tries to sweep her to_local each "
             "block")
    for _ in range(offline - 1):
        attempt = _try_sweep(staged, state)
        _check(not attempt.get("accepted"), "Alice swept her to_local before to_self_delay")
        reason = str(attempt.get("error", "")).split("(")[0].strip()
        if "non-BIP68-final" in reason:
            reason += " (its to_self_delay, a CSV lock, has not passed)"
        say.detail(f"at height {chain.height()} bitcoind refuses Alice's sweep: {reason}")
        mine_synced(cluster, 1)

    say.step(f"Bob's node comes back {chain.height() - height + 1} blocks after the breach "
             f"confirmed, before its {TO_SELF_DELAY}-block delay ran out")
    bob.start()
    wait_all_spent(chain, txid, what="Bob's penalty and sweep to reach the mempool")
    mine_synced(cluster, 1)
    _show_events(say, bob)
    attempt = _try_sweep(staged, state)
    _check(not attempt.get("accepted"), "Alice swept a to_local Bob's penalty had taken")
    say.detail("Alice's sweep is now impossible: its input is spent by Bob's penalty")

    say.step("Check the outcome on chain, to the satoshi")
    s = settlement(chain, staged.funding, height)
    _show_settlement(say, s, staged)
    delta = {name: sat_now - before[name] for name, sat_now in _wallets(alice, bob).items()}
    _check(delta[alice.name] == 0, f"Alice's wallet changed by {delta[alice.name]} sat")
    _check(delta[bob.name] == CHANNEL_SAT - s.total_fees_sat == s.amount_to(bob.wallet),
           f"Bob got {delta[bob.name]} sat, not the channel minus fees "
           f"({CHANNEL_SAT - s.total_fees_sat})")
    current = staged.states[max(staged.states)]
    say.detail(f"Bob gained {delta[bob.name]:,} sat: the whole {sat(CHANNEL_SAT)} channel minus "
               f"{s.total_fees_sat:,} sat of fees; his honest balance was "
               f"{current[1] // 1000:,} sat. Alice lost everything she had in the channel.")
    return DrillOutcome(funding=staged.funding, funding_height=staged.funding_height,
                        closing_txid=txid, balances_msat=staged.states[state],
                        current_msat=current, wallet_delta_sat=delta, settlement=s)


def breach_too_late(cluster: Cluster, say: Narrator, *,
                    names: tuple[str, str] = ("alice", "bob")) -> DrillOutcome:
    """Bob (and any tower of his) stays offline past to_self_delay: the cheat succeeds."""
    staged, state, txid, height, before = _stage_breach(cluster, say, names)
    alice, bob = staged.alice, staged.bob
    chain = cluster.miner
    old_local, old_remote = staged.states[state]
    current = staged.states[max(staged.states)]

    say.step("Bob stays offline, and nobody watches for him; Alice tries to sweep each block")
    swept: dict[str, Any] = {}

    def alice_swept() -> bool:
        swept.update(_try_sweep(staged, state))
        return bool(swept.get("accepted"))

    _mine_until(cluster, alice_swept, max_blocks=TO_SELF_DELAY + 2, what="Alice's sweep")
    say.detail(f"at height {chain.height()}, {TO_SELF_DELAY} blocks after the breach confirmed "
               f"(counting its block), bitcoind accepts Alice's sweep {str(swept['txid'])[:16]}…")
    mine_synced(cluster, 1)
    say.detail("her sweep is confirmed: the revoked to_local is hers for good")

    say.step("Bob's node comes back, too late")
    bob.start()
    _mine_until(cluster, lambda: settlement(chain, staged.funding, height)
                .amount_to(bob.wallet) > 0, max_blocks=3, what="Bob's to_remote sweep")
    _show_events(say, bob)

    say.step("The outcome on chain: the cheat paid")
    s = settlement(chain, staged.funding, height)
    _show_settlement(say, s, staged)
    delta = {name: sat_now - before[name] for name, sat_now in _wallets(alice, bob).items()}
    breach_fee = s.fee_sat[txid]
    expected = {
        alice.name: old_local // 1000 - breach_fee - sum(
            s.fee_sat[leaf.txid] for leaf in s.leaves_of(alice.wallet)),
        bob.name: old_remote // 1000 - sum(
            s.fee_sat[leaf.txid] for leaf in s.leaves_of(bob.wallet)),
    }
    _check(delta == expected, f"wallet changes {delta} differ from the revoked state {expected}")
    stolen = current[1] // 1000 - old_remote // 1000
    say.detail(f"Alice got {delta[alice.name]:,} sat, Bob {delta[bob.name]:,} sat: Bob lost the "
               f"{stolen:,} sat Alice had paid him since state #{state}")
    say.detail("this is the honest limit of the model: the revocation key works only within "
               f"to_self_delay ({TO_SELF_DELAY} blocks here; days on a real chain). Someone "
               "must watch the chain for Bob within that window: his node, or a watchtower")
    return DrillOutcome(funding=staged.funding, funding_height=staged.funding_height,
                        closing_txid=txid, balances_msat=(old_local, old_remote),
                        current_msat=current, wallet_delta_sat=delta, settlement=s,
                        notes=(f"stolen {stolen} sat",))


def _restart_bitcoind(cluster: Cluster, *, keep_mempool: bool = True) -> None:
    node = cluster.bitcoind
    if isinstance(node, LocalBitcoind) and not keep_mempool:
        node.restart(extra_args=["-persistmempool=0"])
    else:
        node.restart()
    cluster.miner = Wallet.open(node.rpc, cluster.miner.name)


def restart_reorg(cluster: Cluster, say: Narrator, *,
                  names: tuple[str, str] = ("alice", "bob")) -> DrillOutcome:
    """bitcoind restarts mid-channel; a breach's block is reorganised out and back in."""
    staged = stage_channel(cluster, say, names=names)
    alice, bob = staged.alice, staged.bob
    state = sorted(staged.states)[-2]

    say.step("bitcoind restarts while the channel is open")
    _restart_bitcoind(cluster)
    tip = mine_synced(cluster, 1)
    say.detail(f"bitcoind is back; both nodes reconnected by themselves and saw block {tip}")
    extra = cluster.pay(alice, bob, 50_000_000)
    _check(extra.get("status") == "succeeded", f"payment after the restart failed: {extra}")
    current = cluster.channel(alice, staged.funding.txid_hex)
    say.detail(f"a payment of 50,000 sat still goes through (Alice at commitment "
               f"#{current['holder_commitment_number']})")
    chain = cluster.miner
    before = _wallets(alice, bob)

    say.step(f"Alice broadcasts her revoked commitment #{state} while Bob's node is online")
    seen = len(bob.call("events"))
    txid = breach(staged, state)
    wait_all_spent(chain, txid, what="Bob's penalty to reach the mempool")
    seen = _show_events(say, bob, seen)
    say.detail("Bob's node saw the breach in the mempool and broadcast its penalty at once")
    address = chain.new_address()
    block = chain.rpc.generateblock(address, [txid])
    height = sync_nodes(cluster)
    say.detail(f"block {height} ({block[:16]}…) carries the breach, and only the breach: the "
               "penalty waits in the mempool")

    say.step(f"A reorg takes block {height} out of the chain")
    chain.rpc.invalidateblock(block)
    say.detail(f"tip back at height {chain.height()}; the breach and the penalty are unconfirmed "
               "again")
    _restart_bitcoind(cluster, keep_mempool=False)
    chain = cluster.miner
    lost = txid not in chain.rpc.getrawmempool()
    say.detail("bitcoind restarts again and forgets its mempool: only Bob's node still has the "
               "penalty" if lost else "bitcoind restarts again (this backend kept its mempool)")

    say.step(f"Block {height} comes back (reconsiderblock): the breach is confirmed again")
    chain.rpc.reconsiderblock(block)
    _check(chain.rpc.getblockhash(height) == block, "the block did not come back")
    wait_all_spent(chain, txid, what="Bob's node to broadcast its penalty again")
    mine_synced(cluster, 1)
    _show_events(say, bob, seen)
    say.detail("Bob's node noticed bitcoind's return and the block's, re-checked the breach, "
               "and sent its penalty again; it is confirmed")

    say.step("Check the outcome on chain, to the satoshi")
    s = settlement(chain, staged.funding, height)
    _show_settlement(say, s, staged)
    delta = {name: sat_now - before[name] for name, sat_now in _wallets(alice, bob).items()}
    _check(delta[alice.name] == 0, f"Alice's wallet changed by {delta[alice.name]} sat")
    _check(delta[bob.name] == CHANNEL_SAT - s.total_fees_sat == s.amount_to(bob.wallet),
           f"Bob got {delta[bob.name]} sat, not the channel minus fees")
    say.detail(f"the penalty landed: Bob gained {delta[bob.name]:,} sat, the whole channel minus "
               f"{s.total_fees_sat:,} sat of fees")
    return DrillOutcome(funding=staged.funding, funding_height=staged.funding_height,
                        closing_txid=txid, balances_msat=staged.states[state],
                        current_msat=(int(current["local_msat"]), int(current["remote_msat"])),
                        wallet_delta_sat=delta, settlement=s)


# ---------------------------------------------------------------------------------------------
# Demo registration


@contextmanager
def _cluster(ctx: DemoContext) -> Iterator[Cluster]:
    with ctx.scratch_folder("chanlab-drill-") as home, \
            Cluster.running(ctx.node, home, ctx.miner, ctx.seed) as cluster:
        ctx.say.watch(cluster)
        try:
            yield cluster
        finally:
            ctx.say.snapshot()
            cluster.stop_all()


def _register(name: str, summary: str,
              drill: Callable[[Cluster, Narrator], DrillOutcome]) -> None:
    """Each drill is also a ``chanlab demo`` scenario, run on a cluster of its own."""

    def run(ctx: DemoContext) -> None:
        with _cluster(ctx) as cluster:
            drill(cluster, ctx.say)

    scenario(name, summary)(run)


_register("peer-down", "Bob's node is down: Alice force-closes and gets her money with nothing "
                       "but bitcoind; Bob sweeps his share when he returns", peer_down)
_register("breach-victim-returns", "Alice broadcasts a revoked state while Bob is offline for "
                                   "fewer blocks than to_self_delay; Bob returns and punishes",
          breach_victim_returns)
_register("breach-too-late", "Bob (and any tower) offline longer than to_self_delay: the cheat "
                             "succeeds, the honest limit of the security model", breach_too_late)
_register("bitcoind-restart-reorg", "bitcoind restarts mid-channel; a breach's block is "
                                    "reorganised out and back in; the penalty still lands",
          restart_reorg)
