"""I/O: benchmark of the watchtower: bytes per revoked state, lookup time per new transaction.

Run from the repository root: ``python -m bench.tower`` (``--states N``, ``--quick`` for 10,000).

How it measures (``time.perf_counter``, one process, one core):

1. Bytes per state: real justice kits built by a real client (two in-memory channels driven
   through payments, the victim's ``ChannelMonitor`` and ``justice_kit_for_state``) for revoked
   states with 0, 1 and 2 HTLCs, in both commitment formats: kit plaintext, stored bytes
   (16-byte hint + ciphertext with its 16-byte tag), and SQLite file bytes per state.
2. The store is then filled to ``--states`` entries: the real blobs plus random (hint, blob)
   pairs of the real no-HTLC blob size (to the tower, ciphertexts of strangers' states look
   exactly like that), in a dict store and in the SQLite store (WAL, synchronous=FULL; bulk
   loaded in one transaction).
3. Lookup per new transaction: ``Watchtower.on_raw_transaction(raw)`` on 20,000 distinct
   2-input / 2-output segwit transactions that match nothing (the common case: every mempool
   and block transaction), i.e. scan the raw bytes for the txid and prevout txids, then one
   hint lookup for the txid and one per input. Reported as mean microseconds per transaction.
4. A hit: the real breach transaction, from raw bytes to signed, verified justice txs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import bitcoin
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import CScript, CScriptWitness

from channel.keys import ChannelKeys, PrivateKey
from channel.monitor import ChannelMonitor
from channel.scripts import p2wpkh
from channel.state import Channel, ChannelConfig
from channel.tower import (
    MemoryTowerStore,
    TowerClient,
    TowerStore,
    Watchtower,
    justice_kit_for_state,
)
from channel.tower_store import SqliteTowerStore
from channel.types import CommitmentFormat, OutPoint

DEST = p2wpkh(PrivateKey(b"\x0b" * 32).pubkey)
CLIENT = TowerClient(PrivateKey(b"\x41" * 32))


class _Channels:
    """Alice (opener, the future cheater) and Bob (the tower's client) in memory."""

    def __init__(self, fmt: CommitmentFormat) -> None:
        cfg = ChannelConfig(to_self_delay=144)
        a, msg = Channel.open_outbound(keys=ChannelKeys.from_seed(b"A" * 32), config=cfg,
                                       funding_sat=1_000_000, push_msat=0, feerate_per_kw=2000,
                                       temporary_channel_id=b"t" * 32, commitment_format=fmt)
        b, acc = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"B" * 32), config=cfg,
                                        msg=msg)
        a.on_accept_channel(acc)
        created = a.funding_created(OutPoint(txid=b"f" * 32, vout=0))
        signed = b.on_funding_created(created)
        self.monitor = ChannelMonitor.from_channel(b, DEST, 1000)
        a.on_funding_signed(signed)
        b.on_channel_ready(a.funding_locked())
        a.on_channel_ready(b.funding_locked())
        self.a, self.b = a, b
        self.sync()

    def sync(self) -> None:
        self.monitor.apply_updates(self.b.drain_monitor_updates())

    def flush(self) -> None:
        a, b = self.a, self.b
        while a.can_sign() or b.can_sign():
            if a.can_sign():
                a.on_revoke_and_ack(b.on_commitment_signed(a.sign_commitment()))
            if b.can_sign():
                b.on_revoke_and_ack(a.on_commitment_signed(b.sign_commitment()))
        self.sync()

    def add(self, amount_msat: int, tag: bytes) -> None:
        self.b.on_update_add_htlc(self.a.add_htlc(
            amount_msat=amount_msat, payment_hash=hashlib.sha256(tag).digest(), cltv_expiry=500,
            onion_routing_packet=bytes(1366)))
        self.flush()

    def state_with(self, n_htlcs: int) -> tuple[CTransaction, int]:
        """Alice's commitment with ``n_htlcs`` HTLCs in flight, then revoked."""
        for i in range(n_htlcs):
            self.add(20_000_000 + i, b"h%d" % i)
        txs = self.a.holder_transactions()
        self.add(1_000_000, b"next-%d" % n_htlcs)   # Alice revokes the captured commitment
        return txs.commitment_tx, txs.commitment.commitment_number


def _random_tx(i: int) -> bytes:
    """A 2-in/2-out P2WPKH-shaped segwit transaction no tower has a blob for."""
    vin = [CTxIn(COutPoint(os.urandom(32), i % 4), CScript(), 0xFFFFFFFD) for _ in range(2)]
    vout = [CTxOut(50_000 + i, CScript(DEST)), CTxOut(7_000, CScript(DEST))]
    wit = CTxWitness([CTxInWitness(CScriptWitness([os.urandom(72), os.urandom(33)]))
                      for _ in range(2)])
    raw: bytes = CTransaction(vin, vout, 0, 2, wit).serialize()
    return raw


def _fill(store: TowerStore | SqliteTowerStore, count: int, blob_size: int) -> float:
    start = time.perf_counter()
    items = [(os.urandom(16), os.urandom(blob_size)) for _ in range(count)]
    if isinstance(store, SqliteTowerStore):
        store.put_blobs(CLIENT.pubkey, items)
    else:
        for hint, blob in items:
            store.put_blob(CLIENT.pubkey, hint, blob)
    return time.perf_counter() - start


def _lookup_us(tower: Watchtower, raws: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in raws:
        if tower.on_raw_transaction(raw):
            raise RuntimeError("a random transaction matched a blob")
    return (time.perf_counter() - start) / len(raws) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=100_000, help="blobs in the store")
    parser.add_argument("--quick", action="store_true", help="10,000 states")
    args = parser.parse_args()
    states = 10_000 if args.quick else args.states
    bitcoin.SelectParams("regtest")
    print(f"watchtower benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")

    # 1. real kits
    real: list[tuple[bytes, bytes]] = []
    breach: CTransaction | None = None
    print("bytes per revoked state (kit = plaintext; stored = 16 B hint + ciphertext + 16 B tag)")
    for fmt in CommitmentFormat:
        for n_htlcs in (0, 1, 2):
            chans = _Channels(fmt)
            tx, number = chans.state_with(n_htlcs)
            start = time.perf_counter()
            txid, kit = justice_kit_for_state(chans.monitor, number)
            upload = CLIENT.upload_kit(kit, txid)
            build_ms = (time.perf_counter() - start) * 1e3
            real.append((upload.hint, upload.blob))
            if fmt is CommitmentFormat.STATIC_REMOTEKEY and n_htlcs == 2:
                breach = tx
            print(f"  {fmt.value:16s} {n_htlcs} HTLC: kit {len(kit.to_bytes()):4d} B, stored "
                  f"{len(upload.hint) + len(upload.blob):4d} B  (client builds+signs it in "
                  f"{build_ms:.1f} ms)")
    assert breach is not None
    blob_size = len(real[0][1])

    raws = [_random_tx(i) for i in range(20_000)]
    breach_raw = breach.serialize()
    print(f"store filled to {states:,} states (real blobs + random blobs of {blob_size} B)")
    memory = MemoryTowerStore()
    memory.add_client(CLIENT.pubkey)
    for hint, blob in real:
        memory.put_blob(CLIENT.pubkey, hint, blob)
    _fill(memory, states - len(real), blob_size)
    mem_tower = Watchtower(memory)
    print(f"  dict store:   {_lookup_us(mem_tower, raws):6.1f} us per non-matching tx "
          f"(scan raw tx + {1 + 2} hint lookups), mean of {len(raws):,}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tower.db"
        store = SqliteTowerStore(path)
        store.add_client(CLIENT.pubkey)
        store.put_blobs(CLIENT.pubkey, real)
        load_s = _fill(store, states - len(real), blob_size)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        tower = Watchtower(store)
        _lookup_us(tower, raws[:1000])   # warm the page cache as a running tower would be
        print(f"  SQLite store: {_lookup_us(tower, raws):6.1f} us per non-matching tx, mean of "
              f"{len(raws):,}; file {size / states:.0f} B per state ({size / 1e6:.1f} MB; "
              f"bulk load {load_s:.1f} s)")
        start = time.perf_counter()
        justice = tower.on_raw_transaction(breach_raw)
        hit_ms = (time.perf_counter() - start) * 1e3
        print(f"  breach hit:   {hit_ms:6.2f} ms from raw breach tx to {len(justice)} signed, "
              "verified justice txs (decrypt, rebuild scripts, check each signature)")
        store.close()
    start = time.perf_counter()
    for raw in raws[:2000]:
        CTransaction.deserialize(raw).GetTxid()
    full_us = (time.perf_counter() - start) / 2000 * 1e6
    print(f"for scale: python-bitcoinlib deserialize + txid alone costs {full_us:.1f} us per tx")


if __name__ == "__main__":
    main()
