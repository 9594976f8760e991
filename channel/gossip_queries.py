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
    ChannelAnnouncement,
    ChannelUpdate,
    NodeAnnouncement,
    QueryChannelRange,
    QueryShortChannelIds,
    ReplyChannelRange,
    ReplyShortChannelIdsEnd,
    ShortChannelId,
)
from channel.graph import NetworkGraph
from channel.wire import Message

__all__ = ["MAX_SCIDS_PER_MESSAGE", "answer_query"]

#: scids in one reply or query: 8 bytes each, within a 65535-byte message
MAX_SCIDS_PER_MESSAGE: Final = 8000
_ENCODING_UNCOMPRESSED: Final = 0

Gossip = ChannelAnnouncement | ChannelUpdate | NodeAnnouncement


def answer_query(graph: NetworkGraph, chain_hash: bytes,
                 query: QueryChannelRange | QueryShortChannelIds,
                 messages: list[Gossip]) -> list[Message]:
    """What to send back for ``query``: ``messages`` is the public graph as gossip
    (:func:`channel.gossip_public.graph_messages`)."""
    payload = query.payload
    if len(payload) < 32 or payload[:32] != chain_hash:
        return []
    if isinstance(query, QueryChannelRange):
        return _channel_range(graph, chain_hash, payload)
    return _short_channel_ids(chain_hash, payload, messages)


def _channel_range(graph: NetworkGraph, chain_hash: bytes, payload: bytes) -> list[Message]:
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
    return [ReplyChannelRange(payload=body)]


def _short_channel_ids(chain_hash: bytes, payload: bytes,
                       messages: list[Gossip]) -> list[Message]:
    """BOLT 7: for each scid asked, its announcement, updates and its nodes' announcements,
    then ``reply_short_channel_ids_end``."""
    if len(payload) < 35:
        return []
    length = int.from_bytes(payload[32:34], "big")
    encoded = payload[34:34 + length]
    if len(encoded) != length or encoded[:1] != bytes([_ENCODING_UNCOMPRESSED]) or \
            (length - 1) % 8:
        return []
    wanted = {ShortChannelId.from_bytes(encoded[i:i + 8])
              for i in range(1, min(length, 1 + 8 * MAX_SCIDS_PER_MESSAGE), 8)}
    out: list[Message] = []
    nodes: set[bytes] = set()
    for msg in messages:
        if isinstance(msg, ChannelAnnouncement) and msg.scid in wanted:
            out.append(msg)
            nodes.update((msg.node_id_1, msg.node_id_2))
        elif isinstance(msg, ChannelUpdate) and msg.scid in wanted:
            out.append(msg)
        elif isinstance(msg, NodeAnnouncement) and msg.node_id in nodes:
            out.append(msg)   # graph_messages lists nodes last: their channels came first
    out.append(ReplyShortChannelIdsEnd(payload=chain_hash + b"\x01"))   # full_information
    return out
