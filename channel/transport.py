"""I/O: BOLT 8 connections over asyncio TCP streams (dial, listen, send, receive).

The cryptography is ``channel.noise``; this module only moves its bytes. Rules kept here:

- one ``writer.write`` per message (``NoiseSession.encrypt_message`` returns the length
  header and the body as one object), then ``drain``; with ``TCP_NODELAY`` set on both
  ends a message leaves in one segment instead of waiting on Nagle's algorithm for the
  ACK of the previous one (~40 ms per round trip otherwise);
- the handshake must finish within ``handshake_timeout`` seconds, or the connection is
  dropped with ``HandshakeFailed`` — as for every other handshake failure, nothing is
  sent to the peer;
- messages are at most 65535 bytes (``MalformedMessage`` before anything is written).

Errors: ``HandshakeFailed`` (handshake), ``MalformedMessage`` (a message that fails its MAC:
drop the connection), ``EOFError`` (``asyncio.IncompleteReadError``: the peer closed) and the
``ConnectionError`` family from the socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

import coincurve

from channel.errors import HandshakeFailed
from channel.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    LENGTH_HEADER_SIZE,
    InitiatorHandshake,
    NoiseSession,
    ResponderHandshake,
)

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Transport",
    "accept",
    "connect",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _fresh_ephemeral() -> bytes:
    # coincurve draws from os.urandom and only returns a valid scalar.
    secret: bytes = coincurve.PrivateKey().secret
    return secret


class Transport:
    """An established BOLT 8 connection: ``send``/``recv`` whole plaintext messages."""

    __slots__ = ("_reader", "_session", "_writer", "local_pubkey", "tap")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: NoiseSession,
        local_pubkey: bytes,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._session = session
        #: Our static public key (33 bytes).
        self.local_pubkey = local_pubkey
        #: Called with (sent?, ``type ‖ payload``) for every message (the node's trace).
        self.tap: Callable[[bool, bytes], None] | None = None

    @property
    def remote_pubkey(self) -> bytes:
        """The peer's static public key (its node id), authenticated by the handshake."""
        return self._session.remote_static

    @property
    def peername(self) -> tuple[str, int] | None:
        name = self._writer.get_extra_info("peername")
        return None if name is None else (str(name[0]), int(name[1]))

    @property
    def socket(self) -> socket.socket | None:
        """The underlying socket (for inspection, e.g. ``TCP_NODELAY``); do not read from it."""
        sock: socket.socket | None = self._writer.get_extra_info("socket")
        return sock

    async def send(self, message: bytes) -> None:
        """Encrypt and write one message (``type ‖ payload``) in a single write, then drain."""
        if self.tap is not None:
            self.tap(True, message)
        self._writer.write(self._session.encrypt_message(message))
        await self._writer.drain()

    async def send_many(self, messages: Iterable[bytes]) -> None:
        """Several messages in one write (e.g. a batch of updates and its ``commitment_signed``)."""
        encrypt = self._session.encrypt_message
        if self.tap is not None:
            messages = list(messages)
            for message in messages:
                self.tap(True, message)
        self._writer.write(b"".join([encrypt(message) for message in messages]))
        await self._writer.drain()

    async def recv(self) -> bytes:
        """The next message, decrypted. ``EOFError`` when the peer has closed the connection."""
        header = await self._reader.readexactly(LENGTH_HEADER_SIZE)
        body = await self._reader.readexactly(self._session.decrypt_length(header))
        message = self._session.decrypt_body(body)
        if self.tap is not None:
            self.tap(False, message)
        return message

    def has_buffered_data(self) -> bool:
        """True if bytes of a next message have already arrived (a ``recv`` will not wait for
        the peer to send more; at worst for the rest of a message being delivered)."""
        # asyncio has no public test for this; StreamReader keeps unread bytes in _buffer
        return bool(self._reader._buffer)  # type: ignore[attr-defined]

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        """Close the connection and wait until the socket is released."""
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError as exc:
            # The peer may have reset first; our side of the socket is closed either way.
            log.debug("connection to %s reset while closing: %s", self.peername, exc)


async def connect(
    host: str,
    port: int,
    *,
    local_static: bytes,
    remote_static_pubkey: bytes,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ephemeral: bytes | None = None,
) -> Transport:
    """Dial ``host:port`` and run the initiator's side of the handshake.

    ``local_static`` is our 32-byte node secret, ``remote_static_pubkey`` the 33-byte node id
    we expect to reach (a different key at that address fails the handshake at act two).
    ``ephemeral`` is for tests; by default a fresh key is drawn.
    """
    handshake = InitiatorHandshake(
        local_static=local_static,
        remote_static=remote_static_pubkey,
        ephemeral=ephemeral if ephemeral is not None else _fresh_ephemeral(),
    )
    local_pubkey = coincurve.PrivateKey(local_static).public_key.format(compressed=True)
    try:
        async with asyncio.timeout(handshake_timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError as exc:
        raise HandshakeFailed(f"connecting to {host}:{port} timed out") from exc
    _set_nodelay(writer)
    try:
        async with asyncio.timeout(handshake_timeout):
            writer.write(handshake.write_act_one())
            await writer.drain()
            act_two = await reader.readexactly(ACT_TWO_SIZE)
            act_three, session = handshake.read_act_two(act_two)
            writer.write(act_three)
            await writer.drain()
    except (HandshakeFailed, TimeoutError, EOFError, ConnectionError) as exc:
        writer.close()
        if isinstance(exc, HandshakeFailed):
            raise
        raise HandshakeFailed(f"handshake with {host}:{port} failed: {exc!r}") from exc
    return Transport(reader, writer, session, local_pubkey)


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    local_static: bytes,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ephemeral: bytes | None = None,
) -> Transport:
    """Run the responder's side of the handshake on an accepted stream.

    On failure the stream is closed and ``HandshakeFailed`` raised.
    """
    handshake = ResponderHandshake(
        local_static=local_static,
        ephemeral=ephemeral if ephemeral is not None else _fresh_ephemeral(),
    )
    local_pubkey = coincurve.PrivateKey(local_static).public_key.format(compressed=True)
    _set_nodelay(writer)
    try:
        async with asyncio.timeout(handshake_timeout):
            act_one = await reader.readexactly(ACT_ONE_SIZE)
            writer.write(handshake.read_act_one(act_one))
            await writer.drain()
            act_three = await reader.readexactly(ACT_THREE_SIZE)
            session = handshake.read_act_three(act_three)
    except (HandshakeFailed, TimeoutError, EOFError, ConnectionError) as exc:
        writer.close()
        if isinstance(exc, HandshakeFailed):
            raise
        raise HandshakeFailed(f"inbound handshake failed: {exc!r}") from exc
    return Transport(reader, writer, session, local_pubkey)


async def serve(
    host: str,
    port: int,
    *,
    local_static: bytes,
    on_connection: Callable[[Transport], Awaitable[None]],
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> asyncio.Server:
    """Listen on ``host:port``; hand each authenticated connection to ``on_connection``.

    The connection is closed when ``on_connection`` returns. A failed handshake is logged
    and the socket dropped; the server goes on. Port 0 picks a free port (see
    ``server.sockets[0].getsockname()``).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            transport = await accept(
                reader, writer, local_static=local_static, handshake_timeout=handshake_timeout
            )
        except HandshakeFailed as exc:
            log.info("dropped inbound connection %s: %s", writer.get_extra_info("peername"), exc)
            return
        try:
            await on_connection(transport)
        finally:
            await transport.close()

    return await asyncio.start_server(handle, host, port)
