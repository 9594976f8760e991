"""I/O: figures that need real chanlab node processes on a real regtest bitcoind.

* Payments per second through one channel between two ``chanlab node start`` processes on
  loopback, durable state (each node's SQLite in WAL mode, ``synchronous=FULL``, in a folder on
  a real disk): one payment in flight, and batched (many HTLCs per ``commitment_signed``).
  Timed inside the paying node (control command ``pay-pipeline``), so this process and the
  control socket are not in the measurement; the same through one control call per payment is
  reported beside it. Both nodes' CPU time (user + system, from ``/proc``) over the run, per
  payment: on a shared machine it moves far less than payments per second.
* Breach to penalty: the time from a revoked commitment entering bitcoind's mempool to the
  penalty entering it, with the victim's node online, then with the victim offline and its
  watchtower acting. Both instants are taken from bitcoind's own ZMQ ``rawtx`` feed, on this
  process's clock (:class:`MempoolFeed`), so the feed's delay cancels out.
* Idle node memory: ``VmRSS`` of a started node with no peer and no channel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from bitcoin.core import CTransaction

from bench.figures import Sighting, penalty_latency_s
from regtest.bitcoind_binary import ensure_bitcoind
from regtest.cluster import Cluster, NodeProcess, TowerProcess
from regtest.errors import WaitTimeout
from regtest.node import BitcoindNode, LocalBitcoind
from regtest.wait import wait_for
from regtest.wallet import Wallet, ensure_mature_coins

__all__ = [
    "BreachRun",
    "MempoolFeed",
    "PaymentRun",
    "bench_cluster",
    "filesystem_of",
    "measure_breach",
    "measure_idle_rss_kb",
    "measure_payments",
    "process_cpu_s",
    "process_rss_kb",
]

Say = Callable[[str], None]

PAYMENT_MSAT = 2_000_000       # 2,000 sat: above dust + HTLC fee, so every HTLC is an output
CHANNEL_SAT = 16_000_000       # the largest channel without option_wumbo
FUNDS_SAT = 17_000_000
BATCH_SIZE = 200               # per commitment_signed; two batches overlap under the 483 cap
BREACH_CHANNEL_SAT = 1_000_000
BREACH_PAYMENT_MSAT = 100_000_000
PENALTY_WAIT_S = 10.0
_MAX_UNIX_PATH = 107


def _bench_root() -> Path:
    """Where the nodes keep their databases: a real disk, not tmpfs (fsync must cost)."""
    chosen = os.environ.get("CHANLAB_BENCH_DIR")
    if chosen:
        return Path(chosen)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "chanlab" / "bench"


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, fstype = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, fields[2]
    return fstype


@contextmanager
def bench_cluster(say: Say) -> Iterator[Cluster]:
    """A private regtest bitcoind with a funded miner, and a node cluster on a real disk."""
    binary = ensure_bitcoind(progress=lambda line: say(f"  {line}"))
    say(f"bitcoind: {binary.version_line} ({binary.bitcoind})")
    root = _bench_root()
    root.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    longest_socket = home / "nodes" / "cheatertower99" / "control.sock"
    if len(str(longest_socket).encode()) > _MAX_UNIX_PATH:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"{root} is too deep for the nodes' control sockets (AF_UNIX paths "
                           "are at most 107 bytes): set CHANLAB_BENCH_DIR to a shorter folder")
    fs = filesystem_of(home)
    say(f"node state in {home} ({fs}); SQLite WAL, synchronous=FULL")
    if fs in ("tmpfs", "ramfs"):
        say("  WARNING: this folder is in memory, fsync costs nothing: set CHANLAB_BENCH_DIR "
            "to a folder on a disk for durable-state figures")
    try:
        with LocalBitcoind(binary=binary) as node:
            miner = Wallet.open(node.rpc, "miner")
            ensure_mature_coins(miner)
            with Cluster.running(node, home, miner) as cluster:
                try:
                    yield cluster
                finally:
                    cluster.stop_all()
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- payments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRun:
    """One ``bench-pay`` run as the paying node reported it."""

    payments: int
    succeeded: int
    batch_size: int
    paid_s: float         # until the last preimage arrived
    settled_s: float      # until every HTLC was removed from both commitments again
    payer_cpu_s: float    # the paying process's user + system CPU over the run
    payee_cpu_s: float    # the same for the payee's process

    def __post_init__(self) -> None:
        if self.payments <= 0 or self.settled_s <= 0:
            raise ValueError("a payment run needs payments and a positive duration")

    @property
    def per_second(self) -> float:
        """Completed payments per second, to a quiescent channel."""
        return self.payments / self.settled_s

    @property
    def payer_cpu_ms(self) -> float:
        return self.payer_cpu_s / self.payments * 1e3

    @property
    def cpu_ms(self) -> float:
        """Both nodes' CPU per payment (the payer's includes reading each BOLT 11 invoice)."""
        return (self.payer_cpu_s + self.payee_cpu_s) / self.payments * 1e3


def _bench_pay(payer: NodeProcess, payee: NodeProcess, folder: Path, count: int,
               batch_size: int) -> PaymentRun:
    invoices = payee.call("invoices", count=count, amount_msat=PAYMENT_MSAT)["invoices"]
    path = folder / f"invoices-{count}-{batch_size}.txt"
    path.write_text("\n".join(invoices) + "\n")
    payer_before, payee_before = process_cpu_s(payer.pid), process_cpu_s(payee.pid)
    result: dict[str, Any] = payer.call("pay-pipeline", invoices_path=str(path),
                                        batch_size=batch_size)
    run = PaymentRun(payments=int(result["payments"]), succeeded=int(result["succeeded"]),
                     batch_size=int(result["batch_size"]), paid_s=float(result["paid_s"]),
                     settled_s=float(result["settled_s"]),
                     payer_cpu_s=process_cpu_s(payer.pid) - payer_before,
                     payee_cpu_s=process_cpu_s(payee.pid) - payee_before)
    if run.succeeded != run.payments:
        raise RuntimeError(f"only {run.succeeded} of {run.payments} payments succeeded")
    return run


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in kB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"process {pid} reports no VmRSS")


def measure_idle_rss_kb(cluster: Cluster, name: str = "idle", settle_s: float = 2.0) -> int:
    """VmRSS of a freshly started node with no peer and no channel, once it settled."""
    node = cluster.start_node(name)
    try:
        time.sleep(settle_s)
        node.call("info")
        return process_rss_kb(node.pid)
    finally:
        node.stop()


def _control_rate(payer: NodeProcess, payee: NodeProcess, count: int) -> float:
    """Payments/s with one ``pay`` control call each, timed in this process."""
    invoices = payee.call("invoices", count=count, amount_msat=PAYMENT_MSAT)["invoices"]
    started = time.perf_counter()
    for invoice in invoices:
        if payer.call("pay", invoice=invoice)["status"] != "succeeded":
            raise RuntimeError("a control-socket payment failed")
    return count / (time.perf_counter() - started)


def _channel_balances(node: NodeProcess, funding_txid: str) -> tuple[int, int]:
    chan = node.cluster.channel(node, funding_txid)
    return int(chan["local_msat"]), int(chan["remote_msat"])


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFigures:
    unbatched: PaymentRun
    batched: PaymentRun
    control_per_second: float
    control_payments: int
    payee_received_msat: int


def measure_payments(cluster: Cluster, say: Say, *, unbatched: int, batched: int,
                     control: int, warmup: int = 20,
                     names: tuple[str, str] = ("alice", "bob")) -> PaymentFigures:
    """Alice pays Bob through one channel: one in flight, then batched; balances checked.

    ``names`` are the node names (also their wallet names on bitcoind)."""
    alice = cluster.start_node(names[0], funds_sat=FUNDS_SAT)
    bob = cluster.start_node(names[1])
    opened = cluster.open_channel(alice, bob, CHANNEL_SAT)
    funding_txid = str(opened["funding_txid"])
    say(f"channel alice -> bob: {CHANNEL_SAT:,} sat, funding {funding_txid}")
    folder = cluster.home / "bench"
    folder.mkdir(exist_ok=True)
    _bench_pay(alice, bob, folder, warmup, 1)   # first use of every code path: not timed
    one = _bench_pay(alice, bob, folder, unbatched, 1)
    many = _bench_pay(alice, bob, folder, batched, BATCH_SIZE)
    control_rate = _control_rate(alice, bob, control)
    bob_local, bob_remote = _channel_balances(bob, funding_txid)
    paid = (warmup + unbatched + batched + control) * PAYMENT_MSAT
    if bob_local != paid:
        raise RuntimeError(f"bob holds {bob_local} msat after payments of {paid} msat in total")
    alice_local, _ = _channel_balances(alice, funding_txid)
    if alice_local != bob_remote:
        raise RuntimeError("alice's and bob's views of alice's balance differ")
    say(f"bob's balance: {bob_local:,} msat = {warmup + unbatched + batched + control:,} "
        f"payments of {PAYMENT_MSAT:,} msat, as both nodes agree")
    for node in (alice, bob):
        node.stop()
    return PaymentFigures(unbatched=one, batched=many, control_per_second=control_rate,
                          control_payments=control, payee_received_msat=bob_local)


# -- breach to penalty ------------------------------------------------------------------------


class MempoolFeed:
    """Every transaction bitcoind announces on ZMQ ``rawtx``, stamped on arrival."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._sightings: list[Sighting] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zmq-rawtx", daemon=True)

    def __enter__(self) -> MempoolFeed:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"could not subscribe to {self._endpoint}")
        time.sleep(0.3)  # ZMQ's slow joiner: let the subscription reach bitcoind
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        try:
            sock.connect(self._endpoint)
            sock.setsockopt(zmq.SUBSCRIBE, b"rawtx")
            self._ready.set()
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                parts = sock.recv_multipart()
                at = time.perf_counter()
                if len(parts) < 2 or parts[0] != b"rawtx":
                    continue
                tx = CTransaction.deserialize(parts[1])
                sighting = Sighting(
                    at_s=at, txid=bytes(tx.GetTxid())[::-1].hex(),
                    spends=tuple((bytes(i.prevout.hash)[::-1].hex(), int(i.prevout.n))
                                 for i in tx.vin))
                with self._lock:
                    self._sightings.append(sighting)
        finally:
            sock.close(linger=0)
            ctx.term()

    def sightings(self) -> list[Sighting]:
        with self._lock:
            return list(self._sightings)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachRun:
    """One staged breach and its penalty, as the mempool feed saw them."""

    watcher: str            # "node" or "tower"
    latency_s: float
    breach_txid: str
    penalty_txid: str
    penalty_confirmed: bool


def _p2wsh_vouts(raw_tx: bytes) -> frozenset[int]:
    """Outputs a penalty takes (to_local and HTLCs are P2WSH; static to_remote is P2WPKH)."""
    tx = CTransaction.deserialize(raw_tx)
    return frozenset(n for n, out in enumerate(tx.vout)
                     if len(out.scriptPubKey) == 34 and bytes(out.scriptPubKey[:2]) == b"\x00\x20")


def _wait_kits_acknowledged(victim: NodeProcess, timeout: float = 30.0) -> None:
    def done() -> bool:
        towers: list[dict[str, Any]] = victim.call("towers")
        return bool(towers) and all(t["connected"] and t["pending"] == 0 for t in towers)

    wait_for(done, timeout=timeout, what=f"{victim.name}'s tower to acknowledge every kit")


def measure_breach(cluster: Cluster, feed: MempoolFeed, say: Say, *, index: int,
                   tower: TowerProcess | None, prefix: str = "",
                   load: Callable[[NodeProcess], AbstractContextManager[object]] | None = None,
                   ) -> BreachRun | str:
    """Stage one breach: the cheater broadcasts its revoked first commitment.

    With ``tower`` the victim uploads to it and is stopped before the breach, so only the
    tower can react. With ``load``, the breach and the wait for the penalty happen inside
    ``load(victim)`` (e.g. a :class:`bench.hostile_load.HostileLoad` on the victim). Returns
    the run, or why no penalty was seen. Node names start with ``prefix``."""
    watcher = "tower" if tower is not None else "node"
    cheater = cluster.start_node(f"{prefix}cheater{watcher}{index}",
                                 funds_sat=2 * BREACH_CHANNEL_SAT, allow_cheating=True)
    victim = cluster.start_node(f"{prefix}victim{watcher}{index}",
                                towers=(tower,) if tower is not None else ())
    try:
        opened = cluster.open_channel(cheater, victim, BREACH_CHANNEL_SAT)
        for _ in range(2):
            if cluster.pay(cheater, victim, BREACH_PAYMENT_MSAT)["status"] != "succeeded":
                raise RuntimeError("a payment before the breach failed")
        if tower is not None:
            _wait_kits_acknowledged(victim)
            victim.stop()
        found: list[tuple[float, Sighting]] = []
        with load(victim) if load is not None else nullcontext():
            cheat: dict[str, Any] = cheater.call("cheat", channel=opened["channel"], state=0)
            breach_txid = str(cheat["revoked_commitment_txid"])
            vouts = _p2wsh_vouts(cluster.miner.get_transaction(breach_txid))

            def penalty_seen() -> bool:
                hit = penalty_latency_s(feed.sightings(), breach_txid, vouts)
                if hit is not None:
                    found.append(hit)
                return hit is not None

            try:
                wait_for(penalty_seen, timeout=PENALTY_WAIT_S, what="a penalty in the mempool")
            except WaitTimeout:
                return (f"no penalty in the mempool within {PENALTY_WAIT_S:.0f} s of the "
                        f"breach ({watcher})")
        latency, penalty = found[0]
        cluster.mine(1)
        confirmed = cluster.miner.confirmations(penalty.txid) >= 1
        say(f"{watcher} round {index}: breach {breach_txid[:16]}… -> penalty "
            f"{penalty.txid[:16]}… {latency * 1e3:.1f} ms later"
            f"{', confirmed in the next block' if confirmed else ', NOT confirmed'}")
        return BreachRun(watcher=watcher, latency_s=latency, breach_txid=breach_txid,
                         penalty_txid=penalty.txid, penalty_confirmed=confirmed)
    finally:
        cheater.stop()
        victim.stop()


def zmq_rawtx_endpoint(bitcoind: BitcoindNode) -> str:
    endpoint = bitcoind.zmq_rawtx
    if not endpoint:
        raise RuntimeError("bitcoind publishes no ZMQ rawtx feed")
    return endpoint
