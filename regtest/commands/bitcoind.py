"""I/O: ``chanlab bitcoind where|install|start|stop|mine|fund``.

``start`` runs a regtest bitcoind in the foreground for hand-driven sessions (workshops): it
writes ``$CHANLAB_HOME/bitcoind.json`` so ``chanlab node start`` finds it, keeps a funded
``miner`` wallet that ``mine`` and ``fund`` use, and uses the same ports on every start
(``regtest.bitcoind_service``). ``stop`` (or Ctrl-C, or SIGTERM) stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from types import FrameType
from typing import Any

from regtest import provision
from regtest.bitcoind_binary import BitcoindBinary, ensure_bitcoind, locate_bitcoind
from regtest.bitcoind_service import BitcoindService
from regtest.chain import BitcoindEndpoint
from regtest.control import chanlab_home, load_endpoint
from regtest.node import LocalBitcoind
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
    start.set_defaults(handler=_start)
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
    endpoint = load_endpoint()
    return Rpc(endpoint.rpc_url, auth=endpoint.cookie_path)


def _start(args: argparse.Namespace) -> int:
    service = BitcoindService(chanlab_home())
    service.claim()
    # `chanlab bitcoind stop` sends SIGTERM: unwind like Ctrl-C so bitcoind stops cleanly.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        ports = service.ports()
        node = LocalBitcoind(binary=ensure_bitcoind(
            progress=lambda line: print(f"   {line}", file=sys.stderr, flush=True)),
            datadir=service.datadir, rpc_port=ports["rpc_port"], p2p_port=ports["p2p_port"],
            zmq_rawblock_port=ports["zmq_rawblock_port"], zmq_rawtx_port=ports["zmq_rawtx_port"])
        with node:
            miner = Wallet.open(node.rpc, "miner")
            ensure_mature_coins(miner)
            endpoint = BitcoindEndpoint(rpc_url=node.rpc_url, cookie_path=node.cookie_path,
                                        zmq_rawblock=node.zmq_rawblock, zmq_rawtx=node.zmq_rawtx)
            service.endpoint_file.write_text(json.dumps(endpoint.to_json()))
            print(f"regtest bitcoind running (RPC {node.rpc_url}, data in {node.datadir}); "
                  f"height {miner.height()}. Ctrl-C or `chanlab bitcoind stop` stops it.",
                  flush=True)
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


def _stop(args: argparse.Namespace) -> int:
    pid = BitcoindService(chanlab_home()).stop()
    if pid is None:
        print("no bitcoind is running for this home (nothing to stop)")
    else:
        print(f"stopped the regtest bitcoind (chanlab process {pid})")
    return 0


def _mine(args: argparse.Namespace) -> int:
    miner = Wallet(_endpoint_rpc(), "miner")
    hashes = miner.mine(args.blocks)
    print(f"mined {len(hashes)} block(s); height {miner.height()}")
    return 0


def _fund(args: argparse.Namespace) -> int:
    rpc = _endpoint_rpc()
    miner = Wallet(rpc, "miner")
    target = Wallet.open(rpc, args.node)
    txid = miner.send_to_address(target.new_address(), args.amount_sat)
    miner.mine(1)
    print(f"sent {args.amount_sat} sat to {args.node}'s wallet in {txid} (confirmed); "
          f"balance {target.balance_sat()} sat")
    return 0
