"""A channel's on-chain life as a graph: transactions as nodes, spends as edges.

Pure. The caller hands one :class:`TxRecord` per transaction — its raw bytes, its role in the
channel (funding, commitment #n, HTLC-success/-timeout, sweep, penalty, closing), whether it
is revoked, its confirmation height or None — and one :class:`OutputLabel` per output: owner,
amount, script kind and the ways it may be spent (:class:`SpendPath`). :mod:`regtest.txlabels`
derives those labels from the channel's keys; :mod:`regtest.txgraph_render` draws the graph
(SVG, Graphviz); :mod:`regtest.onchain_view` prints it as text with the CSV countdown.

:func:`build_graph` decodes every transaction (python-bitcoinlib's ``CTransaction``), links an
input to the output it spends when both are in the graph, computes fees where every input's
amount is known, and places each transaction in a column: its depth from the funding side
(funding 0, commitments 1, HTLC transactions 2, their sweeps 3 ...), the layout of a
left-to-right picture.

Timing convention (the one :class:`channel.monitor.Claim` uses): a spend path with a CSV delay
``D`` on an output confirmed at height ``h`` can be broadcast once the tip is at ``h + D - 1``
(it then confirms in block ``h + D``); an absolute ``cltv_expiry`` ``L`` once the tip is at
``L``. "Blocks left" are the blocks still to mine before the spend can be broadcast.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import CTransaction
from bitcoin.core.serialize import SerializationError

from channel.types import OutPoint

__all__ = [
    "OutputLabel",
    "ScriptKind",
    "Spend",
    "SpendPath",
    "TxGraph",
    "TxNode",
    "TxRecord",
    "TxRole",
    "build_graph",
    "format_sat",
]


def format_sat(amount_sat: int) -> str:
    """``389,902 sat``: an on-chain amount for people."""
    return f"{amount_sat:,} sat"


class TxRole(enum.Enum):
    """What a transaction does in the channel's life."""

    FUNDING = "funding"
    COMMITMENT = "commitment"
    HTLC_SUCCESS = "HTLC-success"
    HTLC_TIMEOUT = "HTLC-timeout"
    SWEEP = "sweep"
    PENALTY = "penalty"
    CLOSING = "closing"
    OTHER = "other"


class ScriptKind(enum.Enum):
    """The BOLT 3 shape of an output's script (values are the spec's names)."""

    FUNDING = "funding 2-of-2"
    TO_LOCAL = "to_local"
    TO_REMOTE = "to_remote"
    OFFERED_HTLC = "offered HTLC"
    RECEIVED_HTLC = "received HTLC"
    ANCHOR = "anchor"
    HTLC_TX_OUTPUT = "HTLC-tx output"     # the to_local-shaped output of an HTLC-success/-timeout
    WALLET = "wallet"                     # an ordinary key's output: settled in someone's wallet
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendPath:
    """One way to spend an output: who, with which key, needing what, from when.

    ``csv_blocks``: relative delay (OP_CHECKSEQUENCEVERIFY) counted from the output's
    confirmation; ``cltv_expiry``: absolute block height (OP_CHECKLOCKTIMEVERIFY or the
    pre-signed transaction's nLockTime); 0 means none. ``needs``: anything besides the key
    ("the payment preimage"). ``only_if``: a condition without which nobody can take this
    path (the revocation path of a state not revoked: "Alice revokes this state").
    """

    spender: str
    key: str
    csv_blocks: int = 0
    cltv_expiry: int = 0
    needs: str = ""
    only_if: str = ""

    def __post_init__(self) -> None:
        if self.csv_blocks < 0 or self.cltv_expiry < 0:
            raise ValueError("SpendPath: csv_blocks and cltv_expiry must be non-negative")

    def broadcastable_at_height(self, confirmation_height: int | None) -> int | None:
        """The lowest tip height at which this spend is accepted into a mempool (0: at once);
        None while a CSV delay cannot start because the output is unconfirmed."""
        at = self.cltv_expiry
        if self.csv_blocks:
            if confirmation_height is None:
                return None
            at = max(at, confirmation_height + self.csv_blocks - 1)
        return at

    def blocks_left(self, confirmation_height: int | None, current_height: int) -> int | None:
        """Blocks to mine before this spend can be broadcast; None if its CSV has not started."""
        at = self.broadcastable_at_height(confirmation_height)
        return None if at is None else max(0, at - current_height)

    def text(self, confirmation_height: int | None = None,
             current_height: int | None = None) -> str:
        """``Alice after 6 blocks (CSV, 2 left) with the delayed key``; the countdown only
        when both heights are given."""
        timing: list[str] = []
        if self.csv_blocks:
            note = ""
            if current_height is not None:
                # the CSV part alone; the CLTV part gets its own count below
                csv_only = SpendPath(spender=self.spender, key=self.key,
                                     csv_blocks=self.csv_blocks)
                left = csv_only.blocks_left(confirmation_height, current_height)
                note = ", not started: unconfirmed" if left is None else f", {left} left"
            plural = "s" if self.csv_blocks != 1 else ""
            timing.append(f"after {self.csv_blocks} block{plural} (CSV{note})")
        if self.cltv_expiry:
            note = ""
            if current_height is not None:
                cltv_left = max(0, self.cltv_expiry - current_height)
                note = f", {cltv_left} left"
            timing.append(f"from height {self.cltv_expiry} (CLTV{note})")
        when = " and ".join(timing) if timing else "at once"
        needs = f" and {self.needs}" if self.needs else ""
        only_if = f" (only if {self.only_if})" if self.only_if else ""
        return f"{self.spender} {when} with {self.key}{needs}{only_if}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputLabel:
    """What one output is: owner, amount, script kind and every way to spend it.

    ``owner`` is who the money belongs to if nobody cheats ("Alice", "Bob", "Alice+Bob" for
    the funding output, "anyone" ...); ``note`` adds detail (an HTLC's id, amount in msat and
    payment hash).
    """

    owner: str
    amount_sat: int
    kind: ScriptKind
    paths: tuple[SpendPath, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.amount_sat < 0:
            raise ValueError("OutputLabel: amount_sat must be non-negative")

    def condition(self, confirmation_height: int | None = None,
                  current_height: int | None = None) -> str:
        """Every spend path in words, joined with "or"."""
        if not self.paths:
            return "spending condition unknown"
        return " or ".join(p.text(confirmation_height, current_height) for p in self.paths)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxRecord:
    """One transaction of the channel's life, as the caller knows it.

    ``raw``: the serialized transaction (with or without witnesses). ``outputs``: one label per
    output, in output order. ``broadcast`` False marks a transaction that exists only signed
    (a commitment a node holds), ``confirmation_height`` None an unconfirmed one. ``holder``:
    whose transaction it is (whose commitment, who sweeps). ``fee_sat`` is only needed when
    some input spends an output outside the graph (a funding tx's wallet coins).
    """

    raw: bytes
    role: TxRole
    outputs: tuple[OutputLabel, ...]
    confirmation_height: int | None = None
    broadcast: bool = True
    revoked: bool = False
    holder: str = ""
    commitment_number: int | None = None
    title: str = ""
    fee_sat: int | None = None

    def __post_init__(self) -> None:
        if self.confirmation_height is not None and not self.broadcast:
            raise ValueError("TxRecord: a confirmed transaction was broadcast")
        if self.fee_sat is not None and self.fee_sat < 0:
            raise ValueError("TxRecord: fee_sat must be non-negative")

    def display_title(self) -> str:
        """``Alice's commitment #3``, ``Bob's penalty``, or the caller's ``title``."""
        if self.title:
            return self.title
        name = self.role.value
        if self.commitment_number is not None:
            name += f" #{self.commitment_number}"
        return f"{self.holder}'s {name}" if self.holder else name[:1].upper() + name[1:]

    def status_text(self) -> str:
        """``confirmed at height 105``, ``unconfirmed (in the mempool)`` or ``not broadcast``."""
        if not self.broadcast:
            return "not broadcast (held, signed)"
        if self.confirmation_height is None:
            return "unconfirmed (in the mempool)"
        return f"confirmed at height {self.confirmation_height}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Spend:
    """An edge: input ``input_index`` of ``spender_txid`` spends ``outpoint``."""

    outpoint: OutPoint
    spender_txid: bytes
    input_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TxNode:
    """A decoded transaction in the graph: its record, txid, column and fee (None: unknown)."""

    record: TxRecord
    tx: CTransaction
    txid: bytes
    column: int
    fee_sat: int | None

    @property
    def txid_hex(self) -> str:
        """The txid as bitcoind displays it."""
        return self.txid[::-1].hex()

    @property
    def inputs(self) -> tuple[OutPoint, ...]:
        """The outpoints this transaction spends, in input order."""
        return tuple(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n))
                     for i in self.tx.vin)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxGraph:
    """Transactions (by column, then in the caller's order) and the spends between them."""

    nodes: tuple[TxNode, ...]
    spends: tuple[Spend, ...]

    def node(self, txid: bytes) -> TxNode | None:
        """The node of ``txid`` (internal byte order), or None."""
        for n in self.nodes:
            if n.txid == txid:
                return n
        return None

    def spenders(self, outpoint: OutPoint) -> tuple[TxNode, ...]:
        """Every transaction in the graph spending ``outpoint`` (several when they conflict:
        a revoked and the current commitment both spend the funding output)."""
        out: list[TxNode] = []
        for s in self.spends:
            if s.outpoint == outpoint:
                node = self.node(s.spender_txid)
                if node is not None:
                    out.append(node)
        return tuple(out)

    def is_resolved(self, outpoint: OutPoint) -> bool:
        """A broadcast transaction (confirmed or in the mempool) spends ``outpoint``."""
        return any(n.record.broadcast for n in self.spenders(outpoint))

    def unresolved(self) -> tuple[tuple[TxNode, int, OutputLabel], ...]:
        """Outputs of broadcast transactions that nothing broadcast spends yet, except
        wallet outputs (already settled in someone's wallet)."""
        found: list[tuple[TxNode, int, OutputLabel]] = []
        for node in self.nodes:
            if not node.record.broadcast:
                continue
            for vout, label in enumerate(node.record.outputs):
                if label.kind is ScriptKind.WALLET:
                    continue
                if not self.is_resolved(OutPoint(txid=node.txid, vout=vout)):
                    found.append((node, vout, label))
        return tuple(found)

    def columns(self) -> tuple[tuple[TxNode, ...], ...]:
        """Nodes grouped by column, left to right."""
        if not self.nodes:
            return ()
        width = max(n.column for n in self.nodes) + 1
        return tuple(tuple(n for n in self.nodes if n.column == c) for c in range(width))


def _decode(record: TxRecord) -> CTransaction:
    try:
        tx = CTransaction.deserialize(record.raw)
    except SerializationError as exc:
        raise ValueError(f"{record.display_title()}: raw bytes are not a transaction: {exc}") \
            from exc
    if len(record.outputs) != len(tx.vout):
        raise ValueError(f"{record.display_title()}: {len(tx.vout)} outputs but "
                         f"{len(record.outputs)} labels")
    for vout, (out, label) in enumerate(zip(tx.vout, record.outputs, strict=True)):
        if int(out.nValue) != label.amount_sat:
            raise ValueError(f"{record.display_title()}: output {vout} holds {out.nValue} sat, "
                             f"its label says {label.amount_sat}")
    return tx


def build_graph(records: Sequence[TxRecord]) -> TxGraph:
    """Decode ``records``, link spends, compute fees and columns (see the module docstring).

    Raises ValueError when a record's bytes do not decode, its labels do not match its
    outputs, or the same transaction appears twice.
    """
    decoded: list[tuple[TxRecord, CTransaction, bytes]] = []
    amounts: dict[OutPoint, int] = {}
    seen: set[bytes] = set()
    for record in records:
        tx = _decode(record)
        txid = bytes(tx.GetTxid())
        if txid in seen:
            raise ValueError(f"transaction {txid[::-1].hex()} is given twice")
        seen.add(txid)
        decoded.append((record, tx, txid))
        for vout, out in enumerate(tx.vout):
            amounts[OutPoint(txid=txid, vout=vout)] = int(out.nValue)

    spends: list[Spend] = []
    parents: dict[bytes, set[bytes]] = {}
    for _, tx, txid in decoded:
        parents[txid] = set()
        for index, txin in enumerate(tx.vin):
            outpoint = OutPoint(txid=bytes(txin.prevout.hash), vout=int(txin.prevout.n))
            if outpoint in amounts:
                spends.append(Spend(outpoint=outpoint, spender_txid=txid, input_index=index))
                parents[txid].add(outpoint.txid)

    depth: dict[bytes, int] = {}

    def column_of(txid: bytes, trail: frozenset[bytes]) -> int:
        if txid in depth:
            return depth[txid]
        if txid in trail:  # impossible for real transactions (a txid commits to its inputs)
            raise ValueError("the transactions spend each other in a cycle")
        ups = [column_of(p, trail | {txid}) for p in sorted(parents[txid])]
        depth[txid] = 1 + max(ups) if ups else 0
        return depth[txid]

    nodes: list[TxNode] = []
    for record, tx, txid in decoded:
        fee = record.fee_sat
        if fee is None:
            ins = [OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)) for i in tx.vin]
            if all(o in amounts for o in ins):
                fee = sum(amounts[o] for o in ins) - sum(int(o.nValue) for o in tx.vout)
        nodes.append(TxNode(record=record, tx=tx, txid=txid, column=column_of(txid, frozenset()),
                            fee_sat=fee))
    order = {id(n): i for i, n in enumerate(nodes)}
    nodes.sort(key=lambda n: (n.column, order[id(n)]))
    return TxGraph(nodes=tuple(nodes), spends=tuple(spends))
