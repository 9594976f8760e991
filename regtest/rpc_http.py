"""I/O: JSON-RPC over plain HTTP/1.1 to bitcoind, on asyncio streams, with kept-alive connections.

bitcoind's RPC server speaks plain HTTP/1.1 (no TLS, no HTTP/2, no proxies, no redirects), so a
POST with a ``Content-Length`` body and an answer read by its ``Content-Length`` (or chunked) is
all a client needs. This module is that client, and nothing more: a general HTTP stack (httpx,
httpcore, h11, anyio, idna, http.cookiejar, email...) costs every node process about 4 MB of
resident memory it never uses (``make bench``: idle node RSS).

Connections are kept alive and reused, one request at a time each; concurrent calls open more.
A kept-alive connection bitcoind closed meanwhile is retried once on a fresh one (the request
never reached bitcoind's RPC handler, so resending it repeats nothing).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HttpAnswer", "HttpTimeout", "HttpTransportError", "JsonRpcHttp"]

_MAX_HEADER_BYTES = 64 * 1024
#: An answer that is not HTTP as bitcoind writes it, or a socket error
_GARBLED = (OSError, asyncio.LimitOverrunError, ValueError, IndexError)


class HttpTransportError(Exception):
    """No HTTP answer: the connection was refused, reset or closed, or the answer was garbled."""


class HttpTimeout(HttpTransportError):
    """No complete answer within the client's timeout."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP answer: its status code and body."""

    status: int
    body: bytes


def basic_auth_header(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic auth (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class JsonRpcHttp:
    """POSTs JSON bodies to one ``http://host:port``; the path is given per request.

    ``authorization`` returns the ``Authorization`` header value; it is called again with
    ``reread=True`` after a 401 (a cookie file rewritten by a restarted bitcoind) and the
    request is sent once more."""

    def __init__(self, url: str, *, authorization: Callable[[bool], str],
                 timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"bitcoind's RPC URL must be http://host:port, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authorization = authorization
        self._timeout_s = timeout_s
        self._idle: list[_Stream] = []

    @staticmethod
    def path_of(url: str) -> str:
        """The request target of ``url`` (``/`` or ``/wallet/NAME``)."""
        return urlsplit(url).path or "/"

    async def post(self, path: str, body: bytes) -> HttpAnswer:
        """POST ``body`` to ``path``; a 401 is retried once with credentials read again."""
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._post_once(path, body, self._authorization(False))
                if answer.status == 401:
                    answer = await self._post_once(path, body, self._authorization(True))
                return answer
        except TimeoutError as exc:
            raise HttpTimeout(f"no answer within {self._timeout_s:g} s") from exc

    async def _post_once(self, path: str, body: bytes, authorization: str) -> HttpAnswer:
        request = (f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                   f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        while self._idle:
            stream = self._idle.pop()
            try:
                return await self._exchange(stream, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                continue   # bitcoind closed this kept-alive connection meanwhile: next one
            except _GARBLED as exc:
                raise self._failed(exc) from exc
        try:
            stream = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise HttpTransportError(f"cannot connect to {self._host}:{self._port}: "
                                     f"{exc.strerror or exc}") from exc
        try:
            return await self._exchange(stream, request)
        except (*_GARBLED, ConnectionError, asyncio.IncompleteReadError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> HttpTransportError:
        return HttpTransportError(f"the connection to {self._host}:{self._port} failed: "
                                  f"{exc or type(exc).__name__}")

    async def _exchange(self, stream: _Stream, request: bytes) -> HttpAnswer:
        reader, writer = stream
        keep = False
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEADER_BYTES:
                raise ValueError("HTTP header too long")
            lines = head.decode("latin-1").split("\r\n")
            version, status_text = lines[0].split(" ", 2)[:2]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:   # no length: the body runs to the end of the connection
                body = await reader.read()
                headers["connection"] = "close"
            keep = (version == "HTTP/1.1"
                    and headers.get("connection", "").lower() != "close")
            return HttpAnswer(int(status_text), body)
        finally:
            if keep:
                self._idle.append(stream)
            else:
                writer.close()

    async def aclose(self) -> None:
        """Close every kept-alive connection; later posts open new ones."""
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass   # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
