"""Three channel managers in a line, Alice → Bob → Carol, in memory: Bob forwards (BOLT 4/2)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_manager import HEIGHT, NOW, Net

from channel.bolt11 import Bolt11Invoice as Invoice
from channel.effects import ChannelHandle, Effects, PaymentResolved
from channel.forwarder import Forwarder, ForwardLink, NodePolicy
from channel.gossip import ChannelUpdate
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import UpdateAddHtlc, UpdateFailHtlc, decode_message, encode_message
from channel.monitor import ChannelMonitor
from channel.onion_failures import FeeInsufficient, UnknownNextPeer, channel_update_body
from channel.payer import local_short_channel_id
from channel.payments import FINAL_CLTV_DELTA, Payments
from channel.route import Route, RouteHop, RouteOnion, build_route_onion, read_route_failure
from channel.state import channel_from_record
from channel.store import ForwardRow, NodeStore
from channel.types import Side

AMOUNT_MSAT = 12_345_678
BOB_FEE_MSAT = 1000 + AMOUNT_MSAT * 1 // 1_000_000   # the default policy: 1000 msat + 1 ppm


@dataclass
class DurableNet(Net):
    """A :class:`Net` whose nodes keep what each flight made durable (channel records and
    forward links), so a node can be "killed" and rebuilt from its database alone."""

    db: dict[bytes, dict[str, dict[Any, Any]]] = field(default_factory=dict)

    def complete(self, node_id: bytes, fx: Effects) -> None:
        manager = self.managers[node_id]
        for need in fx.funding:
            txid = hashlib.sha256(need.key.encode()).digest()
            manager.funded(need.key, txid=txid, vout=0, raw_tx=b"funding " + txid, fx=fx)
        fx.funding.clear()
        manager.end_of_batch(fx)
        records = manager.flight_records(fx)
        db = self.db.setdefault(node_id, {"channels": {}, "forwards": {},
                                                "monitors": {}})
        for row in records.channels:
            db["channels"][row.key] = (row.peer_id, row.record)
        for handle in fx.touched:   # a whole snapshot each flight (the node appends updates)
            if handle.monitor is not None:
                db["monitors"][handle.key] = handle.monitor.to_record()
        for f in records.forwards:
            if f.record is None:
                db["forwards"].pop((f.incoming_key, f.incoming_htlc_id), None)
            else:
                db["forwards"][(f.incoming_key, f.incoming_htlc_id)] = f.record
        for peer_id, message in fx.outgoing:
            self.queue.append((node_id, peer_id, encode_message(message)))
        self.broadcasts += fx.broadcasts
        self.resolutions[node_id] += fx.resolutions

    def restart(self, name: str) -> ChannelManager:
        """kill -9 then start: a new manager from the durable records only; peers notice."""
        old = next(m for m in self.managers.values()
                   if m.node_id == PrivateKey(hashlib.sha256(name.encode()).digest()).pubkey)
        self.queue = type(self.queue)((s, r, m) for s, r, m in self.queue
                                      if old.node_id not in (s, r))
        secret = hashlib.sha256(name.encode()).digest()
        handles = []
        for key, (peer_id, record) in self.db[old.node_id]["channels"].items():
            chan = channel_from_record(record)
            chan.on_disconnect()
            handle = ChannelHandle(key=key, peer_id=bytes.fromhex(peer_id), channel=chan)
            if key in self.db[old.node_id]["monitors"]:
                handle.monitor = ChannelMonitor.from_record(self.db[old.node_id]["monitors"][key])
            handles.append(handle)
        links = [ForwardLink.from_record(r) for r in self.db[old.node_id]["forwards"].values()]
        new = ChannelManager(
            node_id=old.node_id, config=old.config, sweep_script=old.sweep_script,
            payments=Payments(node_id=old.node_id, node_secret=secret),
            handles=handles, forwarder=Forwarder(node_secret=secret, links=links))
        new.height = old.height
        self.managers[old.node_id] = new
        for peer in self.managers.values():
            if peer is not new and any(h.peer_id == peer.node_id for h in handles):
                peer.peer_disconnected(new.node_id)
                self.connect(new, peer)
        return new


def _scid(manager: ChannelManager, key: str) -> bytes:
    return local_short_channel_id(manager.handles[key])


@dataclass
class Line:
    net: Net
    alice: ChannelManager
    bob: ChannelManager
    carol: ChannelManager
    ab: str
    bc: str


def _line(net: Net) -> Line:
    alice, bob, carol = net.add("alice"), net.add("bob"), net.add("carol")
    net.connect(alice, bob)
    net.connect(bob, carol)
    ab = net.open(alice, bob)
    bc = net.open(bob, carol)
    return Line(net, alice, bob, carol, ab, bc)


def _route(line: Line, *, fee_base_msat: int = 1000, last_scid: bytes | None = None,
           extra_hop: bool = False) -> Route:
    hops = [RouteHop(node_id=line.bob.node_id, short_channel_id=_scid(line.alice, line.ab)),
            RouteHop(node_id=line.carol.node_id, short_channel_id=_scid(line.bob, line.bc),
                     fee_base_msat=fee_base_msat, fee_proportional_millionths=1,
                     cltv_expiry_delta=40)]
    if extra_hop:   # beyond Carol, over a channel she does not have
        hops.append(RouteHop(node_id=line.alice.node_id,
                             short_channel_id=last_scid or bytes(8)))
    return Route(hops=tuple(hops))


def _send(line: Line, route: Route, invoice: Invoice) -> RouteOnion:
    """What the payer does (channel/payments.py will do it from a route): the route's onion
    on the first hop's channel."""
    built = build_route_onion(route, payment_hash=invoice.payment_hash,
                              payment_secret=invoice.payment_secret,
                              total_msat=invoice.amount_msat,
                              final_cltv=HEIGHT + FINAL_CLTV_DELTA,
                              session_key=hashlib.sha256(b"session").digest())
    handle = line.alice.handles[line.ab]
    fx = Effects()
    fx.touch(handle)
    fx.send(line.bob.node_id, handle.channel.add_htlc(
        amount_msat=built.amount_msat, payment_hash=invoice.payment_hash,
        cltv_expiry=built.cltv_expiry, onion_routing_packet=built.onion))
    line.alice.payments.in_flight.add(invoice.payment_hash)
    line.net.complete(line.alice.node_id, fx)
    return built


def _invoice(line: Line, amount_msat: int = AMOUNT_MSAT) -> Invoice:
    fx = Effects()
    invoice = line.carol.payments.create_invoice(amount_msat, "through bob", False, fx,
                                                    now=NOW)
    line.net.complete(line.carol.node_id, fx)
    return invoice


def _local(manager: ChannelManager, key: str) -> int:
    return manager.handles[key].channel.balance_msat(Side.HOLDER)


def _outcome(line: Line, invoice: Invoice) -> dict[str, Any]:
    [result] = [r.result for r in line.net.resolutions[line.alice.node_id]
                if isinstance(r, PaymentResolved) and r.payment_hash == invoice.payment_hash]
    return result


def _no_htlcs(line: Line) -> None:
    for manager in (line.alice, line.bob, line.carol):
        for handle in manager.handles.values():
            assert handle.channel.htlcs_in_flight() == []
    assert line.bob.forwarder.links == {}


def test_forward_pays_carol_and_bob_keeps_exactly_his_fee() -> None:
    """Alice pays Carol through Bob: Carol receives the amount, Bob's two channels move by
    exactly his announced fee (1000 msat + 1 ppm), Alice learns the preimage, nothing left."""
    line = _line(Net())
    invoice = _invoice(line)
    before_ab, before_bc = _local(line.bob, line.ab), _local(line.bob, line.bc)
    built = _send(line, _route(line), invoice)
    line.net.run()

    assert built.amount_msat == AMOUNT_MSAT + BOB_FEE_MSAT == 12_346_690
    result = _outcome(line, invoice)
    assert result["status"] == "succeeded"
    assert hashlib.sha256(bytes.fromhex(result["payment_preimage"])).digest() == \
        invoice.payment_hash
    assert _local(line.bob, line.ab) - before_ab == AMOUNT_MSAT + BOB_FEE_MSAT
    assert before_bc - _local(line.bob, line.bc) == AMOUNT_MSAT
    assert _local(line.carol, line.bc) == AMOUNT_MSAT
    assert _local(line.alice, line.ab) == 1_000_000_000 - AMOUNT_MSAT - BOB_FEE_MSAT
    row = line.carol.payments.payment(invoice.payment_hash.hex())
    assert row is not None and row.status == "succeeded"
    _no_htlcs(line)


def test_fee_too_low_fails_at_bob_and_alice_reads_fee_insufficient() -> None:
    """A route offering Bob 999 msat of base fee is refused by Bob with fee_insufficient and
    his channel_update, encrypted for Alice (hop 0); no balance moves and no HTLC stays."""
    line = _line(Net())
    invoice = _invoice(line)
    route = _route(line, fee_base_msat=999)
    built = _send(line, route, invoice)
    line.net.run()

    result = _outcome(line, invoice)
    assert result["status"] == "failed"
    assert _local(line.alice, line.ab) == 1_000_000_000
    # the reason Alice got is the onion; the payer (channel/payments.py) decrypts it like this
    failed = read_route_failure(route, built, _fail_reason(line))
    assert failed.hop_index == 0 and failed.node_id == line.bob.node_id
    failure = failed.decrypted.failure
    assert isinstance(failure, FeeInsufficient)
    assert failure.htlc_msat == AMOUNT_MSAT + 999 + AMOUNT_MSAT // 1_000_000
    # with Bob's channel_update for Bob-Carol, so that Alice can apply it and retry
    update = ChannelUpdate.decode(channel_update_body(failure.channel_update))
    assert (update.short_channel_id, update.fee_base_msat, update.fee_proportional_millionths,
            update.cltv_expiry_delta) == (_scid(line.bob, line.bc), 1000, 1, 40)
    assert update.direction == (0 if line.bob.node_id < line.carol.node_id else 1)
    _no_htlcs(line)


def _fail_reason(line: Line) -> bytes:
    """The ``reason`` of the last update_fail_htlc Alice received (her log forgets it once
    the HTLC is pruned: the spy below keeps it as it came off the wire)."""
    return _FAILS_RECEIVED[line.alice.node_id]


_FAILS_RECEIVED: dict[bytes, bytes] = {}


@pytest.fixture(autouse=True)
def _record_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the reason of the last update_fail_htlc each manager receives."""
    original = ChannelManager.handle_message
    _FAILS_RECEIVED.clear()

    def spy(self: ChannelManager, peer_id: bytes, message: Any, fx: Effects, *,
            fresh_script: bytes | None = None) -> None:
        if isinstance(message, UpdateFailHtlc):
            _FAILS_RECEIVED[self.node_id] = message.reason
        original(self, peer_id, message, fx, fresh_script=fresh_script)

    monkeypatch.setattr(ChannelManager, "handle_message", spy)


def test_failure_downstream_is_wrapped_by_bob_and_decrypted_at_alice() -> None:
    """Carol cannot forward to an unknown channel: her unknown_next_peer, wrapped by Bob,
    reads at Alice as hop 1 (Carol); Bob's balances are as before."""
    line = _line(Net())
    invoice = _invoice(line)
    before = (_local(line.bob, line.ab), _local(line.bob, line.bc))
    route = _route(line, extra_hop=True, last_scid=bytes.fromhex("0000010000020003"))
    built = _send(line, route, invoice)
    line.net.run()

    assert _outcome(line, invoice)["status"] == "failed"
    failed = read_route_failure(route, built, _fail_reason(line))
    assert failed.hop_index == 1 and failed.node_id == line.carol.node_id
    assert isinstance(failed.decrypted.failure, UnknownNextPeer)
    assert (_local(line.bob, line.ab), _local(line.bob, line.bc)) == before
    _no_htlcs(line)


def test_forward_lost_with_the_connection_is_retransmitted_and_completes() -> None:
    """Bob's update_add_htlc and commitment_signed to Carol are lost with the connection:
    at channel_reestablish Bob sends them again (BOLT 2) and the payment completes."""
    line = _line(Net())
    invoice = _invoice(line)
    route = _route(line)
    _send(line, route, invoice)
    net = line.net
    while net.queue:   # deliver until Bob offers the HTLC to Carol, then cut B-C
        sender, receiver, raw = net.queue[0]
        if sender == line.bob.node_id and receiver == line.carol.node_id and \
                isinstance(decode_message(raw), UpdateAddHtlc):
            break
        net.queue.popleft()
        fx = Effects()
        net.managers[receiver].handle_message(sender, decode_message(raw), fx,
                                              fresh_script=net.scripts[receiver])
        net.complete(receiver, fx)
    net.queue = type(net.queue)(m for m in net.queue if line.carol.node_id not in m[:2])
    assert len(line.bob.forwarder.links) == 1
    line.bob.peer_disconnected(line.carol.node_id)
    line.carol.peer_disconnected(line.bob.node_id)
    net.connect(line.bob, line.carol)
    net.run()

    assert _outcome(line, invoice)["status"] == "succeeded"
    assert _local(line.carol, line.bc) == AMOUNT_MSAT
    _no_htlcs(line)


@pytest.mark.parametrize("cut_after", range(1, 11))
def test_bob_killed_at_any_flight_loses_nothing(cut_after: int) -> None:
    """Bob is killed after each of the 10 flights of a forward (only his durable records
    survive) and restarted: the payment completes, every channel's two ends agree to the msat
    and Bob's change is exactly his fee."""
    net = DurableNet()
    line = _line(net)
    invoice = _invoice(line)
    _send(line, _route(line), invoice)
    flights = 0
    while net.queue and flights < cut_after:
        sender, receiver, raw = net.queue.popleft()
        fx = Effects()
        net.managers[receiver].handle_message(sender, decode_message(raw), fx,
                                              fresh_script=net.scripts[receiver])
        net.complete(receiver, fx)
        flights += receiver == line.bob.node_id
    line.bob = net.restart("bob")
    net.run()

    result = _outcome(line, invoice)
    ab_alice, bc_carol = _local(line.alice, line.ab), _local(line.carol, line.bc)
    ab_bob, bc_bob = _local(line.bob, line.ab), _local(line.bob, line.bc)
    assert ab_alice + ab_bob == 1_000_000_000 and bc_carol + bc_bob == 1_000_000_000
    assert result["status"] == "succeeded"
    assert (ab_bob, bc_carol) == (AMOUNT_MSAT + BOB_FEE_MSAT, AMOUNT_MSAT)
    assert bc_bob == 1_000_000_000 - AMOUNT_MSAT
    _no_htlcs(line)


def test_forward_links_are_written_and_deleted_in_the_flight_transaction(tmp_path: Any) -> None:
    """The store keeps a forward link written in a flight and drops it when deleted later in
    the same flight's order; the record round-trips to the same ForwardLink."""
    link = ForwardLink(incoming_key="aa", incoming_htlc_id=7, outgoing_key="bb",
                       outgoing_htlc_id=3, payment_hash=bytes(range(32)),
                       shared_secret=bytes(32), incoming_amount_msat=2_001_000,
                       outgoing_amount_msat=2_000_000, preimage=None,
                       downstream_failure=b"\x01\x02")
    store = NodeStore(tmp_path / "node.db")
    store.commit_flight(forwards=[ForwardRow(incoming_key="aa", incoming_htlc_id=7,
                                             record=link.to_record())])
    assert [ForwardLink.from_record(r) for r in store.forwards()] == [link]
    assert link.fee_msat == 1_000
    store.commit_flight(forwards=[
        ForwardRow(incoming_key="cc", incoming_htlc_id=1, record=link.to_record()),
        ForwardRow(incoming_key="cc", incoming_htlc_id=1, record=None),
        ForwardRow(incoming_key="aa", incoming_htlc_id=7, record=None)])
    assert store.forwards() == []
    store.close()


def test_node_policy_is_the_channel_update_of_every_channel() -> None:
    """A node's policy (--fee-base-msat 5000 --fee-proportional-millionths 200
    --cltv-expiry-delta 60) makes Bob charge exactly 5000 + amount*200/1e6 msat."""
    net = Net()
    line = _line(net)
    line.bob.forwarder.policy = NodePolicy(fee_base_msat=5000, fee_proportional_millionths=200,
                                           cltv_expiry_delta=60)
    invoice = _invoice(line, 1_000_000)
    route = Route(hops=(
        RouteHop(node_id=line.bob.node_id, short_channel_id=_scid(line.alice, line.ab)),
        RouteHop(node_id=line.carol.node_id, short_channel_id=_scid(line.bob, line.bc),
                 fee_base_msat=5000, fee_proportional_millionths=200, cltv_expiry_delta=60)))
    before = _local(line.bob, line.ab) + _local(line.bob, line.bc)
    _send(line, route, invoice)
    net.run()
    assert _outcome(line, invoice)["status"] == "succeeded"
    assert _local(line.bob, line.ab) + _local(line.bob, line.bc) - before == 5000 + 200
    policy = line.bob.forwarder.policy.for_channel(line.bob.handles[line.bc])
    assert (policy.fee_base_msat, policy.cltv_expiry_delta, policy.htlc_maximum_msat) == \
        (5000, 60, 1_000_000_000)
    _no_htlcs(line)


def test_a_preimage_learnt_downstream_on_chain_fulfils_upstream() -> None:
    """Carol holds the HTLC; once Bob's monitor of the Bob-Carol channel knows the preimage
    (as when it sees Carol's HTLC-success on chain), Bob's next chain flight fulfils Alice's
    HTLC: Alice gets the preimage and Bob is paid amount + fee on the Alice-Bob channel."""
    net = Net()
    line = _line(net)
    fx = Effects()
    invoice = line.carol.payments.create_invoice(AMOUNT_MSAT, "held", True, fx, now=NOW)
    net.complete(line.carol.node_id, fx)
    _send(line, _route(line), invoice)
    net.run()
    assert [r for r in net.resolutions[line.alice.node_id] if isinstance(r, PaymentResolved)] \
        == []
    assert len(line.bob.forwarder.links) == 1
    row = line.carol.payments.payment(invoice.payment_hash.hex())
    assert row is not None and row.preimage is not None
    preimage = bytes.fromhex(row.preimage)
    fx = Effects()
    line.bob.dirty_monitors(fx)     # nothing known yet: nothing moves
    assert fx.outgoing == []
    monitor = line.bob.handles[line.bc].monitor
    assert monitor is not None
    monitor.provide_payment_preimage(preimage)
    fx = Effects()
    line.bob.dirty_monitors(fx)
    net.complete(line.bob.node_id, fx)
    net.run()

    assert _outcome(line, invoice) == {"status": "succeeded", "payment_preimage": row.preimage,
                                       "amount_msat": AMOUNT_MSAT + BOB_FEE_MSAT}
    assert _local(line.bob, line.ab) == AMOUNT_MSAT + BOB_FEE_MSAT
    upstream = line.bob.handles[line.ab].monitor
    assert upstream is not None and upstream.known_preimages()[invoice.payment_hash] == preimage


def test_two_forwarders_in_a_row_each_keep_exactly_their_fee() -> None:
    """Alice -> Bob -> Carol -> Dave with Bob at 1000 msat + 1 ppm and Carol at 5 msat +
    2000 ppm: Dave gets the amount, Carol and Bob each gain exactly their own fee."""
    net = Net()
    alice, bob, carol, dave = (net.add(n) for n in ("alice", "bob", "carol", "dave"))
    carol.forwarder.policy = NodePolicy(fee_base_msat=5, fee_proportional_millionths=2000,
                                        cltv_expiry_delta=30)
    for x, y in ((alice, bob), (bob, carol), (carol, dave)):
        net.connect(x, y)
    ab, bc, cd = net.open(alice, bob), net.open(bob, carol), net.open(carol, dave)
    fx = Effects()
    invoice = dave.payments.create_invoice(7_777_777, "two hops", False, fx, now=NOW)
    net.complete(dave.node_id, fx)
    carol_fee = 5 + 7_777_777 * 2000 // 1_000_000
    bob_fee = 1000 + (7_777_777 + carol_fee) * 1 // 1_000_000
    route = Route(hops=(
        RouteHop(node_id=bob.node_id, short_channel_id=_scid(alice, ab)),
        RouteHop(node_id=carol.node_id, short_channel_id=_scid(bob, bc), fee_base_msat=1000,
                 fee_proportional_millionths=1, cltv_expiry_delta=40),
        RouteHop(node_id=dave.node_id, short_channel_id=_scid(carol, cd), fee_base_msat=5,
                 fee_proportional_millionths=2000, cltv_expiry_delta=30)))
    built = build_route_onion(route, payment_hash=invoice.payment_hash,
                              payment_secret=invoice.payment_secret,
                              total_msat=invoice.amount_msat,
                              final_cltv=HEIGHT + FINAL_CLTV_DELTA,
                              session_key=hashlib.sha256(b"two hops").digest())
    assert built.fee_msat == bob_fee + carol_fee == 1000 + 7 + 5 + 15_555
    fx = Effects()
    fx.touch(alice.handles[ab])
    fx.send(bob.node_id, alice.handles[ab].channel.add_htlc(
        amount_msat=built.amount_msat, payment_hash=invoice.payment_hash,
        cltv_expiry=built.cltv_expiry, onion_routing_packet=built.onion))
    net.complete(alice.node_id, fx)
    net.run()

    [done] = [r for r in net.resolutions[alice.node_id] if isinstance(r, PaymentResolved)]
    assert done.result["status"] == "succeeded"
    assert _local(dave, cd) == 7_777_777
    assert _local(carol, bc) + _local(carol, cd) - 1_000_000_000 == carol_fee
    assert _local(bob, ab) + _local(bob, bc) - 1_000_000_000 == bob_fee
    assert _local(alice, ab) == 1_000_000_000 - built.amount_msat
    assert bob.forwarder.links == {} and carol.forwarder.links == {}
