"""Recognise a channel's transactions and label them: raw transactions in, graph records out.

Pure. The caller (a node answering ``chanlab alice graph``) gathers what it knows about one
channel — the two names, funding pubkeys and outpoint, a :class:`regtest.txlabels.CommitmentView`
for every commitment whose keys it knows (its own, the peer's, revoked ones), and which
scriptPubKeys are whose wallet — plus the raw transactions it has seen with their
confirmation heights. :func:`classify` decides each transaction's role:

- pays the funding script                                  -> funding
- spends the funding outpoint, all outputs match a view    -> commitment (revoked per the view)
- spends the funding outpoint otherwise                    -> closing
- spends an HTLC output into that commitment's HTLC-tx script -> HTLC-timeout / -success
- spends a revoked commitment's (or its HTLC tx's) outputs -> penalty
- spends anything else of the channel                      -> sweep
- anything else                                            -> other

and returns :class:`regtest.txgraph.TxRecord` s ready for :func:`regtest.txgraph.build_graph`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bitcoin.core import CTransaction
from bitcoin.core.serialize import SerializationError

from channel.keys import FundingPubkey
from channel.scripts import funding_script, p2wsh
from channel.types import OutPoint
from regtest.txgraph import ScriptKind, TxRecord, TxRole
from regtest.txlabels import (
    CommitmentView,
    commitment_record,
    funding_record,
    htlc_tx_record,
    label_commitment,
    wallet_record,
)

__all__ = ["ChannelFacts", "SeenTx", "classify"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelFacts:
    """What a node knows about one channel: enough to recognise and label its transactions.

    ``names`` and ``funding_pubkeys`` are in the same order (opener first); ``owners`` maps
    wallet and shutdown scriptPubKeys to names; ``funding_fee_sat`` is the funding tx's fee
    (its wallet inputs are outside the graph), None if unknown.
    """

    names: tuple[str, str]
    funding_pubkeys: tuple[FundingPubkey, FundingPubkey]
    funding_outpoint: OutPoint
    views: tuple[CommitmentView, ...] = ()
    owners: Mapping[bytes, str] = field(default_factory=dict)
    funding_fee_sat: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenTx:
    """A transaction the node has: raw bytes, confirmation height (None: unconfirmed), and
    whether it was ever broadcast (False: held, signed, e.g. our current commitment)."""

    raw: bytes
    confirmation_height: int | None = None
    broadcast: bool = True


@dataclass(frozen=True, slots=True)
class _Known:
    record: TxRecord
    view: CommitmentView | None       # the commitment (or HTLC tx) this record belongs to


def _spent(tx: CTransaction) -> list[OutPoint]:
    return [OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)) for i in tx.vin]


def _best_view(tx: CTransaction, views: Sequence[CommitmentView]) -> CommitmentView | None:
    """The view whose scripts explain every output, preferring one whose to_local matched
    (every commitment of one broadcaster shares the to_remote script)."""
    best: tuple[int, int, CommitmentView] | None = None
    for index, view in enumerate(views):
        labels = label_commitment(tx, view)
        if any(label.kind is ScriptKind.UNKNOWN for label in labels):
            continue
        score = sum(label.kind in (ScriptKind.TO_LOCAL, ScriptKind.OFFERED_HTLC,
                                   ScriptKind.RECEIVED_HTLC) for label in labels)
        if best is None or score > best[0]:
            best = (score, index, view)
    return None if best is None else best[2]


def _holder(tx: CTransaction, owners: Mapping[bytes, str], fallback: str) -> str:
    for out in tx.vout:
        owner = owners.get(bytes(out.scriptPubKey))
        if owner is not None:
            return owner
    return fallback


def _classify_one(facts: ChannelFacts, tx: CTransaction, seen: SeenTx,
                  known: Mapping[bytes, _Known]) -> _Known:
    height, broadcast = seen.confirmation_height, seen.broadcast
    spent = _spent(tx)
    funding_spk = p2wsh(funding_script(*facts.funding_pubkeys))
    if facts.funding_outpoint in spent:
        view = _best_view(tx, facts.views)
        if view is not None:
            return _Known(commitment_record(tx, view, confirmation_height=height,
                                            broadcast=broadcast), view)
        return _Known(wallet_record(tx, role=TxRole.CLOSING, holder="", owners=facts.owners,
                                    confirmation_height=height, broadcast=broadcast), None)
    parents = [(op, known[op.txid]) for op in spent if op.txid in known]
    if parents:
        outpoint, parent = parents[0]
        view = parent.view
        label = parent.record.outputs[outpoint.vout]
        if view is not None and parent.record.role is TxRole.COMMITMENT and label.kind in (
                ScriptKind.OFFERED_HTLC, ScriptKind.RECEIVED_HTLC) and any(
                bytes(o.scriptPubKey) == view.second_stage_script_pubkey() for o in tx.vout):
            return _Known(htlc_tx_record(tx, view, timeout=label.kind is ScriptKind.OFFERED_HTLC,
                                         confirmation_height=height, broadcast=broadcast,
                                         owners=facts.owners), view)
        revoked = any(p.record.revoked for _, p in parents)
        if revoked and view is not None:
            holder = view.countersignatory
            role = TxRole.PENALTY
        else:
            holder = _holder(tx, facts.owners, label.owner)
            role = TxRole.SWEEP
        return _Known(wallet_record(tx, role=role, holder=holder, owners=facts.owners,
                                    default_owner=holder, confirmation_height=height,
                                    broadcast=broadcast), None)
    if any(bytes(o.scriptPubKey) == funding_spk for o in tx.vout):
        return _Known(funding_record(tx, funding_pubkeys=facts.funding_pubkeys,
                                     names=facts.names, opener=facts.names[0],
                                     fee_sat=facts.funding_fee_sat, owners=facts.owners,
                                     confirmation_height=height), None)
    return _Known(wallet_record(tx, role=TxRole.OTHER, holder="", owners=facts.owners,
                                confirmation_height=height, broadcast=broadcast), None)


def classify(facts: ChannelFacts, txs: Sequence[SeenTx]) -> tuple[TxRecord, ...]:
    """One labelled :class:`TxRecord` per transaction of ``txs``, in the order given.

    A transaction is classified after the transactions it spends (the order of ``txs`` does
    not matter). Raises ValueError if a transaction does not decode.
    """
    decoded: list[tuple[SeenTx, CTransaction, bytes]] = []
    for seen in txs:
        try:
            tx = CTransaction.deserialize(seen.raw)
        except SerializationError as exc:
            raise ValueError(f"not a transaction: {exc}") from exc
        decoded.append((seen, tx, bytes(tx.GetTxid())))
    ours = {txid for _, _, txid in decoded}
    known: dict[bytes, _Known] = {}
    pending = list(decoded)
    while pending:
        ready = [d for d in pending
                 if all(op.txid in known or op.txid not in ours for op in _spent(d[1]))]
        if not ready:  # impossible for real transactions (a txid commits to its inputs)
            raise ValueError("the transactions spend each other in a cycle")
        for seen, tx, txid in ready:
            known[txid] = _classify_one(facts, tx, seen, known)
        pending = [d for d in pending if d[2] not in known]
    return tuple(known[txid].record for _, _, txid in decoded)
