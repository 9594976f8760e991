"""BOLT 8 transport between two asyncio endpoints on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import coincurve
import pytest

from channel.errors import HandshakeFailed, MalformedMessage
from channel.messages import decode_message, encode_message
from channel.noise import MAX_MESSAGE_SIZE
from channel.transport import Transport, connect, serve
from channel.wire import Init, Ping, Pong, our_features, pong_for

SERVER_KEY = b"\x21" * 32
CLIENT_KEY = b"\x11" * 32
SERVER_PUB = coincurve.PrivateKey(SERVER_KEY).public_key.format(compressed=True)
CLIENT_PUB = coincurve.PrivateKey(CLIENT_KEY).public_key.format(compressed=True)
LOCALHOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=20))


@contextlib.asynccontextmanager
async def connected_pair() -> AsyncIterator[tuple[Transport, Transport]]:
    """(client, server-side) transports over a real loopback TCP connection."""
    accepted: asyncio.Queue[Transport] = asyncio.Queue()
    finished = asyncio.Event()

    async def on_connection(transport: Transport) -> None:
        await accepted.put(transport)
        await finished.wait()

    server = await serve(LOCALHOST, 0, local_static=SERVER_KEY, on_connection=on_connection)
    port = server.sockets[0].getsockname()[1]
    client = await connect(LOCALHOST, port, local_static=CLIENT_KEY,
                           remote_static_pubkey=SERVER_PUB)
    server_side = await asyncio.wait_for(accepted.get(), 5)
    try:
        yield client, server_side
    finally:
        finished.set()
        await client.close()
        server.close()
        await server.wait_closed()


def test_handshake_authenticates_both_sides() -> None:
    """After the handshake each side knows the other's static key (node id)."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            assert client.remote_pubkey == SERVER_PUB
            assert server_side.remote_pubkey == CLIENT_PUB
            assert client.local_pubkey == CLIENT_PUB
            assert server_side.local_pubkey == SERVER_PUB

    run(scenario())


def test_init_and_ping_pong_both_ways() -> None:
    """init crosses in both directions, then a ping is answered with the asked pong size."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            init = encode_message(Init.ours(our_features()))
            await client.send(init)
            await server_side.send(init)
            assert await server_side.recv() == init
            assert await client.recv() == init
            await client.send(encode_message(Ping(num_pong_bytes=12, ignored=bytes(3))))
            ping = decode_message(await server_side.recv())
            assert isinstance(ping, Ping)
            pong = pong_for(ping)
            assert pong is not None
            await server_side.send(encode_message(pong))
            assert decode_message(await client.recv()) == Pong(ignored=bytes(12))

    run(scenario())


def test_tcp_nodelay_on_both_ends() -> None:
    """Both sockets have TCP_NODELAY set, so a message is not held back by Nagle."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            for transport in (client, server_side):
                sock = transport.socket
                assert sock is not None
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    run(scenario())


def test_one_write_per_message() -> None:
    """send() calls writer.write once, with the whole 18 + len + 16 byte frame."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            writes: list[int] = []
            writer = client._writer
            original = writer.write

            def counting_write(data: bytes | bytearray | memoryview) -> None:
                writes.append(len(data))
                original(data)

            writer.write = counting_write  # type: ignore[method-assign]
            await client.send(b"\x00\x13\x00\x00")
            await client.send(b"x" * 1000)
            assert writes == [18 + 4 + 16, 18 + 1000 + 16]
            await client.send_many([b"a" * 10, b"b" * 20, b"c" * 30])
            assert writes[2:] == [(18 + 16) * 3 + 60]
            received = [await server_side.recv() for _ in range(5)]
            assert received == [b"\x00\x13\x00\x00", b"x" * 1000, b"a" * 10, b"b" * 20, b"c" * 30]

    run(scenario())


def test_many_messages_cross_key_rotation_both_ways() -> None:
    """1200 messages each way (past the 500- and 1000-message rotations) arrive intact."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            count = 1200

            async def pump(sender: Transport, tag: bytes) -> None:
                for index in range(count):
                    await sender.send(tag + index.to_bytes(4, "big"))

            async def drain(receiver: Transport, tag: bytes) -> None:
                for index in range(count):
                    assert await receiver.recv() == tag + index.to_bytes(4, "big")

            await asyncio.gather(pump(client, b"c"), pump(server_side, b"s"),
                                 drain(server_side, b"c"), drain(client, b"s"))

    run(scenario())


def test_largest_message_passes_and_larger_is_refused() -> None:
    """A 65535-byte message arrives whole; 65536 bytes raise MalformedMessage on send."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            big = bytes(range(256)) * 255 + bytes(255)
            assert len(big) == MAX_MESSAGE_SIZE
            await client.send(big)
            assert await server_side.recv() == big
            with pytest.raises(MalformedMessage):
                await client.send(bytes(MAX_MESSAGE_SIZE + 1))
            await client.send(b"still fine")
            assert await server_side.recv() == b"still fine"

    run(scenario())


def test_garbage_after_handshake_fails_mac() -> None:
    """Bytes that are not a valid frame make the receiver's recv raise MalformedMessage."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            client._writer.write(bytes(18))
            with pytest.raises(MalformedMessage):
                await server_side.recv()

    run(scenario())


def test_peer_close_is_eof() -> None:
    """When the peer closes, recv raises EOFError."""

    async def scenario() -> None:
        async with connected_pair() as (client, server_side):
            await client.close()
            with pytest.raises(EOFError):
                await server_side.recv()

    run(scenario())


def test_wrong_node_id_fails_and_server_keeps_serving() -> None:
    """Dialing with the wrong expected key fails the handshake; the next good dial works."""

    async def scenario() -> None:
        seen: list[bytes] = []

        async def on_connection(transport: Transport) -> None:
            seen.append(transport.remote_pubkey)
            await transport.send(b"welcome")

        server = await serve(LOCALHOST, 0, local_static=SERVER_KEY, on_connection=on_connection)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(HandshakeFailed):
                await connect(LOCALHOST, port, local_static=CLIENT_KEY,
                              remote_static_pubkey=CLIENT_PUB, handshake_timeout=2)
            good = await connect(LOCALHOST, port, local_static=CLIENT_KEY,
                                 remote_static_pubkey=SERVER_PUB)
            assert await good.recv() == b"welcome"
            await good.close()
            assert seen == [CLIENT_PUB]
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_handshake_timeout_when_responder_is_silent() -> None:
    """A listener that never answers act one makes connect raise HandshakeFailed in time."""

    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(HandshakeFailed, match="TimeoutError"):
                await connect(LOCALHOST, port, local_static=CLIENT_KEY,
                              remote_static_pubkey=SERVER_PUB, handshake_timeout=0.3)
            assert loop.time() - started < 2
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_silent_initiator_is_dropped_by_the_server() -> None:
    """A client that connects and sends nothing is disconnected after the handshake timeout."""

    async def scenario() -> None:
        called: list[Transport] = []

        async def on_connection(transport: Transport) -> None:
            called.append(transport)

        server = await serve(LOCALHOST, 0, local_static=SERVER_KEY,
                             on_connection=on_connection, handshake_timeout=0.3)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            assert await asyncio.wait_for(reader.read(), 3) == b""  # EOF: server hung up
            writer.close()
            assert called == []
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_bad_act_one_gets_no_reply() -> None:
    """A garbage act one is answered by closing the socket, with no bytes sent back."""

    async def scenario() -> None:
        server = await serve(LOCALHOST, 0, local_static=SERVER_KEY,
                             on_connection=lambda t: asyncio.sleep(0))
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(b"\x00" + bytes(49))
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
