"""Unfunded channels in the manager: bounded per peer and in total, never persisted, forgotten
without a trace when refused or abandoned."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from channel.effects import Effects, OpenResolved
from channel.errors import PeerProtocolError
from channel.keys import ChannelKeys, PrivateKey
from channel.manager import ChannelManager
from channel.messages import OpenChannel
from channel.payments import Payments
from channel.pending import MAX_PENDING_PER_PEER, MAX_PENDING_TOTAL
from channel.scripts import p2wpkh
from channel.state import Channel, ChannelConfig
from channel.wire import ErrorMessage

FUNDING_SAT = 200_000


def _manager() -> ChannelManager:
    secret = hashlib.sha256(b"pending").digest()
    node_id = PrivateKey(secret).pubkey
    return ChannelManager(node_id=node_id, config=ChannelConfig(),
                          sweep_script=p2wpkh(PrivateKey(secret).pubkey),
                          payments=Payments(node_id=node_id, node_secret=secret))


def _open_channel() -> OpenChannel:
    _, msg = Channel.open_outbound(keys=ChannelKeys.from_seed(secrets.token_bytes(32)),
                                   config=ChannelConfig(), funding_sat=FUNDING_SAT, push_msat=0,
                                   feerate_per_kw=1000,
                                   temporary_channel_id=secrets.token_bytes(32))
    return msg


def test_open_channel_beyond_the_per_peer_bound_is_refused_and_nothing_is_persisted() -> None:
    """MAX_PENDING_PER_PEER opens from one peer are accepted (no row to persist); one more is a
    protocol error; another peer still gets in."""
    manager = _manager()
    stranger = b"\x02" + bytes(32)
    for _ in range(MAX_PENDING_PER_PEER):
        fx = Effects()
        manager.handle_message(stranger, _open_channel(), fx)
        assert [type(m).__name__ for _, m in fx.outgoing] == ["AcceptChannel"]
        assert manager.flight_records(fx).channels == []
    with pytest.raises(PeerProtocolError, match="not yet funded"):
        manager.handle_message(stranger, _open_channel(), Effects())
    manager.handle_message(b"\x03" + bytes(32), _open_channel(), Effects())
    assert len(manager.handles) == MAX_PENDING_PER_PEER + 1


def test_total_bound_holds_across_peers() -> None:
    """MAX_PENDING_TOTAL unfunded channels in all: the next peer is refused too."""
    manager = _manager()
    for n in range(MAX_PENDING_TOTAL):
        manager.handle_message(n.to_bytes(33, "big"), _open_channel(), Effects())
    with pytest.raises(PeerProtocolError, match="too many"):
        manager.handle_message(b"\x02" * 33, _open_channel(), Effects())


def test_refused_open_is_forgotten_and_answered_with_the_peer_text() -> None:
    """The peer's error on our unfunded open: the handle goes, the open waiter gets the text,
    and the channel's key is listed for deletion."""
    manager = _manager()
    peer = b"\x02" + bytes(32)
    fx = Effects()
    handle = manager.open_channel(peer, funding_sat=FUNDING_SAT, push_msat=0, anchors=False,
                                  fx=fx)
    refused = Effects()
    manager.handle_message(peer, ErrorMessage.with_text(handle.channel.temporary_channel_id,
                                                        "channel too small"), refused)
    assert manager.handles == {}
    assert refused.forgotten == [(handle.key, None)]
    assert refused.resolutions == [
        OpenResolved(handle.key, error="the peer refused the channel: channel too small")]
    assert refused.broadcasts == []


def test_disconnect_forgets_unfunded_channels() -> None:
    """BOLT 2: a channel not yet funded does not outlive its connection."""
    manager = _manager()
    peer = b"\x02" + bytes(32)
    manager.handle_message(peer, _open_channel(), Effects())
    fx = Effects()
    manager.peer_disconnected(peer, fx)
    assert manager.handles == {}
    assert len(fx.forgotten) == 1
