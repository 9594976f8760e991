"""One side of ``python -m bench --compare``: a payee and a payer on a private bitcoind, paying
in chunks when told to.

Run by :mod:`bench.compare` with the *compared tree's* interpreter and that tree as the working
directory, so it imports that tree's ``bench.nodes``; it therefore uses only what every revision
since the first benchmark has (``bench_cluster``, ``start_node``, ``open_channel``, the
``invoices`` command, and ``pay-pipeline`` or its older name ``bench-pay``). Two drivers take
turns through a turn file: each waits for its name, runs one chunk (a one-in-flight run, then a
batched run; the payer changes every chunk, so the channel never drains), prints a JSON line per
run, and hands the turn over. Adjacent chunks of the two trees thus see the same machine (a
shared machine's speed drifts by ±20% within minutes).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())   # the compared tree, not the one that started us

from bench import nodes

_TICK_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK_S


def _machine_busy_s() -> tuple[float, float]:
    """The whole machine's busy CPU seconds so far (all processes, all CPUs), and the time a
    hypervisor gave to others (steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / _TICK_S, steal / _TICK_S


def _pid(node: Any) -> int:
    pid = getattr(node, "pid", None)   # older trees: only node.proc
    return int(pid if pid is not None else node.proc.pid)


def _your_turn(turn: Path, me: str) -> bool:
    return turn.exists() and turn.read_text().strip() == me


def _pay(alice: Any, bob: Any, folder: Path, count: int, batch: int, command: str,
         ) -> dict[str, Any]:
    """``alice`` pays ``bob`` ``count`` invoices (``batch`` per commitment_signed)."""
    invoices = bob.call("invoices", count=count, amount_msat=nodes.PAYMENT_MSAT)["invoices"]
    path = folder / f"invoices-{time.monotonic_ns()}.txt"
    path.write_text("\n".join(invoices) + "\n")
    cpu_before = _cpu_s(_pid(alice)) + _cpu_s(_pid(bob))
    busy_before, steal_before = _machine_busy_s()
    answer = alice.call(command, invoices_path=str(path), batch_size=batch)
    cpu_ms = (_cpu_s(_pid(alice)) + _cpu_s(_pid(bob)) - cpu_before) * 1000
    busy_after, steal_after = _machine_busy_s()
    # what else the machine ran meanwhile (the other tree's idle nodes, bitcoinds, anything)
    others_ms = (busy_after - busy_before) * 1000 - cpu_ms
    if int(answer["succeeded"]) != count:
        raise SystemExit(f"only {answer['succeeded']} of {count} payments succeeded")
    return {"batch": batch, "count": count, "payments_per_s": count / float(answer["settled_s"]),
            "cpu_ms_per_payment": cpu_ms / count, "others_cpu_ms": others_ms,
            "steal_ms": (steal_after - steal_before) * 1000}


def main() -> int:
    # stopped by bench.compare when the other side failed: clean up (bitcoind, nodes) on the way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    me, other, turn_path, chunks, one, batched = sys.argv[1:7]
    turn = Path(turn_path)
    command = "pay-pipeline" if "pay-pipeline" in Path("bench/nodes.py").read_text() \
        else "bench-pay"
    with nodes.bench_cluster(lambda line: None) as cluster:
        alice = cluster.start_node("alice", funds_sat=nodes.FUNDS_SAT)
        bob = cluster.start_node("bob")
        cluster.open_channel(alice, bob, nodes.CHANNEL_SAT)
        folder = cluster.home / "compare"
        folder.mkdir(exist_ok=True)
        _pay(alice, bob, folder, 50, 1, command)                    # warm both processes
        _pay(alice, bob, folder, 400, nodes.BATCH_SIZE, command)
        turn.with_name(f"ready-{me}").write_text("ready\n")
        for chunk in range(int(chunks)):
            while not _your_turn(turn, me):
                time.sleep(0.05)
            # the money goes back and forth: a long comparison never drains the channel
            payer, payee = (alice, bob) if chunk % 2 == 0 else (bob, alice)
            for count, batch in ((int(one), 1), (int(batched), nodes.BATCH_SIZE)):
                row = _pay(payer, payee, folder, count, batch, command)
                print(json.dumps({"tree": me, "chunk": chunk, **row}), flush=True)
            turn.write_text(other + "\n")
        alice.stop()
        bob.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
