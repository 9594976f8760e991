"""I/O: typed JSON-RPC clients for bitcoind, on the ``bitcoinrpc`` package (async, httpx).

Two clients with the same methods:

* ``AsyncRpc`` for asyncio code (the node daemons);
* ``Rpc``, a blocking facade for tests, demos and the CLI: one private event loop in a background
  thread runs an ``AsyncRpc``; ``close()`` (or ``with``) stops it.

One call path: every named method only builds a :class:`Request` (the RPC name, its parameters
and how to read the answer: a typed result where chanlab reads fields, else the JSON checked for
its shape); ``AsyncRpc.run`` sends it through :meth:`AsyncRpc.call`, and ``Rpc.run`` runs that on
its loop. The methods are written once, in :class:`regtest.rpc_methods.RpcMethods`.

``rpc.wallet("alice")`` returns a client of the same kind scoped to ``/wallet/alice``, sharing the
parent's connection pool; only the parent needs closing.

Money: bitcoinrpc parses JSON numbers as floats, so every BTC amount is turned into integer
satoshis here, once, by ``btc_to_sat`` (exact for any amount bitcoind prints), and amounts sent
to bitcoind are decimal strings from ``sat_to_btc``. Nothing above this module sees BTC.

Errors: a JSON-RPC error becomes an ``RpcError`` subclass chosen by bitcoind's code (``RpcError``
itself for codes without one); no answer at all becomes ``RpcUnreachable``.

Auth: a cookie file (re-read when bitcoind rejects it, so a restarted node is picked up) or a
user/password pair.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Coroutine, Generator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

import httpx
import orjson
from bitcoinrpc import BitcoinRPC, RPCError

from regtest.errors import RegtestError, RpcUnreachable
from regtest.rpc_methods import JSON, Request, RpcMethods
from regtest.rpc_types import (
    SAT_PER_BTC,
    ChainInfo,
    FundedPsbt,
    FundedTx,
    MempoolAcceptResult,
    ProcessedPsbt,
    RpcDeserializationError,
    RpcError,
    RpcInsufficientFunds,
    RpcInvalidAddressOrKey,
    RpcInvalidParameter,
    RpcInWarmup,
    RpcMethodNotFound,
    RpcMiscError,
    RpcTypeError,
    RpcVerifyAlreadyInChain,
    RpcVerifyError,
    RpcVerifyRejected,
    RpcWalletAlreadyExists,
    RpcWalletAlreadyLoaded,
    RpcWalletError,
    RpcWalletNotFound,
    RpcWalletNotSpecified,
    SignedTx,
    TxOut,
    Utxo,
    WalletBalances,
    btc_to_sat,
    sat_per_vb_to_btc_per_kvb,
    sat_to_btc,
)

__all__ = [
    "JSON",
    "SAT_PER_BTC",
    "AsyncRpc",
    "ChainInfo",
    "FundedPsbt",
    "FundedTx",
    "MempoolAcceptResult",
    "ProcessedPsbt",
    "Request",
    "Rpc",
    "RpcAuth",
    "RpcDeserializationError",
    "RpcError",
    "RpcInWarmup",
    "RpcInsufficientFunds",
    "RpcInvalidAddressOrKey",
    "RpcInvalidParameter",
    "RpcMethodNotFound",
    "RpcMiscError",
    "RpcTypeError",
    "RpcVerifyAlreadyInChain",
    "RpcVerifyError",
    "RpcVerifyRejected",
    "RpcWalletAlreadyExists",
    "RpcWalletAlreadyLoaded",
    "RpcWalletError",
    "RpcWalletNotFound",
    "RpcWalletNotSpecified",
    "SignedTx",
    "TxOut",
    "Utxo",
    "WalletBalances",
    "btc_to_sat",
    "sat_per_vb_to_btc_per_kvb",
    "sat_to_btc",
]

RpcAuth = Path | tuple[str, str]

_T = TypeVar("_T")
_P = ParamSpec("_P")

# httpcore asks for sniffio on every request (five imports per RPC) and, where it is not
# installed (it is optional), searches every sys.path entry for it each time: settle its
# absence once, so a failed import costs a dict lookup (a poll's RPCs were mostly that search)
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]  # None: "not installed"


# --- auth ----------------------------------------------------------------------------------------


class _CookieAuth(httpx.Auth):
    """HTTP basic auth from bitcoind's ``.cookie``; re-read on 401 (the node restarted)."""

    def __init__(self, cookie_path: Path) -> None:
        self._path = cookie_path
        self._header: str | None = None

    def _read(self) -> str:
        try:
            user, _, password = self._path.read_text().strip().partition(":")
        except OSError as exc:
            raise RpcUnreachable(f"cannot read the RPC cookie {self._path}: {exc}") from exc
        self._header = httpx.BasicAuth(user, password)._auth_header
        return self._header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header or self._read()
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = self._read()
            yield request


def _make_client(auth: RpcAuth, timeout_s: float) -> httpx.AsyncClient:
    http_auth: httpx.Auth = (
        _CookieAuth(auth) if isinstance(auth, Path) else httpx.BasicAuth(auth[0], auth[1])
    )
    return httpx.AsyncClient(
        auth=http_auth,
        headers={"content-type": "application/json"},
        timeout=httpx.Timeout(timeout_s),
        # bitcoind's RPC is plain HTTP (it has no TLS): no CA bundle to load (~1 MB resident)
        verify=False,
    )


# --- the clients ---------------------------------------------------------------------------------


class AsyncRpc(RpcMethods):
    """Async bitcoind client: every method of :class:`RpcMethods`, awaited."""

    def __init__(self, url: str, *, auth: RpcAuth, timeout_s: float = 60.0,
                 _client: httpx.AsyncClient | None = None) -> None:
        self._owns_client = _client is None
        self._client = _make_client(auth, timeout_s) if _client is None else _client
        self._url = url
        self._auth = auth
        self._timeout_s = timeout_s
        self._rpc = BitcoinRPC(url, client=self._client)

    @property
    def url(self) -> str:
        """The endpoint this client posts to (``.../wallet/<name>`` when wallet-scoped)."""
        return self._url

    def wallet(self, name: str) -> AsyncRpc:
        """A client for ``/wallet/<name>`` that shares this one's connections."""
        base = self._url.split("/wallet/", 1)[0].rstrip("/")
        return AsyncRpc(f"{base}/wallet/{name}", auth=self._auth, timeout_s=self._timeout_s,
                        _client=self._client)

    async def aclose(self) -> None:
        """Close the connection pool (a wallet-scoped client leaves its parent's open)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncRpc:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def run(self, request: Request[_T]) -> _T:
        """Send ``request`` and read its answer."""
        return request.read(await self.call(request.method, *request.params))

    async def call(self, method: str, *params: JSON) -> JSON:
        """Call any RPC by name; prefer the named methods."""
        try:
            result = await self._rpc.acall(method, list(params))
        except RPCError as exc:
            error = exc.error
            raise RpcError.from_code(int(error["code"]), str(error["message"]),
                                     method=method) from None
        except httpx.TimeoutException as exc:
            raise RpcUnreachable(
                f"{method}: no answer from {self._url} within {self._timeout_s:.0f} s") from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            hint = " (credentials rejected)" if status in (401, 403) else ""
            raise RpcUnreachable(f"{method}: HTTP {status} from {self._url}{hint}") from exc
        except httpx.TransportError as exc:
            raise RpcUnreachable(f"{method}: cannot reach {self._url}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise RpcUnreachable(f"{method}: {self._url} did not answer JSON") from exc
        return cast(JSON, result)


class _LoopThread:
    """An asyncio loop running in a daemon thread, for blocking callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chanlab-rpc-loop",
                                        daemon=True)
        self._thread.start()
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self.closed:
            coro.close()
            raise RegtestError("this RPC client is closed")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Rpc(RpcMethods):
    """Blocking bitcoind client: the same methods as ``AsyncRpc``, run on a private loop thread."""

    def __init__(self, url: str, *, auth: RpcAuth, timeout_s: float = 60.0) -> None:
        self._loop = _LoopThread()
        self._owner = True

        async def make() -> AsyncRpc:
            return AsyncRpc(url, auth=auth, timeout_s=timeout_s)

        self._async = self._loop.run(make())

    @classmethod
    def _view(cls, loop: _LoopThread, client: AsyncRpc) -> Rpc:
        view = cls.__new__(cls)
        view._loop = loop
        view._owner = False
        view._async = client
        return view

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def aio(self) -> AsyncRpc:
        """The underlying async client (only usable from the private loop)."""
        return self._async

    def wallet(self, name: str) -> Rpc:
        """A client for ``/wallet/<name>`` sharing this one's loop and connections."""
        return Rpc._view(self._loop, self._async.wallet(name))

    def close(self) -> None:
        """Close connections and stop the loop thread; idempotent. Wallet views do nothing."""
        if not self._owner or self._loop.closed:
            return
        try:
            self._loop.run(self._async.aclose())
        finally:
            self._loop.close()

    def __enter__(self) -> Rpc:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def run(self, request: Request[_T]) -> _T:
        """Send ``request`` (on the private loop) and read its answer."""
        return self._loop.run(self._async.run(request))

    def call(self, method: str, *params: JSON) -> JSON:
        return self._loop.run(self._async.call(method, *params))
