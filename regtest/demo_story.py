"""I/O: the pictures and the step-through of a demo run: its story page and ``--step`` pauses.

A :class:`StoryBook` follows a :class:`regtest.demo.Narrator`: each narrated step becomes a
section of the HTML story page (:func:`regtest.story_page.write_story_page`), with its details
as narration. Once a scenario lets it watch its cluster, at the end of each step the book asks
the running nodes for their channels' facts and draws each channel whose transactions changed
(:mod:`regtest.channel_picture`): the page shows every channel at its key moments — funded,
closed, force-closed, swept, punished. With ``step`` on, it also pauses before each new step
and prints the BOLT messages exchanged since the previous one, decoded (the first node's
trace: it sees both directions of its channels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from channel.errors import ChanlabError
from channel.trace import Direction, render_trace, trace_bytes
from regtest.channel_picture import ChannelPicture, channel_picture
from regtest.cluster import Cluster
from regtest.story_page import StoryFiles, StoryStep, write_story_page
from regtest.txgraph import ScriptKind
from regtest.txgraph_render import render_svg

__all__ = ["StoryBook"]


@dataclass(slots=True)
class _Step:
    title: str
    details: list[str] = field(default_factory=list)
    pictures: list[tuple[str, str]] = field(default_factory=list)   # (caption, svg)


class StoryBook:
    """The steps of one demo run, their pictures, and the ``--step`` pauses."""

    def __init__(self, *, step: bool = False, out: TextIO | None = None,
                 wait: Callable[[str], str] | None = None) -> None:
        self._stepping = step
        self._out = out
        self._wait = wait
        self._steps: list[_Step] = []
        self._cluster: Cluster | None = None
        # per channel: its transactions (txid, height) and how many outputs were unexplained
        self._drawn: dict[str, tuple[tuple[tuple[str, int | None], ...], int]] = {}
        self._traced = 0          # the last trace record shown
        self._known: dict[str, str] = {}
        self.svgs: list[str] = []  # every picture drawn, in order

    def watch(self, cluster: Cluster) -> None:
        """Draw ``cluster``'s channels (and trace its first node) from now on."""
        self._cluster = cluster

    # -- from the narrator ---------------------------------------------------------------

    def step(self, title: str) -> None:
        self.end_step()
        if self._stepping and self._steps:
            self._show_trace()
            (self._wait or input)("   [Enter] for the next step ")
        self._steps.append(_Step(title=title))

    def detail(self, text: str) -> None:
        if self._steps:
            self._steps[-1].details.append(text)

    def picture(self, caption: str, svg: str) -> None:
        """A picture the scenario drew itself, under the current step."""
        if self._steps:
            self._steps[-1].pictures.append((caption, svg))
            self.svgs.append(svg)

    def end_step(self) -> None:
        """Draw the channels whose transactions changed during the current step."""
        if self._cluster is None or not self._steps:
            return
        for caption, svg in self._draw_changed():
            self._steps[-1].pictures.append((caption, svg))
            self.svgs.append(svg)

    # -- drawing -------------------------------------------------------------------------

    def _draw_changed(self) -> list[tuple[str, str]]:
        """Each funded channel, drawn from the running side that explains most of its outputs
        (the victim of a breach knows the revoked state; the cheater does not), the opener's
        on a tie; only if its transactions, or how well they are explained, changed."""
        assert self._cluster is not None
        names = self._names()
        best: dict[str, tuple[tuple[int, int], ChannelPicture, str]] = {}
        for node in [n for n in self._cluster.nodes.values() if n.running]:
            try:
                for chan in node.call("channels"):
                    if not chan.get("funding_outpoint"):
                        continue
                    facts = node.call("channel-facts", channel=chan["channel"])
                    peer = names.get(facts["peer_id"], facts["peer_id"][:16])
                    picture = channel_picture(facts, holder=node.name, peer=peer,
                                              rpc=self._cluster.bitcoind.rpc)
                    unknown = sum(label.kind is ScriptKind.UNKNOWN
                                  for n in picture.graph.nodes for label in n.record.outputs)
                    rank = (unknown, 0 if chan["opener"] == "holder" else 1)
                    if chan["channel"] not in best or rank < best[chan["channel"]][0]:
                        best[chan["channel"]] = (rank, picture, chan["state"])
            except ChanlabError:
                continue   # a node going down mid-step: drawn from the other side or later
        out: list[tuple[str, str]] = []
        for key, ((unknown, _), picture, state) in best.items():
            drawn = tuple(sorted((n.txid_hex, n.record.confirmation_height)
                                 for n in picture.graph.nodes if n.record.broadcast))
            if self._drawn.get(key) == (drawn, unknown):
                continue
            self._drawn[key] = (drawn, unknown)
            caption = f"{picture.title}, at height {picture.height} ({state})"
            out.append((caption, render_svg(picture.graph, caption)))
        return out

    def _names(self) -> dict[str, str]:
        """Node id -> name of the cluster's nodes (remembered: a stopped node answers nothing)."""
        assert self._cluster is not None
        for node in self._cluster.nodes.values():
            if node.name not in self._known.values() and node.running:
                try:
                    self._known[node.node_id] = node.name
                except ChanlabError:
                    continue
        return self._known

    def _show_trace(self) -> None:
        if self._cluster is None or self._out is None:
            return
        nodes = [n for n in self._cluster.nodes.values() if n.running]
        if not nodes:
            return
        first = nodes[0]
        names = self._names()
        try:
            records = first.call("trace", limit=0, since=self._traced)
        except ChanlabError:
            return
        if not records:
            print("   (no BOLT messages in this step)", file=self._out)
        else:
            print(f"   BOLT messages since the previous step, as {first.name} saw them:",
                  file=self._out)
        for r in records:
            text = render_trace(trace_bytes(bytes.fromhex(r["data"])),
                                Direction(r["direction"]),
                                names.get(r["peer_id"], r["peer_id"][:16]))
            print("\n".join("     " + line for line in text.splitlines()), file=self._out)
            self._traced = max(self._traced, int(r["seq"]))
        self._out.flush()

    # -- the page ------------------------------------------------------------------------

    def write(self, folder: Path, title: str) -> StoryFiles:
        """The story page ``folder/index.html`` and its pictures beside it."""
        steps: list[StoryStep] = []
        for s in self._steps:
            narration = "\n\n".join(s.details)
            if not s.pictures:
                steps.append(StoryStep(title=s.title, narration=narration))
            for n, (caption, svg) in enumerate(s.pictures):
                steps.append(StoryStep(title=s.title if n == 0 else f"{s.title} (continued)",
                                       narration=narration if n == 0 else "",
                                       svg=svg, caption=caption))
        return write_story_page(folder / "index.html", title, steps)
