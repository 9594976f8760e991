"""I/O: a channel's transaction graph from a node's facts and bitcoind (``chanlab NAME graph``).

The node answers ``channel-facts`` (:mod:`channel.channel_facts`): keys, commitments and the
transactions its monitor saw. Here the funding transaction and every confirmation height are
read from bitcoind (the node's view may lag a block), peers are named after the nodes of this
machine (``$CHANLAB_HOME/nodes/*/node.json``), and :func:`regtest.txclassify.classify` labels
everything into a :class:`regtest.txgraph.TxGraph` for the SVG, dot and on-chain renderers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin.core import CBlock, CTransaction

from channel.keys import PerCommitmentPoint
from channel.records import basepoints_from_record, htlcs_from_record
from channel.types import CommitmentFormat, OutPoint
from regtest.rpc import Rpc
from regtest.rpc_types import RpcError
from regtest.txclassify import ChannelFacts, SeenTx, classify
from regtest.txgraph import TxGraph, build_graph
from regtest.txlabels import CommitmentView

__all__ = ["MAX_BLOCKS_SCANNED", "ChannelPicture", "channel_picture", "node_names"]

#: How many blocks after the funding are read for spends the node did not record.
MAX_BLOCKS_SCANNED = 5_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelPicture:
    """A channel's graph, the tip height it was drawn at, and a title naming the channel."""

    graph: TxGraph
    height: int
    title: str


def node_names(home: Path) -> dict[str, str]:
    """Node id (hex) -> name, for the nodes whose homes are under ``home/nodes``."""
    names: dict[str, str] = {}
    for info in sorted((home / "nodes").glob("*/node.json")):
        try:
            data = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("node_id"), str):
            names[data["node_id"]] = str(data.get("name") or info.parent.name)
    return names


def _height_of(rpc: Rpc, txid: str, tip: int) -> int | None:
    try:
        info = rpc.getrawtransaction_verbose(txid)
    except RpcError:  # not on chain nor in the mempool: the node's view stands
        return None
    confirmations = info.get("confirmations")
    return tip - confirmations + 1 if isinstance(confirmations, int) and confirmations > 0 \
        else None


def _later_spends(rpc: Rpc, seen: list[SeenTx], funding: OutPoint, since: int,
                  tip: int) -> list[SeenTx]:
    """Spends of the channel's force-close outputs that the node did not record (a monitor
    stops watching once its own outputs are settled: the peer's sweep may come later), found
    by reading the blocks since ``since`` (regtest chains are short) and the mempool. Only
    commitments' and their HTLC transactions' outputs are followed: a cooperative close and
    the sweeps pay wallets, whose later spends are not the channel's story."""
    decoded = [CTransaction.deserialize(s.raw) for s in seen if s.broadcast]
    commitments = {bytes(tx.GetTxid()) for tx in decoded
                   if any(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)) == funding
                          for i in tx.vin) and tx.vin[0].nSequence >> 24 == 0x80}
    parents = commitments | {bytes(tx.GetTxid()) for tx in decoded
                             if any(bytes(i.prevout.hash) in commitments for i in tx.vin)}
    known = {bytes(tx.GetTxid()) for tx in decoded}
    found: list[SeenTx] = []
    if not parents or tip - since > MAX_BLOCKS_SCANNED:
        return found

    def take(raw: bytes, height: int | None) -> None:
        tx = CTransaction.deserialize(raw)
        txid = bytes(tx.GetTxid())
        if txid not in known and any(bytes(i.prevout.hash) in parents for i in tx.vin):
            known.add(txid)
            found.append(SeenTx(raw=raw, confirmation_height=height))

    for height in range(since, tip + 1):
        block = CBlock.deserialize(rpc.getblock(rpc.getblockhash(height)))
        for tx in block.vtx[1:]:
            take(tx.serialize(), height)
    for txid in rpc.getrawmempool():
        try:
            take(rpc.getrawtransaction(txid), None)
        except RpcError:
            continue   # mined or evicted meanwhile
    return found


def channel_picture(facts: dict[str, Any], *, holder: str, peer: str,
                    rpc: Rpc) -> ChannelPicture:
    """Classify the channel's transactions into a graph (names: ``holder`` is the node asked,
    ``peer`` the other party)."""
    tip = rpc.getblockcount()
    holder_bp = basepoints_from_record(facts["holder_basepoints"])
    peer_bp = basepoints_from_record(facts["counterparty_basepoints"])
    name = {"holder": holder, "counterparty": peer}
    basepoints = {"holder": holder_bp, "counterparty": peer_bp}
    views = []
    for c in facts["commitments"]:
        other = "counterparty" if c["broadcaster"] == "holder" else "holder"
        views.append(CommitmentView.from_basepoints(
            broadcaster=name[c["broadcaster"]], countersignatory=name[other],
            commitment_number=c["commitment_number"],
            broadcaster_basepoints=basepoints[c["broadcaster"]],
            countersignatory_basepoints=basepoints[other],
            per_commitment_point=PerCommitmentPoint.from_hex(c["per_commitment_point"]),
            to_self_delay=c["to_self_delay"],
            commitment_format=CommitmentFormat(c["commitment_format"]),
            htlcs=htlcs_from_record(c["htlcs"]), revoked=c["revoked"]))
    opener = facts["opener"]
    second = "counterparty" if opener == "holder" else "holder"
    owners = {bytes.fromhex(s): holder for s in facts["holder_scripts"]}
    funding_raw = bytes.fromhex(facts["funding_tx"]) if facts["funding_tx"] else \
        rpc.getrawtransaction(facts["funding_txid"])
    funding_height = _height_of(rpc, facts["funding_txid"], tip)
    # the funding tx's other outputs are the opener's change
    funding_tx = CTransaction.deserialize(funding_raw)
    owners.update({bytes(o.scriptPubKey): name[opener] for n, o in enumerate(funding_tx.vout)
                   if n != facts["funding_vout"]})
    chan_facts = ChannelFacts(
        names=(name[opener], name[second]),
        funding_pubkeys=(basepoints[opener].funding_pubkey, basepoints[second].funding_pubkey),
        funding_outpoint=OutPoint(txid=bytes.fromhex(facts["funding_txid"])[::-1],
                                  vout=facts["funding_vout"]),
        views=tuple(views), owners=owners)
    seen = [SeenTx(raw=funding_raw, confirmation_height=funding_height)]
    for tx in facts["transactions"]:
        height = _height_of(rpc, tx["txid"], tip) if tx["broadcast"] else None
        seen.append(SeenTx(raw=bytes.fromhex(tx["raw"]),
                           confirmation_height=height if height is not None else tx["height"],
                           broadcast=tx["broadcast"]))
    if funding_height is not None:
        seen += _later_spends(rpc, seen, chan_facts.funding_outpoint, funding_height, tip)
    graph = build_graph(classify(chan_facts, seen))
    title = f"channel {facts['channel'][:16]} between {holder} and {peer}"
    return ChannelPicture(graph=graph, height=tip, title=title)
