"""Test helper: two honest channel peers driven through a seeded random interleaving.

One run opens a channel with random parameters (format, funding, push, feerate, a different
``to_self_delay``, dust limit and HTLC limits per side), then takes random steps: adds in both
directions (often exactly at the sender's limit), fulfils and fails, ``update_fee`` jumps
(Electrum's regtest 37,500 and 56,250 sat/kw among them), signatures, deliveries that let one
direction lag behind the other, disconnections that lose every message in flight, restarts from
the persisted record, and eager updates attempted right after a reconnection. Each peer reacts
the way the node does: ``PeerProtocolError`` would fail the channel (an honest force-close:
the run fails), ``MalformedMessage``/``PeerWarning`` warns and reconnects.

After every step both sides' newest commitments must account for the whole capacity (balances
plus HTLCs in flight = funding, to the msat). At the end the link is healed, every HTLC settled,
and both sides must agree on every balance, on the commitment txids, and on each balance being
the opening balance plus the payments each side saw complete.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from channel.errors import MalformedMessage, PeerProtocolError, RejectedUpdate
from channel.htlc_log import Removal
from channel.keys import ChannelKeys
from channel.messages import (
    ChannelReady,
    ChannelReestablish,
    CommitmentSigned,
    RevokeAndAck,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
    decode_message,
    encode_message,
)
from channel.state import (
    Channel,
    ChannelConfig,
    ChannelState,
    channel_from_record,
    channel_to_record,
)
from channel.types import CommitmentFormat, OutPoint, Side

FUNDING_OUTPOINT = OutPoint(txid=hashlib.sha256(b"interleave funding").digest(), vout=0)
ONION = bytes(1366)
CLTV = 700
FEERATES = (253, 800, 1000, 2500, 6000, 20_000, 37_500, 56_250)


class HonestForceClose(AssertionError):
    """An honest peer would have failed the channel: what this harness exists to catch."""


@dataclass
class Peer:
    """One side: its channel, the preimages of payments to it, what it saw complete."""

    name: str
    chan: Channel
    opening_msat: int
    preimages: dict[bytes, bytes] = field(default_factory=dict)
    received_msat: int = 0      # fulfilled HTLCs to us, once gone from both commitments
    sent_msat: int = 0          # fulfilled HTLCs from us, likewise

    def watch(self) -> dict[tuple[Side, int], tuple[int, Removal | None]]:
        log = self.chan.log
        assert log is not None
        return {k: (h.amount_msat, h.removal) for k, h in log.htlcs.items()}

    def account(self, before: dict[tuple[Side, int], tuple[int, Removal | None]]) -> None:
        """Credit the fulfilled HTLCs that left the log (pruned) since ``before``."""
        log = self.chan.log
        assert log is not None
        for key, (amount, removal) in before.items():
            if key in log.htlcs:
                continue
            if removal is Removal.FULFILLED:
                if key[0] is Side.HOLDER:
                    self.sent_msat += amount
                else:
                    self.received_msat += amount


@dataclass
class Run:
    """One seeded run; ``run()`` raises ``AssertionError`` (or ``HonestForceClose``)."""

    seed: int
    steps: int = 160
    rng: random.Random = field(init=False)
    peers: dict[str, Peer] = field(init=False)
    queues: dict[str, list[Any]] = field(init=False)     # messages to each destination
    funding_sat: int = field(init=False)
    warnings: int = 0
    reconnections: int = 0
    payments: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.queues = {"a": [], "b": []}
        self._open()

    # -- set-up --------------------------------------------------------------------------

    def _open(self) -> None:
        rng = self.rng
        fmt = rng.choice(list(CommitmentFormat))
        self.funding_sat = rng.choice([60_000, 250_000, 1_000_000, 5_000_000])
        feerate = rng.choice([253, 1000, 2500] + ([37_500, 56_250]
                                                  if self.funding_sat >= 1_000_000 else []))
        push_msat = rng.choice([0, self.funding_sat * 1000 // 2,
                                rng.randrange(0, self.funding_sat * 1000 * 9 // 10)])

        def config() -> ChannelConfig:
            return ChannelConfig(
                to_self_delay=rng.choice([6, 144, 2016]),
                dust_limit_sat=rng.choice([354, 546, 1000]),
                max_accepted_htlcs=rng.choice([3, 8, 30, 483]),
                max_htlc_value_in_flight_msat=rng.choice(
                    [2**63 - 1, self.funding_sat * 1000 // 3]),
                htlc_minimum_msat=rng.choice([1, 1000]),
                channel_reserve_sat=max(self.funding_sat // 100, 1000))

        keys_a = ChannelKeys.from_seed(hashlib.sha256(b"a%d" % self.seed).digest())
        keys_b = ChannelKeys.from_seed(hashlib.sha256(b"b%d" % self.seed).digest())
        a, open_msg = Channel.open_outbound(
            keys=keys_a, config=config(), funding_sat=self.funding_sat, push_msat=push_msat,
            feerate_per_kw=feerate, temporary_channel_id=hashlib.sha256(b"t").digest(),
            commitment_format=fmt)
        b, accept = Channel.accept_inbound(keys=keys_b, config=config(), msg=open_msg)
        a.on_accept_channel(accept)
        a.on_funding_signed(b.on_funding_created(a.funding_created(FUNDING_OUTPOINT)))
        b.on_channel_ready(a.funding_locked())
        a.on_channel_ready(b.funding_locked())
        assert a.state is ChannelState.NORMAL and b.state is ChannelState.NORMAL
        self.peers = {"a": Peer("a", a, a.balance_msat()), "b": Peer("b", b, b.balance_msat())}

    @staticmethod
    def other(name: str) -> str:
        return "b" if name == "a" else "a"

    # -- what one node does ----------------------------------------------------------------

    def _send(self, sender: str, msgs: list[Any]) -> None:
        self.queues[self.other(sender)] += msgs

    def _guarded(self, name: str, call: Any) -> Any:
        """Run a peer's handler the way the node does; a warning reconnects."""
        peer = self.peers[name]
        before = peer.watch()
        try:
            result = call()
        except PeerProtocolError as exc:
            raise HonestForceClose(
                f"seed {self.seed}: {name} would fail the channel: "
                f"{type(exc).__name__}: {exc}") from exc
        except MalformedMessage as exc:      # PeerWarning included: warn and reconnect
            self.warnings += 1
            peer.account(before)
            self._reconnect(note=f"{name} warned: {exc}")
            return None
        peer.account(before)
        return result

    def _receive(self, name: str, msg: Any) -> list[Any]:
        chan = self.peers[name].chan
        if isinstance(msg, ChannelReestablish):
            return list(chan.on_channel_reestablish(msg))
        if isinstance(msg, UpdateAddHtlc):
            chan.on_update_add_htlc(msg)
        elif isinstance(msg, UpdateFulfillHtlc):
            chan.on_update_fulfill_htlc(msg)
        elif isinstance(msg, UpdateFailHtlc):
            chan.on_update_fail_htlc(msg)
        elif isinstance(msg, UpdateFee):
            chan.on_update_fee(msg)
        elif isinstance(msg, CommitmentSigned):
            return [chan.on_commitment_signed(msg)]
        elif isinstance(msg, RevokeAndAck):
            chan.on_revoke_and_ack(msg)
        elif isinstance(msg, ChannelReady):
            chan.on_channel_ready(msg)
        else:
            raise AssertionError(f"unexpected {type(msg).__name__}")
        return []

    def deliver(self, dest: str) -> None:
        msg = decode_message(encode_message(self.queues[dest].pop(0)))
        out = self._guarded(dest, lambda: self._receive(dest, msg))
        if out is not None:
            self._send(dest, out)
            if self.rng.random() < 0.7:      # the node signs what it just received
                self.sign(dest)

    def sign(self, name: str) -> None:
        chan = self.peers[name].chan
        if chan.can_sign():
            self._send(name, [chan.sign_commitment()])

    def add(self, name: str) -> None:
        peer, payee = self.peers[name], self.peers[self.other(name)]
        chan = peer.chan
        room = chan.available_to_send_msat()
        roll = self.rng.random()
        if roll < 0.3:
            amount = room
        elif roll < 0.4:
            amount = self.rng.randrange(1, 600_000)          # dust on some commitments
        else:
            amount = self.rng.randrange(1, max(2, room + room // 10))
        if amount < 1:
            return
        self.payments += 1
        preimage = hashlib.sha256(b"%d %d" % (self.seed, self.payments)).digest()
        payment_hash = hashlib.sha256(preimage).digest()
        try:
            msg = chan.add_htlc(amount_msat=amount, payment_hash=payment_hash,
                                cltv_expiry=CLTV, onion_routing_packet=ONION)
        except RejectedUpdate:
            return
        payee.preimages[payment_hash] = preimage
        self._send(name, [msg])

    def settle(self, name: str) -> None:
        peer = self.peers[name]
        settleable = peer.chan.htlcs_to_settle()
        if not settleable:
            return
        h = self.rng.choice(settleable)
        if self.rng.random() < 0.75:
            msg: Any = peer.chan.fulfill_htlc(h.htlc_id, peer.preimages[h.payment_hash])
        else:
            msg = peer.chan.fail_htlc(h.htlc_id, b"no")
        self._send(name, [msg])

    def update_fee(self) -> None:
        chan = self.peers["a"].chan
        try:
            self._send("a", [chan.update_fee(self.rng.choice(FEERATES))])
        except RejectedUpdate:
            pass

    def _reconnect(self, *, note: str = "", restart: bool = False) -> None:
        """Lose everything in flight, optionally restart either side, send reestablish."""
        self.reconnections += 1
        for q in self.queues.values():
            q.clear()
        for peer in self.peers.values():
            if restart and self.rng.random() < 0.5:
                stored = json.loads(json.dumps(channel_to_record(peer.chan)))
                peer.chan = channel_from_record(stored)
            before = peer.watch()
            peer.chan.on_disconnect()
            peer.account(before)
        for name, peer in self.peers.items():
            self._send(name, [peer.chan.channel_reestablish()])

    # -- invariants ------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """Each side's newest commitments hold exactly the capacity: balances + HTLCs."""
        capacity = self.funding_sat * 1000
        for peer in self.peers.values():
            chan, log = peer.chan, peer.chan.log
            assert log is not None
            for side, number in ((Side.HOLDER, chan.holder_commitment_number),
                                 (Side.COUNTERPARTY, chan.counterparty_commitment_number)):
                balances = log.balances_msat(side, number)
                in_flight = sum(h.amount_msat for h in log.htlcs_in_commitment(side, number))
                total = balances[Side.HOLDER] + balances[Side.COUNTERPARTY] + in_flight
                assert total == capacity, (
                    f"seed {self.seed}: {peer.name}'s {side.value} commitment {number} "
                    f"holds {total} msat of {capacity}")
                assert min(balances.values()) >= 0, f"seed {self.seed}: negative {balances}"

    # -- the run ---------------------------------------------------------------------------

    def step(self) -> None:
        rng = self.rng
        name = rng.choice("ab")
        roll = rng.random()
        if roll < 0.22:
            self._guarded(name, lambda: self.add(name))
        elif roll < 0.34:
            self._guarded(name, lambda: self.settle(name))
        elif roll < 0.39:
            self._guarded("a", self.update_fee)
        elif roll < 0.50:
            self._guarded(name, lambda: self.sign(name))
        elif roll < 0.97:
            # deliveries: the chosen direction may lag far behind the other one
            dest = name if rng.random() < 0.8 else self.other(name)
            if self.queues[dest]:
                self.deliver(dest)
        else:
            self._reconnect(restart=rng.random() < 0.4)
            # an eager node tries to update before the peer's channel_reestablish arrived
            for eager in "ab":
                self._guarded(eager, lambda: self.add(eager))  # noqa: B023
                self._guarded(eager, lambda: self.settle(eager))  # noqa: B023
                self._guarded(eager, lambda: self.sign(eager))  # noqa: B023
        self.check_capacity()

    def drain(self) -> None:
        """Heal the link, settle everything (fulfil), sign until quiet."""
        for _ in range(400):
            busy = False
            for name in "ab":
                while self.queues[name]:
                    busy = True
                    self.deliver(name)
            for name in "ab":
                peer = self.peers[name]
                for h in peer.chan.htlcs_to_settle():
                    self._send(name, [peer.chan.fulfill_htlc(h.htlc_id,
                                                             peer.preimages[h.payment_hash])])
                    busy = True
                if peer.chan.can_sign():
                    self.sign(name)
                    busy = True
            self.check_capacity()
            if not busy:
                return
        raise AssertionError(f"seed {self.seed}: the peers never went quiet")

    def run(self) -> None:
        for _ in range(self.steps):
            self.step()
        self.drain()
        self.check_final()

    def check_final(self) -> None:
        pa, pb = self.peers["a"], self.peers["b"]
        a, b = pa.chan, pb.chan
        assert a.log is not None and b.log is not None
        assert a.log.htlcs == {} and b.log.htlcs == {}, f"seed {self.seed}: HTLCs left"
        assert a.holder_commitment_number == b.counterparty_commitment_number
        assert b.holder_commitment_number == a.counterparty_commitment_number
        assert a.balance_msat(Side.HOLDER) == b.balance_msat(Side.COUNTERPARTY)
        assert a.balance_msat(Side.COUNTERPARTY) == b.balance_msat(Side.HOLDER)
        assert a.balance_msat() + b.balance_msat() == self.funding_sat * 1000
        for peer in (pa, pb):
            expected = peer.opening_msat + peer.received_msat - peer.sent_msat
            assert peer.chan.balance_msat() == expected, (
                f"seed {self.seed}: {peer.name} holds {peer.chan.balance_msat()} msat, its "
                f"payments say {expected}")
        assert pa.received_msat == pb.sent_msat and pa.sent_msat == pb.received_msat
        for x, y in ((a, b), (b, a)):
            mine = x._commitment(Side.HOLDER, x.holder_commitment_number)
            theirs = y._commitment(Side.COUNTERPARTY, x.holder_commitment_number)
            assert mine.txid == theirs.txid, f"seed {self.seed}: commitments differ"
