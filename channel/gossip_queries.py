"""Answers to BOLT 7 gossip queries (``query_channel_range``, ``query_short_channel_ids``).

Pure. chanlab offers ``gossip_queries`` (so that peers send ``gossip_timestamp_filter``), and
a node offering it answers the two queries a syncing peer sends: the scids of the public
channels in a block range (``reply_channel_range``), and the announcements, updates and node
announcements of given scids (ending with ``reply_short_channel_ids_end``). Only encoding
type 0 (a sorted plain array) is read or written; zlib (1) is banned by BOLT 7. A query that
cannot be read is answered with nothing (gossip never fails a channel).
"""

from __future__ import annotations

from typing import Final

from channel.gossip import (
    QueryChannelRange,
    QueryShortChannelIds,
    ReplyChannelRange,
    ReplyShortChannelIdsEnd,
    ShortChannelId,
)
from channel.graph import NetworkGraph
from channel.messages import encode_message

__all__ = ["MAX_SCIDS_PER_MESSAGE", "answer_query"]

#: scids in one reply or query: 8 bytes each, within a 65535-byte message
MAX_SCIDS_PER_MESSAGE: Final = 8000
_ENCODING_UNCOMPRESSED: Final = 0


def answer_query(graph: NetworkGraph, chain_hash: bytes,
                 query: QueryChannelRange | QueryShortChannelIds) -> list[bytes]:
    """What to send back for ``query``, encoded (``type ‖ payload``); the graph's messages
    are sent as stored, never decoded again."""
    payload = query.payload
    if len(payload) < 32 or payload[:32] != chain_hash:
        return []
    if isinstance(query, QueryChannelRange):
        return _channel_range(graph, chain_hash, payload)
    return _short_channel_ids(graph, chain_hash, payload)


def _channel_range(graph: NetworkGraph, chain_hash: bytes, payload: bytes) -> list[bytes]:
    """BOLT 7 ``reply_channel_range``: our public scids within the blocks asked for."""
    if len(payload) < 40:
        return []
    first = int.from_bytes(payload[32:36], "big")
    count = int.from_bytes(payload[36:40], "big")
    scids = sorted(bytes(c.short_channel_id) for c in graph.public_channels()
                   if first <= c.short_channel_id.block_height < first + count)
    scids = scids[:MAX_SCIDS_PER_MESSAGE]   # a graph beyond it is past our cap anyway
    encoded = bytes([_ENCODING_UNCOMPRESSED]) + b"".join(scids)
    body = (chain_hash + first.to_bytes(4, "big") + count.to_bytes(4, "big") + b"\x01"
            + len(encoded).to_bytes(2, "big") + encoded)   # sync_complete = 1
    return [encode_message(ReplyChannelRange(payload=body))]


def _short_channel_ids(graph: NetworkGraph, chain_hash: bytes,
                       payload: bytes) -> list[bytes]:
    """BOLT 7: for each scid asked, its announcement, updates and its nodes' announcements,
    then ``reply_short_channel_ids_end``."""
    if len(payload) < 35:
        return []
    length = int.from_bytes(payload[32:34], "big")
    encoded = payload[34:34 + length]
    if len(encoded) != length or encoded[:1] != bytes([_ENCODING_UNCOMPRESSED]) or \
            (length - 1) % 8:
        return []
    out: list[bytes] = []
    nodes: list[bytes] = []
    for i in range(1, min(length, 1 + 8 * MAX_SCIDS_PER_MESSAGE), 8):
        scid = ShortChannelId.from_bytes(encoded[i:i + 8])
        channel = graph.channels.get(scid)
        if channel is None or not channel.public:
            continue
        out += graph.gossip_of(scid)
        nodes += [n for n in (channel.node_1, channel.node_2) if n not in nodes]
    for node_id in nodes:   # after their channels: a node announcement needs one
        raw = graph.node_gossip(node_id)
        if raw is not None:
            out.append(raw)
    out.append(encode_message(ReplyShortChannelIdsEnd(payload=chain_hash + b"\x01")))
    return out   # full_information = 1
