"""Control sockets work at paths longer than AF_UNIX allows."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from channel.control_socket import connect_unix, start_unix_server


def test_server_and_client_meet_at_a_path_longer_than_sockaddr_un(tmp_path: Path) -> None:
    """A socket 200+ characters deep is bound with mode 0600 and answers a client."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    assert len(str(path)) > 108

    async def run() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"got " + await reader.readline())
            await writer.drain()
            writer.close()

        server = await start_unix_server(echo, path)
        assert path.stat().st_mode & 0o777 == 0o600

        def client() -> bytes:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            connect_unix(sock, path)
            sock.sendall(b"ping\n")
            data = sock.recv(100)
            sock.close()
            return data

        try:
            return await asyncio.to_thread(client)
        finally:
            server.close()

    assert asyncio.run(run()) == b"got ping\n"
