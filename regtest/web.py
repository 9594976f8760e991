"""I/O: ``chanlab web``: the classroom page — nodes, channels, balances and blocks, live.

A teacher runs nodes by hand (``chanlab bitcoind start``, ``chanlab node start --name …``) and
projects this page. It is the project's own small HTTP server (the standard library's, bound to
127.0.0.1 only) and one static page whose script asks ``/api/state`` once a second, so a payment
or a block shows within about a second. Two buttons, and only two, act: mine a block, and run
the breach drill (``chanlab demo breach-victim-returns`` on its own private chain, its narration
streamed into the page).

State is read through the nodes' control sockets, the same API the CLI uses; a node that does
not answer within a second is shown as down, never waited for.
"""

from __future__ import annotations

import html
import json
import math
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from channel.errors import ChanlabError
from regtest.control import call_node, chanlab_home, load_endpoint, node_names
from regtest.errors import RegtestError

if TYPE_CHECKING:
    from regtest.rpc import Rpc

__all__ = ["Classroom", "network_svg", "serve"]

POLL_MS: Final = 1000
NODE_TIMEOUT_S: Final = 1.0
DRILL: Final = "breach-victim-returns"
#: POSTs must carry this header: a cross-site form cannot set it, so another page open in the
#: teacher's browser cannot press our buttons.
ACTION_HEADER: Final = "X-Chanlab-Action"


@dataclass
class Classroom:
    """What the page shows, read fresh on each request, and the two actions."""

    home: Path = field(default_factory=chanlab_home)
    drill_lines: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    _drill: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def node_names(self) -> list[str]:
        return node_names(self.home)

    def _node(self, name: str) -> dict[str, Any]:
        try:
            info = call_node(name, "info", home=self.home, timeout_s=NODE_TIMEOUT_S)
            channels = call_node(name, "channels", home=self.home, timeout_s=NODE_TIMEOUT_S)
            balance = call_node(name, "balance", home=self.home, timeout_s=NODE_TIMEOUT_S)
        except (ChanlabError, OSError, ValueError) as exc:
            return {"name": name, "running": False, "why": str(exc).splitlines()[0][:200]}
        return {"name": name, "running": True, "node_id": info.get("node_id"),
                "height": info.get("height"), "peers": info.get("peers", []),
                "channels": channels, "onchain_sat": balance.get("onchain_sat"),
                "offchain_msat": balance.get("offchain_msat")}

    def _rpc(self) -> Rpc:
        return load_endpoint(self.home / "bitcoind.json").rpc(timeout_s=5.0)

    def _height(self) -> int | None:
        try:
            return self._rpc().getblockcount()
        except (ChanlabError, RegtestError, OSError, ValueError):
            return None

    def state(self) -> dict[str, Any]:
        nodes = [self._node(name) for name in self.node_names()]
        with self._lock:
            drill_running = self._drill is not None and self._drill.poll() is None
            lines = list(self.drill_lines)
        return {"height": self._height(), "nodes": nodes, "svg": network_svg(nodes),
                "drill": {"running": drill_running, "lines": lines[-60:]}}

    def channel_svg(self, node: str, channel: str) -> str:
        """The transaction graph of ``node``'s channel ``channel`` (any unique id prefix)."""
        from regtest.channel_picture import channel_picture, node_names
        from regtest.txgraph_render import render_svg

        if node not in self.node_names():
            raise RegtestError(f"no node {node!r}")
        facts = call_node(node, "channel-facts", {"channel": channel}, home=self.home,
                          timeout_s=5.0)
        peer = node_names(self.home).get(facts["peer_id"], facts["peer_id"][:16])
        picture = channel_picture(facts, holder=node, peer=peer, rpc=self._rpc())
        return render_svg(picture.graph, f"{picture.title}, at height {picture.height}")

    def mine(self, blocks: int = 1) -> dict[str, Any]:
        from regtest.wallet import Wallet  # loaded on the first press only

        miner = Wallet(self._rpc(), "miner")
        hashes = miner.mine(blocks)
        return {"mined": len(hashes), "height": miner.height()}

    def start_drill(self, argv: list[str] | None = None) -> dict[str, Any]:
        """Run the breach drill in a child process; one at a time."""
        with self._lock:
            if self._drill is not None and self._drill.poll() is None:
                return {"started": False, "why": "the drill is already running"}
            self.drill_lines.clear()
            command = argv or [sys.executable, "-m", "regtest.cli", "demo", DRILL]
            self._drill = subprocess.Popen(command, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, bufsize=1)
            drill = self._drill
        threading.Thread(target=self._pump, args=(drill,), daemon=True).start()
        return {"started": True}

    def _pump(self, drill: subprocess.Popen[str]) -> None:
        assert drill.stdout is not None
        for line in drill.stdout:
            with self._lock:
                self.drill_lines.append(line.rstrip("\n"))
        code = drill.wait()
        with self._lock:
            self.drill_lines.append(f"[drill finished, exit code {code}]")

    def stop(self) -> None:
        with self._lock:
            drill = self._drill
        if drill is not None and drill.poll() is None:
            drill.terminate()
            try:
                drill.wait(timeout=10)
            except subprocess.TimeoutExpired:
                drill.kill()


# --- the network picture ------------------------------------------------------------------


def network_svg(nodes: list[dict[str, Any]], size: int = 520) -> str:
    """Nodes on a circle; each channel a line split where its balance splits, each part named."""
    running = [n for n in nodes if n.get("node_id")]
    if not nodes:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="60">'
                '<text x="10" y="30">no nodes yet: chanlab node start --name alice</text></svg>')
    centre, radius = size / 2, size / 2 - 70
    where: dict[str, tuple[float, float]] = {}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" font-family="sans-serif" font-size="12">']
    for i, node in enumerate(nodes):
        angle = 2 * math.pi * i / len(nodes) - math.pi / 2
        where[node["name"]] = (centre + radius * math.cos(angle),
                               centre + radius * math.sin(angle))
    by_id = {n["node_id"]: n["name"] for n in running}
    drawn: set[str] = set()
    for node in running:
        x1, y1 = where[node["name"]]
        for chan in node.get("channels", []):
            peer = by_id.get(chan.get("peer_id"))
            key = chan.get("funding_outpoint") or chan.get("channel")
            if peer is None or key in drawn or "local_msat" not in chan:
                continue
            drawn.add(key)
            x2, y2 = where[peer]
            total = chan["local_msat"] + chan["remote_msat"]
            share = chan["local_msat"] / total if total else 0.5
            xm, ym = x1 + (x2 - x1) * share, y1 + (y2 - y1) * share
            open_ = chan.get("state") == "normal"
            dash = "" if open_ else ' stroke-dasharray="6 4"'
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{xm:.1f}" y2="{ym:.1f}" '
                         f'stroke="#2b8a3e" stroke-width="6"{dash}/>')
            parts.append(f'<line x1="{xm:.1f}" y1="{ym:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                         f'stroke="#1c7ed6" stroke-width="6"{dash}/>')
            halo = 'paint-order="stroke" stroke="white" stroke-width="4"'
            for (ax, ay), (bx, by), who, msat in (
                    ((x1, y1), (xm, ym), node["name"], chan["local_msat"]),
                    ((xm, ym), (x2, y2), peer, chan["remote_msat"])):
                parts.append(f'<text x="{(ax + bx) / 2:.1f}" y="{(ay + by) / 2 + 4:.1f}" '
                             f'text-anchor="middle" {halo}>{html.escape(who)} '
                             f'{msat // 1000:,} sat</text>')
            if not open_:
                parts.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2 + 20:.1f}" '
                             f'text-anchor="middle" fill="#c92a2a" {halo}>'
                             f'{html.escape(str(chan.get("state")))}</text>')
    for node in nodes:
        x, y = where[node["name"]]
        fill = "#fff3bf" if node.get("running") else "#e9ecef"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="34" fill="{fill}" '
                     'stroke="#495057" stroke-width="2"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" '
                     f'font-weight="bold">{html.escape(node["name"])}</text>')
        if not node.get("running"):
            parts.append(f'<text x="{x:.1f}" y="{y + 50:.1f}" text-anchor="middle" '
                         'fill="#c92a2a">down</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- HTTP ----------------------------------------------------------------------------------

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chanlab classroom</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#212529}
h1{margin:0 0 .3em} .bar{margin:.5em 0 1em} button{font-size:1em;margin-right:.5em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ced4da;padding:.2em .6em}
th{background:#f1f3f5} .down{color:#c92a2a} pre{background:#f8f9fa;padding:.6em;max-height:22em;
overflow:auto} .legend span{display:inline-block;width:1em;height:.6em;margin:0 .3em}
</style></head><body>
<h1>chanlab classroom</h1>
<div class="bar">block height <b id="height">?</b>
 <button id="mine" onclick="act('/api/mine')">Mine a block</button>
 <button id="drill" onclick="act('/api/drill')">Run the breach drill</button>
 <span class="legend">each channel's line is split in proportion to who owns its
 balance</span></div>
<div id="net"></div>
<table id="nodes"></table>
<h2>Breach drill</h2><pre id="log">(not started)</pre>
<script>
const fmt = n => n === null || n === undefined ? "?" : n.toLocaleString("en-US");
async function act(path) {
  await fetch(path, {method: "POST", headers: {"X-Chanlab-Action": "1"}});
  refresh();
}
async function refresh() {
  let s;
  try { s = await (await fetch("/api/state")).json(); } catch (e) { return; }
  document.getElementById("height").textContent = fmt(s.height);
  document.getElementById("net").innerHTML = s.svg;
  const rows = ["<tr><th>node</th><th>on-chain</th><th>in channels</th><th>channels</th></tr>"];
  for (const n of s.nodes) {
    if (!n.running) { rows.push(`<tr><td>${n.name}</td><td colspan=3 class=down>down</td></tr>`);
      continue; }
    const chans = n.channels.map(c => `${c.state} ${fmt(c.funding_sat)} sat` +
      (c.local_msat !== undefined ? ` (ours ${fmt(c.local_msat)} msat)` : "") +
      (c.funding_outpoint ? ` <a href="/channel/${encodeURIComponent(n.name)}/` +
       `${c.channel}.svg" target="_blank">transactions</a>` : "")).join("<br>");
    rows.push(`<tr><td>${n.name}</td><td>${fmt(n.onchain_sat)} sat</td>` +
      `<td>${fmt(n.offchain_msat)} msat</td><td>${chans || "none"}</td></tr>`);
  }
  document.getElementById("nodes").innerHTML = rows.join("");
  if (s.drill.lines.length) document.getElementById("log").textContent = s.drill.lines.join("\\n");
  document.getElementById("drill").disabled = s.drill.running;
}
refresh(); setInterval(refresh, POLL_MS);
</script></body></html>
""".replace("POLL_MS", str(POLL_MS))


def _handler(classroom: Classroom) -> type[BaseHTTPRequestHandler]:
    actions: dict[str, Callable[[], dict[str, Any]]] = {
        "/api/mine": classroom.mine, "/api/drill": classroom.start_drill}

    class Handler(BaseHTTPRequestHandler):
        server_version = "chanlab-web"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per poll would flood the teacher's terminal

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path == "/":
                self._send(HTTPStatus.OK, _PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/api/state":
                self._json(HTTPStatus.OK, classroom.state())
            elif self.path.startswith("/channel/") and self.path.endswith(".svg"):
                node, _, channel = self.path[len("/channel/"):-len(".svg")].partition("/")
                try:
                    svg = classroom.channel_svg(node, channel)
                except (ChanlabError, RegtestError, OSError, ValueError) as exc:
                    self._json(HTTPStatus.NOT_FOUND, {"error": str(exc).splitlines()[0]})
                else:
                    self._send(HTTPStatus.OK, svg.encode(), "image/svg+xml")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:
            action = actions.get(self.path)
            if action is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path}"})
            elif self.headers.get(ACTION_HEADER) != "1":
                self._json(HTTPStatus.FORBIDDEN, {"error": f"missing {ACTION_HEADER} header"})
            else:
                try:
                    self._json(HTTPStatus.OK, action())
                except (ChanlabError, RegtestError, OSError, ValueError) as exc:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE,
                               {"error": str(exc).splitlines()[0]})

    return Handler


def serve(classroom: Classroom, *, port: int = 8080,
          ready: Callable[[ThreadingHTTPServer], None] | None = None) -> None:
    """Serve on 127.0.0.1:``port`` (0 picks a free one) until interrupted."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(classroom))
    server.daemon_threads = True
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        classroom.stop()
