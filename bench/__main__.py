"""I/O: ``make bench``: every chanlab figure, each printed with how it was measured, then a table.

Run from the repository root: ``python -m bench`` (``--quick`` shrinks every count for a smoke
run; ``--no-nodes`` skips the sections that need bitcoind and node processes).

1. Payments through one channel between two ``chanlab node start`` processes, and the
   memory of an idle node (``bench.nodes``); one payment's latency chanlab -> chanlab,
   chanlab -> Electrum and Electrum -> chanlab (``bench.electrum``).
2. Breach to penalty, by the victim's node and by its watchtower (``bench.nodes``).
3. The BOLT 8 transport over loopback (``bench.transport``'s measurements).
4. The channel state machine alone, in memory (``bench.state_machine.measure``).
5. Watchtower storage and lookup (``python -m bench.tower``, its output shown as printed).
6. Payments per second through 1, 2 and 4 forwarders over announced channels, the time until
   a 10-node network's graph is complete, and a 30-node classroom ring on one bitcoind (graphs
   complete, a payment across, memory per node) (``bench.network``); ``--network-only`` runs
   this section alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bitcoin

from bench.figures import Figure, Goal, parse_tower_output, render_table, summarize

REPO = Path(__file__).resolve().parents[1]


def say(text: str) -> None:
    print(text, flush=True)


def _section(title: str) -> None:
    say(f"\n== {title}")


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# -- 1 and 2: node processes ------------------------------------------------------------------

HOSTILE = "node under hostile load"


def _node_figures(quick: bool, rounds: int) -> list[Figure]:
    from bench.hostile_load import HostileLoad
    from bench.nodes import (
        PAYMENT_MSAT,
        BreachRun,
        MempoolFeed,
        bench_cluster,
        measure_breach,
        measure_idle_rss_kb,
        measure_payments,
        zmq_rawtx_endpoint,
    )
    from regtest.cluster import NodeProcess

    figures: list[Figure] = []
    unbatched, batched, control = (100, 1000, 20) if quick else (600, 6000, 100)
    with bench_cluster(say) as cluster:
        _section("1. payments through one channel between two node processes")
        say(f"alice pays bob {PAYMENT_MSAT // 1000:,} sat per payment (above dust: every "
            "commitment carries an HTLC output and an htlc_signature); both nodes persist "
            "every flight durably before sending it; timed inside alice's node by its "
            "pay-pipeline command, from the first update_add_htlc until the channel is quiescent "
            "(every HTLC removed from both commitments)")
        started = time.perf_counter()
        pay = measure_payments(cluster, say, unbatched=unbatched, batched=batched,
                               control=control)
        one, many = pay.unbatched, pay.batched
        say(f"one payment in flight: {one.per_second:7.0f} payments/s  ({one.payments} payments, "
            f"each begun when the previous preimage arrived; {one.settled_s:.2f} s; CPU "
            f"{one.cpu_ms:.2f} ms per payment, alice {one.payer_cpu_ms:.2f} + bob)")
        say(f"batched:               {many.per_second:7.0f} payments/s  ({many.payments} "
            f"payments, {many.batch_size} HTLCs per commitment_signed, one batch in flight; "
            f"{many.settled_s:.2f} s; CPU {many.cpu_ms:.2f} ms per payment, alice "
            f"{many.payer_cpu_ms:.2f} + bob)")
        say(f"one control call each: {pay.control_per_second:7.0f} payments/s  "
            f"({pay.control_payments} `pay` calls on alice's control socket from this process,"
            " as `chanlab alice pay` does minus its process start-up)")
        say(f"({time.perf_counter() - started:.0f} s)")
        figures += [
            Figure(section="payments, two node processes, durable", name="one payment in flight",
                   value=one.per_second, unit="payments/s", target=100,
                   how=f"{one.payments} payments, in-node clock, to quiescence"),
            Figure(section="payments, two node processes, durable",
                   name=f"batched, {many.batch_size} HTLCs per commitment_signed",
                   value=many.per_second, unit="payments/s", target=1000,
                   how=f"{many.payments} payments, one batch in flight"),
            Figure(section="payments, two node processes, durable",
                   name="one in flight, one control call each", value=pay.control_per_second,
                   unit="payments/s", how=f"{pay.control_payments} calls, timed here"),
            Figure(section="payments, two node processes, durable",
                   name="payer CPU per payment, one in flight", value=one.payer_cpu_ms,
                   unit="ms", how="user+system CPU of alice's process"),
            Figure(section="payments, two node processes, durable",
                   name="CPU per payment, both nodes, one in flight", value=one.cpu_ms,
                   unit="ms", how="user+system CPU of alice and bob from /proc, invoice "
                                  "reading included (steadier than payments/s when shared)"),
            Figure(section="payments, two node processes, durable",
                   name=f"CPU per payment, both nodes, batched {many.batch_size}",
                   value=many.cpu_ms, unit="ms", how="as above"),
        ]

        idle_kb = measure_idle_rss_kb(cluster)
        say(f"idle node: {idle_kb / 1024:.1f} MB resident (VmRSS of a started node with no "
            "peer and no channel, 2 s after start)")
        figures.append(Figure(section="payments, two node processes, durable",
                              name="idle node RSS", value=idle_kb / 1024, unit="MB", target=40,
                              goal=Goal.AT_MOST, how="VmRSS from /proc, no peer, no channel"))

        from bench.electrum import electrum_figures
        _section("1b. payment latency: chanlab and Electrum (a foreign implementation)")
        started = time.perf_counter()
        figures += electrum_figures(cluster, say, rounds=5 if quick else 20)
        say(f"({time.perf_counter() - started:.0f} s)")

        _section("2. breach to penalty")
        say("the cheater broadcasts its revoked first commitment (regtest `cheat`); the figure "
            "is the time between bitcoind announcing the breach and the penalty on its ZMQ "
            "rawtx feed (both stamped on arrival in this process, so the feed's delay cancels); "
            "the penalty is then mined and checked confirmed. Node: the victim is online. "
            "Tower: the victim uploaded its kits, was stopped, and only its tower watches. "
            f"{HOSTILE}: the victim online while three strangers send 65 kB-feature inits "
            "every second, one sent 1,000 unfunded open_channel and one floods pings "
            "(bench/hostile_load.py).")
        started = time.perf_counter()
        with MempoolFeed(zmq_rawtx_endpoint(cluster.bitcoind)) as feed:
            tower = cluster.start_tower("watchtower")
            loads: list[HostileLoad] = []

            def hostile(victim: NodeProcess) -> HostileLoad:
                loads.append(HostileLoad("127.0.0.1", victim.port,
                                         bytes.fromhex(victim.node_id), victim.home))
                return loads[-1]

            for watcher in ("node", "tower", HOSTILE):
                runs: list[BreachRun] = []
                missing = ""
                for index in range(1, rounds + 1):
                    result = measure_breach(cluster, feed, say, index=index,
                                            tower=tower if watcher == "tower" else None,
                                            prefix="h" if watcher == HOSTILE else "",
                                            load=hostile if watcher == HOSTILE else None)
                    if isinstance(result, str):
                        missing = result
                        say(f"{watcher} round {index}: {result}")
                        continue
                    if not result.penalty_confirmed:
                        missing = "a penalty did not confirm"
                    runs.append(result)
                name = f"breach -> penalty in mempool, {watcher}"
                if runs and not missing:
                    median, low, high = summarize(r.latency_s * 1e3 for r in runs)
                    growth = f"; node.db +{max(x.db_growth_bytes for x in loads) / 1024:.0f} " \
                        "KiB at most" if watcher == HOSTILE else ""
                    figures.append(Figure(
                        section="breach and penalty", name=name, value=median, unit="ms",
                        target=1000 if watcher == HOSTILE else 200, goal=Goal.AT_MOST,
                        how=f"median of {len(runs)} ({low:.1f}-{high:.1f} ms){growth}"))
                    say(f"{watcher}: median {median:.1f} ms over {len(runs)} breaches "
                        f"(min {low:.1f}, max {high:.1f})")
                else:
                    figures.append(Figure(section="breach and penalty", name=name, value=None,
                                          unit="ms", how="", note=missing or "no run"))
        say(f"({time.perf_counter() - started:.0f} s)")
    return figures


# -- 6: forwarding and a classroom -------------------------------------------------------------


def _network_figures(quick: bool) -> list[Figure]:
    from bench.network import (
        HOP_PAYMENT_MSAT,
        measure_classroom,
        measure_graph_time,
        measure_hops,
    )
    from bench.nodes import bench_cluster

    section = "forwarding and gossip, node processes"
    count, classroom = (10, 10) if quick else (50, 30)
    figures: list[Figure] = []
    with bench_cluster(say) as cluster:
        say(f"every channel announced (BOLT 7), every payer routing over the graph gossip gave "
            f"it; one in flight: {count} `pay` control calls, each waiting for its preimage; "
            f"many in flight: {count} `pay` calls with wait=False, timed until the payee holds "
            "them all and no HTLC is left on the path (timed in this process); "
            f"{HOP_PAYMENT_MSAT:,} msat each, default fee policy on every forwarder")
        for run in measure_hops(cluster, say, count=count):
            for name, value in ((f"{run.hops} forwarder(s), one in flight", run.one_per_second),
                                (f"{run.hops} forwarder(s), {count} in flight",
                                 run.many_per_second)):
                figures.append(Figure(section=section, name=name, value=value,
                                      unit="payments/s",
                                      how="" if run.refusal else f"{count} payments, exact "
                                                                 "balances",
                                      note=run.refusal and f"payer: {run.refusal}"))
        gossip = measure_graph_time(cluster, say, count=10)
        figures.append(Figure(section=section,
                              name=f"{gossip.nodes}-node line: every graph complete",
                              value=gossip.graph_s, unit="s", goal=Goal.AT_MOST,
                              how=f"from the 6th confirmation; {gossip.channels} channels, "
                                  "graph-info polled at each node"))
        room = measure_classroom(cluster, say, count=classroom)
        say(f"memory per node: mean {room.mean_rss_mb:.1f} MB, max {room.max_rss_mb:.1f} MB "
            f"(VmRSS from /proc of each of the {room.nodes} node processes, graphs complete, "
            "after the payment)")
        figures += [
            Figure(section=section, name=f"{room.nodes} nodes on one bitcoind: RSS per node",
                   value=room.mean_rss_mb, unit="MB", goal=Goal.AT_MOST,
                   how=f"mean VmRSS; max {room.max_rss_mb:.1f} MB"),
            Figure(section=section, name=f"{room.nodes} nodes, {room.channels} channels: set-up",
                   value=room.setup_s, unit="s", goal=Goal.AT_MOST,
                   how="start, fund, open all at once, all channels normal"),
            Figure(section=section, name=f"{room.nodes}-node ring: every graph complete",
                   value=room.graph_s, unit="s", goal=Goal.AT_MOST,
                   how="from the 6th confirmation"),
            Figure(section=section, name=f"{room.nodes}-node ring: a payment across",
                   value=float(room.forwarders), unit="forwarders",
                   how=f"to the node halfway round: {room.payment_status}",
                   note="" if room.payment_status == "succeeded" else
                   f"payment {room.payment_status}"),
        ]
    return figures


# -- 3: transport -----------------------------------------------------------------------------


async def _transport_figures(quick: bool) -> list[Figure]:
    from bench.transport import (
        bench_handshakes,
        bench_in_memory,
        bench_one_way,
        bench_round_trips,
    )

    scale = 10 if quick else 1
    handshakes, small, large, trips = 300 // scale, 100_000 // scale, 30_000 // scale, \
        5_000 // scale
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.transport", "--serve", cwd=REPO,
        stdout=asyncio.subprocess.PIPE)
    if child.stdout is None:
        raise RuntimeError("the responder process has no stdout pipe")
    try:
        port = int((await child.stdout.readline()).decode())
        hs_rate = await bench_handshakes(port, handshakes)
        small_rate = await bench_one_way(port, small, 100)
        large_rate = await bench_one_way(port, large, 1452)
        trip_rate = await bench_round_trips(port, trips)
    finally:
        child.terminate()
        await child.wait()
    memory_hs, memory_msgs = bench_in_memory(100_000 // scale, 100)
    say("responder in its own process (python -m bench.transport --serve), loopback TCP with "
        "TCP_NODELAY, one write per message")
    say(f"handshake:        {1e3 / hs_rate:6.2f} ms  ({handshakes} sequential connect() + acts "
        "1-3, each until the responder's first encrypted message arrives)")
    say(f"messages/s 100 B: {small_rate:8.0f}   ({small} send() calls back to back, until the "
        "responder reports all decrypted)")
    say(f"messages/s 1452 B:{large_rate:8.0f}   ({large} send() calls)")
    say(f"round trips/s:    {trip_rate:8.0f}   ({trips} lock-step ping -> pong)")
    say(f"in memory, both roles in one process: {memory_hs:.0f} handshakes/s, "
        f"{memory_msgs:.0f} messages/s of 100 B encrypted + decrypted")
    section = "BOLT 8 transport, loopback"
    return [
        Figure(section=section, name="handshake time", value=1e3 / hs_rate, unit="ms",
               how=f"mean of {handshakes}"),
        Figure(section=section, name="messages one way, 100 B", value=small_rate,
               unit="messages/s", how=f"{small} messages"),
        Figure(section=section, name="messages one way, 1452 B", value=large_rate,
               unit="messages/s", how=f"{large} messages"),
        Figure(section=section, name="ping/pong round trips", value=trip_rate,
               unit="round trips/s", how=f"{trips} round trips"),
    ]


# -- 4: state machine -------------------------------------------------------------------------


def _state_machine_figures(quick: bool) -> list[Figure]:
    from bench.state_machine import measure
    from channel.types import CommitmentFormat

    unbatched, batches = (50, 4) if quick else (400, 20)
    single, batched = measure(CommitmentFormat.STATIC_REMOTEKEY, unbatched=unbatched,
                              batches=batches)
    say("two in-memory Channels (static_remotekey), every message encoded and decoded, no "
        "sockets, no disk: the floor under section 1")
    say(f"one HTLC in flight: {single:6.0f} payments/s ({unbatched} payments of 10,000 sat)")
    say(f"batched:            {batched:6.0f} payments/s ({batches} batches of 50 HTLCs)")
    section = "state machine alone, in memory"
    return [
        Figure(section=section, name="one payment in flight", value=single,
               unit="payments/s", how=f"{unbatched} payments"),
        Figure(section=section, name="batched, 50 HTLCs per commitment_signed", value=batched,
               unit="payments/s", how=f"{batches} batches"),
    ]


# -- 5: tower storage -------------------------------------------------------------------------


def _tower_figures(quick: bool) -> list[Figure]:
    cmd = [sys.executable, "-m", "bench.tower"] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                          check=False)
    for line in done.stdout.splitlines():
        say(f"  {line}")
    section = "watchtower storage"
    if done.returncode != 0:
        say(done.stderr[-2000:])
        return [Figure(section=section, name="bench.tower", value=None, unit="",
                       how="", note=f"python -m bench.tower exited {done.returncode}")]
    found = parse_tower_output(done.stdout)
    states = int(found.get("states", 0))

    def fig(key: str, name: str, unit: str, how: str, target: float | None = None) -> Figure:
        value = found.get(key)
        return Figure(section=section, name=name, value=value, unit=unit, target=target,
                      goal=Goal.AT_MOST, how=how,
                      note="" if value is not None else "not in bench.tower's output")

    stored = "hint + encrypted kit + tag, largest format"
    return [
        fig("stored_bytes_0_htlc", "stored per revoked state, no HTLC", "B", stored, 256),
        fig("stored_bytes_1_htlc", "stored per revoked state, 1 HTLC", "B", stored, 256),
        fig("stored_bytes_2_htlc", "stored per revoked state, 2 HTLCs", "B", stored, 256),
        fig("sqlite_file_bytes_per_state", f"SQLite file per state ({states:,} states)", "B",
            "file size after checkpoint / states", 256),
        fig("sqlite_lookup_us", f"lookup per new transaction ({states:,} states)", "us",
            "mean over 20,000 non-matching txs"),
        fig("hit_ms", "breach hit: decrypt and sign justice", "ms", "one real breach"),
    ]


def _timed(title: str, run: Callable[[], list[Figure]]) -> list[Figure]:
    _section(title)
    started = time.perf_counter()
    figures = run()
    say(f"({time.perf_counter() - started:.0f} s)")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--no-nodes", action="store_true",
                        help="skip the sections that need bitcoind and node processes")
    parser.add_argument("--rounds", type=int, default=3, help="breaches per watcher")
    parser.add_argument("--network-only", action="store_true",
                        help="only section 6 (forwarding and a 30-node classroom)")
    parser.add_argument("--compare", metavar="REV",
                        help="only the payment rates, today's against revision REV's, in turns "
                             "on this machine (see bench/compare.py)")
    parser.add_argument("--rows", metavar="FILE", type=Path,
                        help="with --compare: also write every chunk's figures (JSON lines)")
    parser.add_argument("--instructions", action="store_true",
                        help="with --compare: count both nodes' instructions per payment under "
                             "valgrind's callgrind instead of timing them (machine-independent)")
    args = parser.parse_args(argv)
    if args.compare and args.instructions:
        from bench.compare import instructions_with
        try:
            lines = instructions_with(args.compare, say)
        except RuntimeError as exc:
            say(f"error: {exc}")
            return 2
        for line in lines:
            say(line)
        return 0
    if args.compare:
        from bench.compare import compare_with
        for line in compare_with(args.compare, say, chunks=4 if args.quick else 8,
                                 rows_path=args.rows):
            say(line)
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    bitcoin.SelectParams("regtest")
    started = time.perf_counter()
    say(f"chanlab bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{_load()} at the start{' (quick run: small counts)' if args.quick else ''}")
    figures: list[Figure] = []
    if not args.no_nodes and not args.network_only:
        figures += _node_figures(args.quick, args.rounds)
    if not args.network_only:
        figures += _timed("3. BOLT 8 transport",
                          lambda: asyncio.run(_transport_figures(args.quick)))
        figures += _timed("4. state machine alone", lambda: _state_machine_figures(args.quick))
        figures += _timed("5. watchtower storage and lookup",
                          lambda: _tower_figures(args.quick))
    if not args.no_nodes:
        figures += _timed("6. forwarding, gossip, and a classroom on one bitcoind",
                          lambda: _network_figures(args.quick))
    say("\n== summary")
    say(render_table(figures))
    say(f"total {time.perf_counter() - started:.0f} s; load average {_load()} at the end (other "
        "work on this machine lowers every figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
