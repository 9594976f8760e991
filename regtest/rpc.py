"""I/O: typed JSON-RPC clients for bitcoind, async on asyncio streams (``regtest.rpc_http``).

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

Money: JSON numbers are parsed as floats (orjson), so every BTC amount is turned into integer
satoshis here, once, by ``btc_to_sat`` (exact for any amount bitcoind prints), and amounts sent
to bitcoind are decimal strings from ``sat_to_btc``. Nothing above this module sees BTC.

Errors: a JSON-RPC error becomes an ``RpcError`` subclass chosen by bitcoind's code (``RpcError``
itself for codes without one); no answer at all becomes ``RpcUnreachable``.

Auth: a cookie file (re-read when bitcoind rejects it, so a restarted node is picked up) or a
user/password pair.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

import orjson

from regtest.errors import RegtestError, RpcUnreachable
from regtest.rpc_http import HttpTimeout, HttpTransportError, JsonRpcHttp, basic_auth_header
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


# --- auth ----------------------------------------------------------------------------------------


class _Authorization:
    """HTTP basic auth for bitcoind: a user/password pair, or its ``.cookie`` file, read again
    when bitcoind rejects it (a restarted bitcoind writes a new one)."""

    def __init__(self, auth: RpcAuth) -> None:
        self._auth = auth
        self._header = None if isinstance(auth, Path) else basic_auth_header(*auth)

    def __call__(self, reread: bool) -> str:
        if self._header is not None and not (reread and isinstance(self._auth, Path)):
            return self._header
        assert isinstance(self._auth, Path)
        try:
            user, _, password = self._auth.read_text().strip().partition(":")
        except OSError as exc:
            raise RpcUnreachable(f"cannot read the RPC cookie {self._auth}: {exc}") from exc
        self._header = basic_auth_header(user, password)
        return self._header


def _make_client(url: str, auth: RpcAuth, timeout_s: float) -> JsonRpcHttp:
    return JsonRpcHttp(url, authorization=_Authorization(auth), timeout_s=timeout_s)


# --- the clients ---------------------------------------------------------------------------------


class AsyncRpc(RpcMethods):
    """Async bitcoind client: every method of :class:`RpcMethods`, awaited."""

    def __init__(self, url: str, *, auth: RpcAuth, timeout_s: float = 60.0,
                 _client: JsonRpcHttp | None = None) -> None:
        self._owns_client = _client is None
        self._client = _make_client(url, auth, timeout_s) if _client is None else _client
        self._url = url
        self._path = JsonRpcHttp.path_of(url)
        self._auth = auth
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)

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
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                             "params": list(params)})
        try:
            answer = await self._client.post(self._path, body)
        except HttpTimeout as exc:
            raise RpcUnreachable(
                f"{method}: no answer from {self._url} within {self._timeout_s:.0f} s") from exc
        except HttpTransportError as exc:
            raise RpcUnreachable(f"{method}: cannot reach {self._url}: {exc}") from exc
        if not answer.body and answer.status >= 400:
            hint = " (credentials rejected)" if answer.status in (401, 403) else ""
            raise RpcUnreachable(f"{method}: HTTP {answer.status} from {self._url}{hint}")
        try:
            content = orjson.loads(answer.body)
            error = content.get("error")
            result = content["result"] if error is None else None
        except (orjson.JSONDecodeError, AttributeError, KeyError) as exc:
            raise RpcUnreachable(f"{method}: {self._url} did not answer JSON-RPC") from exc
        if error is not None:
            raise RpcError.from_code(int(error["code"]), str(error["message"]), method=method)
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
