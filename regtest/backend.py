"""I/O (port probes only): the interface every bitcoind backend offers, and what they share.

``free_port`` and ``check_port_free`` open and close a socket; the rest is declarations.
``regtest.node.LocalBitcoind`` and ``regtest.docker_node.DockerBitcoind`` both satisfy
:class:`BitcoindNode`; both import this module and neither imports the other
(``regtest.node.open_node`` picks one).
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from types import TracebackType
from typing import Protocol

from regtest.errors import PortInUse
from regtest.rpc import AsyncRpc, Rpc, RpcAuth

__all__ = ["BASE_ARGS", "CHAIN", "LOOPBACK", "BitcoindNode", "check_port_free", "free_port"]

CHAIN = "regtest"
LOOPBACK = "127.0.0.1"

BASE_ARGS: tuple[str, ...] = (
    "-regtest",
    "-server",
    "-txindex",
    "-fallbackfee=0.0002",
    # bitcoind would otherwise bind a Tor listener on the P2P port + 1, which may be our RPC port.
    "-listenonion=0",
    "-listen=1",
    "-discover=0",
    "-dnsseed=0",
    "-fixedseeds=0",
    "-printtoconsole=0",
    "-keypool=32",
    "-rpcthreads=8",
    "-rpcworkqueue=64",
)


class BitcoindNode(Protocol):
    """What chanlab needs from a running regtest node, whichever backend runs it."""

    @property
    def chain(self) -> str: ...
    @property
    def rpc(self) -> Rpc: ...
    @property
    def rpc_url(self) -> str: ...
    @property
    def rpc_auth(self) -> RpcAuth: ...
    @property
    def cookie_path(self) -> Path: ...
    @property
    def zmq_rawblock(self) -> str: ...
    @property
    def zmq_rawtx(self) -> str: ...
    @property
    def p2p_port(self) -> int: ...
    @property
    def datadir(self) -> Path: ...
    def async_rpc(self) -> AsyncRpc: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...
    def __enter__(self) -> BitcoindNode: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str) -> None:
    """Raise ``PortInUse`` if another socket holds ``port`` on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as bitcoind sets it: a TIME_WAIT leftover is fine, a live socket is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{what} port {port} on {LOOPBACK} is already in use: stop whatever holds it "
                    f"or leave the port unset so chanlab picks a free one"
                ) from None
            raise


