"""``chanlab node start --name NAME``: run a node daemon in the foreground.

I/O. The daemon shares the regtest bitcoind described by ``$CHANLAB_HOME/bitcoind.json`` (or
``--bitcoind FILE``) and uses a bitcoind wallet named after the node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from channel import self_checks
from channel.channel_basics import ChannelConfig
from channel.errors import StartRefused
from channel.node import Node, NodeSettings
from channel.node_policy import (
    DEFAULT_CLTV_EXPIRY_DELTA,
    DEFAULT_FEE_BASE_MSAT,
    DEFAULT_FEE_PROPORTIONAL_MILLIONTHS,
    NodePolicy,
)
from channel.seeded import seed_from_text
from regtest.chain import BitcoindChain, BitcoindEndpoint
from regtest.control import daemon_logging, load_endpoint, node_home
from regtest.errors import NodeStartError

#: ``to_self_delay`` when none is given: 6 blocks on regtest (a force-close resolves after
#: ``-generate 6``, as the walk-through says), 144 (a day) on other chains.
REGTEST_TO_SELF_DELAY = 6
DEFAULT_TO_SELF_DELAY = 144


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("node", help="run a chanlab node")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="run a node in the foreground (Ctrl-C stops it)")
    start.add_argument("--name", required=True, help="the node's name, e.g. alice")
    start.add_argument("--port", type=int, default=0, help="P2P port on 127.0.0.1 (0: any)")
    start.add_argument("--listen-lan", action="store_true",
                       help="accept peers from other machines (listen on all interfaces)")
    start.add_argument("--bitcoind", type=Path, default=None,
                       help="bitcoind.json to use (default: $CHANLAB_HOME/bitcoind.json)")
    start.add_argument("--minimum-depth", type=int, default=1,
                       help="confirmations we ask for before channel_ready, on channels "
                            "opened to us (the opener always waits for the accepter's number)")
    start.add_argument("--to-self-delay", type=int, default=None,
                       help="CSV delay imposed on the peer's to_local outputs (default: "
                            f"{REGTEST_TO_SELF_DELAY} blocks on regtest, "
                            f"{DEFAULT_TO_SELF_DELAY} elsewhere)")
    start.add_argument("--seed", default=None, metavar="TEXT",
                       help="regtest teaching runs: node key, channel keys, preimages and "
                            "wallet keys derived from TEXT, so a scripted run repeats exactly "
                            "(never for real money: the seed is the key)")
    start.add_argument("--verbose", action="store_true",
                       help="also print the log on the terminal (it always goes to node.log)")
    start.add_argument("--allow-cheating", action="store_true",
                       help="developer mode (regtest only): keep revoked commitments so "
                            "`cheat` can broadcast one")
    start.add_argument("--fee-base-msat", type=int, default=DEFAULT_FEE_BASE_MSAT,
                       help="fee charged per forwarded HTLC, in msat (BOLT 7 fee_base_msat)")
    start.add_argument("--fee-proportional-millionths", type=int,
                       default=DEFAULT_FEE_PROPORTIONAL_MILLIONTHS,
                       help="fee per million msat forwarded (BOLT 7)")
    start.add_argument("--cltv-expiry-delta", type=int, default=DEFAULT_CLTV_EXPIRY_DELTA,
                       help="blocks kept between a forwarded HTLC's outgoing and incoming "
                            "expiry (BOLT 7)")
    start.add_argument("--tower", action="append", default=[], metavar="TOWER_ID@HOST:PORT",
                       help="upload justice kits to this watchtower (repeatable; remembered)")
    start.add_argument("--allow-fresh-db", action="store_true",
                       help="start with an empty node.db although the node's key exists (only "
                            "for a key that never had a channel: its channels are forgotten)")
    start.add_argument("--max-tip-age-s", type=float, default=None,
                       help="stop taking on new HTLCs while the chain tip is older than this "
                            "(by the node's clock and the block's time; default 3600 s on "
                            "regtest, 7200 s elsewhere)")
    start.add_argument("--detach", action="store_true",
                       help="run in the background and return once the node answers")
    start.set_defaults(handler=_start)


def _policy(args: argparse.Namespace) -> NodePolicy:
    values = {"--fee-base-msat": args.fee_base_msat,
              "--fee-proportional-millionths": args.fee_proportional_millionths,
              "--cltv-expiry-delta": args.cltv_expiry_delta}
    for flag, value in values.items():
        if value < 0 or value >= 1 << 32:
            raise NodeStartError(f"{flag} takes a whole number from 0 to 4294967295, not {value}")
    if args.cltv_expiry_delta >= 1 << 16:
        raise NodeStartError("--cltv-expiry-delta takes a number of blocks below 65536")
    return NodePolicy(fee_base_msat=args.fee_base_msat,
                      fee_proportional_millionths=args.fee_proportional_millionths,
                      cltv_expiry_delta=args.cltv_expiry_delta)


def _start_detached(args: argparse.Namespace) -> int:
    from channel.errors import ChanlabError
    from regtest.control import call_node
    from regtest.detach import start_detached

    def answers() -> bool:
        try:
            call_node(args.name, "info", timeout_s=1.0)
        except (ChanlabError, OSError, ValueError):
            return False
        return True

    if answers():
        raise StartRefused(f"node {args.name!r} is already running (stop it: "
                           f"chanlab {args.name} stop)")
    argv = [a for a in args.command_line if a != "--detach"]
    pid = start_detached(argv, output=node_home(args.name) / "node.out", ready=answers,
                         what=f"node {args.name!r}")
    print(f"node {args.name} running in the background (pid {pid}); log: "
          f"{node_home(args.name) / 'node.log'}; `chanlab {args.name} stop` stops it")
    return 0


def _start(args: argparse.Namespace) -> int:
    if args.detach:
        return _start_detached(args)
    if os.environ.get(self_checks.CHECK_BUDGET_ENV):   # the test suite: check kept budgets
        self_checks.CHECK_BUDGET_MEMO = True
    endpoint = load_endpoint(args.bitcoind)
    home = node_home(args.name)
    home.mkdir(parents=True, exist_ok=True)
    daemon_logging(home, f"{args.name}", "node.log", to_stderr=args.verbose)
    settings = NodeSettings(name=args.name, home=home, port=args.port,
                            host="0.0.0.0" if args.listen_lan else "127.0.0.1",
                            channel_config=ChannelConfig(
                                to_self_delay=args.to_self_delay or 0,
                                minimum_depth=args.minimum_depth),
                            allow_cheating=args.allow_cheating, towers=tuple(args.tower),
                            allow_fresh_db=args.allow_fresh_db,
                            max_tip_age_s=args.max_tip_age_s,
                            seed=seed_from_text(args.seed) if args.seed is not None else None,
                            forwarding_policy=_policy(args))
    profile = os.environ.get("CHANLAB_PROFILE_DIR")
    if profile:  # developer aid: a cProfile dump per node, for `make bench` investigations
        import cProfile
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(lambda: asyncio.run(_run(settings, endpoint)))
        finally:
            profiler.dump_stats(str(Path(profile) / f"{args.name}.prof"))
    return asyncio.run(_run(settings, endpoint))


async def _run(settings: NodeSettings, endpoint: BitcoindEndpoint) -> int:
    chain = BitcoindChain(endpoint, wallet=settings.name, seed=settings.seed)
    await chain.ensure_wallet()
    if not settings.channel_config.to_self_delay:   # not given: short on regtest, for people
        delay = REGTEST_TO_SELF_DELAY if chain.chain == "regtest" else DEFAULT_TO_SELF_DELAY
        settings = replace(settings, channel_config=replace(settings.channel_config,
                                                            to_self_delay=delay))
    node = Node(settings, chain)
    await node.start()
    node.shell.install_signal_handlers()
    print(f"node {settings.name} ready: {node.node_id.hex()}@{settings.host}:{node.port}",
          flush=True)
    await node.serve_forever()
    return 0
