"""Test helper: two in-memory channels (Alice opens, Bob accepts) driven message by message,
with a :class:`ChannelMonitor` for each side fed every monitor update as it is emitted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bitcoin.core import CTransaction, CTxOut
from bitcoin.core.script import CScript

from channel.keys import ChannelKeys, PrivateKey, compact_signature
from channel.monitor import ChannelMonitor, MonitorEvent
from channel.scripts import p2wpkh
from channel.state import Channel, ChannelConfig, ChannelState, ForceCloseTransactions
from channel.sweeps import build_htlc_transaction_with_fee, p2wpkh_output
from channel.transactions import build_htlc_transaction
from channel.types import CommitmentFormat, HtlcDirection, OutPoint

FUNDING_SAT = 1_000_000
FUNDING_OUTPOINT = OutPoint(txid=hashlib.sha256(b"funding").digest(), vout=1)
TO_SELF_DELAY = 10
SWEEP_FEERATE = 1000
ALICE_DEST = p2wpkh(PrivateKey(b"\x0a" * 32).pubkey)
BOB_DEST = p2wpkh(PrivateKey(b"\x0b" * 32).pubkey)
CLTV = 500
FEE_KEY = PrivateKey(b"\x0c" * 32)
FEE_COIN = OutPoint(txid=hashlib.sha256(b"fee coin").digest(), vout=0)
FEE_COIN_TX_OUT = CTxOut(100_000, CScript(p2wpkh(FEE_KEY.pubkey)))


def preimage(tag: str) -> bytes:
    """A deterministic preimage for a test payment."""
    return hashlib.sha256(b"preimage " + tag.encode()).digest()


@dataclass
class Pair:
    """Alice (opener) and Bob, their monitors, and every monitor event so far.

    ``alice_delay`` is the ``to_self_delay`` Alice imposes on Bob's to_local (her config),
    ``bob_delay`` the one Bob imposes on hers; equal unless a test sets them apart.
    """

    fmt: CommitmentFormat
    alice_delay: int = TO_SELF_DELAY
    bob_delay: int = TO_SELF_DELAY
    alice: Channel = field(init=False)
    bob: Channel = field(init=False)
    alice_monitor: ChannelMonitor = field(init=False)
    bob_monitor: ChannelMonitor = field(init=False)
    bob_events: list[MonitorEvent] = field(default_factory=list)
    alice_events: list[MonitorEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        a, open_msg = Channel.open_outbound(
            keys=ChannelKeys.from_seed(b"alice".ljust(32, b".")),
            config=ChannelConfig(to_self_delay=self.alice_delay),
            funding_sat=FUNDING_SAT, push_msat=0, feerate_per_kw=2000,
            temporary_channel_id=b"t" * 32, commitment_format=self.fmt)
        b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"bob".ljust(32, b".")),
                                           config=ChannelConfig(to_self_delay=self.bob_delay),
                                           msg=open_msg)
        a.on_accept_channel(accept)
        created = a.funding_created(FUNDING_OUTPOINT)
        self.alice, self.bob = a, b
        self.alice_monitor = ChannelMonitor.from_channel(a, ALICE_DEST, SWEEP_FEERATE,
                                                         peer_name="Bob")
        signed = b.on_funding_created(created)
        self.bob_monitor = ChannelMonitor.from_channel(b, BOB_DEST, SWEEP_FEERATE,
                                                       peer_name="Alice")
        a.on_funding_signed(signed)
        b.on_channel_ready(a.funding_locked())
        a.on_channel_ready(b.funding_locked())
        if a.state is not ChannelState.NORMAL or b.state is not ChannelState.NORMAL:
            raise RuntimeError("channel did not reach NORMAL")
        self.sync()

    def sync(self) -> None:
        """Hand both channels' pending monitor updates to their monitors."""
        self.alice_events += self.alice_monitor.apply_updates(self.alice.drain_monitor_updates())
        self.bob_events += self.bob_monitor.apply_updates(self.bob.drain_monitor_updates())

    def flush(self) -> None:
        """Exchange commitment_signed / revoke_and_ack until neither side has changes."""
        a, b = self.alice, self.bob
        while a.can_sign() or b.can_sign():
            if a.can_sign():
                a.on_revoke_and_ack(b.on_commitment_signed(a.sign_commitment()))
            if b.can_sign():
                b.on_revoke_and_ack(a.on_commitment_signed(b.sign_commitment()))
            self.sync()
        self.sync()

    def add(self, payer: Channel, amount_msat: int, tag: str, cltv_expiry: int = CLTV) -> None:
        """``payer`` offers an HTLC for ``preimage(tag)``; both commitments get it."""
        payee = self.bob if payer is self.alice else self.alice
        payee.on_update_add_htlc(payer.add_htlc(
            amount_msat=amount_msat, payment_hash=hashlib.sha256(preimage(tag)).digest(),
            cltv_expiry=cltv_expiry, onion_routing_packet=bytes(1366)))
        self.flush()

    def fulfill(self, payee: Channel, tag: str, *, commit: bool = True) -> None:
        """``payee`` fulfills the HTLC of ``preimage(tag)`` (optionally without committing)."""
        payer = self.bob if payee is self.alice else self.alice
        wanted = hashlib.sha256(preimage(tag)).digest()
        (entry,) = [h for h in payee.htlcs_to_settle() if h.payment_hash == wanted]
        payer.on_update_fulfill_htlc(payee.fulfill_htlc(entry.htlc_id, preimage(tag)))
        if commit:
            self.flush()

    def fail(self, payee: Channel, tag: str) -> None:
        """``payee`` fails the HTLC of ``preimage(tag)``."""
        payer = self.bob if payee is self.alice else self.alice
        wanted = hashlib.sha256(preimage(tag)).digest()
        (entry,) = [h for h in payee.htlcs_to_settle() if h.payment_hash == wanted]
        payer.on_update_fail_htlc(payee.fail_htlc(entry.htlc_id, b"no"))
        self.flush()

    def pay(self, payer: Channel, amount_msat: int, tag: str) -> None:
        """A whole payment: add, then fulfill."""
        payee = self.bob if payer is self.alice else self.alice
        self.add(payer, amount_msat, tag)
        self.fulfill(payee, tag)

    def snapshot(self, who: Channel) -> ForceCloseTransactions:
        """``who``'s current signed commitment and HTLC txs (what it could broadcast now)."""
        return who.holder_transactions()


def breach(fmt: CommitmentFormat, *, offered: bool, received: bool
            ) -> tuple[Pair, ForceCloseTransactions]:
    """Alice's commitment with the requested HTLCs in flight, captured, then revoked."""
    p = Pair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    if offered:
        p.add(p.alice, 50_000_000, "offered")   # OFFERED in Alice's commitment
    if received:
        p.add(p.bob, 40_000_000, "received")    # RECEIVED in Alice's commitment
    old = p.snapshot(p.alice)
    if offered:
        p.fulfill(p.bob, "offered")
    if received:
        p.fail(p.alice, "received")
    p.pay(p.alice, 10_000_000, "after")
    assert old.commitment.commitment_number in p.bob_monitor.revoked_commitment_numbers
    return p, old


def cheater_second_stage(p: Pair, old: ForceCloseTransactions, direction: HtlcDirection
                          ) -> CTransaction:
    """Alice's signed HTLC-timeout/-success tx of the revoked commitment; with anchors made
    relayable the way a cheater would, with a fee input (so its txid is not the pre-signed one)."""
    c = old.commitment
    (ho,) = [o for o in c.htlc_outputs if o.htlc.direction is direction]
    (signed,) = [t for t in old.htlc_txs if t.vin[0].prevout.n == ho.vout]
    if p.fmt is CommitmentFormat.STATIC_REMOTEKEY:
        return signed
    stack = [bytes(x) for x in signed.wit.vtxinwit[0].scriptWitness.stack]
    coin = p2wpkh_output(outpoint=FEE_COIN, amount_sat=100_000, privkey=FEE_KEY)
    return build_htlc_transaction_with_fee(
        build_htlc_transaction(c, ho), countersignatory_signature=compact_signature(stack[1][:-1]),
        broadcaster_htlc_privkey=p.alice.keys.htlc_privkey(c.keys.per_commitment_point),
        payment_preimage=stack[3] or None, fee_inputs=[coin], change_script_pubkey=ALICE_DEST,
        feerate_per_kw=2000).tx
