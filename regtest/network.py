"""I/O: a lab network in one ``$CHANLAB_HOME``: start it from a ``Topology``, show it, stop it.

Everything goes through what a person could do by hand: the home's bitcoind service
(``chanlab bitcoind start``, started here as a detached process if none runs), one detached
``chanlab node start --name X`` process per node, and each node's control socket
(``connect``, ``open``, ``channels``, ``balance``, ``stop``). ``start_network``:

1. makes sure the home's bitcoind service runs (and remembers whether it started it);
2. starts every node and waits until each control socket answers;
3. pays every opener its channels' capacity plus a fee margin in ONE miner transaction
   (``sendmany``, one output per channel) and one block;
4. connects each opener to its accepter and opens the channels, openers in parallel and each
   opener's channels one after the other (its wallet picks coins for one funding at a time);
5. mines 6 blocks, the depth at which BOLT 7 lets a channel be announced, and waits until
   every channel is ``normal`` on both ends and its ends are connected.

``$CHANLAB_HOME/network.json`` records the topology (with each node's fee policy), the node
processes and their P2P ports, whether the network started bitcoind, and each channel's id once
opened; ``network_status`` and ``stop_network`` read it. ``stop_network`` keeps it, so a later
``start_network`` on the same home starts the same nodes again on the same ports, redials each
channel's peer and waits until every channel is back. The fee policies are recorded, not yet
applied: ``chanlab node start`` has no options for them yet. Nodes log to
``nodes/<name>/node.log`` (their stderr to ``stderr.log``), the bitcoind service to
``bitcoind/service.log``: nothing a network starts writes to the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from channel.errors import ChanlabError
from regtest.bitcoind_service import BitcoindService
from regtest.control import NodeUnreachable, call_node, load_endpoint, node_home
from regtest.errors import RegtestError, WaitTimeout
from regtest.rpc import JSON, Rpc, sat_to_btc
from regtest.topology import ChannelPlan, Topology
from regtest.wait import wait_for
from regtest.wallet import Wallet

__all__ = [
    "ANNOUNCE_DEPTH",
    "FUNDING_MARGIN_SAT",
    "ChannelEnd",
    "ChannelRecord",
    "ChannelStatus",
    "NetworkError",
    "NetworkRecord",
    "NetworkStatus",
    "NoNetwork",
    "NodeStatus",
    "channel_statuses",
    "fill_opened",
    "load_network",
    "network_file",
    "network_status",
    "process_alive",
    "render_status",
    "start_network",
    "stop_network",
]

NETWORK_FILE = "network.json"
ANNOUNCE_DEPTH = 6            # BOLT 7: announcement_signatures once the funding is 6 deep
FUNDING_MARGIN_SAT = 10_000   # per channel, on top of its capacity: the funding tx's own fee
_PARALLEL = 8                 # control calls in flight at once (2 cores; nodes are processes)

Progress = Callable[[str], None]
_T = TypeVar("_T")
_R = TypeVar("_R")


class NetworkError(RegtestError):
    """The network could not be started, read or stopped; the message says what to do."""


class NoNetwork(NetworkError):
    """This home has no network (no ``network.json``)."""


# -- the record in network.json ------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRecord:
    """A planned channel and, once its opener's ``open`` answered, which channel it became."""

    plan: ChannelPlan
    channel_id: str | None = None
    funding_txid: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "channel_id": self.channel_id,
                "funding_txid": self.funding_txid}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelRecord:
        return cls(plan=ChannelPlan.from_json(data), channel_id=data.get("channel_id"),
                   funding_txid=data.get("funding_txid"))


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRecord:
    """What ``network.json`` holds: enough to show and to stop the network later."""

    topology: Topology
    started_bitcoind: bool        # stop the home's bitcoind with the network only if so
    node_pids: tuple[tuple[str, int], ...] = ()
    # each node's P2P port, reused on a restart: peers find each other where they last were
    node_ports: tuple[tuple[str, int], ...] = ()
    channels: tuple[ChannelRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"topology": self.topology.to_json(), "started_bitcoind": self.started_bitcoind,
                "node_pids": dict(self.node_pids), "node_ports": dict(self.node_ports),
                "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkRecord:
        return cls(topology=Topology.from_json(data["topology"]),
                   started_bitcoind=bool(data["started_bitcoind"]),
                   node_pids=tuple((str(k), int(v)) for k, v in data["node_pids"].items()),
                   node_ports=tuple((str(k), int(v))
                                    for k, v in data.get("node_ports", {}).items()),
                   channels=tuple(ChannelRecord.from_json(c) for c in data["channels"]))


def network_file(home: Path) -> Path:
    return home / NETWORK_FILE


def load_network(home: Path) -> NetworkRecord:
    """The network recorded in ``home``; ``NoNetwork`` saying how to start one if none."""
    try:
        data = json.loads(network_file(home).read_text())
    except FileNotFoundError:
        raise NoNetwork(f"no network in {home}: start one with "
                        "`chanlab network start --topology line:3`") from None
    except json.JSONDecodeError as exc:
        raise NetworkError(f"{network_file(home)} is damaged ({exc}): stop the nodes by hand "
                           "and remove it") from None
    return NetworkRecord.from_json(data)


def _save(home: Path, record: NetworkRecord) -> None:
    tmp = network_file(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n")
    os.replace(tmp, network_file(home))  # a reader never sees half a file


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


def _start_nodes(home: Path, names: Iterable[str], ports: dict[str, int]
                 ) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        folder = node_home(name, home)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "node.json").unlink(missing_ok=True)
        cmd = _chanlab("node", "start", "--name", name, "--port", str(ports.get(name, 0)))
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


def _parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``fn`` over ``items`` on a few threads (control calls block on sockets); results in
    order; the first exception is raised after all finished."""
    with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]


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
    _save(home, record)
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
    procs = _start_nodes(home, names, dict(record.node_ports))
    record = replace(record, node_pids=tuple((name, p.pid) for name, p in procs.items()))
    _save(home, record)
    _wait_nodes_answer(home, procs, timeout_s=30 + 2 * len(procs))
    infos = dict(zip(names, _parallel(
        lambda name: dict(call_node(name, "info", home=home)), names), strict=True))
    record = replace(record, node_ports=tuple(
        (name, int(str(info["address"]).rpartition(":")[2])) for name, info in infos.items()))
    _save(home, record)
    return record, infos


def _restart(home: Path, record: NetworkRecord, progress: Progress) -> NetworkRecord:
    """Start a stopped network again: bitcoind if needed, the nodes, their connections."""
    record = replace(record, started_bitcoind=_ensure_bitcoind(home, progress))
    _save(home, record)
    try:
        record, infos = _launch(home, record, progress)

        def reconnect(chan: ChannelRecord) -> None:
            # a node redials its peers once at start, perhaps before they listen: dial again
            peer = infos[chan.plan.accepter]
            if peer["node_id"] not in call_node(chan.plan.opener, "info", home=home)["peers"]:
                with contextlib.suppress(ChanlabError):  # the wait below judges the outcome
                    call_node(chan.plan.opener, "connect", {"peer": peer["address"]},
                              home=home)

        _parallel(reconnect, [c for c in record.channels if c.channel_id])
        progress("waiting for every channel to be reestablished")
        _wait_all_normal(home, record, timeout_s=60 + len(record.channels))
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
                        "push_msat": plan.push_msat}, home=home)))
                except ChanlabError as exc:
                    log = node_home(opener, home) / "node.log"
                    raise NetworkError(f"{opener} could not open its {plan.capacity_sat} sat "
                                       f"channel to {plan.accepter} ({exc}); see {log}"
                                       ) from None
            return opened

        results = dict(zip(openers, _parallel(open_all, openers), strict=True))
        record = replace(record, channels=tuple(fill_opened(record.channels, results)))
        _save(home, record)
        funding = {c.funding_txid for c in record.channels if c.funding_txid}
        wait_for(lambda: funding <= set(rpc.getrawmempool()), timeout=30,
                 what="every funding transaction in the mempool")
        miner.mine(ANNOUNCE_DEPTH)
        progress(f"mined {ANNOUNCE_DEPTH} blocks on the funding transactions; "
                 "waiting for every channel to be normal on both ends")
    finally:
        rpc.close()
    _wait_all_normal(home, record, timeout_s=60 + len(record.channels))
    progress(f"network {topology.spec} is up: {len(topology.nodes)} nodes, "
             f"{len(topology.channels)} channels")
    return record


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


def fill_opened(records: tuple[ChannelRecord, ...], results: dict[str, list[dict[str, Any]]]
                ) -> Iterable[ChannelRecord]:
    """The records with each opener's ``open`` answers (channel id, funding txid) filled in."""
    taken = {opener: iter(answers) for opener, answers in results.items()}
    for rec in records:  # each opener's answers come in its plan order
        answer = next(taken[rec.plan.opener])
        yield replace(rec, channel_id=str(answer["channel_id"]),
                      funding_txid=str(answer["funding_txid"]))


_CLOSED_STATES = frozenset({"closing", "force_closing", "closed"})


def _wait_all_normal(home: Path, record: NetworkRecord, timeout_s: float) -> None:
    """Until every channel is normal on both ends with its ends connected (or was closed by
    hand since: closing or closed on both ends)."""
    names = record.topology.names

    def all_normal() -> bool:
        status = channel_statuses(record, _gather_channels(home, names))
        peers = _gather_peers(home, names)
        for chan in status:
            states = {end.state for end in chan.ends}
            if states <= _CLOSED_STATES:
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


# -- status --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """One node at a glance; the numbers are None while the node does not answer."""

    name: str
    label: str
    running: bool
    node_id: str | None
    onchain_sat: int | None
    offchain_msat: int | None
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "running": self.running,
                "node_id": self.node_id, "onchain_sat": self.onchain_sat,
                "offchain_msat": self.offchain_msat, "fee_base_msat": self.fee_base_msat,
                "fee_proportional_millionths": self.fee_proportional_millionths,
                "cltv_expiry_delta": self.cltv_expiry_delta}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnd:
    """One end's view of a channel: its state and both balances as it sees them."""

    node: str
    state: str          # the node's channel state, "unreachable" or "missing"
    local_msat: int | None
    remote_msat: int | None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "local_msat": self.local_msat,
                "remote_msat": self.remote_msat}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatus:
    """A channel of the network: its plan, its id, and its two ends (opener first)."""

    record: ChannelRecord
    ends: tuple[ChannelEnd, ChannelEnd]

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "ends": [e.to_json() for e in self.ends]}


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkStatus:
    spec: str
    started_bitcoind: bool
    nodes: tuple[NodeStatus, ...]
    channels: tuple[ChannelStatus, ...]

    def to_json(self) -> dict[str, Any]:
        return {"topology": self.spec, "started_bitcoind": self.started_bitcoind,
                "nodes": [n.to_json() for n in self.nodes],
                "channels": [c.to_json() for c in self.channels]}


def _gather_channels(home: Path, names: Iterable[str]) -> dict[str, list[dict[str, Any]] | None]:
    def one(name: str) -> list[dict[str, Any]] | None:
        try:
            return [dict(c) for c in call_node(name, "channels", home=home, timeout_s=10)]
        except (ChanlabError, OSError):
            return None

    names = list(names)
    return dict(zip(names, _parallel(one, names), strict=True))


def _gather_peers(home: Path, names: Iterable[str]
                  ) -> dict[str, tuple[str, list[str]] | None]:
    """Each node's id and connected peers' ids (None: the node does not answer)."""
    def one(name: str) -> tuple[str, list[str]] | None:
        try:
            info = call_node(name, "info", home=home, timeout_s=10)
        except (ChanlabError, OSError):
            return None
        return str(info["node_id"]), [str(p) for p in info["peers"]]

    names = list(names)
    return dict(zip(names, _parallel(one, names), strict=True))


def _same_channel(rec: ChannelRecord, listed: dict[str, Any]) -> bool:
    """Is the node's ``channels`` entry ``listed`` the recorded channel (by id, or funding)?"""
    if rec.channel_id and listed.get("channel_id") == rec.channel_id:
        return True
    outpoint = listed.get("funding_outpoint") or ""
    return bool(rec.funding_txid) and str(outpoint).startswith(f"{rec.funding_txid}:")


def channel_statuses(record: NetworkRecord,
                     channels: dict[str, list[dict[str, Any]] | None]) -> list[ChannelStatus]:
    """Each recorded channel's two ends, from every node's ``channels`` answer (None: silent)."""
    out = []
    for rec in record.channels:
        ends = []
        for name in (rec.plan.opener, rec.plan.accepter):
            listed = channels.get(name)
            if listed is None:
                ends.append(ChannelEnd(node=name, state="unreachable", local_msat=None,
                                       remote_msat=None))
                continue
            found = next((c for c in listed if _same_channel(rec, c)), None)
            if found is None:
                ends.append(ChannelEnd(node=name, state="missing", local_msat=None,
                                       remote_msat=None))
            else:
                ends.append(ChannelEnd(node=name, state=str(found["state"]),
                                       local_msat=found.get("local_msat"),
                                       remote_msat=found.get("remote_msat")))
        out.append(ChannelStatus(record=rec, ends=(ends[0], ends[1])))
    return out


def network_status(home: Path) -> NetworkStatus:
    """Ask every node of the network for its id, balances and channels (in parallel)."""
    record = load_network(home)
    names = record.topology.names

    def node(name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            info = dict(call_node(name, "info", home=home, timeout_s=10))
        except (ChanlabError, OSError):
            return None, None
        try:
            return info, dict(call_node(name, "balance", home=home, timeout_s=10))
        except (ChanlabError, OSError):
            return info, None  # it runs, but cannot count its wallet (bitcoind down?)

    answers = dict(zip(names, _parallel(node, names), strict=True))
    nodes = []
    for plan in record.topology.nodes:
        info, balance = answers[plan.name]
        policy = plan.policy
        nodes.append(NodeStatus(
            name=plan.name, label=plan.label, running=info is not None,
            node_id=None if info is None else str(info["node_id"]),
            onchain_sat=None if balance is None else int(balance["onchain_sat"]),
            offchain_msat=None if balance is None else int(balance["offchain_msat"]),
            fee_base_msat=policy.fee_base_msat,
            fee_proportional_millionths=policy.fee_proportional_millionths,
            cltv_expiry_delta=policy.cltv_expiry_delta))
    channels = channel_statuses(record, _gather_channels(home, names))
    return NetworkStatus(spec=record.topology.spec, started_bitcoind=record.started_bitcoind,
                         nodes=tuple(nodes), channels=tuple(channels))


def _amount(value: int | None, unit: str) -> str:
    return "-" if value is None else f"{value:,} {unit}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def render_status(status: NetworkStatus) -> str:
    """The status as two aligned tables, every amount with its unit."""
    bitcoind = "started with the network" if status.started_bitcoind else "the home's own"
    running = sum(1 for n in status.nodes if n.running)
    head = f"network {status.spec}: {running} of {len(status.nodes)} nodes running " \
           f"(bitcoind: {bitcoind})"
    if not running:
        head += "; `chanlab network start` starts it again"
    lines = [head, ""]
    rows = [["node", "label", "running", "node id", "on-chain", "off-chain", "fee policy"]]
    for n in status.nodes:
        rows.append([n.name, n.label, "yes" if n.running else "NO",
                     (n.node_id or "-")[:16], _amount(n.onchain_sat, "sat"),
                     _amount(n.offchain_msat, "msat"),
                     f"{n.fee_base_msat} msat + {n.fee_proportional_millionths} ppm, "
                     f"cltv_expiry_delta {n.cltv_expiry_delta}"])
    lines += _table(rows)
    lines.append("")
    rows = [["channel", "capacity", "end", "state", "local", "remote"]]
    for c in status.channels:
        label = f"{c.record.plan.opener} -> {c.record.plan.accepter}"
        for i, end in enumerate(c.ends):
            rows.append([label if i == 0 else "",
                         _amount(c.record.plan.capacity_sat, "sat") if i == 0 else "",
                         end.node, end.state, _amount(end.local_msat, "msat"),
                         _amount(end.remote_msat, "msat")])
    lines += _table(rows)
    return "\n".join(lines)


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
    lines = _parallel(lambda item: _stop_node(home, item[0], item[1], timeout_s),
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
