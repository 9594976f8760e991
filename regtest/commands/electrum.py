"""I/O: ``chanlab electrum install|start|stop``: an Electrum wallet as a foreign Lightning peer.

``start --name carol`` runs, in the foreground until Ctrl-C or ``stop``, an ElectrumX server on
the regtest bitcoind of ``chanlab bitcoind start`` (read from ``$CHANLAB_HOME/bitcoind.json``)
and an Electrum daemon with a Lightning wallet, both under ``$CHANLAB_HOME/electrum/carol/``. It
prints the wallet's node id and the ``electrum`` command line to drive it; ``electrum.json``
there names the running process for ``stop``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from regtest.control import chanlab_home, load_endpoint
from regtest.electrum import ElectrumWallet, ElectrumX
from regtest.electrum_provision import electrum_cache, ensure_electrum, wipe
from regtest.errors import SetupError
from regtest.wait import wait_for

INFO_FILE = "electrum.json"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "electrum", help="run an Electrum wallet (a second Lightning implementation) as a peer")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", help="provision Electrum and ElectrumX into chanlab's cache (pinned versions)")
    install.add_argument("--force", action="store_true",
                         help="discard the cached Electrum and provision again")
    install.set_defaults(handler=_install)
    start = actions.add_parser(
        "start", help="run ElectrumX and an Electrum Lightning wallet in the foreground")
    start.add_argument("--name", required=True, help="the wallet's name (its folder)")
    start.add_argument("--to-self-delay", type=int, default=144,
                       help="blocks the peer's funds stay locked after it force-closes")
    start.add_argument("--port", type=int, default=None,
                       help="Lightning listening port (default: a free one)")
    start.set_defaults(handler=_start)
    stop = actions.add_parser("stop", help="stop a wallet started with `chanlab electrum start`")
    stop.add_argument("--name", required=True)
    stop.set_defaults(handler=_stop)


def electrum_home(name: str, home: Path | None = None) -> Path:
    return (home or chanlab_home()) / "electrum" / name


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _install(args: argparse.Namespace) -> int:
    if args.force:
        wipe(electrum_cache())
    install = ensure_electrum(progress=_say)
    print(f"electrum:         {install.electrum} (Electrum {install.electrum_version})")
    print(f"electrumx_server: {install.electrumx_server} (ElectrumX {install.electrumx_version})")
    return 0


def _start(args: argparse.Namespace) -> int:
    endpoint = load_endpoint()
    home = electrum_home(args.name)
    info_path = home / INFO_FILE
    if info_path.is_file() and _alive(json.loads(info_path.read_text()).get("pid", 0)):
        raise SetupError(f"Electrum wallet {args.name!r} is already running "
                         f"(stop it: chanlab electrum stop --name {args.name})")
    install = ensure_electrum(progress=_say)
    home.mkdir(parents=True, exist_ok=True)
    electrumx = ElectrumX(install, rpc_url=endpoint.rpc_url, cookie_path=endpoint.cookie_path,
                          home=home / "electrumx")
    wallet = ElectrumWallet(install, home=home / "wallet", server=electrumx.server,
                            to_self_delay=args.to_self_delay, listen_port=args.port)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        electrumx.start()
        wallet.start()
        address = wallet.address()
        info_path.write_text(json.dumps({"pid": os.getpid(), "address": address,
                                         "electrum_home": str(wallet.home)}))
        cli = shlex.join(wallet.cli_argv())
        print(f"Electrum wallet {args.name} is running (logs in {home}); Ctrl-C stops it.\n"
              f"node id:  {address}\n"
              f"electrum: {cli} COMMAND   (e.g. nodeid, getbalance, getunusedaddress,\n"
              "          list_channels, open_channel NODE_ID@HOST:PORT 0.02, "
              "add_request 0.001 --lightning,\n"
              "          lnpay INVOICE, close_channel CHANNEL_POINT; "
              "`electrum help` lists them all)", flush=True)
        while electrumx.running and wallet.running:
            time.sleep(1)
        print(f"{'ElectrumX' if not electrumx.running else 'Electrum'} exited; see the logs in "
              f"{home}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopping Electrum wallet {args.name}", flush=True)
        return 0
    finally:
        wallet.stop()
        electrumx.stop()
        info_path.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)


def _stop(args: argparse.Namespace) -> int:
    info_path = electrum_home(args.name) / INFO_FILE
    try:
        pid = int(json.loads(info_path.read_text())["pid"])
    except FileNotFoundError:
        raise SetupError(f"no Electrum wallet {args.name!r} is running (no {info_path})") from None
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), timeout=30, what=f"Electrum wallet {args.name} to stop")
    info_path.unlink(missing_ok=True)
    print(f"stopped Electrum wallet {args.name}")
    return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as stopped.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return True


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind like Ctrl-C: the finally block stops both processes
