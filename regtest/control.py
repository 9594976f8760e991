"""I/O: where chanlab keeps its nodes, and the client side of a node's control socket.

``$CHANLAB_HOME`` (default ``~/.local/share/chanlab``) holds ``bitcoind.json`` (how to reach
the regtest bitcoind the nodes share) and ``nodes/<name>/`` (one folder per node: its key, its
database, ``node.json`` with its public address, ``control.sock`` and ``node.log``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from channel.control_api import NODE_COMMANDS, TOWER_COMMANDS, Command, check_args
from channel.control_socket import connect_unix
from channel.daemon import daemon_logging
from channel.errors import ChanlabError
from regtest.chain import BitcoindEndpoint
from regtest.errors import SetupError

__all__ = [
    "NodeUnreachable",
    "call_control",
    "call_node",
    "call_tower",
    "chanlab_home",
    "daemon_logging",
    "load_endpoint",
    "node_address",
    "node_home",
    "node_names",
    "tower_address",
    "tower_home",
]


class NodeUnreachable(ChanlabError):
    """The named node is not running (or has no control socket)."""


def chanlab_home() -> Path:
    env = os.environ.get("CHANLAB_HOME")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "chanlab"


def node_home(name: str, home: Path | None = None) -> Path:
    return (home or chanlab_home()) / "nodes" / name


def node_names(home: Path | None = None) -> list[str]:
    """The nodes that have a folder in ``home`` (running or not), by name."""
    nodes = (home or chanlab_home()) / "nodes"
    return sorted(p.name for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []


def node_address(name: str, home: Path | None = None) -> str:
    """``node_id@host:port`` of the node called ``name`` (from its ``node.json``)."""
    path = node_home(name, home) / "node.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise NodeUnreachable(f"no node called {name!r} (start it: chanlab node start "
                              f"--name {name})") from None
    return f"{info['node_id']}@{info['host']}:{info['port']}"


def call_node(name: str, cmd: str, args: dict[str, Any] | None = None, *,
              home: Path | None = None, timeout_s: float = 120.0) -> Any:
    """Send one command to a running node and return its result (raises on its error)."""
    return call_control(node_home(name, home) / "control.sock", f"node {name!r}", cmd, args,
                        table=NODE_COMMANDS, timeout_s=timeout_s)


def tower_home(name: str, home: Path | None = None) -> Path:
    return (home or chanlab_home()) / "towers" / name


def tower_address(name: str, home: Path | None = None) -> str:
    """``tower_id@host:port`` of the tower called ``name`` (from its ``tower.json``)."""
    path = tower_home(name, home) / "tower.json"
    try:
        return str(json.loads(path.read_text())["address"])
    except FileNotFoundError:
        raise NodeUnreachable(f"no tower called {name!r} (start it: chanlab tower start "
                              f"--name {name})") from None


def call_tower(name: str, cmd: str, args: dict[str, Any] | None = None, *,
               home: Path | None = None, timeout_s: float = 60.0) -> Any:
    """Send one command to a running tower and return its result (raises on its error)."""
    return call_control(tower_home(name, home) / "control.sock", f"tower {name!r}", cmd, args,
                        table=TOWER_COMMANDS, timeout_s=timeout_s)


def call_control(path: Path, who: str, cmd: str, args: dict[str, Any] | None = None, *,
                 table: dict[str, Command], timeout_s: float = 120.0) -> Any:
    """One JSON request on the control socket at ``path`` (a node's or a tower's), its
    arguments checked against ``table`` first (a bad call fails here, with the reason)."""
    check_args(table, cmd, args or {})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        connect_unix(sock, path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NodeUnreachable(f"{who} is not running (no {path})") from None
    chunks: list[bytes] = []
    try:
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    if not chunks:
        raise NodeUnreachable(f"{who} closed the control connection without answering")
    response = json.loads(b"".join(chunks))
    if not response.get("ok"):
        name = who.split("'")[1] if "'" in who else who
        raise ChanlabError(f"{name}: {response.get('error')}")
    return response.get("result")


def load_endpoint(path: Path | None = None) -> BitcoindEndpoint:
    """How to reach the shared regtest bitcoind: ``path`` or ``$CHANLAB_HOME/bitcoind.json``."""
    endpoint_file = path or chanlab_home() / "bitcoind.json"
    try:
        return BitcoindEndpoint.from_json(json.loads(endpoint_file.read_text()))
    except FileNotFoundError:
        raise SetupError(f"no {endpoint_file}: start a regtest bitcoind first "
                         "(`chanlab bitcoind start`, or `chanlab demo` for a guided run)") from None
