"""Three channel managers wired in memory (no sockets, no disk, no clock): open, pay, close."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from bitcoin.core import CTransaction

from channel.bolt11 import Bolt11Invoice
from channel.effects import (
    Effects,
    OpenResolved,
    PaymentResolved,
    PipelineDone,
    Resolution,
    ShutdownResolved,
)
from channel.errors import PeerProtocolError, RejectedUpdate
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import CommitmentSigned, decode_message, encode_message
from channel.payments import Payments
from channel.scripts import p2wpkh
from channel.state import ChannelConfig, ChannelState
from channel.types import Side
from channel.wire import ErrorMessage, WarningMessage

HEIGHT = 200
NOW = 1_800_000_000  # the invoices' timestamp (the managers read no clock)
FUNDING_SAT = 1_000_000


def _entropy(tag: str) -> Any:
    """Deterministic randomness per node: a counter hashed with the node's tag."""
    counter = iter(range(1 << 30))

    def draw(n: int) -> bytes:
        return hashlib.sha256(f"{tag}/{next(counter)}".encode()).digest()[:n]

    return draw


@dataclass
class Net:
    """Managers by node id; messages delivered in order, through the wire codec."""

    managers: dict[bytes, ChannelManager] = field(default_factory=dict)
    scripts: dict[bytes, bytes] = field(default_factory=dict)
    broadcasts: list[bytes] = field(default_factory=list)
    resolutions: dict[bytes, list[Resolution]] = field(default_factory=dict)
    queue: deque[tuple[bytes, bytes, bytes]] = field(default_factory=deque)

    def add(self, name: str) -> ChannelManager:
        secret = hashlib.sha256(name.encode()).digest()
        node_id = PrivateKey(secret).pubkey
        manager = ChannelManager(
            node_id=node_id, config=ChannelConfig(to_self_delay=10, minimum_depth=1),
            sweep_script=p2wpkh(PrivateKey(hashlib.sha256(b"sweep" + secret).digest()).pubkey),
            payments=Payments(node_id=node_id, node_secret=secret, entropy=_entropy(name)),
            entropy=_entropy(name))
        manager.height = HEIGHT
        self.managers[node_id] = manager
        self.scripts[node_id] = p2wpkh(PrivateKey(hashlib.sha256(b"close" + secret).digest())
                                       .pubkey)
        self.resolutions[node_id] = []
        return manager

    def complete(self, node_id: bytes, fx: Effects) -> None:
        """What the node shell does with a flight: persist (the manager's records), send,
        broadcast, answer."""
        manager = self.managers[node_id]
        for need in fx.funding:   # a wallet: a funding tx paying the channel's script
            txid = hashlib.sha256(need.key.encode()).digest()
            manager.funded(need.key, txid=txid, vout=0, raw_tx=b"funding " + txid, fx=fx)
        fx.funding.clear()
        manager.end_of_batch(fx)
        manager.flight_records(fx)
        for peer_id, message in fx.outgoing:
            self.queue.append((node_id, peer_id, encode_message(message)))
        self.broadcasts += fx.broadcasts
        self.resolutions[node_id] += fx.resolutions
        if fx.retries:   # the node's next flight: the failed payments' next routes
            retry = Effects()
            manager.retry_payments(fx.retries, retry)
            self.complete(node_id, retry)

    def run(self) -> None:
        while self.queue:
            sender, receiver, raw = self.queue.popleft()
            fx = Effects()
            self.managers[receiver].handle_message(sender, decode_message(raw), fx,
                                                   fresh_script=self.scripts[receiver])
            self.complete(receiver, fx)

    def connect(self, a: ChannelManager, b: ChannelManager) -> None:
        for x, y in ((a, b), (b, a)):
            fx = Effects()
            x.peer_connected(y.node_id, fx)
            self.complete(x.node_id, fx)
        self.run()

    def open(self, opener: ChannelManager, peer: ChannelManager, push_msat: int = 0) -> str:
        fx = Effects()
        handle = opener.open_channel(peer.node_id, funding_sat=FUNDING_SAT, push_msat=push_msat,
                                     anchors=False, fx=fx)
        self.complete(opener.node_id, fx)
        self.run()
        for manager in (opener, peer):   # the funding tx reached its depth
            for key, _ in manager.awaiting_lockin():
                fx = Effects()
                manager.funding_depth(key, 1, fx)
                self.complete(manager.node_id, fx)
        self.run()
        return handle.key

    def pay(self, payer: ChannelManager, payee: ChannelManager,
            amount_msat: int) -> Bolt11Invoice:
        fx = Effects()
        invoice = payee.payments.create_invoice(amount_msat, "test", False, fx, now=NOW)
        self.complete(payee.node_id, fx)
        fx = Effects()
        assert payer.pay([invoice], fx) == [None]
        self.complete(payer.node_id, fx)
        self.run()
        return invoice


def _balances(manager: ChannelManager, peer: ChannelManager) -> tuple[int, int]:
    chan = manager.usable_channel(peer.node_id).channel
    return chan.balance_msat(Side.HOLDER), chan.balance_msat(Side.COUNTERPARTY)


@pytest.fixture
def net() -> Net:
    return Net()


def test_three_managers_open_pay_and_close_with_exact_balances(net: Net) -> None:
    """Alice→Bob and Bob→Carol channels open, pay and close in memory; each payment moves
    exactly its amount, the payer learns the preimage, and the closes settle the balances."""
    alice, bob, carol = net.add("alice"), net.add("bob"), net.add("carol")
    net.connect(alice, bob)
    net.connect(bob, carol)
    ab = net.open(alice, bob)
    bc = net.open(bob, carol, push_msat=5_000_000)
    assert net.resolutions[alice.node_id][0] == OpenResolved(
        ab, alice.handles[ab].channel.funding_outpoint.txid_hex)  # type: ignore[union-attr]
    assert isinstance(net.resolutions[bob.node_id][0], OpenResolved)
    assert alice.handles[ab].channel.state is ChannelState.NORMAL
    assert carol.handles[bc].channel.state is ChannelState.NORMAL
    assert _balances(alice, bob) == (1_000_000_000, 0)
    assert _balances(bob, carol) == (995_000_000, 5_000_000)

    first = net.pay(alice, bob, 70_000_000)
    second = net.pay(bob, carol, 12_345_678)
    third = net.pay(alice, bob, 1_000)

    assert _balances(alice, bob) == (1_000_000_000 - 70_001_000, 70_001_000)
    assert _balances(bob, alice) == (70_001_000, 1_000_000_000 - 70_001_000)
    assert _balances(bob, carol) == (995_000_000 - 12_345_678, 5_000_000 + 12_345_678)
    assert _balances(carol, bob) == (17_345_678, 982_654_322)
    paid = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    assert [(r.payment_hash, r.result["status"], r.result["amount_msat"]) for r in paid] == \
        [(first.payment_hash, "succeeded", 70_000_000), (third.payment_hash, "succeeded", 1_000)]
    assert hashlib.sha256(bytes.fromhex(paid[0].result["payment_preimage"])).digest() == \
        first.payment_hash
    row = carol.payments.payment(second.payment_hash.hex())
    assert row is not None and (row.status, row.amount_msat) == ("succeeded", 12_345_678)
    for manager in (alice, bob, carol):
        for handle in manager.handles.values():
            assert handle.channel.htlcs_in_flight() == []

    for opener, peer, key in ((alice, bob, ab), (bob, carol, bc)):
        fx = Effects()
        opener.close(opener.handles[key], net.scripts[opener.node_id], fx)
        net.complete(opener.node_id, fx)
        net.run()
        done = [r for r in net.resolutions[opener.node_id] if isinstance(r, ShutdownResolved)]
        assert done[-1].key == key
        closing = CTransaction.deserialize(net.broadcasts[-1])
        assert closing.GetTxid()[::-1].hex() == done[-1].closing_txid
        outputs = {bytes(o.scriptPubKey): o.nValue for o in closing.vout}
        fee_sat = FUNDING_SAT - sum(outputs.values())
        peer_out = outputs[net.scripts[peer.node_id]]
        opener_out = outputs[net.scripts[opener.node_id]]
        if key == ab:
            assert peer_out == 70_001
            assert opener_out == 1_000_000 - 70_001 - fee_sat
        else:
            # outputs are whole satoshis (BOLT 3 rounds down): the two sides' sub-satoshi
            # remainders, 322 + 678 msat, make one more satoshi of fee
            assert peer_out == 17_345
            assert opener_out == 982_654 - (fee_sat - 1)
        assert 0 < fee_sat < 1_000


def test_pipeline_pays_in_batches_and_reports_done(net: Net) -> None:
    """A pipeline of 5 invoices in batches of 2 pays all 5 (one batch in flight at a time)
    and reports done once; a second payment of a paid invoice fails without moving money."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    net.open(alice, bob)
    fx = Effects()
    invoices = [bob.payments.create_invoice(1_000 * (i + 1), "", False, fx, now=NOW)
                for i in range(5)]
    net.complete(bob.node_id, fx)
    fx = Effects()
    alice.start_pipeline(invoices, 2, fx)
    assert len(alice.payments.in_flight) == 2
    net.complete(alice.node_id, fx)
    net.run()
    pipeline = alice.payments.pipelines[alice.usable_channel(bob.node_id).key]
    assert (pipeline.succeeded, pipeline.failed, pipeline.done) == (5, 0, True)
    assert sum(isinstance(r, PipelineDone) for r in net.resolutions[alice.node_id]) == 1
    assert _balances(bob, alice) == (15_000, 1_000_000_000 - 15_000)

    fx = Effects()
    assert alice.pay([invoices[0]], fx) == [{"status": "failed", "reason":
                                              "this invoice is already paid (we hold its "
                                              "preimage)"}]
    assert _balances(bob, alice) == (15_000, 1_000_000_000 - 15_000)


def test_local_misuse_is_refused_and_changes_nothing(net: Net) -> None:
    """Paying more than the channel holds is refused at once, and the channel and its
    payments are as before; naming an unknown channel is refused too."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    net.open(alice, bob)
    fx = Effects()
    invoice = bob.payments.create_invoice(2_000_000_000, "", False, fx, now=NOW)
    fx = Effects()
    [outcome] = alice.pay([invoice], fx)
    assert outcome is not None and outcome["status"] == "failed"
    assert alice.payments.in_flight == set() and fx.outgoing == []
    assert _balances(alice, bob) == (1_000_000_000, 0)
    with pytest.raises(RejectedUpdate, match="no channel"):
        alice.find("deadbeefdeadbeef")


def test_a_peer_protocol_fault_fails_the_channel(net: Net) -> None:
    """A commitment_signed with a bad signature raises PeerProtocolError; failing the channel
    sends ``error`` for it and broadcasts our latest commitment (state FORCE_CLOSING)."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    net.pay(alice, bob, 5_000_000)
    handle = bob.handle_for(alice.node_id, alice.handles[key].channel.channel_id)
    assert handle is not None
    chan = handle.channel
    bogus = CommitmentSigned(channel_id=chan.channel_id, signature=b"\x01" * 64,
                             htlc_signature=())
    fx = Effects()
    with pytest.raises(PeerProtocolError):
        bob.handle_message(alice.node_id, bogus, fx)
    assert fx.empty
    failed = Effects()
    bob.fail_channel(alice.node_id, chan.channel_id, "bad signature", failed)
    [(peer, error)] = failed.outgoing
    assert peer == alice.node_id and isinstance(error, ErrorMessage)
    assert error.channel_id == chan.channel_id
    [commitment] = failed.broadcasts
    assert chan.state is ChannelState.FORCE_CLOSING
    assert chan.closing_tx == commitment
    spent = CTransaction.deserialize(commitment).vin[0].prevout
    assert chan.funding_outpoint is not None
    assert (bytes(spent.hash), spent.n) == (chan.funding_outpoint.txid, chan.funding_outpoint.vout)


@pytest.mark.parametrize("kind", [ErrorMessage, WarningMessage])
def test_a_close_the_peer_refuses_fails_at_once_with_its_reason(
        net: Net, kind: type[ErrorMessage] | type[WarningMessage]) -> None:
    """The peer answers our shutdown with an error (or a warning): the close resolves at once
    with the peer's text; an error also force-closes (BOLT 1), a warning leaves the channel."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    handle = alice.handles[key]
    fx = Effects()
    alice.close(handle, net.scripts[alice.node_id], fx)
    net.complete(alice.node_id, fx)
    net.queue.clear()                       # bob never answers the shutdown...
    fx = Effects()                          # ...but refuses it
    refusal = kind.with_text(handle.channel.channel_id or b"", "There is no overlap between "
                             "their and our fee range")
    alice.handle_message(bob.node_id, refusal, fx)
    assert fx.resolutions == [ShutdownResolved(key, "", error=(
        "the peer refused the close: 'There is no overlap between their and our fee range'"))]
    if kind is ErrorMessage:
        assert handle.channel.state is ChannelState.FORCE_CLOSING and len(fx.broadcasts) == 1
    else:
        assert handle.channel.state is ChannelState.SHUTTING_DOWN and fx.broadcasts == []


def test_a_close_we_fail_resolves_with_the_reason(net: Net) -> None:
    """A protocol failure of ours during the close (fail_channel) fails the close command."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    handle = alice.handles[key]
    fx = Effects()
    alice.close(handle, net.scripts[alice.node_id], fx)
    net.complete(alice.node_id, fx)
    net.queue.clear()
    fx = Effects()
    alice.fail_channel(bob.node_id, handle.channel.channel_id, "closing fee ranges do not "
                       "overlap", fx)
    assert fx.resolutions == [ShutdownResolved(
        key, "", error="the close failed: closing fee ranges do not overlap")]


def test_a_force_close_during_the_close_negotiation_fails_the_close(net: Net) -> None:
    """The peer broadcasts its commitment while our close is negotiated: once our monitor sees
    it, the close resolves with an error (the funds follow the commitment), not a timeout."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    fx = Effects()
    alice.close(alice.handles[key], net.scripts[alice.node_id], fx)
    net.complete(alice.node_id, fx)
    net.queue.clear()                        # bob ignores the shutdown and force-closes
    fx = Effects()
    (bob_handle,) = bob.handles_of(alice.node_id)
    bob.force_close(bob_handle, fx)
    (commitment,) = fx.broadcasts
    alice.transaction_seen(CTransaction.deserialize(commitment))
    fx = Effects()
    alice.dirty_monitors(fx)
    assert fx.resolutions == [ShutdownResolved(key, "", error=(
        "a commitment spent the channel during the close negotiation (a force close): the "
        "funds follow it on chain, see `claimable`"))]
    assert alice.handles[key].channel.state is ChannelState.FORCE_CLOSING
    fx = Effects()
    alice.dirty_monitors(fx)
    assert fx.resolutions == []              # reported once


def test_an_htlc_dropped_on_disconnection_fails_its_payment_at_once(net: Net) -> None:
    """Alice's second HTLC, sent while her first commitment_signed awaits its revoke_and_ack,
    is in no signed commitment when the connection drops: BOLT 2 drops it, and its payment
    is failed (resolution and record), while the first, signed, HTLC stays in flight."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    net.open(alice, bob)
    invoices = []
    for amount_msat in (5_000_000, 7_000_000):
        fx = Effects()
        invoices.append(bob.payments.create_invoice(amount_msat, "test", False, fx, now=NOW))
        net.complete(bob.node_id, fx)
        fx = Effects()
        assert alice.pay([invoices[-1]], fx) == [None]
        net.complete(alice.node_id, fx)
    net.queue.clear()                      # the connection drops: nothing reaches Bob
    fx = Effects()
    alice.peer_disconnected(bob.node_id, fx)
    net.complete(alice.node_id, fx)
    first, second = (invoice.payment_hash for invoice in invoices)
    failed = [r for r in net.resolutions[alice.node_id]
              if isinstance(r, PaymentResolved) and r.result["status"] == "failed"]
    assert [r.payment_hash for r in failed] == [second]
    row = alice.payments.payment(second.hex())
    assert row is not None and row.status == "failed"
    assert second not in alice.payments.in_flight and first in alice.payments.in_flight
