"""I/O: ``chanlab bitcoind where|install|start|stop|info|attach|mine|fund``.

``start`` runs a regtest bitcoind in the foreground for hand-driven sessions (workshops): it
writes ``$CHANLAB_HOME/bitcoind.json`` so ``chanlab node start`` finds it, keeps a funded
``miner`` wallet that ``mine`` and ``fund`` use, and uses the same ports on every start
(``regtest.bitcoind_service``). ``stop`` (or Ctrl-C, or SIGTERM) stops it cleanly. Across
laptops (``regtest.bitcoind_lan``): ``start --listen-lan`` opens its P2P port (only P2P) to the
LAN, ``start --peer HOST:PORT`` joins another one, ``info`` says what to tell the others, and
``attach`` points this home's nodes at a bitcoind elsewhere instead of running one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from regtest import provision
from regtest.bitcoind_binary import BitcoindBinary, ensure_bitcoind, locate_bitcoind
from regtest.bitcoind_lan import ALL_INTERFACES, attach, lan_address, network_view, peer_args
from regtest.bitcoind_service import BitcoindService, ServiceRunning
from regtest.chain import BitcoindEndpoint
from regtest.control import chanlab_home, load_endpoint
from regtest.errors import SetupError
from regtest.node import LOOPBACK, LocalBitcoind
from regtest.rpc import Rpc
from regtest.wallet import Wallet, ensure_mature_coins


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("bitcoind", help="find or provision the bitcoind chanlab uses")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    where = actions.add_parser("where", help="say which bitcoind would be used, and why")
    where.set_defaults(handler=_where)
    install = actions.add_parser(
        "install", help="provision bitcoind into chanlab's cache unless a usable one is found"
    )
    install.add_argument(
        "--force", action="store_true", help="discard chanlab's cached bitcoind and provision again"
    )
    install.set_defaults(handler=_install)
    start = actions.add_parser(
        "start", help="run a regtest bitcoind for chanlab nodes in the foreground (Ctrl-C stops)")
    start.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                       help="join another regtest bitcoind over P2P, e.g. the teacher's "
                            "(repeatable; its `chanlab bitcoind info` prints HOST:PORT)")
    start.add_argument("--listen-lan", action="store_true",
                       help="accept P2P connections from other machines (RPC stays on "
                            "127.0.0.1); default: this machine only")
    start.add_argument("--p2p-port", type=int, default=None, metavar="PORT",
                       help="P2P port to use from now on (default: the one this home "
                            "recorded, first picked free)")
    start.add_argument("--detach", action="store_true",
                       help="run in the background and return once bitcoind is ready "
                            "(output in $CHANLAB_HOME/bitcoind.out)")
    start.set_defaults(handler=_start)
    info = actions.add_parser(
        "info", help="RPC URL, P2P port, ZMQ endpoints and peers of this home's bitcoind")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_info)
    attach = actions.add_parser(
        "attach", help="use a bitcoind running elsewhere for this home's nodes")
    attach.add_argument("--rpc-url", required=True, metavar="URL",
                        help="its RPC endpoint, http://HOST:PORT")
    attach.add_argument("--cookie", type=Path, default=None, metavar="PATH",
                        help="a copy of its <datadir>/regtest/.cookie")
    attach.add_argument("--rpc-user", default=None, metavar="USER",
                        help="RPC user (from its -rpcauth), with --rpc-password-file")
    attach.add_argument("--rpc-password-file", type=Path, default=None, metavar="FILE",
                        help="file holding the RPC password (mode 0600; only its path is kept)")
    attach.add_argument("--zmq-rawblock", default=None, metavar="tcp://HOST:PORT",
                        help="its -zmqpubrawblock (without ZMQ, nodes poll RPC)")
    attach.add_argument("--zmq-rawtx", default=None, metavar="tcp://HOST:PORT",
                        help="its -zmqpubrawtx")
    attach.set_defaults(handler=_attach)
    stop = actions.add_parser("stop", help="stop the regtest bitcoind started by `start`")
    stop.set_defaults(handler=_stop)
    mine = actions.add_parser("mine", help="mine blocks on the running regtest bitcoind")
    mine.add_argument("blocks", type=int, nargs="?", default=1)
    mine.set_defaults(handler=_mine)
    fund = actions.add_parser("fund", help="send coins from the miner to a node's wallet")
    fund.add_argument("node", help="node name (its bitcoind wallet has the same name)")
    fund.add_argument("amount_sat", type=int)
    fund.set_defaults(handler=_fund)


def _describe(binary: BitcoindBinary) -> str:
    lines = [
        f"bitcoind:    {binary.bitcoind}",
        f"version:     {binary.version_line}",
        f"why:         {binary.reason}",
    ]
    if binary.bitcoin_cli is not None:
        lines.append(f"bitcoin-cli: {binary.bitcoin_cli}")
    return "\n".join(lines)


def _where(args: argparse.Namespace) -> int:
    located = locate_bitcoind()
    if located.binary is not None:
        print(_describe(located.binary))
        if located.notes:
            print(f"checked:     {'; '.join(located.notes)}")
        return 0
    print(f"no bitcoind yet ({'; '.join(located.notes)})")
    if located.cache_broken is not None:
        print(f"chanlab's cache {located.cache} is broken: {located.cache_broken}")
    why_not = provision.unsupported_reason()
    if why_not is None:
        print(
            f"`chanlab bitcoind install` (or `make demo`) will provision one into {located.cache}"
        )
    else:
        print(f"chanlab cannot provision one here: {why_not}")
        print("install Bitcoin Core >= 25 and set BITCOIND=/path/to/bitcoind, or use Docker")
    return 1


def _install(args: argparse.Namespace) -> int:
    if args.force:
        provision.wipe(provision.cache_dir())
    binary = ensure_bitcoind(progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(_describe(binary))
    return 0


def _endpoint_rpc() -> Rpc:
    return load_endpoint().rpc()


def _start(args: argparse.Namespace) -> int:
    if args.detach:
        return _start_detached(args)
    peers = tuple(args.peer)
    extra_args = peer_args(peers)   # checks each HOST:PORT before anything starts
    p2p_bind = ALL_INTERFACES if args.listen_lan else LOOPBACK
    service = BitcoindService(chanlab_home())
    service.claim()
    # `chanlab bitcoind stop` sends SIGTERM: unwind like Ctrl-C so bitcoind stops cleanly.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        ports = service.ports(p2p_port=args.p2p_port)
        node = LocalBitcoind(binary=ensure_bitcoind(
            progress=lambda line: print(f"   {line}", file=sys.stderr, flush=True)),
            datadir=service.datadir, rpc_port=ports["rpc_port"], p2p_port=ports["p2p_port"],
            zmq_rawblock_port=ports["zmq_rawblock_port"], zmq_rawtx_port=ports["zmq_rawtx_port"],
            extra_args=extra_args, p2p_bind=p2p_bind)
        with node:
            service.record_p2p(p2p_port=node.p2p_port, p2p_bind=p2p_bind, peers=peers)
            if peers:
                _wait_for_peers(node.rpc, peers)
            miner = Wallet.open(node.rpc, "miner")
            ensure_mature_coins(miner)
            endpoint = BitcoindEndpoint(rpc_url=node.rpc_url, cookie_path=node.cookie_path,
                                        zmq_rawblock=node.zmq_rawblock, zmq_rawtx=node.zmq_rawtx)
            service.endpoint_file.write_text(json.dumps(endpoint.to_json()))
            print(f"regtest bitcoind running (RPC {node.rpc_url}, data in {node.datadir}); "
                  f"height {miner.height()}. Ctrl-C or `chanlab bitcoind stop` stops it.",
                  flush=True)
            print(_p2p_line(node.p2p_port, p2p_bind), flush=True)
            try:
                while node.running:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                print("stopping bitcoind", flush=True)
    finally:
        service.clean_up()
    return 0


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a requested stop: the same clean path as Ctrl-C, exit code 0


def _wait_for_peers(rpc: Rpc, peers: tuple[str, ...], timeout_s: float = 30.0) -> None:
    """Before mining the miner's coins: join the peers' chain. Mining alone first would make a
    rival chain, which the longer one replaces (coins and channels on it gone) on joining."""
    deadline = time.monotonic() + timeout_s
    while not network_view(rpc).peers:
        if time.monotonic() > deadline:
            raise SetupError(f"no answer from {', '.join(peers)} within {timeout_s:.0f} s "
                             "(nothing was mined): check the address with the other machine's "
                             "`chanlab bitcoind info`, that it was started with --listen-lan, "
                             "and that its firewall lets that TCP port in")
        time.sleep(0.2)
    # the headers, then the blocks, arrive right after the handshake
    while time.monotonic() < deadline:
        info = rpc.getblockchaininfo()
        if info.headers > 0 and info.blocks == info.headers:
            return
        time.sleep(0.2)


def _p2p_line(p2p_port: int, p2p_bind: str) -> str:
    if p2p_bind == LOOPBACK:
        return (f"P2P port {p2p_port} on {LOOPBACK} only (other machines cannot join; "
                "start with --listen-lan to let them)")
    address = lan_address() or "THIS-MACHINE'S-ADDRESS"
    return (f"P2P port {p2p_port} open on all interfaces: other bitcoinds join with "
            f"`chanlab bitcoind start --peer {address}:{p2p_port}` (allow TCP {p2p_port} in "
            "this machine's firewall)")


def _info(args: argparse.Namespace) -> int:
    service = BitcoindService(chanlab_home())
    endpoint = load_endpoint(service.endpoint_file)
    record = service.p2p_record()
    with Rpc(endpoint.rpc_url, auth=endpoint.rpc_auth(), timeout_s=10.0) as rpc:
        view = network_view(rpc)
    p2p_port = record.get("p2p_port") if record else None
    p2p_bind = record.get("p2p_bind") if record else None
    if args.json:
        print(json.dumps({
            "rpc_url": endpoint.rpc_url,
            "auth": "user" if endpoint.rpc_user else "cookie",
            "rpc_user": endpoint.rpc_user,
            "local": record is not None,
            "p2p_port": p2p_port, "p2p_bind": p2p_bind,
            "joined": record.get("peers") if record else None,
            "zmq_rawblock": endpoint.zmq_rawblock, "zmq_rawtx": endpoint.zmq_rawtx,
            "chain": view.chain, "height": view.height, "best_block_hash": view.best_block_hash,
            "peer_count": len(view.peers),
            "peers": [{"address": p.address, "inbound": p.inbound,
                       "synced_height": p.synced_height} for p in view.peers],
        }, indent=2))
        return 0
    if endpoint.rpc_user:
        auth = f"user {endpoint.rpc_user}, password in {endpoint.rpc_password_file}"
    else:
        auth = f"cookie {endpoint.cookie_path}"
    print(f"rpc:     {endpoint.rpc_url} ({auth})")
    if isinstance(p2p_port, int) and isinstance(p2p_bind, str):
        print(f"p2p:     {_p2p_line(p2p_port, p2p_bind)}")
        joined = record.get("peers") if record else None
        if isinstance(joined, list) and joined:
            print(f"joined:  {', '.join(str(p) for p in joined)}")
    else:
        print("p2p:     attached to a bitcoind this home did not start (its P2P port is "
              "whatever it was started with)")
    if endpoint.zmq_rawblock or endpoint.zmq_rawtx:
        print(f"zmq:     rawblock {endpoint.zmq_rawblock or '-'}, rawtx "
              f"{endpoint.zmq_rawtx or '-'}")
    else:
        print("zmq:     none (nodes poll RPC for blocks and transactions)")
    print(f"chain:   {view.chain}, height {view.height}, tip {view.best_block_hash}")
    print(f"peers:   {len(view.peers)}")
    for peer in view.peers:
        direction = "in " if peer.inbound else "out"
        print(f"  {direction} {peer.address}  (synced to height {peer.synced_height})")
    return 0


def _attach(args: argparse.Namespace) -> int:
    service = BitcoindService(chanlab_home())
    pid = service.running_pid()
    if pid is not None:
        raise SetupError(f"this home runs its own bitcoind (chanlab process {pid}): stop it "
                         "with `chanlab bitcoind stop`, or attach in another CHANLAB_HOME")
    endpoint, height = attach(service.home, rpc_url=args.rpc_url, cookie_path=args.cookie,
                              rpc_user=args.rpc_user, rpc_password_file=args.rpc_password_file,
                              zmq_rawblock=args.zmq_rawblock, zmq_rawtx=args.zmq_rawtx)
    feed = "ZMQ" if endpoint.zmq_rawblock or endpoint.zmq_rawtx else "RPC polling"
    print(f"attached {service.endpoint_file} to the regtest bitcoind at {endpoint.rpc_url} "
          f"(height {height}; blocks and transactions by {feed}); `chanlab node start` in "
          "this home uses it")
    return 0


def _stop(args: argparse.Namespace) -> int:
    pid = BitcoindService(chanlab_home()).stop()
    if pid is None:
        print("no bitcoind is running for this home (nothing to stop)")
    else:
        print(f"stopped the regtest bitcoind (chanlab process {pid})")
    return 0


def _start_detached(args: argparse.Namespace) -> int:
    from regtest.detach import start_detached

    service = BitcoindService(chanlab_home())
    running = service.running_pid()
    if running is not None:
        raise ServiceRunning(f"a bitcoind already runs for {service.home} (chanlab process "
                             f"{running}): use it, or stop it with `chanlab bitcoind stop`")
    argv = [a for a in args.command_line if a != "--detach"]
    pid = start_detached(argv, output=service.home / "bitcoind.out", what="bitcoind",
                         ready=lambda: service.endpoint_file.exists())
    print(f"regtest bitcoind running in the background (chanlab process {pid}); "
          "`chanlab bitcoind stop` stops it", flush=True)
    return 0


def _mine(args: argparse.Namespace) -> int:
    miner = Wallet(_endpoint_rpc(), "miner")
    hashes = miner.mine(args.blocks)
    height = miner.height()
    seen = _wait_nodes_at(height)
    print(f"mined {len(hashes)} block(s); height {height}"
          + (f"; seen by {', '.join(seen)}" if seen else ""))
    return 0


def _wait_nodes_at(height: int, timeout_s: float = 10.0) -> list[str]:
    """Wait until this home's running nodes have processed ``height`` (so the next command
    sees the block's effects: a channel_ready, a sweep); the names of those that did."""
    from channel.errors import ChanlabError
    from regtest.control import call_node, node_names

    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    for name in node_names():
        while True:
            try:
                info = call_node(name, "info", timeout_s=2.0)
            except (ChanlabError, OSError, ValueError):
                break   # not running: nothing to wait for
            if int(info.get("height") or 0) >= height:
                seen.append(name)
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return seen


def _fund(args: argparse.Namespace) -> int:
    rpc = _endpoint_rpc()
    miner = Wallet(rpc, "miner")
    target = Wallet.open(rpc, args.node)
    txid = miner.send_to_address(target.new_address(), args.amount_sat)
    miner.mine(1)
    print(f"sent {args.amount_sat} sat to {args.node}'s wallet in {txid} (confirmed); "
          f"balance {target.balance_sat()} sat")
    return 0
