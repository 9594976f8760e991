"""I/O: a lab network in one ``$CHANLAB_HOME``: start it from a ``Topology``, stop it.

Everything goes through what a person could do by hand: the home's bitcoind service
(``chanlab bitcoind start``, started here as a detached process if none runs), one detached
``chanlab node start --name X`` process per node (with its topology's fee policy:
``--fee-base-msat``, ``--fee-proportional-millionths``, ``--cltv-expiry-delta``), and each
node's control socket (``connect``, ``open``, ``channels``, ``graph-info``, ``stop``).
``start_network``:

1. makes sure the home's bitcoind service runs (and remembers whether it started it);
2. starts every node and waits until each control socket answers;
3. pays every opener its channels' capacity plus a fee margin in ONE miner transaction
   (``sendmany``, one output per channel) and one block;
4. connects each opener to its accepter and opens the channels ANNOUNCED (``open
   --announce``), openers in parallel and each opener's channels one after the other (its
   wallet picks coins for one funding at a time);
5. mines 6 blocks, the depth at which BOLT 7 lets a channel be announced, and waits until
   every channel is ``normal`` on both ends and its ends are connected;
6. waits until every node's graph is complete (``regtest.network_graph``): every channel
   announced with both directions' ``channel_update``, every node's ``node_announcement``;
   on time-out the error names, node by node, what is missing.

The record is ``network.json`` (``regtest.network_record``); ``network status`` is
``regtest.network_status`` (re-exported here). ``stop_network`` keeps the record, so a later
``start_network`` on the same home starts the same nodes again on the same ports, redials each
channel's peer and waits until every channel is back and every graph complete (the nodes keep
their graphs on disk). Nodes log to ``nodes/<name>/node.log`` (their stderr to
``stderr.log``), the bitcoind service to ``bitcoind/service.log``: nothing a network starts
writes to the terminal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from channel.errors import ChanlabError
from regtest.bitcoind_service import BitcoindService
from regtest.control import NodeUnreachable, call_node, load_endpoint, node_home
from regtest.errors import WaitTimeout
from regtest.network_graph import GraphIncomplete, scid_text, wait_graphs_complete
from regtest.network_record import (
    ChannelRecord,
    NetworkError,
    NetworkRecord,
    NoNetwork,
    expected_graph,
    fill_opened,
    load_network,
    network_file,
    save_network,
)
from regtest.network_status import (
    CLOSED_STATES,
    ChannelEnd,
    ChannelStatus,
    NetworkStatus,
    NodeStatus,
    channel_statuses,
    gather_channels,
    gather_peers,
    network_status,
    parallel,
    render_status,
)
from regtest.rpc import JSON, Rpc, sat_to_btc
from regtest.topology import Topology
from regtest.wait import wait_for
from regtest.wallet import Wallet

__all__ = [
    "ANNOUNCE_DEPTH",
    "FUNDING_MARGIN_SAT",
    "GRAPH_TIMEOUT_S",
    "ChannelEnd",
    "ChannelRecord",
    "ChannelStatus",
    "NetworkError",
    "NetworkRecord",
    "NetworkStatus",
    "NoNetwork",
    "NodeStatus",
    "channel_statuses",
    "expected_graph",
    "fill_opened",
    "load_network",
    "network_file",
    "network_status",
    "process_alive",
    "render_status",
    "start_network",
    "stop_network",
]

ANNOUNCE_DEPTH = 6            # BOLT 7: announcement_signatures once the funding is 6 deep
GRAPH_TIMEOUT_S = 60.0        # plus 2 s a channel: gossip spreads hop by hop
FUNDING_MARGIN_SAT = 10_000   # per channel, on top of its capacity: the funding tx's own fee

Progress = Callable[[str], None]


# -- processes -----------------------------------------------------------------------------------

def _chanlab(*args: str) -> list[str]:
    # the interpreter running us, so the children use the same environment as this command
    return [sys.executable, "-m", "regtest.cli", *args]


def process_alive(pid: int, marker: str) -> bool:
    """Is ``pid`` alive, not a zombie, and (where /proc tells) a command line holding ``marker``?

    The marker guards against a recycled pid: a network stopped long after its start must not
    signal an unrelated process that inherited a node's number.
    """
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            # field 3 of /proc/PID/stat, after the parenthesised command name, is the state
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except (OSError, IndexError):
            return False  # it exited while we looked
        return state not in ("Z", "X") and marker in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _node_marker(name: str) -> str:
    # /proc's cmdline ends every argument with NUL, read here as a space: "alice " is not "alice2"
    return f"node start --name {name} "


def _tail(path: Path, chars: int = 600) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    lines = text[-chars:].splitlines()
    return lines[-1] if lines else ""


def _spawn(home: Path, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A detached child of ``home``: its own session (no terminal signals), output to ``log``
    only, and ``$CHANLAB_HOME`` set to ``home`` whatever ours is."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CHANLAB_HOME=str(home))
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env, start_new_session=True)


def _ensure_bitcoind(home: Path, progress: Progress) -> bool:
    """The home's bitcoind service runs and has written ``bitcoind.json``; True if we started
    it."""
    service = BitcoindService(home)
    started = service.running_pid() is None
    proc: subprocess.Popen[bytes] | None = None
    log = service.datadir / "service.log"
    if started:
        progress("starting the home's regtest bitcoind (`chanlab bitcoind start`)")
        proc = _spawn(home, _chanlab("bitcoind", "start"), log)

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise NetworkError(f"`chanlab bitcoind start` exited ({_tail(log)}); see {log}")
        return service.endpoint_file.exists()

    try:
        # a first run may provision bitcoind and mine 101 blocks before bitcoind.json appears
        wait_for(ready, timeout=180, what=f"{service.endpoint_file} (the bitcoind service)")
    except (ChanlabError, KeyboardInterrupt):
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the service's clean stop, as `chanlab bitcoind stop` asks it
            proc.wait(60)
        raise
    return started


def _start_nodes(home: Path, topology: Topology, ports: dict[str, int]
                 ) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for plan in topology.nodes:
        name, policy = plan.name, plan.policy
        folder = node_home(name, home)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "node.json").unlink(missing_ok=True)
        # the node's fee policy is what its channel_updates announce (BOLT 7)
        cmd = _chanlab("node", "start", "--name", name, "--port", str(ports.get(name, 0)),
                       "--fee-base-msat", str(policy.fee_base_msat),
                       "--fee-proportional-millionths", str(policy.fee_proportional_millionths),
                       "--cltv-expiry-delta", str(policy.cltv_expiry_delta))
        procs[name] = _spawn(home, cmd, folder / "stderr.log")
    return procs


def _wait_nodes_answer(home: Path, procs: dict[str, subprocess.Popen[bytes]],
                       timeout_s: float) -> None:
    waiting = set(procs)

    def all_up() -> bool:
        for name in sorted(waiting):
            if procs[name].poll() is not None:
                log = node_home(name, home) / "stderr.log"
                raise NetworkError(f"node {name} exited at start ({_tail(log)}); see {log}")
            try:
                call_node(name, "info", home=home, timeout_s=5)
            except (NodeUnreachable, OSError):
                continue
            waiting.discard(name)
        return not waiting

    wait_for(all_up, timeout=timeout_s, what=f"nodes {', '.join(sorted(waiting))} to answer",
             max_interval=0.25)


# -- start ---------------------------------------------------------------------------------------

def start_network(home: Path, topology: Topology | None, *,
                  progress: Progress = lambda _: None) -> NetworkRecord:
    """Start ``topology`` in ``home`` and return once every channel is ``normal`` on both ends.

    A home whose network was stopped starts it again (``topology`` None or the same): the
    nodes come back on their ports, reconnect and reestablish their channels. Refuses a home
    whose network runs, or that holds another network or a node of the same name. On failure,
    stops what it started and raises ``NetworkError`` naming the log to read.
    """
    home.mkdir(parents=True, exist_ok=True)
    if network_file(home).exists():
        record = load_network(home)
        running = [name for name, pid in record.node_pids
                   if process_alive(pid, _node_marker(name))]
        if running:
            raise NetworkError(f"the network {record.topology.spec} of {home} runs (nodes "
                               f"{', '.join(running)}): `chanlab network stop` stops it")
        if topology is not None and topology != record.topology:
            raise NetworkError(f"{home} holds the network {record.topology.spec}: "
                               "`chanlab network start` (no --topology) starts it again; use "
                               f"another CHANLAB_HOME for {topology.spec}")
        return _restart(home, record, progress)
    if topology is None:
        raise NoNetwork(f"no network in {home} to start again: start one with "
                        "`chanlab network start --topology line:3`")
    for name in topology.names:
        if node_home(name, home).exists():
            raise NetworkError(f"{home} already has a node called {name} "
                               f"({node_home(name, home)}): use a fresh CHANLAB_HOME")
    started_bitcoind = _ensure_bitcoind(home, progress)
    record = NetworkRecord(topology=topology, started_bitcoind=started_bitcoind,
                           channels=tuple(ChannelRecord(plan=c) for c in topology.channels))
    save_network(home, record)
    try:
        return _build(home, record, progress)
    except BaseException:  # whatever went wrong (Ctrl-C too), leave no process behind
        progress("the network did not come up: stopping what was started")
        stop_network(home, progress=progress)
        # half-built channels cannot be started again: the home is spent
        network_file(home).unlink(missing_ok=True)
        raise


def _launch(home: Path, record: NetworkRecord, progress: Progress
            ) -> tuple[NetworkRecord, dict[str, dict[str, Any]]]:
    """Start every node (on its recorded port, if any), wait until all answer, record their
    pids and ports; return the record and each node's ``info``."""
    names = record.topology.names
    progress(f"starting {len(names)} nodes: {', '.join(names)}")
    procs = _start_nodes(home, record.topology, dict(record.node_ports))
    record = replace(record, node_pids=tuple((name, p.pid) for name, p in procs.items()))
    save_network(home, record)
    _wait_nodes_answer(home, procs, timeout_s=30 + 2 * len(procs))
    infos = dict(zip(names, parallel(
        lambda name: dict(call_node(name, "info", home=home)), names), strict=True))
    record = replace(record, node_ports=tuple(
        (name, int(str(info["address"]).rpartition(":")[2])) for name, info in infos.items()))
    save_network(home, record)
    return record, infos


def _restart(home: Path, record: NetworkRecord, progress: Progress) -> NetworkRecord:
    """Start a stopped network again: bitcoind if needed, the nodes, their connections."""
    record = replace(record, started_bitcoind=_ensure_bitcoind(home, progress))
    save_network(home, record)
    try:
        record, infos = _launch(home, record, progress)

        def reconnect(chan: ChannelRecord) -> None:
            # a node redials its peers once at start, perhaps before they listen: dial again
            peer = infos[chan.plan.accepter]
            if peer["node_id"] not in call_node(chan.plan.opener, "info", home=home)["peers"]:
                with contextlib.suppress(ChanlabError):  # the wait below judges the outcome
                    call_node(chan.plan.opener, "connect", {"peer": peer["address"]},
                              home=home)

        parallel(reconnect, [c for c in record.channels if c.channel_id])
        progress("waiting for every channel to be reestablished")
        _wait_all_normal(home, record, timeout_s=60 + len(record.channels))
        _wait_graphs(home, record, infos)   # kept on disk by each node: complete at once
    except BaseException:  # whatever went wrong (Ctrl-C too), leave no process behind
        progress("the network did not come back: stopping what was started")
        stop_network(home, progress=progress)
        raise
    progress(f"network {record.topology.spec} is up again: {len(record.topology.nodes)} nodes, "
             f"{len(record.channels)} channels")
    return record


def _build(home: Path, record: NetworkRecord, progress: Progress) -> NetworkRecord:
    topology = record.topology
    record, infos = _launch(home, record, progress)

    endpoint = load_endpoint(home / "bitcoind.json")
    rpc = endpoint.rpc()
    try:
        miner = Wallet(rpc, "miner")
        _fund_openers(rpc, miner, topology, progress)

        progress(f"opening {len(topology.channels)} channels")
        openers = topology.openers()

        def open_all(opener: str) -> list[dict[str, Any]]:
            opened = []
            for plan in openers[opener]:
                peer = infos[plan.accepter]
                try:
                    if peer["node_id"] not in call_node(opener, "info", home=home)["peers"]:
                        call_node(opener, "connect", {"peer": peer["address"]}, home=home)
                    opened.append(dict(call_node(opener, "open", {
                        "peer_id": peer["node_id"], "amount_sat": plan.capacity_sat,
                        "push_msat": plan.push_msat, "announce": True}, home=home)))
                except ChanlabError as exc:
                    log = node_home(opener, home) / "node.log"
                    raise NetworkError(f"{opener} could not open its {plan.capacity_sat} sat "
                                       f"channel to {plan.accepter} ({exc}); see {log}"
                                       ) from None
            return opened

        results = dict(zip(openers, parallel(open_all, openers), strict=True))
        record = replace(record, channels=tuple(fill_opened(record.channels, results)))
        save_network(home, record)
        funding = {c.funding_txid for c in record.channels if c.funding_txid}
        wait_for(lambda: funding <= set(rpc.getrawmempool()), timeout=30,
                 what="every funding transaction in the mempool")
        miner.mine(ANNOUNCE_DEPTH)
        mined_at = time.monotonic()
        progress(f"mined {ANNOUNCE_DEPTH} blocks on the funding transactions; "
                 "waiting for every channel to be normal on both ends")
    finally:
        rpc.close()
    _wait_all_normal(home, record, timeout_s=60 + len(record.channels))
    record = _learn_scids(home, record)
    save_network(home, record)
    progress("every channel is normal; waiting until every node's graph is complete (every "
             "channel announced with both channel_updates, every node announced)")
    _wait_graphs(home, record, infos)
    took = time.monotonic() - mined_at
    progress(f"network {topology.spec} is up: {len(topology.nodes)} nodes, "
             f"{len(topology.channels)} channels, every graph complete {took:.1f} s after the "
             f"{ANNOUNCE_DEPTH}th confirmation")
    return record


def _learn_scids(home: Path, record: NetworkRecord) -> NetworkRecord:
    """Each channel's short channel id, as its opener's ``forwarding`` answer names it (a
    node places its funding transaction in its block a moment after the channel is normal)."""
    def scid(rec: ChannelRecord) -> str | None:
        keys = {str(c["channel"]) for c in call_node(rec.plan.opener, "channels", home=home)
                if c.get("channel_id") == rec.channel_id}
        for chan in call_node(rec.plan.opener, "forwarding", home=home)["channels"]:
            if chan["channel"] in keys and chan.get("short_channel_id"):
                return scid_text(str(chan["short_channel_id"]))
        return None

    found: dict[int, str] = {}

    def all_known() -> bool:
        missing = [i for i in range(len(record.channels)) if i not in found]
        for i, text in zip(missing, parallel(lambda i: scid(record.channels[i]), missing),
                           strict=True):
            if text is not None:
                found[i] = text
        return len(found) == len(record.channels)

    try:
        wait_for(all_known, timeout=30, what="every opener to know its channels' short "
                                             "channel ids", max_interval=0.25)
    except WaitTimeout:
        lacking = [c for i, c in enumerate(record.channels) if i not in found]
        raise NetworkError(f"{lacking[0].plan.opener} names no short channel id for its "
                           f"channel to {lacking[0].plan.accepter} although it is normal; see "
                           f"{node_home(lacking[0].plan.opener, home) / 'node.log'}") from None
    return replace(record, channels=tuple(replace(c, short_channel_id=found[i])
                                          for i, c in enumerate(record.channels)))


def _wait_graphs(home: Path, record: NetworkRecord, infos: dict[str, dict[str, Any]]) -> float:
    """Until every node's graph is complete; the seconds it took, or ``NetworkError`` saying
    what each node still lacks."""
    # a channel closed by hand since the start is forgotten by gossip: not waited for
    closed = {c.record.channel_id or "" for c in
              channel_statuses(record, gather_channels(home, record.topology.names))
              if any(end.state in CLOSED_STATES for end in c.ends)}
    expected = expected_graph(record, {n: str(i["node_id"]) for n, i in infos.items()},
                              closed=closed)

    def graph_of(name: str) -> dict[str, Any] | None:
        try:
            return dict(call_node(name, "graph-info", home=home, timeout_s=10))
        except (ChanlabError, OSError):
            return None

    try:
        return wait_graphs_complete(record.topology.names, graph_of, expected,
                                    timeout_s=GRAPH_TIMEOUT_S + 2 * len(record.channels),
                                    hint=f"see the nodes' logs in {home / 'nodes'}/*/node.log")
    except GraphIncomplete as exc:
        raise NetworkError(str(exc)) from None


def _fund_openers(rpc: Rpc, miner: Wallet, topology: Topology, progress: Progress) -> None:
    """One miner transaction with one output per channel to its opener, then one block."""
    outputs: dict[str, JSON] = {}
    needed_sat: dict[str, int] = {}
    for opener, plans in topology.openers().items():
        wallet = Wallet(rpc, opener)
        for plan in plans:
            amount_sat = plan.capacity_sat + FUNDING_MARGIN_SAT
            outputs[wallet.new_address()] = sat_to_btc(amount_sat)
            needed_sat[opener] = needed_sat.get(opener, 0) + amount_sat
    if not outputs:
        return
    before = {name: Wallet(rpc, name).balances().trusted_sat for name in needed_sat}
    txid = rpc.wallet(miner.name).call("sendmany", "", outputs)
    miner.mine(1)
    progress(f"funded the openers ({', '.join(needed_sat)}): {sum(needed_sat.values())} sat "
             f"in {len(outputs)} outputs of one transaction, {txid}, confirmed")

    def seen() -> bool:
        # each wallet sees its block a moment after generatetoaddress returns
        return all(Wallet(rpc, name).balances().trusted_sat >= before[name] + amount
                   for name, amount in needed_sat.items())

    wait_for(seen, timeout=30, what="every opener's wallet to see its coins confirmed")


def _wait_all_normal(home: Path, record: NetworkRecord, timeout_s: float) -> None:
    """Until every channel is normal on both ends with its ends connected (or was closed by
    hand since: closing or closed on both ends)."""
    names = record.topology.names

    def all_normal() -> bool:
        status = channel_statuses(record, gather_channels(home, names))
        peers = gather_peers(home, names)
        for chan in status:
            states = {end.state for end in chan.ends}
            if states <= CLOSED_STATES:
                continue
            opener, accepter = peers[chan.record.plan.opener], peers[chan.record.plan.accepter]
            if states != {"normal"} or opener is None or accepter is None or \
                    accepter[0] not in opener[1]:
                return False
        return True

    try:
        wait_for(all_normal, timeout=timeout_s, what="every channel to be normal on both ends",
                 max_interval=0.25)
    except WaitTimeout as exc:
        raise NetworkError(f"{exc}; see the nodes' logs in {home / 'nodes'}/*/node.log"
                           ) from None


# -- stop ----------------------------------------------------------------------------------------

def _stop_node(home: Path, name: str, pid: int, timeout_s: float) -> str:
    """Ask the node to stop; SIGTERM, then SIGKILL, if it does not exit in time."""
    marker = _node_marker(name)
    if not process_alive(pid, marker):
        return f"{name} was not running"
    try:
        call_node(name, "stop", home=home, timeout_s=5)
    except (ChanlabError, OSError):
        pass  # no answer: the signals below still stop it
    for sig, wait_s in ((None, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return f"{name} stopped"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not process_alive(pid, marker):
                how = {None: "stopped", signal.SIGTERM: "stopped on SIGTERM",
                       signal.SIGKILL: "killed (SIGKILL)"}[sig]
                return f"{name} {how}"
            time.sleep(0.05)
    raise NetworkError(f"node {name} (pid {pid}) survived SIGKILL: check it with ps {pid}")


def stop_network(home: Path, *, timeout_s: float = 15.0, progress: Progress = lambda _: None
                 ) -> list[str]:
    """Stop every node of the network, and the home's bitcoind if the network started it.

    Returns one line per thing stopped. ``network.json`` stays, so that ``start_network`` can
    start the same network again.
    """
    record = load_network(home)
    lines = parallel(lambda item: _stop_node(home, item[0], item[1], timeout_s),
                      record.node_pids)
    for line in lines:
        progress(line)
    if record.started_bitcoind:
        pid = BitcoindService(home).stop()
        if pid is not None:
            # the service removes its pid file before its last clean-up steps: wait for the
            # process itself, so "stopped" means no bitcoind of this home is left running
            wait_for(lambda: not process_alive(pid, "bitcoind start"), timeout=60,
                     what=f"the bitcoind service (pid {pid}) to exit")
        line = "bitcoind service was not running" if pid is None else \
            f"stopped the regtest bitcoind (chanlab process {pid})"
        progress(line)
        lines.append(line)
    return lines
