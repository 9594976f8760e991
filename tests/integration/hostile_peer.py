"""I/O: a peer for tests that speaks chanlab's protocol honestly until told to lie.

It is built from chanlab's own parts — ``channel.transport`` for BOLT 8, ``channel.wire`` for
``init``, ``channel.state.Channel`` for valid channel messages — so a test can take a message
the honest state machine produced, tamper with one field, and send it to a node process.

A background task reads everything the node sends: ``ping`` is answered, the rest is queued;
:meth:`HostilePeer.expect` waits for a message of a given type, :meth:`HostilePeer.closed`
for the node to hang up.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any, TypeVar

import coincurve

from channel.errors import ChanlabError
from channel.keys import ChannelKeys
from channel.messages import (
    ChannelReady,
    FundingCreated,
    OpenChannel,
    decode_message,
    encode_message,
)
from channel.state import Channel, ChannelConfig
from channel.tasks import cancel_and_wait
from channel.transport import Transport, connect
from channel.wire import Init, Ping, our_features, pong_for

__all__ = ["HostilePeer", "PeerClosed", "p2wpkh"]

M = TypeVar("M")


def p2wpkh(pubkey: bytes) -> bytes:
    """``OP_0 <hash160(pubkey)>``: where a static_remotekey to_remote output pays."""
    return b"\x00\x14" + hashlib.new("ripemd160", hashlib.sha256(pubkey).digest()).digest()


class PeerClosed(Exception):
    """The node closed the connection while we waited for a message."""


class _Closed:
    """Queue marker: the connection is gone."""


class HostilePeer:
    """One connection to a node, plus (after :meth:`accept_channel`) the channel on it."""

    def __init__(self, *, secret: bytes | None = None) -> None:
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.node_id: bytes = coincurve.PrivateKey(self.secret).public_key.format(True)
        self.transport: Transport | None = None
        self.channel: Channel | None = None
        self.their_init: Init | None = None
        self.received: list[Any] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    # -- connection ----------------------------------------------------------------------------

    async def connect(self, host: str, port: int, node_id: bytes, *, send_init: bool = True,
                      ) -> None:
        """Dial the node, then (by default) exchange ``init`` and start reading."""
        self.transport = await connect(host, port, local_static=self.secret,
                                       remote_static_pubkey=node_id)
        self._queue = asyncio.Queue()
        if send_init:
            await self.send(Init.ours(our_features()))
            self._reader = asyncio.ensure_future(self._read_loop())
            self.their_init = await self.expect(Init)

    async def reconnect(self, host: str, port: int, node_id: bytes) -> None:
        """Hang up and dial again with the same key (the channel, if any, is kept)."""
        await self.close()
        if self.channel is not None:
            self.channel.on_disconnect()
        await self.connect(host, port, node_id)

    async def _read_loop(self) -> None:
        assert self.transport is not None
        try:
            while True:
                raw = await self.transport.recv()
                try:
                    message: Any = decode_message(raw)
                except ChanlabError:
                    message = raw
                self.received.append(message)
                if isinstance(message, Ping):
                    pong = pong_for(message)
                    if pong is not None:
                        await self.send(pong)
                    continue
                self._queue.put_nowait(message)
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, ChanlabError):
            self._queue.put_nowait(_Closed())

    async def send(self, *messages: Any) -> None:
        """Encrypt and send messages (objects from ``channel.wire``/``channel.messages``)."""
        await self.send_raw_messages(*(encode_message(m) for m in messages))

    async def send_raw_messages(self, *plaintexts: bytes) -> None:
        """Send ``type ‖ payload`` byte strings, each as one BOLT 8 message, however bogus."""
        assert self.transport is not None
        await self.transport.send_many(plaintexts)

    async def send_unencrypted(self, junk: bytes) -> None:
        """Write bytes straight onto the socket, bypassing the BOLT 8 encryption."""
        assert self.transport is not None
        writer = self.transport._writer
        writer.write(junk)
        await writer.drain()

    async def expect(self, kind: type[M], timeout: float = 15.0) -> M:
        """The next message of type ``kind``; others received meanwhile are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._queue.get()
                if isinstance(message, _Closed):
                    self._queue.put_nowait(message)
                    raise PeerClosed(f"the node hung up while we waited for {kind.__name__}")
                if isinstance(message, kind):
                    return message

    async def closed(self, timeout: float = 15.0) -> list[Any]:
        """Wait until the node closes the connection; return what it sent in the meantime."""
        seen: list[Any] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self._queue.get()
                if isinstance(message, _Closed):
                    self._queue.put_nowait(message)
                    return seen
                seen.append(message)

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait([self._reader])
        if self.transport is not None:
            await self.transport.close()

    # -- channel -------------------------------------------------------------------------------

    async def accept_channel(self, config: ChannelConfig | None = None) -> Channel:
        """Accept the node's ``open_channel`` and sign its funding, honestly."""
        open_msg = await self.expect(OpenChannel)
        chan, accept = Channel.accept_inbound(
            keys=ChannelKeys.from_seed(secrets.token_bytes(32)),
            config=config if config is not None else ChannelConfig(), msg=open_msg)
        await self.send(accept)
        created = await self.expect(FundingCreated)
        await self.send(chan.on_funding_created(created))
        self.channel = chan
        return chan

    async def lock_in(self) -> None:
        """After the funding confirmed: take the node's ``channel_ready`` and send ours."""
        assert self.channel is not None
        self.channel.on_channel_ready(await self.expect(ChannelReady))
        await self.send(self.channel.funding_locked())
