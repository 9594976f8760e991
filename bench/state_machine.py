"""Micro-benchmark of the pure BOLT 2 state machine: payments/s through two in-memory channels.

Pure (no socket, no disk, no chain): it measures what :class:`channel.state.Channel` costs per
payment, the floor under the node-to-node figures of ``make bench``. Run from the repository
root: ``python -m bench.state_machine`` (``--quick`` for a short run).

How it is measured, for each commitment format:

* Two channels (Alice opens 16,000,000 sat and pushes half to Bob) exchange every message
  through ``encode_message``/``decode_message``, as a peer loop would, so wire parsing and
  every check the receiver makes (signatures, amounts, revocation secrets) are included.
* A payment is complete when its HTLC is fulfilled and removed from both commitments: add,
  then two ``commitment_signed``/``revoke_and_ack`` round trips to lock it in, fulfill, then
  two more round trips to remove it.
* *Unbatched*: one 10,000 sat HTLC (above dust: every commitment has an HTLC output and an
  ``htlc_signature``) at a time, alternately Alice→Bob and Bob→Alice.
* *Batched*: 50 HTLCs of 2,000 sat added before each ``commitment_signed``; all 50 fulfilled
  before the next one.
* ``time.perf_counter`` around the loop only, after one warm-up payment; the figure is
  completed payments divided by elapsed seconds, in one CPython process on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from typing import Any

from channel.keys import ChannelKeys
from channel.messages import (
    CommitmentSigned,
    RevokeAndAck,
    UpdateAddHtlc,
    UpdateFulfillHtlc,
    decode_message,
    encode_message,
)
from channel.state import Channel, ChannelConfig
from channel.types import CommitmentFormat, OutPoint

FUNDING_SAT = 16_000_000
ONION = bytes(1366)
CLTV = 800


def _wire(msg: Any) -> Any:
    return decode_message(encode_message(msg))


def _open(fmt: CommitmentFormat) -> tuple[Channel, Channel]:
    config = ChannelConfig(to_self_delay=144)
    alice, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(b"\x01" * 32), config=config, funding_sat=FUNDING_SAT,
        push_msat=FUNDING_SAT * 500, feerate_per_kw=1000, temporary_channel_id=b"\x02" * 32,
        commitment_format=fmt)
    bob, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"\x03" * 32),
                                         config=config, msg=_wire(open_msg))
    alice.on_accept_channel(_wire(accept))
    created = alice.funding_created(OutPoint(txid=b"\x04" * 32, vout=0))
    alice.on_funding_signed(_wire(bob.on_funding_created(_wire(created))))
    bob.on_channel_ready(_wire(alice.funding_locked()))
    alice.on_channel_ready(_wire(bob.funding_locked()))
    return alice, bob


def _round_trips(x: Channel, y: Channel) -> None:
    """commitment_signed / revoke_and_ack until neither side has anything to sign."""
    while x.can_sign() or y.can_sign():
        for signer, other in ((x, y), (y, x)):
            if signer.can_sign():
                signed = _wire(signer.sign_commitment())
                assert isinstance(signed, CommitmentSigned)
                revoke = _wire(other.on_commitment_signed(signed))
                assert isinstance(revoke, RevokeAndAck)
                signer.on_revoke_and_ack(revoke)
                signer.drain_monitor_updates()
                other.drain_monitor_updates()


class _Payments:
    def __init__(self) -> None:
        self.counter = 0

    def run(self, payer: Channel, payee: Channel, amount_msat: int, count: int) -> None:
        """``count`` HTLCs from payer to payee in one batch, fulfilled, fully settled."""
        preimages: dict[bytes, bytes] = {}
        for _ in range(count):
            self.counter += 1
            preimage = hashlib.sha256(self.counter.to_bytes(8, "big")).digest()
            payment_hash = hashlib.sha256(preimage).digest()
            preimages[payment_hash] = preimage
            add = _wire(payer.add_htlc(amount_msat=amount_msat, payment_hash=payment_hash,
                                       cltv_expiry=CLTV, onion_routing_packet=ONION))
            assert isinstance(add, UpdateAddHtlc)
            payee.on_update_add_htlc(add)
        _round_trips(payer, payee)
        for entry in payee.htlcs_to_settle():
            fulfill = _wire(payee.fulfill_htlc(entry.htlc_id, preimages[entry.payment_hash]))
            assert isinstance(fulfill, UpdateFulfillHtlc)
            payer.on_update_fulfill_htlc(fulfill)
        _round_trips(payee, payer)


def measure(fmt: CommitmentFormat, *, unbatched: int, batches: int,
            batch_size: int = 50) -> tuple[float, float]:
    """(unbatched payments/s, batched payments/s) for one commitment format."""
    alice, bob = _open(fmt)
    payments = _Payments()
    payments.run(alice, bob, 10_000_000, 1)                  # warm-up (caches, first sigs)
    started = time.perf_counter()
    for i in range(unbatched):
        payer, payee = (alice, bob) if i % 2 == 0 else (bob, alice)
        payments.run(payer, payee, 10_000_000, 1)
    single = unbatched / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(batches):
        payer, payee = (alice, bob) if i % 2 == 0 else (bob, alice)
        payments.run(payer, payee, 2_000_000, batch_size)
    batched = batches * batch_size / (time.perf_counter() - started)
    assert alice.log is not None and not alice.log.htlcs    # everything settled
    return single, batched


def main(argv: list[str] | None = None) -> None:
    """Print payments/s through two in-memory channels, unbatched and batched."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args(argv)
    unbatched, batches = (50, 4) if args.quick else (400, 20)
    print("state machine only: two in-memory channels, messages encoded and decoded, "
          "no sockets, no disk")
    for fmt in (CommitmentFormat.STATIC_REMOTEKEY, CommitmentFormat.ANCHORS):
        single, batched = measure(fmt, unbatched=unbatched, batches=batches)
        print(f"  {fmt.value:>16}: unbatched {single:8.0f} payments/s "
              f"({unbatched} payments of 10,000 sat, one HTLC in flight, 4 commitment_signed "
              f"+ 4 revoke_and_ack each)")
        print(f"  {'':>16}  batched   {batched:8.0f} payments/s "
              f"({batches} batches of 50 HTLCs of 2,000 sat per commitment_signed)")


if __name__ == "__main__":
    main()
