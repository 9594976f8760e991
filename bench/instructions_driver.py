"""One side of ``python -m bench --compare REV --instructions``: the user-space instructions
both nodes execute per payment, counted by valgrind's callgrind.

Run by :mod:`bench.compare` with the *compared tree's* interpreter and that tree as the working
directory (like :mod:`bench.ab_driver`, it uses only what every revision since the first
benchmark has). The node processes start under callgrind with instrumentation off (start-up,
funding and a warm-up run at near-native speed); it is switched on, and the counters zeroed,
just before each timed ``pay-pipeline`` call and dumped just after. What a node runs with no
payment (timers, chain polls) keeps its wall-clock pace, which valgrind stretches, so it is
counted alone over an idle window and taken off each count in proportion to its duration.
Unlike a rate, the count does not depend on what else the machine does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())   # the compared tree, not the one that started us

WARM_UP_PAYMENTS = 20
IDLE_WINDOW_S = 10.0


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


def _pid(node: Any) -> int:
    pid = getattr(node, "pid", None)   # older trees: only node.proc
    return int(pid if pid is not None else node.proc.pid)


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


def main() -> int:
    folder, one, batched = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sys.executable = str(_wrapper(folder))   # read by the cluster when it starts a node
    from bench import nodes
    from regtest import cluster as cluster_module
    start = cluster_module.NodeProcess.start

    def slow_start(self: Any, timeout: float = 30.0) -> Any:
        return start(self, timeout=max(timeout, 600.0))   # start-up under valgrind is slow
    cluster_module.NodeProcess.start = slow_start  # type: ignore[method-assign]

    command = "pay-pipeline" if "pay-pipeline" in Path("bench/nodes.py").read_text() \
        else "bench-pay"
    with nodes.bench_cluster(lambda line: None) as cluster:
        alice = cluster.start_node("alice", funds_sat=nodes.FUNDS_SAT)
        bob = cluster.start_node("bob")
        cluster.open_channel(alice, bob, nodes.CHANNEL_SAT)
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


if __name__ == "__main__":
    sys.exit(main())
