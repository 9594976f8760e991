"""What a node knows about one channel's transactions, as JSON, for ``chanlab NAME graph``.

Pure. :func:`channel_facts` reads a channel's monitor: the funding outpoint, both parties'
basepoints (the funding pubkeys among them), the inputs of every commitment worth drawing
(broadcaster, commitment number, per-commitment point, ``to_self_delay``, format, HTLCs,
revoked or not: enough to rebuild each output's script, BOLT 3 "Keys" and "Commitment
Transaction Outputs") and the transactions of the channel the monitor saw, raw, with their
confirmation heights. The command line (``regtest.channel_picture``) turns them into the
labelled transaction graph.
"""

from __future__ import annotations

from typing import Any

from channel.effects import ChannelHandle
from channel.errors import RejectedUpdate
from channel.types import Side

__all__ = ["channel_facts"]


def _side(side: Side) -> str:
    return "holder" if side is Side.HOLDER else "counterparty"


def channel_facts(handle: ChannelHandle, *, holder_scripts: tuple[bytes, ...] = ()
                  ) -> dict[str, Any]:
    """The facts of ``handle``'s channel; ``holder_scripts`` are scriptPubKeys of our wallet
    (sweep destinations) so their outputs read as ours. Txids are in bitcoind's order."""
    from channel.records import basepoints_to_record, htlcs_to_record  # idle node RSS
    monitor = handle.monitor
    chan = handle.channel
    if monitor is None:
        raise RejectedUpdate(f"channel {handle.key[:16]} is not funded yet: nothing on chain "
                             "to draw")
    commitments = []
    for side, commitment, revoked in monitor.known_commitments():
        htlcs = tuple(o.htlc for o in commitment.htlc_outputs) + commitment.trimmed_htlcs
        commitments.append({
            "broadcaster": _side(side), "commitment_number": commitment.commitment_number,
            "txid": commitment.txid[::-1].hex(),
            "per_commitment_point": commitment.keys.per_commitment_point.hex(),
            "to_self_delay": commitment.to_self_delay,
            "commitment_format": commitment.commitment_format.value,
            "htlcs": htlcs_to_record(htlcs), "revoked": revoked})
    seen = monitor.seen_transactions()
    transactions = [{"txid": tx.GetTxid()[::-1].hex(), "raw": tx.serialize().hex(),
                     "height": height, "broadcast": True} for tx, height in seen]
    funding = monitor.funding_outpoint
    spent = any(bytes(i.prevout.hash) == funding.txid and int(i.prevout.n) == funding.vout
                for tx, _ in seen for i in tx.vin)
    if not spent and any(side is Side.HOLDER for side, _, _ in monitor.known_commitments()):
        # the funding output is unspent: draw our current commitment, signed and held
        held = monitor.holder_commitment_tx()
        transactions.append({"txid": held.GetTxid()[::-1].hex(), "raw": held.serialize().hex(),
                             "height": None, "broadcast": False})
    return {
        "channel": handle.key, "channel_id": (chan.channel_id or b"").hex(),
        "peer_id": handle.peer_id.hex(), "opener": _side(monitor.opener),
        "funding_txid": monitor.funding_outpoint.txid[::-1].hex(),
        "funding_vout": monitor.funding_outpoint.vout, "funding_sat": monitor.funding_sat,
        "funding_tx": handle.funding_tx.hex() if handle.funding_tx else None,
        "holder_basepoints": basepoints_to_record(monitor.holder_params.basepoints),
        "counterparty_basepoints": basepoints_to_record(monitor.counterparty_params.basepoints),
        "commitments": commitments, "transactions": transactions,
        "holder_scripts": [s.hex() for s in
                           (*holder_scripts, monitor.destination_script_pubkey)],
    }
