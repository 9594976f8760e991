"""One side of ``python -m bench --compare``: a payee and a payer on a private bitcoind, paying
in chunks when told to (or, with ``--instructions``, under valgrind's callgrind).

Run by :mod:`bench.compare` with the *compared tree's* interpreter and that tree as the working
directory, so it imports that tree's ``bench.nodes``; it therefore uses only what every revision
since the first benchmark has (``bench_cluster``, ``start_node``, ``open_channel``, the
``invoices`` command, and ``pay-pipeline`` or its older name ``bench-pay``). Two drivers take
turns through a turn file: each waits for its name, runs one chunk (a one-in-flight run, then a
batched run; the payer changes every chunk, so the channel never drains), prints a JSON line per
run, and hands the turn over. Adjacent chunks of the two trees thus see the same machine (a
shared machine's speed drifts by ±20% within minutes).

``--instructions FOLDER ONE BATCHED``: the user-space instructions both nodes execute per
payment. The nodes start under callgrind with instrumentation off (start-up, funding and a
warm-up run at near-native speed); it is switched on, and the counters zeroed, just before each
counted ``pay-pipeline`` call and dumped just after. What a node runs with no payment (timers,
chain polls) keeps its wall-clock pace, which valgrind stretches, so it is counted alone over an
idle window and taken off each count in proportion to its duration. Unlike a rate, the count
does not depend on what else the machine does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.getcwd())   # the compared tree, not the one that started us

if TYPE_CHECKING:
    from regtest.cluster import Cluster

_TICK_S = os.sysconf("SC_CLK_TCK")
WARM_UP_PAYMENTS = 20
IDLE_WINDOW_S = 10.0


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


def _pay_command() -> str:
    return "pay-pipeline" if "pay-pipeline" in Path("bench/nodes.py").read_text() \
        else "bench-pay"


def _funded_pair(cluster: Cluster) -> tuple[Any, Any]:
    """Alice (funded) and Bob, with a channel between them."""
    from bench import nodes
    alice = cluster.start_node("alice", funds_sat=nodes.FUNDS_SAT)
    bob = cluster.start_node("bob")
    cluster.open_channel(alice, bob, nodes.CHANNEL_SAT)
    return alice, bob


def _your_turn(turn: Path, me: str) -> bool:
    return turn.exists() and turn.read_text().strip() == me


def _pay(alice: Any, bob: Any, folder: Path, count: int, batch: int, command: str,
         ) -> dict[str, Any]:
    """``alice`` pays ``bob`` ``count`` invoices (``batch`` per commitment_signed)."""
    from bench import nodes
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


def _turns(me: str, other: str, turn_path: str, chunks: str, one: str, batched: str) -> int:
    from bench import nodes
    # stopped by bench.compare when the other side failed: clean up (bitcoind, nodes) on the way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    turn = Path(turn_path)
    command = _pay_command()
    with nodes.bench_cluster(lambda line: None) as cluster:
        alice, bob = _funded_pair(cluster)
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


def dumped_instructions(text: str) -> int:
    """The instruction total of a callgrind dump (its ``summary:`` or ``totals:`` line)."""
    for line in text.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError("not a callgrind dump: no summary line")


def _dump(folder: Path, pid: int, number: int) -> int:
    """Instructions of ``pid``'s ``number``-th dump, once callgrind has written it whole."""
    path = folder / f"{pid}.out.{number}"
    deadline = time.monotonic() + 120
    while True:
        try:
            return dumped_instructions(path.read_text())
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _switch(pids: list[int], *args: str) -> None:
    for pid in pids:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _wrapper(folder: Path) -> Path:
    """A stand-in for the interpreter that starts the node under callgrind, uninstrumented."""
    script = folder / "python-under-callgrind"
    script.write_text(
        "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
        f"--callgrind-out-file={folder}/%p.out {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return script


def _instructions(folder_arg: str, one_arg: str, batched_arg: str) -> int:
    folder, one, batched = Path(folder_arg), int(one_arg), int(batched_arg)
    sys.executable = str(_wrapper(folder))   # read by the cluster when it starts a node
    from bench import nodes
    from regtest import cluster as cluster_module
    start = cluster_module.NodeProcess.start

    def slow_start(self: Any, timeout: float = 30.0) -> Any:
        return start(self, timeout=max(timeout, 600.0))   # start-up under valgrind is slow
    cluster_module.NodeProcess.start = slow_start  # type: ignore[method-assign]

    command = _pay_command()
    with nodes.bench_cluster(lambda line: None) as cluster:
        alice, bob = _funded_pair(cluster)
        pids = [_pid(alice), _pid(bob)]
        dumps = 0
        windows: list[tuple[int, int, int, float]] = []   # batch, count, instructions, seconds
        for count, batch, counted in ((WARM_UP_PAYMENTS, 1, False), (one, 1, True),
                                      (batched, nodes.BATCH_SIZE, True)):
            invoices = bob.call("invoices", count=count,
                                amount_msat=nodes.PAYMENT_MSAT)["invoices"]
            path = folder / f"invoices-{time.monotonic_ns()}.txt"
            path.write_text("\n".join(invoices) + "\n")
            if counted:
                _switch(pids, "-i", "on")
                _switch(pids, "-z")
            started = time.monotonic()
            answer = alice.call(command, invoices_path=str(path), batch_size=batch,
                                timeout_s=3600)
            seconds = time.monotonic() - started
            if int(answer["succeeded"]) != count:
                raise SystemExit(f"only {answer['succeeded']} of {count} payments succeeded")
            if counted:
                dumps += 1
                _switch(pids, "-d")
                windows.append((batch, count, sum(_dump(folder, p, dumps) for p in pids),
                                seconds))
                _switch(pids, "-i", "off")
        # what the nodes run when no payment is made (timers, chain polls) goes on at the
        # same pace in wall time, which valgrind stretches: count it alone, then take it off
        _switch(pids, "-i", "on")
        _switch(pids, "-z")
        time.sleep(IDLE_WINDOW_S)
        dumps += 1
        _switch(pids, "-d")
        idle_per_s = sum(_dump(folder, p, dumps) for p in pids) / IDLE_WINDOW_S
        for batch, count, total, seconds in windows:
            print(json.dumps({"batch": batch, "count": count, "seconds": seconds,
                              "idle_per_s": idle_per_s,
                              "instructions_per_payment": (total - idle_per_s * seconds) / count,
                              "raw_per_payment": total / count}), flush=True)
        alice.stop()
        bob.stop()
    return 0


def main() -> int:
    if sys.argv[1] == "--instructions":
        return _instructions(*sys.argv[2:5])
    return _turns(*sys.argv[1:7])


if __name__ == "__main__":
    sys.exit(main())
