"""A forward whose channels go to chain, in memory (BOLT 2 deadlines, BOLT 5 resolution).

Alice -> Bob -> Carol as three managers (see test_forwarder.py); the chain is played by hand:
blocks given to a manager's monitors with :meth:`ChannelManager.block_connected`, then the
chain flight (:meth:`ChannelManager.dirty_monitors`) the node runs after every block.
"""

from __future__ import annotations

from collections.abc import Iterable

from bitcoin.core import CTransaction
from test_forwarder import AMOUNT_MSAT, BOB_FEE_MSAT, Line, _line, _local, _route, _send
from test_manager import HEIGHT, NOW, Net

from channel.bolt11 import Bolt11Invoice
from channel.effects import Effects, PaymentResolved
from channel.manager import ChannelManager
from channel.messages import decode_message
from channel.monitor import ANTI_REORG_DELAY, ChannelMonitor, ClaimKind
from channel.monitor_deadlines import FULFILL_SAFETY_BLOCKS, OFFERED_HTLC_GRACE_BLOCKS
from channel.state import ChannelState
from channel.types import OutPoint, Side
from channel.wire import ErrorMessage

FUNDING_MSAT = 1_000_000_000


def _held_payment(line: Line, amount_msat: int = AMOUNT_MSAT) -> Bolt11Invoice:
    """Alice pays Carol's hold invoice through Bob; Carol holds the HTLC."""
    fx = Effects()
    invoice = line.carol.payments.create_invoice(amount_msat, "held", True, fx, now=NOW)
    line.net.complete(line.carol.node_id, fx)
    _send(line, _route(line), invoice)
    line.net.run()
    assert len(line.bob.forwarder.links) == 1
    return invoice


def _expiry(manager: ChannelManager, key: str, offerer: Side) -> int:
    log = manager.handles[key].channel.log
    assert log is not None
    [entry] = [e for e in log.entries() if e.offerer is offerer]
    return entry.cltv_expiry


def _block(net: Net, manager: ChannelManager, height: int,
           txs: Iterable[CTransaction] = ()) -> Effects:
    """Block ``height`` reaches ``manager``; its chain flight is carried out (and answered)."""
    manager.block_connected(height, list(txs), reorg=False)
    fx = Effects()
    manager.dirty_monitors(fx)
    broadcasts, outgoing = list(fx.broadcasts), list(fx.outgoing)
    net.complete(manager.node_id, fx)
    net.run()
    fx.broadcasts, fx.outgoing = broadcasts, outgoing
    return fx


def _monitor(manager: ChannelManager, key: str) -> ChannelMonitor:
    monitor = manager.handles[key].monitor
    assert monitor is not None
    return monitor


def _resolved(line: Line, invoice: Bolt11Invoice) -> list[dict[str, object]]:
    return [r.result for r in line.net.resolutions[line.alice.node_id]
            if isinstance(r, PaymentResolved) and r.payment_hash == invoice.payment_hash]


def _settle_hold(manager: ChannelManager, net: Net, invoice: Bolt11Invoice) -> None:
    """What the ``settle`` command does."""
    fx = Effects()
    manager.release_hold(invoice.payment_hash.hex(), "settle", fx)
    for handle in manager.holding(invoice.payment_hash.hex()):
        manager.settle_held(handle, fx)
    net.complete(manager.node_id, fx)
    net.run()


def _claim(monitor: ChannelMonitor, height: int, kind: ClaimKind) -> CTransaction:
    [claim] = [c for c in monitor.claims_to_broadcast(height) if c.kind is kind]
    return claim.tx


def _spent(tx: CTransaction) -> set[OutPoint]:
    return {OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)) for i in tx.vin}


def test_an_offered_htlc_past_its_deadline_fails_the_outgoing_channel_only() -> None:
    """Carol holds Bob's HTLC past its cltv_expiry: at cltv_expiry + 1 (BOLT 2's G) and not
    before, Bob's chain flight sends Carol an error and broadcasts his latest commitment of
    Bob-Carol, which carries the HTLC; Alice-Bob stays normal."""
    line = _line(Net())
    _held_payment(line)
    expiry = _expiry(line.bob, line.bc, Side.HOLDER)
    assert expiry == HEIGHT + 18 and OFFERED_HTLC_GRACE_BLOCKS == 1
    assert _block(line.net, line.bob, expiry).broadcasts == []
    fx = _block(line.net, line.bob, expiry + 1)
    commitment = _monitor(line.bob, line.bc).holder_commitment_tx()
    assert fx.broadcasts == [commitment.serialize()]
    assert [type(m) for p, m in fx.outgoing if p == line.carol.node_id] == [ErrorMessage]
    assert sorted(int(o.nValue) for o in commitment.vout)[0] == AMOUNT_MSAT // 1000
    assert line.bob.handles[line.bc].channel.state is ChannelState.FORCE_CLOSING
    assert line.bob.handles[line.ab].channel.state is ChannelState.NORMAL
    assert _block(line.net, line.bob, expiry + 2).broadcasts == []   # once only


def test_only_the_offerer_and_a_fulfiller_have_a_deadline_on_an_htlc() -> None:
    """BOLT 2: Alice's HTLC to Bob is due at its cltv_expiry + 1 on Alice's side; Bob, who has
    no preimage for it, has no deadline on it at any height (Alice times it out, or Bob claims
    it on chain if he learns the preimage); once Bob has the preimage, his is cltv_expiry - 7."""
    line = _line(Net())
    invoice = _held_payment(line)
    incoming_expiry = _expiry(line.bob, line.ab, Side.COUNTERPARTY)
    alice_side, bob_side = _monitor(line.alice, line.ab), _monitor(line.bob, line.ab)
    assert alice_side.htlc_deadline(incoming_expiry) is None
    assert "HTLC #0 we offered" in str(alice_side.htlc_deadline(incoming_expiry + 1))
    assert bob_side.htlc_deadline(incoming_expiry + 1000) is None
    row = line.carol.payments.payment(invoice.payment_hash.hex())
    assert row is not None and row.preimage is not None
    bob_side.provide_payment_preimage(bytes.fromhex(row.preimage))
    assert bob_side.htlc_deadline(incoming_expiry - FULFILL_SAFETY_BLOCKS - 1) is None
    assert "fulfilled" in str(bob_side.htlc_deadline(incoming_expiry - FULFILL_SAFETY_BLOCKS))


def test_the_htlc_timed_out_on_chain_is_failed_upstream_off_chain_once_final() -> None:
    """After Bob's commitment and HTLC-timeout confirm, Alice's HTLC is failed back off chain
    exactly when the HTLC-timeout is ANTI_REORG_DELAY deep, well before Alice's own deadline:
    Alice's payment fails, Alice-Bob is normal with no HTLC and the balances it had before."""
    line = _line(Net())
    invoice = _held_payment(line)
    expiry = _expiry(line.bob, line.bc, Side.HOLDER)
    incoming_expiry = _expiry(line.bob, line.ab, Side.COUNTERPARTY)
    assert incoming_expiry == expiry + 40
    [raw] = _block(line.net, line.bob, expiry + 1).broadcasts
    commitment = CTransaction.deserialize(raw)
    monitor = _monitor(line.bob, line.bc)
    _block(line.net, line.bob, expiry + 2, [commitment])
    timeout_tx = _claim(monitor, expiry + 2, ClaimKind.HTLC_TIMEOUT)
    [htlc_vout] = [v for v, o in enumerate(commitment.vout)
                   if int(o.nValue) == AMOUNT_MSAT // 1000]
    assert _spent(timeout_tx) == {OutPoint(txid=bytes(commitment.GetTxid()), vout=htlc_vout)}
    assert timeout_tx.nLockTime == expiry
    confirmed = expiry + 3
    _block(line.net, line.bob, confirmed, [timeout_tx])
    for height in range(confirmed + 1, confirmed + ANTI_REORG_DELAY - 1):
        _block(line.net, line.bob, height)
    assert _resolved(line, invoice) == []          # 5 deep: not final yet
    assert not monitor.offered_htlc_failed(0)
    final = confirmed + ANTI_REORG_DELAY - 1
    assert final < incoming_expiry
    _block(line.net, line.bob, final)
    assert monitor.offered_htlc_failed(0)
    [result] = _resolved(line, invoice)
    assert result["status"] == "failed"
    ab_alice = line.alice.handles[line.ab].channel
    assert ab_alice.state is ChannelState.NORMAL and ab_alice.htlcs_in_flight() == []
    assert _local(line.alice, line.ab) == FUNDING_MSAT
    assert _local(line.bob, line.ab) == 0
    assert line.bob.forwarder.links == {}


def test_a_preimage_claimed_on_chain_by_carol_fulfils_alice_off_chain() -> None:
    """Bob force-closes Bob-Carol; Carol settles her hold invoice: the channel being on chain,
    her monitor claims Bob's offered HTLC output with the preimage; Bob's monitor reads the
    preimage from that claim's witness and Bob fulfils Alice off chain: Alice's payment
    succeeds and Bob's Alice-Bob balance grows by amount + fee."""
    line = _line(Net())
    invoice = _held_payment(line)
    fx = Effects()
    line.bob.force_close(line.bob.handles[line.bc], fx)
    [raw] = fx.broadcasts
    line.net.complete(line.bob.node_id, fx)
    commitment = CTransaction.deserialize(raw)
    _block(line.net, line.carol, HEIGHT + 1, [commitment])
    assert line.carol.handles[line.bc].channel.state is ChannelState.FORCE_CLOSING
    carol_monitor = _monitor(line.carol, line.bc)
    assert carol_monitor.claims_to_broadcast(HEIGHT + 1) == []   # held: no preimage given
    _settle_hold(line.carol, line.net, invoice)
    claim = _claim(carol_monitor, HEIGHT + 1, ClaimKind.HTLC_PREIMAGE_CLAIM)
    _block(line.net, line.bob, HEIGHT + 1, [commitment])
    assert _resolved(line, invoice) == []
    _block(line.net, line.bob, HEIGHT + 2, [claim])
    [result] = _resolved(line, invoice)
    assert result["status"] == "succeeded"
    assert _local(line.bob, line.ab) == AMOUNT_MSAT + BOB_FEE_MSAT
    assert line.bob.handles[line.ab].channel.htlcs_in_flight() == []
    assert line.bob.forwarder.links == {}


def test_a_fulfilled_htlc_the_peer_does_not_take_fails_the_channel_before_it_expires() -> None:
    """Bob fulfils Alice's HTLC but Alice never answers: FULFILL_SAFETY_BLOCKS (7) before the
    HTLC's cltv_expiry, not earlier, Bob broadcasts his Alice-Bob commitment, whose
    HTLC-success his monitor then claims with the preimage."""
    line = _line(Net())
    invoice = _held_payment(line)
    fx = Effects()
    line.carol.release_hold(invoice.payment_hash.hex(), "settle", fx)
    line.carol.settle_held(line.carol.handles[line.bc], fx)
    line.net.complete(line.carol.node_id, fx)
    net = line.net
    while net.queue:   # Alice is gone: what Bob sends her is lost
        sender, receiver, raw = net.queue.popleft()
        if line.alice.node_id in (sender, receiver):
            continue
        fx = Effects()
        net.managers[receiver].handle_message(sender, decode_message(raw), fx,
                                              fresh_script=net.scripts[receiver])
        net.complete(receiver, fx)
    assert _local(line.bob, line.bc) == FUNDING_MSAT - AMOUNT_MSAT
    expiry = _expiry(line.bob, line.ab, Side.COUNTERPARTY)
    assert FULFILL_SAFETY_BLOCKS == 7
    assert _block(line.net, line.bob, expiry - 8).broadcasts == []
    [raw] = _block(line.net, line.bob, expiry - 7).broadcasts
    commitment = CTransaction.deserialize(raw)
    monitor = _monitor(line.bob, line.ab)
    _block(line.net, line.bob, expiry - 6, [commitment])
    success = _claim(monitor, expiry - 6, ClaimKind.HTLC_SUCCESS)
    [vout] = [v for v, o in enumerate(commitment.vout)
              if int(o.nValue) == (AMOUNT_MSAT + BOB_FEE_MSAT) // 1000]
    assert _spent(success) == {OutPoint(txid=bytes(commitment.GetTxid()), vout=vout)}


def test_a_preimage_learnt_after_alice_went_on_chain_is_claimed_on_chain() -> None:
    """Alice force-closes Alice-Bob while Carol holds; Carol then settles off chain: Bob
    takes the preimage to his Alice-Bob monitor, which claims Alice's offered HTLC output on her
    commitment with it (nothing is sent to Alice), and the forward is over."""
    line = _line(Net())
    invoice = _held_payment(line)
    fx = Effects()
    line.alice.force_close(line.alice.handles[line.ab], fx)
    [raw] = fx.broadcasts
    line.net.complete(line.alice.node_id, fx)
    line.net.run()
    alice_commitment = CTransaction.deserialize(raw)
    _block(line.net, line.bob, HEIGHT + 1, [alice_commitment])
    assert line.bob.handles[line.ab].channel.state is ChannelState.FORCE_CLOSING
    monitor = _monitor(line.bob, line.ab)
    assert monitor.claims_to_broadcast(HEIGHT + 1) == []   # no preimage yet
    assert len(line.bob.forwarder.links) == 1
    _settle_hold(line.carol, line.net, invoice)
    claim = _claim(monitor, HEIGHT + 1, ClaimKind.HTLC_PREIMAGE_CLAIM)
    [vout] = [v for v, o in enumerate(alice_commitment.vout)
              if int(o.nValue) == (AMOUNT_MSAT + BOB_FEE_MSAT) // 1000]
    assert _spent(claim) == {OutPoint(txid=bytes(alice_commitment.GetTxid()), vout=vout)}
    assert line.bob.forwarder.links == {}
    assert ChannelMonitor.from_record(monitor.to_record()).known_preimages() == \
        monitor.known_preimages()
    assert _local(line.bob, line.bc) == FUNDING_MSAT - AMOUNT_MSAT   # Carol was paid off chain


def test_an_htlc_without_output_on_the_final_commitment_is_failed_upstream() -> None:
    """Carol holds a 1000 sat HTLC, trimmed (dust) on her commitment, and force-closes: once
    her commitment is ANTI_REORG_DELAY deep, Bob fails Alice's HTLC back (BOLT 5: no output
    for it on chain, so Carol can never claim it)."""
    line = _line(Net())
    invoice = _held_payment(line, 1_000_000)
    fx = Effects()
    line.carol.force_close(line.carol.handles[line.bc], fx)
    [raw] = fx.broadcasts
    carol_commitment = CTransaction.deserialize(raw)
    assert len(carol_commitment.vout) == 1   # Bob's to_remote only: the HTLC is trimmed
    monitor = _monitor(line.bob, line.bc)
    for n in range(ANTI_REORG_DELAY):
        _block(line.net, line.bob, HEIGHT + 1 + n, [carol_commitment] if n == 0 else [])
        assert (_resolved(line, invoice) == []) == (n < ANTI_REORG_DELAY - 1)
    assert monitor.offered_htlc_failed(0)
    [result] = _resolved(line, invoice)
    assert result["status"] == "failed"
    assert _local(line.alice, line.ab) == FUNDING_MSAT


def _direct_hold(net: Net) -> tuple[ChannelManager, ChannelManager, str, Bolt11Invoice]:
    """Alice pays Bob's hold invoice over their channel; Bob holds the HTLC."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    fx = Effects()
    invoice = bob.payments.create_invoice(AMOUNT_MSAT, "held", True, fx, now=NOW)
    net.complete(bob.node_id, fx)
    fx = Effects()
    assert alice.pay([invoice], fx) == [None]
    net.complete(alice.node_id, fx)
    net.run()
    assert len(bob.handles[key].channel.htlcs_to_settle()) == 1
    return alice, bob, key, invoice


def _sent(net: Net, payer: ChannelManager, invoice: Bolt11Invoice) -> list[dict[str, object]]:
    return [r.result for r in net.resolutions[payer.node_id]
            if isinstance(r, PaymentResolved) and r.payment_hash == invoice.payment_hash]


def test_a_payer_reads_its_payment_s_success_from_the_payee_s_claim_on_chain() -> None:
    """Alice force-closes while Bob holds her HTLC; Bob settles: his monitor claims the
    HTLC output of Alice's commitment with the preimage, and Alice's payment succeeds with
    that preimage once her monitor sees the claim."""
    net = Net()
    alice, bob, key, invoice = _direct_hold(net)
    fx = Effects()
    alice.force_close(alice.handles[key], fx)
    [raw] = fx.broadcasts
    net.complete(alice.node_id, fx)
    commitment = CTransaction.deserialize(raw)
    _block(net, bob, HEIGHT + 1, [commitment])
    _block(net, alice, HEIGHT + 1, [commitment])
    _settle_hold(bob, net, invoice)
    claim = _claim(_monitor(bob, key), HEIGHT + 1, ClaimKind.HTLC_PREIMAGE_CLAIM)
    assert _sent(net, alice, invoice) == []
    _block(net, alice, HEIGHT + 2, [claim])
    [result] = _sent(net, alice, invoice)
    preimage = _monitor(bob, key).known_preimages()[invoice.payment_hash]
    assert (result["status"], result["payment_preimage"], result["amount_msat"],
            result["fee_msat"]) == ("succeeded", preimage.hex(), AMOUNT_MSAT, 0)
    row = alice.payments.payment(invoice.payment_hash.hex())
    assert row is not None and row.status == "succeeded"
    _block(net, alice, HEIGHT + 3)
    assert len(_sent(net, alice, invoice)) == 1   # answered once


def test_a_payer_s_htlc_timed_out_on_chain_fails_its_payment_once_final() -> None:
    """Bob holds Alice's HTLC and goes silent: Alice goes on chain at cltv_expiry + 1, and
    her payment is reported failed when her HTLC-timeout is ANTI_REORG_DELAY deep."""
    net = Net()
    alice, _bob, key, invoice = _direct_hold(net)
    expiry = _expiry(alice, key, Side.HOLDER)
    net.queue.clear()
    [raw] = _block(net, alice, expiry + 1).broadcasts
    commitment = CTransaction.deserialize(raw)
    _block(net, alice, expiry + 2, [commitment])
    timeout_tx = _claim(_monitor(alice, key), expiry + 2, ClaimKind.HTLC_TIMEOUT)
    for n in range(ANTI_REORG_DELAY):
        _block(net, alice, expiry + 3 + n, [timeout_tx] if n == 0 else [])
        assert (_sent(net, alice, invoice) == []) == (n < ANTI_REORG_DELAY - 1)
    [result] = _sent(net, alice, invoice)
    assert result["status"] == "failed"
    assert "timed out" in str(result["reason"])


def test_carol_s_commitment_with_the_htlc_is_timed_out_by_bob_then_failed_upstream() -> None:
    """Carol force-closes with the HTLC on her commitment and never claims it: Bob's monitor
    takes it back there after cltv_expiry (a timeout claim, no second stage) and, once that is
    ANTI_REORG_DELAY deep, Bob fails Alice's HTLC off chain; Alice-Bob stays normal."""
    line = _line(Net())
    invoice = _held_payment(line)
    expiry = _expiry(line.bob, line.bc, Side.HOLDER)
    fx = Effects()
    line.carol.force_close(line.carol.handles[line.bc], fx)
    [raw] = fx.broadcasts
    carol_commitment = CTransaction.deserialize(raw)
    monitor = _monitor(line.bob, line.bc)
    _block(line.net, line.bob, HEIGHT + 1, [carol_commitment])
    assert line.bob.handles[line.bc].channel.state is ChannelState.FORCE_CLOSING
    assert [c.kind for c in monitor.claims_to_broadcast(expiry - 1)] == [ClaimKind.TO_REMOTE_SWEEP]
    claim = _claim(monitor, expiry, ClaimKind.HTLC_TIMEOUT_CLAIM)
    [vout] = [v for v, o in enumerate(carol_commitment.vout)
              if int(o.nValue) == AMOUNT_MSAT // 1000]
    assert _spent(claim) == {OutPoint(txid=bytes(carol_commitment.GetTxid()), vout=vout)}
    for n in range(ANTI_REORG_DELAY):
        _block(line.net, line.bob, expiry + 1 + n, [claim] if n == 0 else [])
        assert (_resolved(line, invoice) == []) == (n < ANTI_REORG_DELAY - 1)
    [result] = _resolved(line, invoice)
    assert result["status"] == "failed"
    assert line.alice.handles[line.ab].channel.state is ChannelState.NORMAL
    assert _local(line.alice, line.ab) == FUNDING_MSAT and line.bob.forwarder.links == {}


def test_alice_away_bob_learns_the_preimage_and_claims_on_chain_before_her_htlc_expires() -> None:
    """Alice disconnects while Carol holds; Carol settles with Bob: Bob cannot fulfil Alice
    off chain, but his Alice-Bob monitor learns the preimage, so 7 blocks before her HTLC
    expires Bob broadcasts his commitment and claims the HTLC with his HTLC-success."""
    line = _line(Net())
    invoice = _held_payment(line)
    line.alice.peer_disconnected(line.bob.node_id)
    line.bob.peer_disconnected(line.alice.node_id)
    _settle_hold(line.carol, line.net, invoice)
    assert _local(line.bob, line.bc) == FUNDING_MSAT - AMOUNT_MSAT   # Carol paid off chain
    monitor = _monitor(line.bob, line.ab)
    assert invoice.payment_hash in monitor.known_preimages()
    assert [link.preimage is not None for link in line.bob.forwarder.links.values()] == [True]
    expiry = _expiry(line.bob, line.ab, Side.COUNTERPARTY)
    assert _block(line.net, line.bob, expiry - 8).broadcasts == []
    [raw] = _block(line.net, line.bob, expiry - 7).broadcasts
    commitment = CTransaction.deserialize(raw)
    _block(line.net, line.bob, expiry - 6, [commitment])
    success = _claim(monitor, expiry - 6, ClaimKind.HTLC_SUCCESS)
    [vout] = [v for v, o in enumerate(commitment.vout)
              if int(o.nValue) == (AMOUNT_MSAT + BOB_FEE_MSAT) // 1000]
    assert _spent(success) == {OutPoint(txid=bytes(commitment.GetTxid()), vout=vout)}
    assert line.bob.forwarder.links == {}   # the monitor has it now
