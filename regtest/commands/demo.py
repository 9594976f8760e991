"""I/O: ``chanlab demo [SCENARIO]`` and ``chanlab demo --list``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import regtest.chain_view_drill  # registers chain-view-stale
import regtest.drills  # registers the outage drills
import regtest.electrum_story  # registers electrum
import regtest.story  # registers the channel stories
import regtest.tower_drills  # noqa: F401  (registers breach-tower)
from regtest.demo import DEFAULT_SCENARIO, SCENARIOS, run_demo


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("demo", help="run a narrated scenario on a private regtest node")
    parser.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"which one (default {DEFAULT_SCENARIO})",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write the run's story page and pictures (default: "
                             "./chanlab-SCENARIO)")
    parser.add_argument("--seed", default=None, metavar="N",
                        help="derive every key and coin from N: the same transactions and "
                             "txids on every run (for worksheets)")
    parser.add_argument("--step", action="store_true",
                        help="pause at each step (Enter continues), showing the BOLT messages "
                             "exchanged since the previous one")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.list:
        width = max(len(name) for name in SCENARIOS)
        for name, entry in SCENARIOS.items():
            print(f"{name:<{width}}  {entry.summary}")
        return 0
    run_demo(args.scenario, backend=args.backend,
             story_dir=args.out or Path(f"chanlab-{args.scenario}"), step=args.step,
             seed=args.seed)
    return 0
