"""A forward whose outgoing channel goes to chain, on real nodes and bitcoind (BOLT 2 + 5).

Alice -> Bob -> Carol as three ``chanlab node start`` processes (the line of
test_forwarding_nodes.py: Bob forwards at 2000 msat + 100 ppm with a cltv_expiry_delta of 40).
Carol holds Alice's payment with a hold invoice, then:

* Bob (or Carol) force-closes Bob-Carol and Carol settles: she claims the HTLC output with the
  preimage (directly on Bob's commitment, by HTLC-success on hers), Bob reads it from her
  witness and fulfils Alice off chain;
* Carol goes silent: one block after the HTLC's cltv_expiry Bob goes on chain, his HTLC-timeout
  confirms with his commitment, and once it is 6 blocks deep he fails Alice's HTLC off chain,
  long before it expires; the Alice-Bob channel stays open;
* Alice force-closes Alice-Bob first, then Carol settles off chain: Bob claims Alice's HTLC
  output on her commitment with the preimage, and Alice reads her payment's success there;
* Alice goes away, then Carol settles off chain: 7 blocks before Alice's HTLC expires Bob goes
  on chain and claims it with his HTLC-success; Alice, back, reads her payment's success there.

Every amount is exact: msat off chain, sat on chain with each transaction's fee read from it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from onchain import tx_of, witness
from test_forwarding_nodes import (
    CLTV_DELTA,
    FEE_BASE_MSAT,
    FEE_PPM,
    FUNDING_SAT,
    Line,
    _fee_msat,
    _line,
    _start,
)

from channel.errors import ChanlabError
from channel.monitor import ANTI_REORG_DELAY
from channel.types import OutPoint
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import Settlement, mine_synced, owned_by, settlement, sync_nodes

WaitFor = Callable[..., object]

AMOUNT_MSAT = 50_000_000                  # whole sats: the HTLC output is exactly 50,000 sat
HTLC_TIMEOUT_FEE_SAT = 1000 * 663 // 1000  # BOLT 3 at the commitment's 1000 sat/kw
ANCHOR_SAT = 330                           # BOLT 3 anchor outputs


def _payment_status(node: NodeProcess, payment_hash: str) -> str:
    for row in node.call("payments"):
        if row["payment_hash"] == payment_hash and row["direction"] == "sent":
            return str(row["status"])
    return "unknown"


def _mempool_spender(cluster: Cluster, txid: str, vout: int) -> str | None:
    [answer] = cluster.bitcoind.rpc.call("gettxspendingprevout", [{"txid": txid, "vout": vout}])
    spender = answer.get("spendingtxid")
    return None if spender is None else str(spender)


def _claimed_by_mining(cluster: Cluster, wait_for: WaitFor, txid: str, vout: int,
                       what: str) -> str:
    """Mine a block at a time until ``txid:vout`` is spent (a claim goes out at its maker's
    next chain event); the claim's txid, as seen in the mempool before it confirmed."""
    claims: list[str] = []

    def claimed() -> bool:
        mine_synced(cluster, 1)
        claims[:] = [t for t in [_mempool_spender(cluster, txid, vout)] if t]
        return cluster.miner.get_tx_out(OutPoint.from_txid_hex(txid, vout)) is None

    wait_for(claimed, timeout=30, what=what)
    [claim_txid] = claims
    return claim_txid


def _funding(cluster: Cluster, node: NodeProcess, funding_txid: str) -> OutPoint:
    txid, vout = str(cluster.channel(node, funding_txid)["funding_outpoint"]).split(":")
    return OutPoint.from_txid_hex(txid, int(vout))


def _held(line: Line, wait_for: WaitFor) -> dict[str, Any]:
    """Alice pays Carol's hold invoice; returns it once the HTLC is on both channels."""
    hold: dict[str, Any] = line.carol.call("invoice", amount_msat=AMOUNT_MSAT, hold=True)
    sent = line.alice.call("pay", invoice=hold["invoice"], wait=False)
    assert sent["status"] == "pending", f"Alice's payment did not go out: {sent}"
    cluster = line.cluster

    def in_flight() -> bool:
        [row] = [p for p in line.alice.call("payments")
                 if p["payment_hash"] == hold["payment_hash"]]
        assert row["status"] == "pending", f"Alice's payment ended early: {row}"
        return all(int(cluster.channel(n, t)["htlcs"]) == 1 for n, t in (
            (line.alice, line.ab), (line.bob, line.ab), (line.bob, line.bc),
            (line.carol, line.bc)))

    wait_for(in_flight, timeout=20, what="the HTLC to be on both channels")
    return hold


def _expiry(node: NodeProcess, channel: str, payment_hash: str) -> int:
    """The cltv_expiry of the HTLC paying ``payment_hash`` on ``node``'s ``channel``."""
    for commitment in node.call("channel", channel=channel)["commitments"]:
        for _, _, htlc_hash, cltv_expiry, _ in commitment["htlcs"]:
            if htlc_hash == payment_hash:
                return int(cltv_expiry)
    raise AssertionError(f"no HTLC paying {payment_hash} on {channel}")


def _settled_on_chain(cluster: Cluster, funding: OutPoint, since: int,
                      owners: list[NodeProcess], anchors: int = 0) -> Settlement:
    """Mine block by block until every unspent end of the channel pays one of ``owners``'
    wallets (the sweeps waited for their to_self_delay), but ``anchors`` anchor outputs
    (330 sat, anyone's after 16 blocks); the settlement then."""
    for _ in range(30):   # to_self_delay 10, twice at most (an HTLC tx's output), and slack
        mine_synced(cluster, 1)
        s = settlement(cluster.miner, funding, since)
        others = [leaf for leaf in s.leaves
                  if not any(owned_by(n.wallet, leaf.script_pubkey) for n in owners)]
        if len(others) == anchors and all(leaf.amount_sat == ANCHOR_SAT for leaf in others):
            return s
        time.sleep(0.1)   # the sweeps a block allows reach the mempool
    raise AssertionError(f"outputs of {funding} still unswept after 30 blocks: {s.leaves}")


@pytest.mark.parametrize("closer", ["bob", "carol"])
def test_a_preimage_carol_reveals_on_chain_fulfils_alice_off_chain(
        cluster: Cluster, wait_for: WaitFor, closer: str) -> None:
    """Bob-Carol goes to chain while Carol holds (``closer`` force-closes); Carol settles and
    claims the 50,000 sat HTLC output with the preimage: directly on Bob's commitment
    (<sig> <preimage> <script>), or by her HTLC-success on her own; Bob reads the preimage in
    that witness and fulfils Alice off chain: Alice's payment succeeds, and Bob gains exactly
    his 7000 msat fee minus the fees of the commitment (he opened) and of his sweep."""
    line = _line(cluster)
    chain = cluster.miner
    fee_msat = _fee_msat(AMOUNT_MSAT)
    bob_bc_msat = line.local_msat(line.bob, line.bc)
    bob_ab_msat = line.local_msat(line.bob, line.ab)
    hold = _held(line, wait_for)
    funding = _funding(cluster, line.bob, line.bc)
    since = chain.height()
    closing = line.bob if closer == "bob" else line.carol
    other = line.carol if closer == "bob" else line.bob
    key = str(cluster.channel(closing, line.bc)["channel"])
    commitment_txid = str(closing.call("force-close", channel=key)["commitment_txid"])
    mine_synced(cluster, 1)
    wait_for(lambda: cluster.channel_state(other, line.bc) == "force_closing",
             timeout=20, what=f"{other.name} to see the commitment")
    commitment = tx_of(chain, commitment_txid)
    [htlc_vout] = [v for v, o in enumerate(commitment.vout) if o.nValue == AMOUNT_MSAT // 1000]
    assert _payment_status(line.alice, hold["payment_hash"]) == "pending"

    line.carol.call("settle", payment_hash=hold["payment_hash"])
    claim_txid = _claimed_by_mining(cluster, wait_for, commitment_txid, htlc_vout,
                                    "Carol's claim of the HTLC output with the preimage")
    mine_synced(cluster, 1)
    claim = tx_of(chain, claim_txid)
    assert [(bytes(i.prevout.hash)[::-1].hex(), i.prevout.n) for i in claim.vin] == \
        [(commitment_txid, htlc_vout)]
    # BOLT 3: <sig> <preimage> <script> on Bob's commitment; HTLC-success on Carol's:
    # <> <bob_sig> <carol_sig> <preimage> <script>
    preimage = witness(claim, 0)[1 if closer == "bob" else 3]
    assert hashlib.sha256(preimage).hexdigest() == hold["payment_hash"]
    wait_for(lambda: _payment_status(line.alice, hold["payment_hash"]) == "succeeded",
             timeout=30, what="Alice's payment to succeed")
    ab = (line.alice, line.ab), (line.bob, line.ab)

    def ab_settled() -> bool:
        a, b = (cluster.channel(n, t) for n, t in ab)
        return a["htlcs"] == b["htlcs"] == 0 and a["local_msat"] == b["remote_msat"]

    wait_for(ab_settled, timeout=20, what="Alice-Bob to settle")
    assert line.local_msat(line.bob, line.ab) - bob_ab_msat == AMOUNT_MSAT + fee_msat
    assert cluster.channel_state(line.bob, line.ab) == "normal"
    assert line.bob.call("forwarding")["in_flight"] == []

    s = _settled_on_chain(cluster, funding, since, [line.bob, line.carol])
    assert s.closing_txid == commitment_txid and s.foreign_inputs_sat == 0
    [bob_sweep] = [leaf.txid for leaf in s.leaves_of(line.bob.wallet)]
    carols = [t for t in s.order if t not in (commitment_txid, bob_sweep)]
    assert claim_txid in carols and len(carols) == (1 if closer == "bob" else 2)
    assert s.amount_to(line.carol.wallet) == \
        AMOUNT_MSAT // 1000 - sum(s.fee_sat[t] for t in carols)
    commitment_fee, sweep_fee = s.fee_sat[commitment_txid], s.fee_sat[bob_sweep]
    bob_on_chain_sat = s.amount_to(line.bob.wallet)
    assert bob_on_chain_sat == (bob_bc_msat - AMOUNT_MSAT) // 1000 - commitment_fee - sweep_fee
    bob_gain_msat = line.local_msat(line.bob, line.ab) - bob_ab_msat + \
        bob_on_chain_sat * 1000 - bob_bc_msat
    assert bob_gain_msat == fee_msat - (commitment_fee + sweep_fee) * 1000


def _relink(line: Line) -> bool:
    """Bob, restarted, is connected to Alice again (Alice dials him if he has not yet)."""
    if line.alice.node_id not in line.bob.call("info")["peers"]:
        try:
            line.alice.call("connect", peer=line.bob.address)
        except ChanlabError:
            pass
        return False
    return True


@pytest.mark.parametrize("bob_killed", [False, True], ids=["bob-up", "bob-killed"])
def test_carol_silent_bob_times_the_htlc_out_on_chain_and_fails_alice_off_chain(
        cluster: Cluster, wait_for: WaitFor, bob_killed: bool) -> None:
    """Carol holds and goes silent (stopped). Bob waits until cltv_expiry + 1, then broadcasts
    his commitment and his HTLC-timeout (nLockTime = cltv_expiry) of the named HTLC output;
    once it is 6 blocks deep, and not before, he fails Alice's HTLC off chain, 33 blocks before
    it expires: Alice's payment fails, Alice-Bob is normal with its balances of before, and Bob's
    wallet gets his whole side of Bob-Carol back less exactly the on-chain fees. The same when
    Bob is killed (SIGKILL) once both confirmed and restarted 4 blocks later."""
    line = _line(cluster)
    chain = cluster.miner
    alice_msat = line.local_msat(line.alice, line.ab)
    bob_ab_msat = line.local_msat(line.bob, line.ab)
    bob_bc_msat = line.local_msat(line.bob, line.bc)
    hold = _held(line, wait_for)
    funding = _funding(cluster, line.bob, line.bc)
    bc_key = str(cluster.channel(line.bob, line.bc)["channel"])
    ab_key = str(cluster.channel(line.bob, line.ab)["channel"])
    expiry = _expiry(line.bob, bc_key, hold["payment_hash"])
    incoming_expiry = _expiry(line.bob, ab_key, hold["payment_hash"])
    assert incoming_expiry == expiry + CLTV_DELTA
    line.carol.stop()
    since = chain.height()

    cluster.mine(expiry - chain.height())           # in bulk: at cltv_expiry Carol may still
    sync_nodes(cluster)                             # fulfil, nothing happens before
    assert chain.get_tx_out(funding) is not None
    mine_synced(cluster, 1)                         # expiry + 1: Bob's BOLT 2 deadline
    wait_for(lambda: _mempool_spender(cluster, funding.txid_hex, funding.vout) is not None,
             timeout=20, what="Bob's commitment in the mempool")
    commitment_txid = _mempool_spender(cluster, funding.txid_hex, funding.vout)
    assert commitment_txid is not None
    commitment = tx_of(chain, commitment_txid)
    [htlc_vout] = [v for v, o in enumerate(commitment.vout) if o.nValue == AMOUNT_MSAT // 1000]
    wait_for(lambda: _mempool_spender(cluster, commitment_txid, htlc_vout) is not None,
             timeout=20, what="Bob's HTLC-timeout in the mempool")
    timeout_txid = _mempool_spender(cluster, commitment_txid, htlc_vout)
    assert timeout_txid is not None
    assert tx_of(chain, timeout_txid).nLockTime == expiry
    mine_synced(cluster, 1)                         # both confirm at expiry + 2
    assert chain.confirmations(commitment_txid) == chain.confirmations(timeout_txid) == 1

    if bob_killed:
        line.bob.kill()
    mine_synced(cluster, ANTI_REORG_DELAY - 2)      # 5 deep: Bob waits
    if bob_killed:
        line.bob.start()
        wait_for(lambda: _relink(line), timeout=30, what="Bob back with Alice")
        sync_nodes(cluster)   # Bob replayed the blocks he missed
    assert _payment_status(line.alice, hold["payment_hash"]) == "pending"
    mine_synced(cluster, 1)                         # 6 deep: final, fail Alice's HTLC
    wait_for(lambda: _payment_status(line.alice, hold["payment_hash"]) == "failed",
             timeout=30, what="Alice's payment to fail back")
    assert chain.height() == expiry + 1 + ANTI_REORG_DELAY == incoming_expiry - 33

    def ab_back() -> bool:
        a, b = cluster.channel(line.alice, line.ab), cluster.channel(line.bob, line.ab)
        return a["htlcs"] == b["htlcs"] == 0 and a["local_msat"] == alice_msat and \
            b["local_msat"] == bob_ab_msat and a["state"] == b["state"] == "normal"

    wait_for(ab_back, timeout=20, what="Alice-Bob back to its balances, without the HTLC")
    assert line.bob.call("forwarding")["in_flight"] == []

    s = _settled_on_chain(cluster, funding, since, [line.bob])
    assert s.closing_txid == commitment_txid and s.foreign_inputs_sat == 0
    assert s.fee_sat[timeout_txid] == HTLC_TIMEOUT_FEE_SAT
    assert len(s.order) == 4   # commitment, HTLC-timeout, to_local sweep, its output's sweep
    assert s.amount_to(line.bob.wallet) == bob_bc_msat // 1000 - s.total_fees_sat


def test_a_preimage_bob_learns_after_alice_went_on_chain_is_claimed_on_chain(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """Alice force-closes Alice-Bob while Carol holds; Carol then settles off chain: Bob pays
    her 50,000,000 msat off chain and claims Alice's offered 50,007 sat HTLC output on her
    commitment with the preimage; Alice reads it there and her payment succeeds. Bob gains
    exactly his 7000 msat fee minus his claim's fee; Alice's wallet gets her side less fees."""
    line = _line(cluster)
    chain = cluster.miner
    fee_msat = _fee_msat(AMOUNT_MSAT)
    alice_msat = line.local_msat(line.alice, line.ab)
    bob_ab_msat = line.local_msat(line.bob, line.ab)
    bob_bc_msat = line.local_msat(line.bob, line.bc)
    hold = _held(line, wait_for)
    funding = _funding(cluster, line.alice, line.ab)
    since = chain.height()
    ab_key = str(cluster.channel(line.alice, line.ab)["channel"])
    commitment_txid = str(line.alice.call("force-close", channel=ab_key)["commitment_txid"])
    mine_synced(cluster, 1)
    wait_for(lambda: cluster.channel_state(line.bob, line.ab) == "force_closing",
             timeout=20, what="Bob to see Alice's commitment")
    commitment = tx_of(chain, commitment_txid)
    htlc_sat = (AMOUNT_MSAT + fee_msat) // 1000
    [htlc_vout] = [v for v, o in enumerate(commitment.vout) if o.nValue == htlc_sat]

    line.carol.call("settle", payment_hash=hold["payment_hash"])

    def bc_settled() -> bool:
        b, c = cluster.channel(line.bob, line.bc), cluster.channel(line.carol, line.bc)
        return b["htlcs"] == c["htlcs"] == 0 and c["local_msat"] == AMOUNT_MSAT and \
            b["local_msat"] == bob_bc_msat - AMOUNT_MSAT

    wait_for(bc_settled, timeout=20, what="Carol to be paid off chain")
    claim_txid = _claimed_by_mining(cluster, wait_for, commitment_txid, htlc_vout,
                                    "Bob's preimage claim of Alice's HTLC output")
    mine_synced(cluster, 1)
    preimage = witness(tx_of(chain, claim_txid), 0)[1]
    assert hashlib.sha256(preimage).hexdigest() == hold["payment_hash"]
    wait_for(lambda: _payment_status(line.alice, hold["payment_hash"]) == "succeeded",
             timeout=30, what="Alice to read her payment's preimage on chain")
    assert line.bob.call("forwarding")["in_flight"] == []

    s = _settled_on_chain(cluster, funding, since, [line.alice, line.bob])
    assert s.closing_txid == commitment_txid and s.foreign_inputs_sat == 0
    [sweep_txid] = [t for t in s.order if t not in (commitment_txid, claim_txid)]
    bob_on_chain_sat = s.amount_to(line.bob.wallet)
    assert bob_ab_msat == 0 and bob_on_chain_sat == htlc_sat - s.fee_sat[claim_txid]
    assert s.amount_to(line.alice.wallet) == (alice_msat - AMOUNT_MSAT - fee_msat) // 1000 - \
        s.fee_sat[commitment_txid] - s.fee_sat[sweep_txid]
    bob_gain_msat = bob_on_chain_sat * 1000 + line.local_msat(line.bob, line.bc) - bob_bc_msat
    assert bob_gain_msat == fee_msat - s.fee_sat[claim_txid] * 1000


def test_alice_away_bob_claims_her_htlc_on_chain_before_it_expires(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """Alice goes away (stopped) while Carol holds; Carol settles and Bob pays her off chain.
    Bob cannot fulfil Alice's HTLC off chain, so 7 blocks before it expires he broadcasts his
    Alice-Bob commitment and his HTLC-success of the named output; Alice, back, reads her
    payment's preimage on chain. Bob gains exactly his fee less his two transactions' fees."""
    line = _line(cluster)
    chain = cluster.miner
    fee_msat = _fee_msat(AMOUNT_MSAT)
    alice_msat = line.local_msat(line.alice, line.ab)
    bob_bc_msat = line.local_msat(line.bob, line.bc)
    hold = _held(line, wait_for)
    funding = _funding(cluster, line.bob, line.ab)
    ab_key = str(cluster.channel(line.bob, line.ab)["channel"])
    incoming_expiry = _expiry(line.bob, ab_key, hold["payment_hash"])
    line.alice.stop()
    since = chain.height()
    line.carol.call("settle", payment_hash=hold["payment_hash"])
    wait_for(lambda: line.local_msat(line.bob, line.bc) == bob_bc_msat - AMOUNT_MSAT and
             line.local_msat(line.carol, line.bc) == AMOUNT_MSAT, timeout=20,
             what="Carol to be paid off chain")

    cluster.mine(incoming_expiry - 8 - chain.height())   # in bulk: nothing happens before
    sync_nodes(cluster)
    assert chain.get_tx_out(funding) is not None
    mine_synced(cluster, 1)      # cltv_expiry - 7: Bob's BOLT 2 fulfilled-HTLC deadline
    wait_for(lambda: _mempool_spender(cluster, funding.txid_hex, funding.vout) is not None,
             timeout=20, what="Bob's commitment in the mempool")
    commitment_txid = _mempool_spender(cluster, funding.txid_hex, funding.vout)
    assert commitment_txid is not None
    htlc_sat = (AMOUNT_MSAT + fee_msat) // 1000
    [htlc_vout] = [v for v, o in enumerate(tx_of(chain, commitment_txid).vout)
                   if o.nValue == htlc_sat]
    wait_for(lambda: _mempool_spender(cluster, commitment_txid, htlc_vout) is not None,
             timeout=20, what="Bob's HTLC-success in the mempool")
    success_txid = _mempool_spender(cluster, commitment_txid, htlc_vout)
    assert success_txid is not None
    mine_synced(cluster, 1)
    assert chain.confirmations(success_txid) == 1 and chain.height() == incoming_expiry - 6
    preimage = witness(tx_of(chain, success_txid), 0)[3]   # <> <sig> <sig> <preimage> <script>
    assert hashlib.sha256(preimage).hexdigest() == hold["payment_hash"]
    assert line.bob.call("forwarding")["in_flight"] == []

    line.alice.start()
    wait_for(lambda: _payment_status(line.alice, hold["payment_hash"]) == "succeeded",
             timeout=30, what="Alice to read her payment's preimage on chain")
    s = _settled_on_chain(cluster, funding, since, [line.alice, line.bob])
    assert s.closing_txid == commitment_txid and s.foreign_inputs_sat == 0
    [bob_sweep] = [leaf.txid for leaf in s.leaves_of(line.bob.wallet)]
    [alice_sweep] = [leaf.txid for leaf in s.leaves_of(line.alice.wallet)]
    assert set(s.order) == {commitment_txid, success_txid, bob_sweep, alice_sweep}
    bob_fees_sat = s.fee_sat[success_txid] + s.fee_sat[bob_sweep]
    assert s.amount_to(line.bob.wallet) == htlc_sat - bob_fees_sat
    assert s.amount_to(line.alice.wallet) == (alice_msat - AMOUNT_MSAT - fee_msat) // 1000 - \
        s.fee_sat[commitment_txid] - s.fee_sat[alice_sweep]
    bob_gain_msat = s.amount_to(line.bob.wallet) * 1000 + \
        line.local_msat(line.bob, line.bc) - bob_bc_msat
    assert bob_gain_msat == fee_msat - bob_fees_sat * 1000


def test_anchors_carol_silent_bob_times_out_with_a_fee_bumped_htlc_timeout(
        cluster: Cluster, wait_for: WaitFor) -> None:
    """The timeout case on an anchors channel (Bob-Carol): at cltv_expiry + 1 Bob broadcasts
    his commitment, then his zero-fee HTLC-timeout with fee inputs from his wallet once the
    commitment confirms; 6 blocks after the HTLC-timeout confirms Bob fails Alice's HTLC off
    chain. Bob's wallet ends with his whole side less exactly the fees and the two 330 sat
    anchors (left to anyone after 16 blocks)."""
    alice = _start(cluster, "alice", funds_sat=2_000_000)
    bob = _start(cluster, "bob", "--fee-base-msat", str(FEE_BASE_MSAT),
                 "--fee-proportional-millionths", str(FEE_PPM),
                 "--cltv-expiry-delta", str(CLTV_DELTA), funds_sat=2_000_000)
    carol = _start(cluster, "carol")
    ab = str(cluster.open_channel(alice, bob, FUNDING_SAT)["funding_txid"])
    bc = str(cluster.open_channel(bob, carol, FUNDING_SAT, anchors=True)["funding_txid"])
    line = Line(cluster, alice, bob, carol, ab, bc)
    wait_for(line.hint_ready, timeout=30, what="Carol to know Bob's policy")
    chain = cluster.miner
    alice_msat = line.local_msat(alice, ab)
    bob_bc_msat = line.local_msat(bob, bc)
    hold = _held(line, wait_for)
    funding = _funding(cluster, bob, bc)
    expiry = _expiry(bob, str(cluster.channel(bob, bc)["channel"]), hold["payment_hash"])
    carol.stop()
    since = chain.height()
    wallet_sat = bob.wallet.balance_sat()
    cluster.mine(expiry - chain.height())
    sync_nodes(cluster)
    assert chain.get_tx_out(funding) is not None
    mine_synced(cluster, 1)                         # expiry + 1: Bob's BOLT 2 deadline
    wait_for(lambda: _mempool_spender(cluster, funding.txid_hex, funding.vout) is not None,
             timeout=20, what="Bob's commitment in the mempool")
    commitment_txid = _mempool_spender(cluster, funding.txid_hex, funding.vout)
    assert commitment_txid is not None
    commitment = tx_of(chain, commitment_txid)
    [htlc_vout] = [v for v, o in enumerate(commitment.vout) if o.nValue == AMOUNT_MSAT // 1000]
    mine_synced(cluster, 1)                         # the commitment confirms at expiry + 2
    wait_for(lambda: _mempool_spender(cluster, commitment_txid, htlc_vout) is not None,
             timeout=20, what="Bob's fee-bumped HTLC-timeout in the mempool")
    timeout_txid = _mempool_spender(cluster, commitment_txid, htlc_vout)
    assert timeout_txid is not None
    timeout_tx = tx_of(chain, timeout_txid)
    assert timeout_tx.nLockTime == expiry and len(timeout_tx.vin) >= 2   # fee inputs added
    mine_synced(cluster, ANTI_REORG_DELAY - 1)      # confirmed at expiry + 3, 5 deep
    assert _payment_status(alice, hold["payment_hash"]) == "pending"
    mine_synced(cluster, 1)
    wait_for(lambda: _payment_status(alice, hold["payment_hash"]) == "failed",
             timeout=30, what="Alice's payment to fail back")
    assert chain.height() == expiry + 2 + ANTI_REORG_DELAY

    def ab_back() -> bool:
        a, b = cluster.channel(alice, ab), cluster.channel(bob, ab)
        return a["htlcs"] == b["htlcs"] == 0 and a["local_msat"] == alice_msat and \
            a["state"] == b["state"] == "normal"

    wait_for(ab_back, timeout=20, what="Alice-Bob back to its balances, without the HTLC")
    s = _settled_on_chain(cluster, funding, since, [bob], anchors=2)
    assert s.closing_txid == commitment_txid and s.foreign_inputs_sat > 0
    assert s.amount_to(bob.wallet) - s.foreign_inputs_sat == \
        bob_bc_msat // 1000 - s.total_fees_sat - 2 * ANCHOR_SAT
    assert bob.wallet.balance_sat() - wallet_sat == \
        bob_bc_msat // 1000 - s.total_fees_sat - 2 * ANCHOR_SAT
