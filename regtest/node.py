"""I/O: run a regtest bitcoind for chanlab: start it, wait until it answers, stop it, clean up.

``LocalBitcoind`` runs the binary chosen by ``regtest.bitcoind_binary`` as a child process;
``regtest.docker_node.DockerBitcoind`` runs the same thing in a container. Both satisfy
``regtest.backend.BitcoindNode``; ``open_node(backend)`` picks one. (The interface, the shared
arguments and the port helpers live in ``regtest.backend``, so the docker backend does not
import this module; they stay importable from here.)

A local node gets its own datadir (a temp folder unless given), free loopback ports for RPC, P2P
and the two ZMQ feeds (``rawblock``, ``rawtx``), and cookie authentication. ``start()`` deletes a
stale ``.cookie``, launches bitcoind and polls RPC four times a second, tolerating "connection
refused" and warm-up (-28), failing fast with the tail of ``debug.log`` and stderr if the process
dies. ``stop()`` asks over RPC, waits, kills on timeout, and always releases everything.

No orphans: bitcoind runs in its own process group (a terminal's Ctrl-C reaches only Python, which
then stops it cleanly); ``atexit`` and a SIGTERM handler stop every node still running; on Linux
the child also gets ``PR_SET_PDEATHSIG`` so even a ``kill -9`` of Python takes bitcoind down.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from regtest.backend import (
    BASE_ARGS,
    CHAIN,
    LOOPBACK,
    BitcoindNode,
    check_port_free,
    free_port,
)
from regtest.bitcoind_binary import BitcoindBinary, require_bitcoind
from regtest.errors import NodeStartError, PortInUse, RegtestError, RpcUnreachable
from regtest.rpc import AsyncRpc, Rpc, RpcAuth, RpcInWarmup

__all__ = [
    "BASE_ARGS",
    "CHAIN",
    "LOOPBACK",
    "BitcoindNode",
    "LocalBitcoind",
    "check_port_free",
    "free_port",
    "open_node",
]

_POLL_INTERVAL_S = 0.25
_LOG_TAIL_LINES = 15
_BIND_FAILURE_MARKERS = ("Unable to bind", "Unable to start HTTP server", "Address already in use")


class LocalBitcoind:
    """A bitcoind child process on regtest. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        *,
        binary: BitcoindBinary | None = None,
        datadir: Path | None = None,
        rpc_port: int | None = None,
        p2p_port: int | None = None,
        zmq_rawblock_port: int | None = None,
        zmq_rawtx_port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        shutdown_timeout_s: float = 30.0,
        keep_datadir: bool = False,
    ) -> None:
        self._binary = binary
        self._owns_datadir = datadir is None
        self._keep_datadir = keep_datadir or datadir is not None
        self._datadir = datadir
        self._requested_ports = {
            "RPC": rpc_port,
            "P2P": p2p_port,
            "ZMQ rawblock": zmq_rawblock_port,
            "ZMQ rawtx": zmq_rawtx_port,
        }
        self._ports: dict[str, int] = {}
        self._extra_args = tuple(extra_args)
        self._startup_timeout_s = startup_timeout_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._rpc: Rpc | None = None

    # --- what callers read -----------------------------------------------------------------------

    @property
    def chain(self) -> str:
        return CHAIN

    @property
    def binary(self) -> BitcoindBinary:
        if self._binary is None:
            self._binary = require_bitcoind()
        return self._binary

    @property
    def datadir(self) -> Path:
        if self._datadir is None:
            raise RegtestError("the node has no datadir until start()")
        return self._datadir

    @property
    def cookie_path(self) -> Path:
        return self.datadir / CHAIN / ".cookie"

    @property
    def debug_log(self) -> Path:
        return self.datadir / CHAIN / "debug.log"

    @property
    def rpc_port(self) -> int:
        return self._port("RPC")

    @property
    def p2p_port(self) -> int:
        return self._port("P2P")

    @property
    def rpc_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rpc_port}"

    @property
    def rpc_auth(self) -> RpcAuth:
        return self.cookie_path

    @property
    def zmq_rawblock(self) -> str:
        return f"tcp://{LOOPBACK}:{self._port('ZMQ rawblock')}"

    @property
    def zmq_rawtx(self) -> str:
        return f"tcp://{LOOPBACK}:{self._port('ZMQ rawtx')}"

    @property
    def pid(self) -> int | None:
        """The bitcoind process id while it runs."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def rpc(self) -> Rpc:
        """A blocking client of the node (closed by stop())."""
        if self._rpc is None:
            raise RegtestError("the node is not running: call start() first")
        return self._rpc

    def async_rpc(self, *, timeout_s: float = 60.0) -> AsyncRpc:
        """A new async client for this node; the caller closes it (``await c.aclose()``)."""
        return AsyncRpc(self.rpc_url, auth=self.rpc_auth, timeout_s=timeout_s)

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Launch bitcoind and return once it answers RPC; raise ``NodeStartError`` otherwise.

        A failed start leaves nothing behind: the process is killed and a temp datadir created
        by this call is removed (its log tail is in the error).
        """
        if self.running:
            raise RegtestError("the node is already running")
        binary = self.binary
        self._assign_ports()
        created_datadir = self._datadir is None
        if self._datadir is None:
            self._datadir = Path(tempfile.mkdtemp(prefix="chanlab-bitcoind-"))
        try:
            self._launch(binary)
        except BaseException:
            self._kill()
            self._release()
            if created_datadir and self._datadir is not None:
                shutil.rmtree(self._datadir, ignore_errors=True)
                self._datadir = None
            raise

    def _launch(self, binary: BitcoindBinary) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        # A cookie from an earlier run would let us "connect" before this bitcoind is ready.
        self.cookie_path.unlink(missing_ok=True)
        stderr_path = self.datadir / "chanlab-stderr.log"
        argv = [str(binary.bitcoind), *self._args()]
        with stderr_path.open("wb") as stderr:
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    process_group=0,
                    preexec_fn=_pdeathsig_preexec(),
                )
            except OSError as exc:
                raise NodeStartError(f"cannot run {binary.bitcoind}: {exc}") from exc
        _register(self)
        self._rpc = Rpc(self.rpc_url, auth=self.rpc_auth)
        self._wait_ready(stderr_path)

    def stop(self) -> None:
        """Stop bitcoind (RPC ``stop``, kill on timeout) and remove a temp datadir it owns."""
        try:
            self._stop_process()
        finally:
            if self._owns_datadir and not self._keep_datadir and self._datadir is not None:
                shutil.rmtree(self._datadir, ignore_errors=True)
                self._datadir = None

    def restart(self, *, extra_args: Sequence[str] | None = None) -> None:
        """Stop and start again on the same datadir and ports: the chain and wallets survive."""
        self._stop_process()
        if extra_args is not None:
            self._extra_args = tuple(extra_args)
        self.start()

    def kill(self, *, flush_first: bool = True) -> None:
        """SIGKILL bitcoind (a crash, for drills); the datadir stays and ``start()`` works after.

        bitcoind writes its block index and UTXO set to disk only now and then; on regtest, with
        no peers to fetch blocks from again, a raw crash can take the chain back to genesis. So
        by default the state is flushed first (``gettxoutsetinfo`` forces it) and the crash
        loses only what a real one would lose from memory: nothing on chain.
        """
        if flush_first and self.running and self._rpc is not None:
            with contextlib.suppress(RegtestError):
                self._rpc.call("gettxoutsetinfo", "none")
        self._kill()
        self._release()

    def __enter__(self) -> LocalBitcoind:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------------------

    def _port(self, name: str) -> int:
        try:
            return self._ports[name]
        except KeyError:
            raise RegtestError(f"the node has no {name} port until start()") from None

    def _assign_ports(self) -> None:
        if self._ports:
            return  # a restart keeps its ports, so clients and peers find it again
        chosen: dict[str, int] = {}
        for name, port in self._requested_ports.items():
            if port is not None:
                check_port_free(port, name)
                chosen[name] = port
        for name, port in self._requested_ports.items():
            if port is None:
                candidate = free_port()
                while candidate in chosen.values():
                    candidate = free_port()
                chosen[name] = candidate
        self._ports = chosen

    def _args(self) -> list[str]:
        return [
            f"-datadir={self.datadir}",
            *BASE_ARGS,
            f"-bind={LOOPBACK}:{self.p2p_port}",
            f"-port={self.p2p_port}",
            f"-rpcport={self.rpc_port}",
            f"-rpcbind={LOOPBACK}",
            f"-rpcallowip={LOOPBACK}",
            f"-zmqpubrawblock={self.zmq_rawblock}",
            f"-zmqpubrawtx={self.zmq_rawtx}",
            *self._extra_args,
        ]

    def _wait_ready(self, stderr_path: Path) -> None:
        proc = self._proc
        rpc = self._rpc
        if proc is None or rpc is None:
            raise RegtestError("internal: _wait_ready without a process")
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                raise self._start_failure(
                    f"bitcoind exited with code {code} during startup", stderr_path
                )
            try:
                rpc.getblockcount()
                return
            except (RpcUnreachable, RpcInWarmup):
                pass
            if time.monotonic() > deadline:
                raise self._start_failure(
                    f"bitcoind did not answer RPC within {self._startup_timeout_s:.0f} s",
                    stderr_path,
                )
            time.sleep(_POLL_INTERVAL_S)

    def _start_failure(self, headline: str, stderr_path: Path) -> NodeStartError:
        stderr = _tail(stderr_path)
        debug = _tail(self.debug_log)
        if any(marker in stderr + debug for marker in _BIND_FAILURE_MARKERS):
            ports = ", ".join(f"{name} {port}" for name, port in self._ports.items())
            return PortInUse(
                f"{headline}: a port it needs is already in use ({ports}). Stop whatever holds "
                f"it, or leave ports unset so chanlab picks free ones.\n{stderr or debug}"
            )
        parts = [headline, f"command: {self.binary.bitcoind} {' '.join(self._args())}"]
        if stderr:
            parts.append(f"stderr:\n{stderr}")
        if debug:
            parts.append(f"last lines of {self.debug_log}:\n{debug}")
        return NodeStartError("\n".join(parts))

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            self._release()
            return
        try:
            if proc.poll() is None and self._rpc is not None:
                with contextlib.suppress(RegtestError):
                    self._rpc.stop()
                try:
                    proc.wait(timeout=self._shutdown_timeout_s)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._kill()
            self._release()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _release(self) -> None:
        if self._rpc is not None:
            rpc, self._rpc = self._rpc, None
            rpc.close()
        self._proc = None
        _unregister(self)

    def _emergency_stop(self) -> None:
        """At exit or on SIGTERM: SIGTERM (bitcoind's clean shutdown), kill if it lingers."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None


# --- orphan protection ---------------------------------------------------------------------------

_live: set[LocalBitcoind] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _register(node: LocalBitcoind) -> None:
    global _handlers_installed
    with _live_lock:
        _live.add(node)
        if _handlers_installed:
            return
        _handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(node: LocalBitcoind) -> None:
    with _live_lock:
        _live.discard(node)


def _stop_all() -> None:
    with _live_lock:
        nodes = list(_live)
        _live.clear()
    for node in nodes:
        node._emergency_stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so every ``with``/``finally`` stops its node and removes temp dirs.
    raise SystemExit(128 + signum)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn making the kernel SIGKILL the child when this thread dies (Linux only).

    PR_SET_PDEATHSIG fires when the creating *thread* exits, so it is only set from the main
    thread, whose end is the process's end.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before prctl took effect

    return preexec


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def open_node(backend: str = "local", *, binary: BitcoindBinary | None = None) -> BitcoindNode:
    """A not-yet-started node for the CLI and demos.

    "local" (default): a ``LocalBitcoind`` of ``binary`` (found or provisioned if None).
    "docker": the ``docker compose`` node if it runs, else a container of its own.
    """
    if backend == "local":
        return LocalBitcoind(binary=binary)
    if backend == "docker":
        from regtest.docker_node import open_docker_node

        return open_docker_node()
    raise RegtestError(f"unknown backend {backend!r}: use 'local' or 'docker'")
