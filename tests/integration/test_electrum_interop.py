"""chanlab and Electrum, an implementation we did not write, share channels and prove it on chain.

One chanlab node (carol, allowed to cheat) and one Electrum wallet (alice) for the module, on
the session's bitcoind and ElectrumX. Five anchors channels of 1,000,000 sat open at once (one
batch of blocks): carol opens A, C, E; alice opens B, D. A and B carry payments both ways and
close cooperatively (A by carol, B by alice); C and D are force-closed (C by carol, D by
alice) and each side sweeps; on E carol broadcasts a revoked commitment and Electrum's own
penalty takes the whole channel. Every amount is read back from bitcoind.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.electrum import LATENCY_PAYMENT_SAT, measure_latencies
from chanlab import Bitcoind, ChannelRecord, Node, NodeFactory
from chanlab.bitcoind import TxRecord
from chanlab.electrum import ElectrumFactory, wait_for_balance
from chanlab.pytest_plugin import LogSource, attach_logs
from channel.bech32 import bech32_encode, bytes_to_words
from channel.types import OutPoint
from regtest.cluster import Cluster
from regtest.demo import run_demo
from regtest.electrum import ElectrumChannel, ElectrumWallet, ElectrumX
from regtest.electrum_provision import ElectrumInstall
from regtest.wait import wait_for

CHANNEL_SAT = 1_000_000
ANCHOR_SAT = 330
CAROL_FUNDS_SAT = 4_000_000
ALICE_FUNDS_SAT = 3_000_000
ELECTRUM_MIN_DEPTH = 3      # Electrum as fundee asks for 3 confirmations
TO_SELF_DELAY = 10          # both sides impose it on the other's to_local
PUSH_SAT = 300_000          # pushed at opening on C, D and E: both sides have an output there
PAY_TO_ELECTRUM_SAT = 200_000
PAY_TO_CHANLAB_SAT = 150_000


@dataclass(frozen=True)
class Lab:
    bitcoind: Bitcoind
    carol: Node
    alice: ElectrumWallet
    logs: LogSource          # carol's and alice's logs, for a failing test's report


@dataclass(frozen=True)
class Channels:
    """The five channels, by their funding outpoint (the name both sides know)."""

    a: OutPoint   # carol -> alice: payments, cooperative close by carol
    b: OutPoint   # alice -> carol: payments, cooperative close by alice
    c: OutPoint   # carol -> alice: force close by carol
    d: OutPoint   # alice -> carol: force close by alice
    e: OutPoint   # carol -> alice: carol cheats, Electrum's penalty


@pytest.fixture(scope="module")
def lab(bitcoind: Bitcoind, electrum_install: ElectrumInstall,
        electrumx: ElectrumX) -> Iterator[Lab]:
    with NodeFactory(bitcoind) as nodes, \
            ElectrumFactory(electrum_install, electrumx, bitcoind) as wallets:
        carol = nodes.get_node("carol", to_self_delay=TO_SELF_DELAY, allow_cheating=True)
        alice = wallets.get_wallet("alice", to_self_delay=TO_SELF_DELAY)
        # one block funds both: chanlab's wallet and Electrum's
        miner = bitcoind.miner
        carol_fund = miner.send_to_address(carol.wallet.new_address(), CAROL_FUNDS_SAT)
        alice_fund = miner.send_to_address(alice.new_address(), ALICE_FUNDS_SAT)
        bitcoind.generate_block(1)
        miner.wait_for_confirmation(carol_fund)
        miner.wait_for_confirmation(alice_fund)
        wait_for(lambda: carol.wallet.balances().trusted_sat >= CAROL_FUNDS_SAT,
                 what="carol's wallet to see its funds")
        wait_for_balance(alice, ALICE_FUNDS_SAT)
        yield Lab(bitcoind=bitcoind, carol=carol, alice=alice,
                  logs=lambda: nodes.logs() + wallets.logs())


@pytest.fixture(autouse=True)
def _report_logs(request: pytest.FixtureRequest) -> None:
    """A failing test that uses the module's lab gets carol's and alice's logs in its report."""
    if "lab" in request.fixturenames:
        attach_logs(request, request.getfixturevalue("lab").logs)


def _open_from_carol(lab: Lab, push_sat: int = 0) -> OutPoint:
    answer = lab.carol.call("open", peer_id=lab.alice.node_id(), amount_sat=CHANNEL_SAT,
                            push_msat=push_sat * 1000,
                            anchors=False)   # anchors all the same: Electrum requires them
    return _point(lab.carol.channel(answer["channel"]).funding_outpoint or "")


def _point(text: str) -> OutPoint:
    txid, vout = text.split(":")
    return OutPoint.from_txid_hex(txid, int(vout))


@pytest.fixture(scope="module")
def channels(lab: Lab) -> Channels:
    carol, alice = lab.carol, lab.alice
    carol.connect(alice.address())
    a = _open_from_carol(lab)
    b = alice.open_channel(carol.info().address, CHANNEL_SAT)
    c = _open_from_carol(lab, PUSH_SAT)
    # Electrum opens one channel per peer per block: its funding key is derived from the
    # peer and the funding tx's nLockTime (its wallet's height)
    wait_for(lambda: b.txid_hex in lab.bitcoind.rpc.getrawmempool(),
             what="alice's first funding transaction in the mempool")
    lab.bitcoind.generate_block(1)
    tip = lab.bitcoind.height()
    wait_for(lambda: alice.height() == tip, what="alice at the new tip")
    d = alice.open_channel(carol.info().address, CHANNEL_SAT, push_sat=PUSH_SAT)
    e = _open_from_carol(lab, PUSH_SAT)
    points = Channels(a=a, b=b, c=c, d=d, e=e)
    txids = {p.txid_hex for p in (d, e)}
    wait_for(lambda: txids <= set(lab.bitcoind.rpc.getrawmempool()),
             what="the last funding transactions in the mempool")
    lab.bitcoind.generate_block(ELECTRUM_MIN_DEPTH)
    for point in (a, b, c, d, e):
        carol.wait_for_channel(point.txid_hex, "normal", timeout=60)
        _wait_electrum(lab, point, "OPEN")
    return points


def _wait_electrum(lab: Lab, point: OutPoint, *states: str,
                   timeout: float = 60.0) -> ElectrumChannel:
    """Wait until Electrum's channel ``point`` is in one of ``states``; its row."""
    def reached() -> ElectrumChannel | None:
        channel = _electrum(lab, point)
        return channel if channel.state in states else None

    found: ElectrumChannel = wait_for(reached, timeout=timeout,
                                      what=f"Electrum's channel {point} {'/'.join(states)}")
    return found


def _electrum(lab: Lab, point: OutPoint) -> ElectrumChannel:
    channel = lab.alice.channel(point)
    assert channel is not None, f"Electrum has no channel {point}"
    return channel


def _ours(lab: Lab, point: OutPoint) -> ChannelRecord:
    return lab.carol.channel(point.txid_hex)


def _address(script_pubkey: bytes) -> str:
    """The regtest address of a P2WPKH / P2WSH output (BIP 173)."""
    assert script_pubkey[0] == 0 and len(script_pubkey) in (22, 34), script_pubkey.hex()
    return bech32_encode("bcrt", [0, *bytes_to_words(script_pubkey[2:])])


def _paid_to_alice(lab: Lab, tx: TxRecord) -> int:
    """What ``tx`` pays Electrum's wallet (checked output by output with Electrum)."""
    return sum(o.value_sat for o in tx.outputs if lab.alice.is_mine(_address(o.script_pubkey)))


def _output(tx: TxRecord, vout: int) -> int:
    return tx.outputs[vout].value_sat


# -- opening ----------------------------------------------------------------------------------


def test_channels_open_both_ways_as_anchors(lab: Lab, channels: Channels) -> None:
    """chanlab opens to Electrum and Electrum opens to chanlab: five 1,000,000 sat anchors
    channels, funded on chain to the satoshi, OPEN on Electrum's side, normal on ours."""
    for point, opener, push_sat in (
            (channels.a, "holder", 0), (channels.b, "counterparty", 0),
            (channels.c, "holder", PUSH_SAT), (channels.d, "counterparty", PUSH_SAT),
            (channels.e, "holder", PUSH_SAT)):
        ours = _ours(lab, point)
        assert (ours.state, ours.opener, ours.commitment_format) == ("normal", opener, "anchors")
        assert ours.funding_sat == CHANNEL_SAT
        assert _output(lab.bitcoind.tx(point.txid_hex), point.vout) == CHANNEL_SAT
        theirs = _electrum(lab, point)
        assert theirs.capacity_sat == CHANNEL_SAT and theirs.state == "OPEN"
        assert theirs.remote_node_id == lab.carol.node_id
        # the opener holds the channel less what it pushed (fees are not in the balances)
        opener_msat, other_msat = (CHANNEL_SAT - push_sat) * 1000, push_sat * 1000
        if opener == "holder":
            assert (ours.local_msat, ours.remote_msat) == (opener_msat, other_msat)
            assert theirs.local_balance_sat == push_sat
        else:
            assert (ours.local_msat, ours.remote_msat) == (other_msat, opener_msat)
            assert theirs.remote_balance_sat == push_sat


# -- payments ---------------------------------------------------------------------------------


def _carol_local_msat(lab: Lab, channels: Channels) -> int:
    return sum(_ours(lab, p).local_msat or 0 for p in
               (channels.a, channels.b, channels.c, channels.d, channels.e))


def test_chanlab_pays_an_electrum_invoice(lab: Lab, channels: Channels) -> None:
    """carol pays alice's BOLT 11 invoice (Electrum's ``c`` = 147 honoured): Electrum marks it
    paid, the preimage matches, and carol's side of the channels drops by exactly the amount."""
    before = _carol_local_msat(lab, channels)
    request = lab.alice.add_request(PAY_TO_ELECTRUM_SAT, "from chanlab")
    assert request.bolt11.startswith("lnbcrt2m1")        # 200,000 sat = 2 mBTC
    payment = lab.carol.pay(request.bolt11)
    assert payment.status == "succeeded"
    assert payment.payment_hash == request.payment_hash
    assert hashlib.sha256(bytes.fromhex(payment.payment_preimage or "")).hexdigest() == \
        request.payment_hash
    wait_for(lambda: lab.alice.get_request(request.request_id).status == 3,
             what="Electrum to mark its request paid")
    assert before - _carol_local_msat(lab, channels) == PAY_TO_ELECTRUM_SAT * 1000


def test_electrum_pays_a_chanlab_invoice(lab: Lab, channels: Channels) -> None:
    """alice pays carol's BOLT 11 invoice: Electrum reports success with the preimage and
    carol's side of the channels grows by exactly the amount."""
    before = _carol_local_msat(lab, channels)
    invoice = lab.carol.invoice(PAY_TO_CHANLAB_SAT * 1000, "from Electrum")
    assert str(invoice).startswith("lnbcrt1500u1")       # 150,000 sat = 1500 uBTC
    payment = lab.alice.lnpay(str(invoice), timeout=30)
    assert payment.success, payment.log
    assert hashlib.sha256(bytes.fromhex(payment.preimage or "")).hexdigest() == \
        payment.payment_hash
    wait_for(lambda: _carol_local_msat(lab, channels) - before == PAY_TO_CHANLAB_SAT * 1000,
             what="carol's channels to hold the payment")


def test_failure_at_electrum_is_decoded_by_chanlab(lab: Lab, channels: Channels) -> None:
    """Electrum fails the HTLC at the payee (temporary_node_failure, in an encrypted BOLT 4
    failure onion): carol reports the decoded failure and that the payee sent it; no money
    moves."""
    before = _carol_local_msat(lab, channels)
    request = lab.alice.add_request(10_000, "will fail")
    lab.alice.setconfig("test_fail_htlcs_with_temp_node_failure", True)
    try:
        answer = lab.carol.call("pay", invoice=request.bolt11)
    finally:
        lab.alice.setconfig("test_fail_htlcs_with_temp_node_failure", False)
    assert answer["status"] == "failed"
    assert (answer["failure_code"], answer["failure"]) == (0x2002, "TemporaryNodeFailure")
    assert (answer["hop_index"], answer["node_id"]) == (0, lab.alice.node_id())
    assert "the payee" in answer["reason"] and "temporary_node_failure" in answer["reason"]
    # the failed HTLC leaves the commitments once both sides signed its removal
    wait_for(lambda: _carol_local_msat(lab, channels) == before,
             what="the failed HTLC removed from carol's channels")
    assert lab.alice.get_request(request.request_id).status == 0


def test_failure_at_chanlab_is_decoded_by_electrum(lab: Lab, channels: Channels) -> None:
    """alice pays a hold invoice carol cancelled: carol fails it with
    incorrect_or_unknown_payment_details in a BOLT 4 failure onion that Electrum decodes."""
    before = _carol_local_msat(lab, channels)
    invoice = lab.carol.invoice(20_000_000, "cancelled", hold=True)
    lab.carol.call("cancel", payment_hash=invoice.payment_hash)
    payment = lab.alice.lnpay(str(invoice), timeout=30)
    assert not payment.success
    assert payment.log == (("1", "Destination node", "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"),)
    wait_for(lambda: _carol_local_msat(lab, channels) == before,
             what="the failed HTLC removed from carol's channels")


# -- cooperative closes -----------------------------------------------------------------------


def _closing_outputs(lab: Lab, txid: str) -> tuple[TxRecord, list[int]]:
    tx = lab.bitcoind.tx(txid)
    return tx, sorted(o.value_sat for o in tx.outputs)


def test_cooperative_close_initiated_by_chanlab(lab: Lab, channels: Channels) -> None:
    """carol closes A cooperatively: the fee settles inside both fee ranges (Electrum's is
    far above chanlab's commitment feerate), carol (the opener) pays it, each side gets its
    exact balance on chain and Electrum's wallet receives its share."""
    ours = _ours(lab, channels.a)
    carol_sat, alice_sat = (ours.local_msat or 0) // 1000, (ours.remote_msat or 0) // 1000
    closing = lab.carol.close(channels.a.txid_hex)
    tx, outputs = _closing_outputs(lab, closing.closing_txid)
    assert tx.inputs == ((channels.a.txid_hex, channels.a.vout),)
    assert outputs == sorted(v for v in (carol_sat - tx.fee_sat, alice_sat) if v > 0)
    assert tx.fee_sat + sum(outputs) == CHANNEL_SAT
    assert _paid_to_alice(lab, tx) == alice_sat
    lab.bitcoind.generate_block(1)
    _wait_electrum(lab, channels.a, "CLOSED", "REDEEMED")
    assert _ours(lab, channels.a).closing_txid == closing.closing_txid


def test_cooperative_close_initiated_by_electrum(lab: Lab, channels: Channels) -> None:
    """alice closes B cooperatively: alice (the opener) pays the fee it proposed inside
    chanlab's range, carol's output is exactly her balance."""
    ours = _ours(lab, channels.b)
    carol_sat, alice_sat = (ours.local_msat or 0) // 1000, (ours.remote_msat or 0) // 1000
    txid = lab.alice.close_channel(channels.b)
    wait_for(lambda: txid in lab.bitcoind.rpc.getrawmempool(), what="alice's closing tx")
    tx, outputs = _closing_outputs(lab, txid)
    assert tx.inputs == ((channels.b.txid_hex, channels.b.vout),)
    assert outputs == sorted(v for v in (carol_sat, alice_sat - tx.fee_sat) if v > 0)
    assert tx.fee_sat + sum(outputs) == CHANNEL_SAT
    assert _paid_to_alice(lab, tx) == alice_sat - tx.fee_sat
    lab.bitcoind.generate_block(1)
    _wait_electrum(lab, channels.b, "CLOSED", "REDEEMED")
    assert _ours(lab, channels.b).closing_txid == txid


# -- force closes -----------------------------------------------------------------------------


def _commitment_outputs(tx: TxRecord) -> tuple[list[int], list[int]]:
    """(vouts of the anchors, vouts of the other outputs) of an anchors commitment."""
    anchors = [o.vout for o in tx.outputs if o.value_sat == ANCHOR_SAT]
    return anchors, [o.vout for o in tx.outputs if o.value_sat != ANCHOR_SAT]


def _wait_spent(lab: Lab, txid: str, vout: int, *, mine: bool = True,
                timeout: float = 60.0) -> TxRecord:
    """Wait until ``txid:vout`` is spent (mining a block per try when ``mine``)."""
    def spent() -> TxRecord | None:
        found = lab.bitcoind.spending_tx(txid, vout)
        if found is None and mine:
            lab.bitcoind.generate_block(1)
        return found

    record: TxRecord = wait_for(spent, timeout=timeout, what=f"{txid[:16]}:{vout} spent")
    return record


def test_force_close_by_chanlab_each_side_sweeps(lab: Lab, channels: Channels) -> None:
    """carol force-closes C: Electrum sweeps its to_remote after 1 block, carol her to_local
    after Electrum's to_self_delay; commitment outputs + anchors + fee = the channel."""
    ours = _ours(lab, channels.c)
    carol_sat, alice_sat = (ours.local_msat or 0) // 1000, (ours.remote_msat or 0) // 1000
    closed = lab.carol.force_close(channels.c.txid_hex)
    assert closed.to_self_delay == TO_SELF_DELAY
    commitment = lab.bitcoind.tx(closed.commitment_txid)
    anchors, others = _commitment_outputs(commitment)
    assert len(anchors) == 2
    values = sorted(commitment.outputs[v].value_sat for v in others)
    # carol opened: she pays the commitment fee and the two anchors
    assert values == sorted([carol_sat - commitment.fee_sat - 2 * ANCHOR_SAT, alice_sat])
    assert sum(o.value_sat for o in commitment.outputs) + commitment.fee_sat == CHANNEL_SAT
    lab.bitcoind.generate_block(1)
    to_remote = next(v for v in others if commitment.outputs[v].value_sat == alice_sat)
    to_local = next(v for v in others if v != to_remote)
    alice_sweep = _wait_spent(lab, closed.commitment_txid, to_remote)
    carol_sweep = _wait_spent(lab, closed.commitment_txid, to_local)
    assert sum(o.value_sat for o in alice_sweep.outputs) + alice_sweep.fee_sat == alice_sat
    assert sum(o.value_sat for o in carol_sweep.outputs) + carol_sweep.fee_sat == \
        commitment.outputs[to_local].value_sat
    assert _paid_to_alice(lab, alice_sweep) == alice_sat - alice_sweep.fee_sat
    assert _paid_to_alice(lab, carol_sweep) == 0


def test_force_close_by_electrum_each_side_sweeps(lab: Lab, channels: Channels) -> None:
    """alice force-closes D: carol sweeps her to_remote after 1 block, Electrum its to_local
    after chanlab's to_self_delay; commitment outputs + anchors + fee = the channel."""
    ours = _ours(lab, channels.d)
    carol_sat, alice_sat = (ours.local_msat or 0) // 1000, (ours.remote_msat or 0) // 1000
    txid = lab.alice.close_channel(channels.d, force=True)
    wait_for(lambda: txid in lab.bitcoind.rpc.getrawmempool(), what="alice's commitment")
    commitment = lab.bitcoind.tx(txid)
    anchors, others = _commitment_outputs(commitment)
    assert len(anchors) == 2
    values = sorted(commitment.outputs[v].value_sat for v in others)
    assert values == sorted([alice_sat - commitment.fee_sat - 2 * ANCHOR_SAT, carol_sat])
    assert sum(o.value_sat for o in commitment.outputs) + commitment.fee_sat == CHANNEL_SAT
    lab.bitcoind.generate_block(1)
    to_remote = next(v for v in others if commitment.outputs[v].value_sat == carol_sat)
    to_local = next(v for v in others if v != to_remote)
    carol_sweep = _wait_spent(lab, txid, to_remote)
    alice_sweep = _wait_spent(lab, txid, to_local)
    assert sum(o.value_sat for o in carol_sweep.outputs) + carol_sweep.fee_sat == carol_sat
    assert sum(o.value_sat for o in alice_sweep.outputs) + alice_sweep.fee_sat == \
        commitment.outputs[to_local].value_sat
    assert _paid_to_alice(lab, alice_sweep) == commitment.outputs[to_local].value_sat - \
        alice_sweep.fee_sat
    assert _paid_to_alice(lab, carol_sweep) == 0


# -- the lesson: cheating loses everything ------------------------------------------------------


def test_chanlab_cheats_and_electrums_penalty_takes_the_whole_channel(
        lab: Lab, channels: Channels) -> None:
    """carol updates E's fee (revoking state 0), then broadcasts state 0: Electrum's own
    penalty takes carol's to_local, alice sweeps her to_remote, so alice gets the whole
    channel less the fees; carol's monitor names its own revoked commitment, no alert."""
    lab.carol.call("update-fee", channel=_ours(lab, channels.e).channel, feerate_per_kw=2_000)
    wait_for(lambda: (_ours(lab, channels.e).holder_commitment_number or 0) >= 1,
             what="E's state 0 revoked")
    cheat = lab.carol.cheat(channels.e.txid_hex, state=0)
    revoked = lab.bitcoind.tx(cheat.revoked_commitment_txid)
    anchors, others = _commitment_outputs(revoked)
    assert len(anchors) == 2 and len(others) == 2
    assert sum(o.value_sat for o in revoked.outputs) + revoked.fee_sat == CHANNEL_SAT
    lab.bitcoind.generate_block(1)
    sweeps = [_wait_spent(lab, cheat.revoked_commitment_txid, v) for v in others]
    alice_gain = sum(_paid_to_alice(lab, s) for s in sweeps)
    fees = revoked.fee_sat + 2 * ANCHOR_SAT + sum(s.fee_sat for s in sweeps)
    assert alice_gain == sum(o.value_sat for s in sweeps for o in s.outputs)  # all to alice
    assert alice_gain == CHANNEL_SAT - fees
    events = lab.carol.call("events")
    assert any(e.startswith("our own revoked commitment #0") or
               "our own revoked commitment #0" in e for e in events), events
    assert not any("ALERT" in e for e in events), events


# -- the demo ---------------------------------------------------------------------------------


def test_demo_electrum_opens_pays_both_ways_and_closes(electrum_install: ElectrumInstall
                                                       ) -> None:
    """`chanlab demo electrum` runs end to end on its own bitcoind and tells each step."""
    import regtest.electrum_story  # noqa: F401  (registers the scenario, as the CLI does)

    out = io.StringIO()
    run_demo("electrum", out=out)
    text = out.getvalue()
    assert "channel_type anchors: Alice picked anchors because Erin requires them" in text
    assert "Erin's request is PAID" in text
    assert "Electrum reports success" in text
    assert "balances: Alice 850,000 sat (0.0085 BTC) | Erin 150,000 sat (0.0015 BTC)" in text
    assert "exactly the channel balances" in text
    assert "Erin's wallet sees the channel CLOSED" in text


# -- the bench --------------------------------------------------------------------------------


def test_bench_latency_pays_each_direction_exactly(
        bitcoind: Bitcoind, electrum_factory: ElectrumFactory) -> None:
    """make bench's latency section: one timed payment per direction (chanlab -> chanlab,
    chanlab -> Electrum, Electrum -> chanlab), each succeeded, each a positive duration."""
    erin = electrum_factory.get_wallet("erin")
    home = Path(tempfile.mkdtemp(prefix="lat-"))   # short: control sockets live under it
    try:
        with Cluster.running(bitcoind, home, bitcoind.miner) as cluster:
            results = measure_latencies(cluster, erin, rounds=2)
            lat1 = cluster.nodes["lat1"]
            paid = [c["local_msat"] for c in lat1.call("channels")]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert [r.name for r in results] == ["chanlab -> chanlab", "chanlab -> Electrum",
                                         "Electrum -> chanlab"]
    assert all(len(r.samples_ms) == 2 and min(r.samples_ms) > 0 for r in results)
    # lat1 paid 3 x 10,000 sat to lat2; to Erin 3 x 10,000 sat out and 3 x 10,000 sat back
    per = LATENCY_PAYMENT_SAT * 1000
    assert sorted(paid) == sorted([(1_000_000 * 1000) - 3 * per, 500_000 * 1000])
