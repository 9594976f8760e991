"""Draw a :class:`regtest.txgraph.TxGraph`: SVG with no external renderer, and Graphviz dot.

Pure: graph in, text out; the same graph gives the same bytes. The SVG layout is layered left
to right: one column per :attr:`TxNode.column` (funding, commitments, HTLC txs, sweeps), one
box per transaction listing its title, txid, confirmation status and fee, its inputs, then
every output with its amount, owner, script kind and spending condition. Arrows run from an
output to the input that spends it. A revoked transaction has a thick red outline and the word
REVOKED; an unconfirmed one a dashed outline; one never broadcast a dotted outline on grey.

Text width is estimated for a monospace font (the SVG asks for one), so nothing needs to
measure glyphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from regtest.txgraph import OutputLabel, TxGraph, TxNode, format_sat

__all__ = ["render_dot", "render_svg", "wrap_text"]

_FONT_SIZE = 12
_CHAR_W_TENTHS = 78          # a 12 px monospace glyph is 7.2-7.8 px wide, by font
_LINE_H = 16
_PAD = 10
_COL_GAP = 90
_ROW_GAP = 24
_MARGIN = 20
_WRAP = 58
_MIN_BOX_W = 260

_RED = "#c62828"
_INK = "#212121"
_GREY = "#757575"
_PALETTE = ("#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457")


def wrap_text(text: str, width: int = _WRAP) -> list[str]:
    """Greedy word wrap (deterministic; a word longer than ``width`` gets its own line)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines or [""]


def _short(txid_hex: str) -> str:
    return f"{txid_hex[:8]}…{txid_hex[-4:]}"


def _output_head(vout: int, label: OutputLabel) -> str:
    return f"#{vout} {format_sat(label.amount_sat)} · {label.owner} · {label.kind.value}"


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    css: str                  # class name in the SVG's <style>
    port: str = ""            # "in0" / "out1": where arrows attach
    indent: int = 0           # in characters (SVG collapses leading spaces)


def _box_lines(graph: TxGraph, node: TxNode) -> list[_Line]:
    rec = node.record
    lines = [_Line(rec.display_title(), "title")]
    if rec.revoked:
        lines.append(_Line("REVOKED", "revoked"))
    lines.append(_Line(f"txid {_short(node.txid_hex)}", "meta"))
    lines.append(_Line(rec.status_text(), "meta"))
    fee = "fee unknown" if node.fee_sat is None else f"fee {format_sat(node.fee_sat)}"
    lines.append(_Line(fee, "meta"))
    for index, outpoint in enumerate(node.inputs):
        parent = graph.node(outpoint.txid)
        source = (f"output #{outpoint.vout} of {parent.record.display_title()}"
                  if parent is not None
                  else f"{_short(outpoint.txid_hex)}:{outpoint.vout}")
        lines.append(_Line(f"in {index} ← {source}", "input", f"in{index}"))
    for vout, label in enumerate(rec.outputs):
        lines.append(_Line(_output_head(vout, label), "output", f"out{vout}"))
        lines.extend(_Line(t, "cond", indent=2) for t in wrap_text(label.condition()))
        if label.note:
            lines.extend(_Line(t, "note", indent=2) for t in wrap_text(label.note))
    return lines


def _text_width(lines: list[_Line]) -> int:
    longest = max(line.indent + len(line.text) for line in lines)
    return max(_MIN_BOX_W, (longest * _CHAR_W_TENTHS + 9) // 10 + 2 * _PAD)


@dataclass(frozen=True, slots=True)
class _Placed:
    node: TxNode
    lines: list[_Line]
    x: int
    y: int
    width: int

    @property
    def height(self) -> int:
        return len(self.lines) * _LINE_H + 2 * _PAD

    def port_y(self, port: str) -> int:
        for i, line in enumerate(self.lines):
            if line.port == port:
                return self.y + _PAD + i * _LINE_H + _LINE_H // 2
        return self.y + self.height // 2


def _layout(graph: TxGraph) -> tuple[list[_Placed], int, int]:
    placed: list[_Placed] = []
    x = _MARGIN
    bottom = _MARGIN
    for column in graph.columns():
        boxes = [(node, _box_lines(graph, node)) for node in column]
        width = max((_text_width(lines) for _, lines in boxes), default=_MIN_BOX_W)
        y = _MARGIN
        for node, lines in boxes:
            box = _Placed(node, lines, x, y, width)
            placed.append(box)
            y += box.height + _ROW_GAP
        bottom = max(bottom, y - _ROW_GAP)
        x += width + _COL_GAP
    return placed, max(x - _COL_GAP + _MARGIN, 2 * _MARGIN), bottom + _MARGIN


def _owner_colours(graph: TxGraph) -> dict[str, str]:
    owners = sorted({label.owner for node in graph.nodes for label in node.record.outputs})
    return {owner: _PALETTE[i % len(_PALETTE)] for i, owner in enumerate(owners)}


_STYLE = (
    f"text{{font-family:monospace;font-size:{_FONT_SIZE}px;fill:{_INK}}}"
    ".title{font-weight:bold}"
    f".revoked{{font-weight:bold;fill:{_RED}}}"
    f".meta,.input{{fill:{_GREY}}}"
    ".output{font-weight:bold}"
    f".note{{fill:{_GREY};font-style:italic}}"
)


def _rect(box: _Placed) -> str:
    rec = box.node.record
    stroke, width, fill, dash = _INK, 1, "#ffffff", ""
    if rec.revoked:
        stroke, width = _RED, 3
    if not rec.broadcast:
        fill, dash = "#f0f0f0", ' stroke-dasharray="2 4"'
    elif rec.confirmation_height is None:
        dash = ' stroke-dasharray="6 4"'
    return (f'<rect x="{box.x}" y="{box.y}" width="{box.width}" height="{box.height}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>')


def render_svg(graph: TxGraph, title: str = "") -> str:
    """The graph as one standalone SVG document (valid XML, deterministic)."""
    placed, width, height = _layout(graph)
    colours = _owner_colours(graph)
    by_txid = {box.node.txid: box for box in placed}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title or 'channel transaction graph')}</title>",
        f"<style>{_STYLE}</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        f'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        f'fill="{_INK}"/></marker></defs>',
    ]
    for box in placed:
        rec = box.node.record
        out.append(f'<g id={quoteattr("tx-" + box.node.txid_hex)}>')
        out.append(_rect(box))
        for i, line in enumerate(box.lines):
            y = box.y + _PAD + i * _LINE_H + _LINE_H - 4
            fill = ""
            if line.port.startswith("out"):
                fill = f' style="fill:{colours[rec.outputs[int(line.port[3:])].owner]}"'
            x = box.x + _PAD + (line.indent * _CHAR_W_TENTHS + 9) // 10
            out.append(f'<text x="{x}" y="{y}" class="{line.css}"{fill}>'
                       f"{escape(line.text)}</text>")
        out.append("</g>")
    for spend in graph.spends:
        source = by_txid[spend.outpoint.txid]
        target = by_txid[spend.spender_txid]
        x1, y1 = source.x + source.width, source.port_y(f"out{spend.outpoint.vout}")
        x2, y2 = target.x, target.port_y(f"in{spend.input_index}")
        bend = _COL_GAP // 2
        dash = "" if target.node.record.broadcast else ' stroke-dasharray="2 4"'
        colour = _RED if target.node.record.revoked or source.node.record.revoked else _INK
        out.append(f'<path d="M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}" '
                   f'fill="none" stroke="{colour}" stroke-width="1.5"{dash} '
                   f'marker-end="url(#arrow)"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _html(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _dot_string(text: str) -> str:
    """A double-quoted dot string (dot has no single-quoted strings, unlike XML)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(graph: TxGraph, title: str = "") -> str:
    """The graph in Graphviz dot (``dot -Tsvg channel.dot``): HTML-like table nodes with one
    port per input and output, edges from output port to input port."""
    names = {node.txid: f"tx{i}" for i, node in enumerate(graph.nodes)}
    out = [
        "digraph channel {",
        f"  label={_dot_string(title or 'channel transaction graph')};",
        '  rankdir=LR; node [shape=plain fontname="monospace" fontsize=10];',
    ]
    for node in graph.nodes:
        rec = node.record
        attrs = ['border="1"', 'cellborder="0"', 'cellspacing="0"', 'cellpadding="2"']
        if rec.revoked:
            attrs.append(f'color="{_RED}"')
        if not rec.broadcast:
            attrs.append('style="dotted"')
        elif rec.confirmation_height is None:
            attrs.append('style="dashed"')
        rows = [f"<tr><td align=\"left\"><b>{_html(rec.display_title())}</b></td></tr>"]
        if rec.revoked:
            rows.append(f'<tr><td align="left"><font color="{_RED}"><b>REVOKED</b></font>'
                        "</td></tr>")
        fee = "fee unknown" if node.fee_sat is None else f"fee {format_sat(node.fee_sat)}"
        rows.append(f'<tr><td align="left">txid {_short(node.txid_hex)} · '
                    f"{_html(rec.status_text())} · {fee}</td></tr>")
        for index, outpoint in enumerate(node.inputs):
            rows.append(f'<tr><td align="left" port="in{index}">in {index} ← '
                        f"{_short(outpoint.txid_hex)}:{outpoint.vout}</td></tr>")
        for vout, label in enumerate(rec.outputs):
            cond = "<br/>".join(_html("  " + t) for t in wrap_text(label.condition()))
            rows.append(f'<tr><td align="left" port="out{vout}"><b>'
                        f"{_html(_output_head(vout, label))}</b><br/>{cond}</td></tr>")
        out.append(f"  {names[node.txid]} [label=<<table {' '.join(attrs)}>{''.join(rows)}"
                   "</table>>];")
    broadcast = {node.txid: node.record.broadcast for node in graph.nodes}
    for spend in graph.spends:
        style = "" if broadcast[spend.spender_txid] else " [style=dotted]"
        out.append(f"  {names[spend.outpoint.txid]}:out{spend.outpoint.vout}:e -> "
                   f"{names[spend.spender_txid]}:in{spend.input_index}:w{style};")
    out.append("}")
    return "\n".join(out) + "\n"
