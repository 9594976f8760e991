"""I/O: a regtest chain shared across machines: P2P peering, attaching to a bitcoind elsewhere.

Bitcoin's own peer-to-peer network is what spans laptops. A teacher's ``chanlab bitcoind start
--listen-lan`` binds its P2P port (never RPC) on every interface; a student's ``chanlab bitcoind
start --peer HOST:PORT`` asks its own bitcoind to keep a connection to it (``-addnode``), so
blocks and transactions, a breach and its penalty included, reach every bitcoind of the class.

A node may also use a bitcoind on another host: ``attach`` checks that it answers
``getblockchaininfo`` on regtest with the given credentials, then writes the home's
``bitcoind.json``, so ``chanlab node start`` uses it. Without ZMQ endpoints the node polls RPC.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from regtest.chain import BitcoindEndpoint
from regtest.errors import RegtestError, RpcUnreachable, SetupError
from regtest.node import CHAIN
from regtest.password_file import check_password_file
from regtest.rpc import JSON, Rpc, RpcError

__all__ = [
    "ALL_INTERFACES",
    "NetworkView",
    "PeerView",
    "attach",
    "lan_address",
    "network_view",
    "parse_peer",
    "peer_args",
]

ALL_INTERFACES = "0.0.0.0"


def parse_peer(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); ``SetupError`` saying the form."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SetupError(f"--peer {text!r}: give the other bitcoind's P2P address as HOST:PORT "
                         "(its `chanlab bitcoind info` prints it)")
    return host, int(port_text)


def peer_args(peers: tuple[str, ...]) -> list[str]:
    """bitcoind arguments joining ``peers``: ``-addnode`` keeps reconnecting to each, and this
    bitcoind still accepts others, so a student's bitcoind can relay for a neighbour too."""
    args = []
    for text in peers:
        host, port = parse_peer(text)
        args.append(f"-addnode=[{host}]:{port}" if ":" in host else f"-addnode={host}:{port}")
    return args


def lan_address() -> str | None:
    """This machine's address on its default route (what to tell students), or None.

    A UDP socket "connected" to a non-local address makes the kernel pick the outgoing
    interface; no packet is sent.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))   # TEST-NET-1: never routed anywhere real
            address = str(sock.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """One P2P connection of a bitcoind."""

    address: str
    inbound: bool
    synced_height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkView:
    """What ``chanlab bitcoind info`` shows of a bitcoind: its tip and its P2P peers."""

    chain: str
    height: int
    best_block_hash: str
    peers: tuple[PeerView, ...]


def _int(value: JSON) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def network_view(rpc: Rpc) -> NetworkView:
    """The chain tip and the P2P peers of the bitcoind behind ``rpc``."""
    info = rpc.getblockchaininfo()
    raw = rpc.call("getpeerinfo")
    peers = []
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, dict):
            peers.append(PeerView(address=str(entry.get("addr", "?")),
                                  inbound=bool(entry.get("inbound")),
                                  synced_height=_int(entry.get("synced_blocks"))))
    return NetworkView(chain=info.chain, height=info.blocks,
                       best_block_hash=info.best_block_hash, peers=tuple(peers))


def _check_url(rpc_url: str) -> None:
    parts = urlsplit(rpc_url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise SetupError(f"--rpc-url {rpc_url!r}: give it as http://HOST:PORT (bitcoind's "
                         "-rpcport; regtest's default is 18443)")
    if parts.username or parts.password:
        raise SetupError("--rpc-url must not carry credentials: use --rpc-user with "
                         "--rpc-password-file, or --cookie")


def _check_zmq(option: str, value: str | None) -> None:
    if value is None:
        return
    host, sep, port = value.removeprefix("tcp://").rpartition(":")
    if not value.startswith("tcp://") or not sep or not host or not port.isdigit():
        raise SetupError(f"{option} {value!r}: give it as tcp://HOST:PORT (bitcoind's "
                         f"-zmqpub{option.removeprefix('--zmq-')} address)")


def attach(home: Path, *, rpc_url: str, cookie_path: Path | None = None,
           rpc_user: str | None = None, rpc_password_file: Path | None = None,
           zmq_rawblock: str | None = None, zmq_rawtx: str | None = None,
           ) -> tuple[BitcoindEndpoint, int]:
    """Check the bitcoind at ``rpc_url`` answers on regtest with these credentials, then write
    ``home/bitcoind.json`` for it; returns the endpoint and the chain's height.

    Exactly one of ``cookie_path`` or ``rpc_user`` + ``rpc_password_file``. Only the password
    file's path is written (the file must be mode 0600); every failure is one ``SetupError``.
    """
    _check_url(rpc_url)
    _check_zmq("--zmq-rawblock", zmq_rawblock)
    _check_zmq("--zmq-rawtx", zmq_rawtx)
    by_password = rpc_user is not None or rpc_password_file is not None
    if by_password == (cookie_path is not None):
        raise SetupError("give the bitcoind's credentials one way: --cookie PATH, or "
                         "--rpc-user USER with --rpc-password-file FILE")
    if by_password and (rpc_user is None or rpc_password_file is None):
        raise SetupError("--rpc-user and --rpc-password-file go together")
    if rpc_password_file is not None:
        rpc_password_file = rpc_password_file.absolute()
        check_password_file(rpc_password_file)
    if cookie_path is not None:
        cookie_path = cookie_path.absolute()
        if not cookie_path.is_file():
            raise SetupError(f"no cookie file {cookie_path}: copy the bitcoind's "
                             "<datadir>/regtest/.cookie here (it changes at every restart)")
    endpoint = BitcoindEndpoint(rpc_url=rpc_url, cookie_path=cookie_path, rpc_user=rpc_user,
                                rpc_password_file=rpc_password_file,
                                zmq_rawblock=zmq_rawblock, zmq_rawtx=zmq_rawtx)
    try:
        with Rpc(rpc_url, auth=endpoint.rpc_auth(), timeout_s=10.0) as rpc:
            info = rpc.getblockchaininfo()
    except RpcUnreachable as exc:
        hint = "check the user and password" if "credentials" in str(exc) else \
            "check the URL, and that its -rpcbind/-rpcallowip admit this machine"
        raise SetupError(f"bitcoind at {rpc_url} did not answer ({exc}): {hint}") from None
    except RpcError as exc:
        raise SetupError(f"bitcoind at {rpc_url} refused getblockchaininfo: {exc}") from None
    except RegtestError as exc:
        raise SetupError(f"bitcoind at {rpc_url} answered oddly: {exc}") from None
    if info.chain != CHAIN:
        raise SetupError(f"bitcoind at {rpc_url} runs {info.chain!r}, not regtest: chanlab "
                         "attaches only to a regtest bitcoind")
    home.mkdir(parents=True, exist_ok=True)
    target = home / "bitcoind.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(endpoint.to_json(), indent=1) + "\n")
    tmp.replace(target)
    return endpoint, info.blocks
