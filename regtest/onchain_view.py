"""The text view of a channel's on-chain life, with the CSV countdown (``chanlab alice channel``).

Pure: a :class:`regtest.txgraph.TxGraph` and the current block height in, lines of text out.
Every transaction with its status and fee, every output in spec notation::

    Alice's commitment #3  txid 1a2b3c4d…9f0e  confirmed at height 105  fee 2,896 sat
      #2 to_local 389,902 sat — Alice after 6 blocks (CSV, 2 left) with the delayed key
         or Bob at once with the revocation key   [unspent]

and then, for every output still unresolved, who may spend it and in how many blocks.
"""

from __future__ import annotations

from channel.types import OutPoint
from regtest.txgraph import (
    OutputLabel,
    ScriptKind,
    SpendPath,
    TxGraph,
    TxNode,
    format_sat,
)

__all__ = ["render_onchain_view", "render_unresolved", "spend_path_status"]


def _when(left: int | None, at: int | None) -> str:
    if left is None:
        return "once its transaction confirms and the delay runs out"
    if left == 0:
        return "now"
    return f"in {left} block{'s' if left != 1 else ''} (tip at height {at})"


def spend_path_status(path: SpendPath, confirmation_height: int | None,
                      current_height: int) -> str:
    """``Alice may spend in 2 blocks (tip at height 110) with the delayed key``."""
    left = path.blocks_left(confirmation_height, current_height)
    at = path.broadcastable_at_height(confirmation_height)
    needs = f" and {path.needs}" if path.needs else ""
    return f"{path.spender} may spend {_when(left, at)} with {path.key}{needs}"


def _output_line(graph: TxGraph, node: TxNode, vout: int, label: OutputLabel,
                 current_height: int) -> str:
    spenders = graph.spenders(OutPoint(txid=node.txid, vout=vout))
    broadcast = [s for s in spenders if s.record.broadcast]
    if not node.record.broadcast:
        state = "not on chain"
    elif broadcast:
        state = "spent by " + ", ".join(
            f"{s.record.display_title()} ({s.txid_hex[:8]}…)" for s in broadcast)
    elif label.kind is ScriptKind.WALLET:
        state = "in the wallet"
    else:
        state = "unspent"
    cond = label.condition(node.record.confirmation_height
                           if node.record.broadcast else None,
                           current_height if node.record.broadcast else None)
    note = f" ({label.note})" if label.note else ""
    return (f"  #{vout} {label.kind.value} {format_sat(label.amount_sat)} [{label.owner}]"
            f"{note} — {cond}   [{state}]")


def render_onchain_view(graph: TxGraph, current_height: int) -> str:
    """Every transaction, its fee and outputs, then the unresolved outputs' countdowns."""
    lines = [f"On chain (tip at height {current_height}):"]
    total_fee = 0
    for node in graph.nodes:
        rec = node.record
        fee = "fee unknown" if node.fee_sat is None else f"fee {format_sat(node.fee_sat)}"
        if node.fee_sat is not None and rec.broadcast:
            total_fee += node.fee_sat
        revoked = "  REVOKED" if rec.revoked else ""
        lines.append(f"{rec.display_title()}{revoked}  txid {node.txid_hex[:8]}…"
                     f"{node.txid_hex[-4:]}  {rec.status_text()}  {fee}")
        for vout, label in enumerate(rec.outputs):
            lines.append(_output_line(graph, node, vout, label, current_height))
    lines.append(f"Fees paid by broadcast transactions: {format_sat(total_fee)}")
    lines.extend(render_unresolved(graph, current_height))
    return "\n".join(lines) + "\n"


def render_unresolved(graph: TxGraph, current_height: int) -> list[str]:
    """For each unresolved output, one line per spend path: who may spend it and when."""
    pending = graph.unresolved()
    if not pending:
        return ["Nothing unresolved: every output is settled in a wallet."]
    lines = ["Unresolved outputs:"]
    for node, vout, label in pending:
        lines.append(f"  {node.record.display_title()}, output #{vout}: {label.kind.value} "
                     f"{format_sat(label.amount_sat)} [{label.owner}]")
        for path in label.paths:
            if path.only_if:   # e.g. the revocation path of a state nobody revoked
                continue
            lines.append("    " + spend_path_status(path, node.record.confirmation_height,
                                                    current_height))
    return lines
