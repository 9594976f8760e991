"""I/O: a bitcoind plus chanlab node processes, for demos and integration tests.

pyln-testing's node factory, reduced to what chanlab needs: every node is a real
``chanlab node start`` process with its own home folder, sharing one regtest bitcoind; the
cluster can stop, kill -9 and restart any of them. Processes are always cleaned up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from regtest.chain import BitcoindEndpoint
from regtest.control import NodeUnreachable, call_node, call_tower, node_home, tower_home
from regtest.node import BitcoindNode
from regtest.seeded_wallet import seeded_send
from regtest.wait import wait_for
from regtest.wallet import Wallet

__all__ = ["Cluster", "NodeProcess", "TowerProcess"]


class _ChildProcess:
    """A ``chanlab <kind> start`` child process with its own home: start it and wait until its
    control socket answers, stop it gracefully, or kill -9 it. It keeps its port across
    restarts, so peers can reconnect."""

    kind = ""          # "node" or "tower": the CLI subcommand and the word in messages
    info_file = ""     # written by the process once it listens: holds its port

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.env: dict[str, str] = {}   # more environment for the next start (test hooks)

    @property
    def home(self) -> Path:
        raise NotImplementedError

    def _extra_args(self) -> list[str]:
        return []

    def call(self, cmd: str, **args: Any) -> Any:
        raise NotImplementedError

    def _start(self, timeout: float) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / self.info_file).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "regtest.cli", self.kind, "start", "--name", self.name,
               "--port", str(self.port), *self._extra_args()]
        env = dict(os.environ, CHANLAB_HOME=str(self.cluster.home), **self.env)
        with (self.home / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                         start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.home / "stderr.log").read_text()[-2000:]
                raise RuntimeError(f"{self.kind} {self.name} exited at start:\n{tail}")
            try:
                self.call("info")
            except (NodeUnreachable, OSError):
                return False
            return True

        wait_for(up, timeout=timeout, what=f"{self.kind} {self.name} to start")
        self.port = int(json.loads((self.home / self.info_file).read_text())["port"])

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), then kill if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """kill -9: no chance to flush anything that is not already durable."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        """The process id of the running daemon."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} {self.name} is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NodeProcess(_ChildProcess):
    """One ``chanlab node start`` child process."""

    kind = "node"
    info_file = "node.json"

    def __init__(self, cluster: Cluster, name: str, *, allow_cheating: bool,
                 to_self_delay: int, towers: tuple[str, ...] = ()) -> None:
        super().__init__(cluster, name)
        self.allow_cheating = allow_cheating
        self.to_self_delay = to_self_delay
        self.towers = towers   # tower addresses given with --tower (the node remembers them)
        self.start_args: list[str] = []   # more `node start` options, e.g. --allow-fresh-db

    @property
    def home(self) -> Path:
        return node_home(self.name, self.cluster.home)

    @property
    def wallet(self) -> Wallet:
        return Wallet(self.cluster.bitcoind.rpc, self.name)

    def _extra_args(self) -> list[str]:
        args = ["--to-self-delay", str(self.to_self_delay)]
        if self.cluster.seed is not None:
            args += ["--seed", f"{self.cluster.seed}/{self.name}"]
            # a seeded run mines its blocks at fixed times in the past (so they repeat): the
            # chain view's tip-age limit must not call such a chain stale
            args += ["--max-tip-age-s", str(100 * 365 * 24 * 3600)]
        if self.allow_cheating:
            args.append("--allow-cheating")
        for tower in self.towers:
            args += ["--tower", tower]
        return args + self.start_args

    def start(self, timeout: float = 30.0) -> NodeProcess:
        """Start the process and wait until its control socket answers."""
        self._start(timeout)
        return self

    def call(self, cmd: str, **args: Any) -> Any:
        return call_node(self.name, cmd, args, home=self.cluster.home)

    @property
    def node_id(self) -> str:
        return str(self.call("info")["node_id"])

    @property
    def address(self) -> str:
        return str(self.call("info")["address"])


class TowerProcess(_ChildProcess):
    """One ``chanlab tower start`` child process."""

    kind = "tower"
    info_file = "tower.json"

    @property
    def home(self) -> Path:
        return tower_home(self.name, self.cluster.home)

    def start(self, timeout: float = 30.0) -> TowerProcess:
        """Start the process and wait until its control socket answers."""
        self._start(timeout)
        return self

    def call(self, cmd: str, **args: Any) -> Any:
        return call_tower(self.name, cmd, args, home=self.cluster.home)

    @property
    def address(self) -> str:
        """``tower_id@host:port``."""
        return str(json.loads((self.home / "tower.json").read_text())["address"])

    @property
    def tower_id(self) -> str:
        return self.address.split("@")[0]

    def register(self, node: NodeProcess) -> None:
        """The operator allows ``node`` (by its node id) to store justice kits."""
        self.call("register", client_id=node.node_id)


class Cluster:
    """Nodes sharing ``bitcoind`` under ``home`` (their ``$CHANLAB_HOME``)."""

    def __init__(self, bitcoind: BitcoindNode, home: Path, miner: Wallet,
                 seed: str | None = None) -> None:
        self.bitcoind = bitcoind
        self.seed = seed     # a seeded run (``chanlab demo --seed``): nodes and funding repeat
        self.home = home
        self.miner = miner
        self.nodes: dict[str, NodeProcess] = {}
        self.towers: dict[str, TowerProcess] = {}
        home.mkdir(parents=True, exist_ok=True)
        endpoint = BitcoindEndpoint(rpc_url=bitcoind.rpc_url, cookie_path=bitcoind.cookie_path,
                                    zmq_rawblock=bitcoind.zmq_rawblock,
                                    zmq_rawtx=bitcoind.zmq_rawtx)
        (home / "bitcoind.json").write_text(json.dumps(endpoint.to_json()))

    def start_node(self, name: str, *, funds_sat: int = 0, allow_cheating: bool = False,
                   to_self_delay: int = 10, towers: tuple[TowerProcess, ...] = (),
                   start_args: Sequence[str] = ()) -> NodeProcess:
        """Start a node (``start_args``: more ``node start`` options, e.g. its fee policy);
        with ``towers``, registered with each and uploading to them."""
        node = NodeProcess(self, name, allow_cheating=allow_cheating,
                           to_self_delay=to_self_delay,
                           towers=tuple(t.address for t in towers))
        node.start_args = list(start_args)
        node.start()
        for tower in towers:
            tower.register(node)
        self.nodes[name] = node
        if funds_sat:
            self.fund(node, funds_sat)
        return node

    def start_tower(self, name: str) -> TowerProcess:
        """Start a ``chanlab tower start`` process (no client registered yet)."""
        tower = TowerProcess(self, name).start()
        self.towers[name] = tower
        return tower

    def fund(self, node: NodeProcess, amount_sat: int) -> str:
        """Send ``amount_sat`` from the miner to the node's wallet and confirm it."""
        wallet = node.wallet
        before = wallet.balances().trusted_sat
        if self.seed is not None:
            txid = seeded_send(self.miner, wallet.new_address(), amount_sat)
        else:
            txid = self.miner.send_to_address(wallet.new_address(), amount_sat)
        self.mine(1)
        # the wallet sees its block a moment after generatetoaddress returns; funding a channel
        # before that finds the coins untrusted ("Insufficient funds")
        wait_for(lambda: wallet.balances().trusted_sat >= before + amount_sat,
                 timeout=30, what=f"{node.name}'s wallet to see its {amount_sat} sat confirmed")
        return txid

    def mine(self, n: int = 1) -> list[str]:
        return self.miner.mine(n)

    def connect(self, a: NodeProcess, b: NodeProcess) -> None:
        a.call("connect", peer=b.address)

    def open_channel(self, a: NodeProcess, b: NodeProcess, amount_sat: int, *,
                     push_msat: int = 0, anchors: bool = False, announce: bool = False,
                     timeout: float = 30.0) -> dict[str, Any]:
        """Open a channel from ``a`` to ``b``, mine it to depth, wait until both see NORMAL
        (``announce``: a public channel, announced once 6 blocks deep)."""
        if b.node_id not in a.call("info")["peers"]:
            self.connect(a, b)
        opened: dict[str, Any] = a.call("open", peer_id=b.node_id, amount_sat=amount_sat,
                                        push_msat=push_msat, anchors=anchors,
                                        announce=announce)
        self.bitcoind.rpc.call("getmempoolentry", opened["funding_txid"])
        self.mine(1)
        funding_txid = str(opened["funding_txid"])
        for node in (a, b):
            self.wait_channel_state(node, funding_txid, "normal", timeout=timeout)
        return opened

    def channel(self, node: NodeProcess, funding_txid: str) -> dict[str, Any]:
        for c in node.call("channels"):
            if c["funding_outpoint"] and c["funding_outpoint"].startswith(funding_txid):
                return dict(c)
        raise KeyError(f"{node.name} has no channel funded by {funding_txid}")

    def wait_channel_state(self, node: NodeProcess, funding_txid: str, state: str, *,
                           timeout: float = 30.0) -> None:
        def reached() -> bool:
            return self.channel_state(node, funding_txid) == state

        wait_for(reached, timeout=timeout, what=f"{node.name}'s channel to be {state}")

    def channel_state(self, node: NodeProcess, funding_txid: str) -> str:
        try:
            return str(self.channel(node, funding_txid)["state"])
        except KeyError:
            return "unknown"

    def pay(self, payer: NodeProcess, payee: NodeProcess, amount_msat: int) -> dict[str, Any]:
        invoice = payee.call("invoice", amount_msat=amount_msat)["invoice"]
        result: dict[str, Any] = payer.call("pay", invoice=invoice)
        return result

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for tower in self.towers.values():
            tower.stop()

    @classmethod
    @contextmanager
    def running(cls, bitcoind: BitcoindNode, home: Path, miner: Wallet,
                seed: str | None = None) -> Iterator[Cluster]:
        cluster = cls(bitcoind, home, miner, seed)
        try:
            yield cluster
        finally:
            for node in cluster.nodes.values():
                node.kill() if node.running else None
            for tower in cluster.towers.values():
                tower.kill()
            time.sleep(0)
