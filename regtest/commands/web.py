"""I/O: ``chanlab web``: serve the classroom page (see ``regtest.web``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "web", help="serve the classroom page: nodes, channels, balances, blocks, live")
    parser.add_argument("--port", type=int, default=8080,
                        help="port on 127.0.0.1 (default 8080; 0 picks a free one)")
    parser.set_defaults(handler=_web)


def _web(args: argparse.Namespace) -> int:
    from http.server import ThreadingHTTPServer

    from regtest.web import Classroom, serve

    def ready(server: ThreadingHTTPServer) -> None:
        host, port = server.server_address[:2]
        print(f"classroom page on http://{host!s}:{port} (Ctrl-C stops it)", flush=True)

    try:
        serve(Classroom(), port=args.port, ready=ready)
    except OSError as exc:
        print(f"chanlab: cannot serve on port {args.port}: {exc.strerror}; "
              "pick another with --port", flush=True)
        return 2
    return 0
