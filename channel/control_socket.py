"""I/O: Unix control sockets whose path may be longer than the kernel allows.

A ``sockaddr_un`` path holds at most 107 bytes, and a node's home under a deep folder (a test's
temporary directory, a long ``$CHANLAB_HOME``) easily exceeds that. The server binds through a
descriptor of its folder (``/proc/self/fd/N/control.sock``), and clients connect through a
short symlink, so the socket can live anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["connect_unix", "start_unix_server"]

_MAX_PATH = 100


async def start_unix_server(
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        path: Path) -> asyncio.Server:
    """``asyncio.start_unix_server`` at ``path``, however long it is."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if len(str(path)) <= _MAX_PATH:
        server = await asyncio.start_unix_server(handler, path=str(path))
    else:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            server = await asyncio.start_unix_server(
                handler, path=f"/proc/self/fd/{fd}/{path.name}")
        finally:
            os.close(fd)
    os.chmod(path, 0o600)
    return server


def connect_unix(sock: socket.socket, path: Path) -> None:
    """``sock.connect(path)``, through a short symlink when ``path`` is too long."""
    if len(str(path)) <= _MAX_PATH:
        sock.connect(str(path))
        return
    with tempfile.TemporaryDirectory(prefix="chanlab-") as short:
        link = os.path.join(short, "s")
        os.symlink(path, link)
        sock.connect(link)
