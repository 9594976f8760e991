"""I/O: typed JSON-RPC clients for bitcoind, on the ``bitcoinrpc`` package (async, httpx).

Two clients with the same explicit methods:

* ``AsyncRpc`` for asyncio code (the node daemons);
* ``Rpc``, a blocking facade for tests, demos and the CLI: one private event loop in a background
  thread runs an ``AsyncRpc``; ``close()`` (or ``with``) stops it.

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
import threading
from collections.abc import Coroutine, Generator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast

import httpx
import orjson
from bitcoinrpc import BitcoinRPC, RPCError

from channel.errors import ChainError
from regtest.errors import RegtestError, RpcUnreachable

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]
RpcAuth = Path | tuple[str, str]

SAT_PER_BTC = 100_000_000
_T = TypeVar("_T")


# --- amounts -------------------------------------------------------------------------------------


def btc_to_sat(amount_btc: float | int | str | Decimal) -> int:
    """Convert a BTC amount as bitcoind returned it (float, str or Decimal) to integer satoshis.

    ``repr`` of a float is the shortest string that reads back to it, which for every amount
    bitcoind prints (at most 8 decimals) is that amount exactly: 0.1 -> "0.1" -> 10_000_000.
    Raises ``ValueError`` for a value that is not a whole number of satoshis.
    """
    if isinstance(amount_btc, bool):
        raise ValueError(f"not a BTC amount: {amount_btc!r}")
    try:
        text = repr(amount_btc) if isinstance(amount_btc, float) else str(amount_btc)
        sats = Decimal(text) * SAT_PER_BTC
    except InvalidOperation as exc:
        raise ValueError(f"not a BTC amount: {amount_btc!r}") from exc
    if sats != sats.to_integral_value():
        raise ValueError(f"{amount_btc!r} BTC is not a whole number of satoshis")
    return int(sats)


def sat_to_btc(amount_sat: int) -> str:
    """Integer satoshis as the decimal BTC string bitcoind accepts: 150_000 -> "0.00150000"."""
    if isinstance(amount_sat, bool) or not isinstance(amount_sat, int):
        raise TypeError(f"amount_sat must be an int, got {type(amount_sat).__name__}")
    sign = "-" if amount_sat < 0 else ""
    whole, frac = divmod(abs(amount_sat), SAT_PER_BTC)
    return f"{sign}{whole}.{frac:08d}"


def sat_per_vb_to_btc_per_kvb(feerate_sat_per_vb: int) -> str:
    """A fee rate in sat/vB as the BTC/kvB string some RPCs (``maxfeerate``) take."""
    return sat_to_btc(feerate_sat_per_vb * 1000)


# --- errors --------------------------------------------------------------------------------------


class RpcError(RegtestError, ChainError):
    """bitcoind answered a call with a JSON-RPC error: its ``code`` and ``message`` are kept."""

    code: int
    message: str
    method: str
    _by_code: ClassVar[dict[int, type[RpcError]]] = {}
    CODE: ClassVar[int | None] = None

    def __init__(self, code: int, message: str, *, method: str = "") -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{message} (RPC error {code})")
        self.code = code
        self.message = message
        self.method = method

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.CODE is not None:
            RpcError._by_code[cls.CODE] = cls

    @staticmethod
    def from_code(code: int, message: str, *, method: str = "") -> RpcError:
        """The most specific subclass for ``code`` (``RpcError`` itself if none is defined)."""
        cls = RpcError._by_code.get(code, RpcError)
        return cls(code, message, method=method)


class RpcMiscError(RpcError):
    """-1: generic failure (also bitcoind's answer to wrong parameter counts)."""

    CODE = -1


class RpcTypeError(RpcError):
    """-3: a parameter has the wrong JSON type."""

    CODE = -3


class RpcWalletError(RpcError):
    """-4: a wallet operation failed."""

    CODE = -4


class RpcInvalidAddressOrKey(RpcError):
    """-5: no such address, key, transaction or block."""

    CODE = -5


class RpcInsufficientFunds(RpcWalletError):
    """-6: the wallet cannot pay for this."""

    CODE = -6


class RpcInvalidParameter(RpcError):
    """-8: a parameter has a bad value."""

    CODE = -8


class RpcWalletNotFound(RpcError):
    """-18: the wallet is not loaded or does not exist."""

    CODE = -18


class RpcWalletNotSpecified(RpcError):
    """-19: several wallets are loaded and the call did not name one."""

    CODE = -19


class RpcDeserializationError(RpcError):
    """-22: bytes that do not decode as a transaction or block."""

    CODE = -22


class RpcVerifyError(RpcError):
    """-25: the transaction failed verification (e.g. missing or spent inputs)."""

    CODE = -25


class RpcVerifyRejected(RpcError):
    """-26: the mempool rejected the transaction (non-final, bad script, fee...)."""

    CODE = -26


class RpcVerifyAlreadyInChain(RpcError):
    """-27: the transaction is already in a block."""

    CODE = -27


class RpcInWarmup(RpcError):
    """-28: bitcoind is still starting up; try again shortly."""

    CODE = -28


class RpcWalletAlreadyLoaded(RpcError):
    """-35: ``loadwallet`` of a wallet that is already loaded."""

    CODE = -35


class RpcWalletAlreadyExists(RpcError):
    """-36: ``createwallet`` of a name already on disk."""

    CODE = -36


class RpcMethodNotFound(RpcError):
    """-32601: no such RPC method (or it is disabled in this build)."""

    CODE = -32601


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolAcceptResult:
    """One entry of ``testmempoolaccept``: would bitcoind accept the transaction, and if not why."""

    txid: str
    allowed: bool
    reject_reason: str | None
    vsize: int | None = None
    fee_sat: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TxOut:
    """An unspent output as ``gettxout`` reports it."""

    value_sat: int
    script_pubkey: bytes
    confirmations: int
    coinbase: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FundedTx:
    """``fundrawtransaction``'s result: the tx with inputs and change added, still unsigned."""

    raw: bytes
    fee_sat: int
    change_position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTx:
    """``signrawtransactionwithwallet``'s result."""

    raw: bytes
    complete: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FundedPsbt:
    """``walletcreatefundedpsbt``'s result."""

    psbt: str
    fee_sat: int
    change_position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessedPsbt:
    """``walletprocesspsbt`` / ``finalizepsbt``: the PSBT, and the final tx once complete."""

    psbt: str | None
    complete: bool
    raw: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletBalances:
    """``getbalances()['mine']`` in satoshis."""

    trusted_sat: int
    untrusted_pending_sat: int
    immature_sat: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Utxo:
    """One ``listunspent`` entry."""

    txid: str
    vout: int
    amount_sat: int
    script_pubkey: bytes
    confirmations: int
    address: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainInfo:
    """The parts of ``getblockchaininfo`` chanlab uses."""

    chain: str
    blocks: int
    headers: int
    best_block_hash: str
    initial_block_download: bool


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


def _hex(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.hex()


def _d(value: JSON) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise RegtestError(f"expected a JSON object from bitcoind, got {type(value).__name__}")
    return value


def _l(value: JSON) -> list[JSON]:
    if not isinstance(value, list):
        raise RegtestError(f"expected a JSON array from bitcoind, got {type(value).__name__}")
    return value


def _s(value: JSON) -> str:
    if not isinstance(value, str):
        raise RegtestError(f"expected a JSON string from bitcoind, got {type(value).__name__}")
    return value


def _i(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegtestError(f"expected a JSON integer from bitcoind, got {type(value).__name__}")
    return value


def _sat(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RegtestError(f"expected a BTC amount from bitcoind, got {value!r}")
    return btc_to_sat(value)


def _change_position(value: JSON) -> int | None:
    position = _i(value)
    return None if position < 0 else position


# --- async client --------------------------------------------------------------------------------


class AsyncRpc:
    """Async bitcoind client: explicit, typed methods over ``bitcoinrpc.BitcoinRPC``."""

    def __init__(
        self,
        url: str,
        *,
        auth: RpcAuth,
        timeout_s: float = 60.0,
        _client: httpx.AsyncClient | None = None,
    ) -> None:
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
        return AsyncRpc(
            f"{base}/wallet/{name}",
            auth=self._auth,
            timeout_s=self._timeout_s,
            _client=self._client,
        )

    async def aclose(self) -> None:
        """Close the connection pool (a wallet-scoped client leaves its parent's open)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncRpc:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def call(self, method: str, *params: JSON) -> JSON:
        """Call any RPC by name; prefer the typed methods below."""
        try:
            result = await self._rpc.acall(method, list(params))
        except RPCError as exc:
            error = exc.error
            raise RpcError.from_code(
                int(error["code"]), str(error["message"]), method=method
            ) from None
        except httpx.TimeoutException as exc:
            raise RpcUnreachable(
                f"{method}: no answer from {self._url} within {self._timeout_s:.0f} s"
            ) from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            hint = " (credentials rejected)" if status in (401, 403) else ""
            raise RpcUnreachable(f"{method}: HTTP {status} from {self._url}{hint}") from exc
        except httpx.TransportError as exc:
            raise RpcUnreachable(f"{method}: cannot reach {self._url}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise RpcUnreachable(f"{method}: {self._url} did not answer JSON") from exc
        return cast(JSON, result)

    # chain

    async def getblockchaininfo(self) -> ChainInfo:
        info = _d(await self.call("getblockchaininfo"))
        return ChainInfo(
            chain=_s(info["chain"]),
            blocks=_i(info["blocks"]),
            headers=_i(info["headers"]),
            best_block_hash=_s(info["bestblockhash"]),
            initial_block_download=bool(info["initialblockdownload"]),
        )

    async def getnetworkinfo(self) -> dict[str, JSON]:
        return _d(await self.call("getnetworkinfo"))

    async def getblockcount(self) -> int:
        return _i(await self.call("getblockcount"))

    async def getbestblockhash(self) -> str:
        return _s(await self.call("getbestblockhash"))

    async def getblockhash(self, height: int) -> str:
        return _s(await self.call("getblockhash", height))

    async def getblock(self, block_hash: str) -> bytes:
        """The serialized block."""
        return bytes.fromhex(_s(await self.call("getblock", block_hash, 0)))

    async def getblock_verbose(self, block_hash: str) -> dict[str, JSON]:
        """The block as JSON, transactions as txids (verbosity 1)."""
        return _d(await self.call("getblock", block_hash, 1))

    async def getblockheader(self, block_hash: str) -> dict[str, JSON]:
        return _d(await self.call("getblockheader", block_hash, True))

    async def getrawtransaction(self, txid: str, block_hash: str | None = None) -> bytes:
        """The serialized transaction (any confirmed one: the node runs ``-txindex``)."""
        params: list[JSON] = [txid, False] if block_hash is None else [txid, False, block_hash]
        return bytes.fromhex(_s(await self.call("getrawtransaction", *params)))

    async def getrawtransaction_verbose(self, txid: str) -> dict[str, JSON]:
        """The transaction as JSON, with ``confirmations`` and ``blockhash`` once mined."""
        return _d(await self.call("getrawtransaction", txid, True))

    async def decoderawtransaction(self, raw: bytes) -> dict[str, JSON]:
        return _d(await self.call("decoderawtransaction", raw.hex()))

    async def sendrawtransaction(
        self, raw: bytes, *, max_feerate_sat_per_vb: int | None = None
    ) -> str:
        """Broadcast; returns the txid. ``max_feerate_sat_per_vb=0`` lifts bitcoind's fee cap."""
        if max_feerate_sat_per_vb is None:
            return _s(await self.call("sendrawtransaction", raw.hex()))
        cap = sat_per_vb_to_btc_per_kvb(max_feerate_sat_per_vb)
        return _s(await self.call("sendrawtransaction", raw.hex(), cap))

    async def testmempoolaccept(self, raws: Sequence[bytes]) -> list[MempoolAcceptResult]:
        results = _l(await self.call("testmempoolaccept", [raw.hex() for raw in raws]))
        out = []
        for item in results:
            entry = _d(item)
            fees = entry.get("fees")
            fee_sat = _sat(_d(fees)["base"]) if isinstance(fees, dict) else None
            vsize = entry.get("vsize")
            reason = entry.get("reject-reason")
            out.append(
                MempoolAcceptResult(
                    txid=_s(entry["txid"]),
                    allowed=bool(entry["allowed"]),
                    reject_reason=None if reason is None else _s(reason),
                    vsize=None if vsize is None else _i(vsize),
                    fee_sat=fee_sat,
                )
            )
        return out

    async def getrawmempool(self) -> list[str]:
        return [_s(txid) for txid in _l(await self.call("getrawmempool"))]

    async def getmempoolentry(self, txid: str) -> dict[str, JSON]:
        return _d(await self.call("getmempoolentry", txid))

    async def gettxout(self, txid: str, vout: int, *, include_mempool: bool = True) -> TxOut | None:
        """The output if it is unspent (None if spent or unknown)."""
        result = await self.call("gettxout", txid, vout, include_mempool)
        if result is None:
            return None
        entry = _d(result)
        return TxOut(
            value_sat=_sat(entry["value"]),
            script_pubkey=bytes.fromhex(_s(_d(entry["scriptPubKey"])["hex"])),
            confirmations=_i(entry["confirmations"]),
            coinbase=bool(entry["coinbase"]),
        )

    async def generatetoaddress(self, nblocks: int, address: str) -> list[str]:
        return [_s(h) for h in _l(await self.call("generatetoaddress", nblocks, address))]

    async def generateblock(self, address: str, transactions: Sequence[bytes | str]) -> str:
        """Mine one block with exactly these transactions (raw bytes, or txids from the mempool)."""
        result = await self.call("generateblock", address, [_hex(tx) for tx in transactions])
        return _s(_d(result)["hash"])

    async def invalidateblock(self, block_hash: str) -> None:
        await self.call("invalidateblock", block_hash)

    async def reconsiderblock(self, block_hash: str) -> None:
        await self.call("reconsiderblock", block_hash)

    async def getzmqnotifications(self) -> list[dict[str, JSON]]:
        return [_d(entry) for entry in _l(await self.call("getzmqnotifications"))]

    async def uptime(self) -> int:
        return _i(await self.call("uptime"))

    async def stop(self) -> None:
        await self.call("stop")

    # wallets (call these on a wallet-scoped client, except create/load/list)

    async def createwallet(
        self, name: str, *, disable_private_keys: bool = False, blank: bool = False
    ) -> None:
        """Create a descriptor wallet, load it, and have bitcoind load it again after restarts."""
        await self.call("createwallet", name, disable_private_keys, blank, "", False, True, True)

    async def loadwallet(self, name: str) -> None:
        """Load a wallet, and have bitcoind load it again after restarts."""
        await self.call("loadwallet", name, True)

    async def unloadwallet(self, name: str) -> None:
        await self.call("unloadwallet", name)

    async def listwallets(self) -> list[str]:
        return [_s(name) for name in _l(await self.call("listwallets"))]

    async def listwalletdir(self) -> list[str]:
        wallets = _l(_d(await self.call("listwalletdir"))["wallets"])
        return [_s(_d(entry)["name"]) for entry in wallets]

    async def getnewaddress(self, *, label: str = "", address_type: str | None = None) -> str:
        if address_type is None:
            return _s(await self.call("getnewaddress", label))
        return _s(await self.call("getnewaddress", label, address_type))

    async def getaddressinfo(self, address: str) -> dict[str, JSON]:
        return _d(await self.call("getaddressinfo", address))

    async def getbalances(self) -> WalletBalances:
        mine = _d(_d(await self.call("getbalances"))["mine"])
        return WalletBalances(
            trusted_sat=_sat(mine["trusted"]),
            untrusted_pending_sat=_sat(mine["untrusted_pending"]),
            immature_sat=_sat(mine["immature"]),
        )

    async def sendtoaddress(
        self, address: str, amount_sat: int, *, fee_rate_sat_per_vb: int | None = None
    ) -> str:
        params: list[JSON] = [address, sat_to_btc(amount_sat)]
        if fee_rate_sat_per_vb is not None:
            # comment, comment_to, subtractfeefromamount, replaceable, conf_target, estimate_mode
            params += ["", "", False, True, None, "unset", False, fee_rate_sat_per_vb]
        return _s(await self.call("sendtoaddress", *params))

    async def fundrawtransaction(
        self,
        raw: bytes,
        *,
        fee_rate_sat_per_vb: int | None = None,
        change_position: int | None = None,
        lock_unspents: bool = False,
    ) -> FundedTx:
        options: dict[str, JSON] = {"lockUnspents": lock_unspents}
        if fee_rate_sat_per_vb is not None:
            options["fee_rate"] = fee_rate_sat_per_vb
        if change_position is not None:
            options["changePosition"] = change_position
        # iswitness=False: a tx with no inputs yet is ambiguous with the segwit marker byte.
        result = _d(await self.call("fundrawtransaction", raw.hex(), options, False))
        return FundedTx(
            raw=bytes.fromhex(_s(result["hex"])),
            fee_sat=_sat(result["fee"]),
            change_position=_change_position(result["changepos"]),
        )

    async def signrawtransactionwithwallet(self, raw: bytes) -> SignedTx:
        result = _d(await self.call("signrawtransactionwithwallet", raw.hex()))
        return SignedTx(raw=bytes.fromhex(_s(result["hex"])), complete=bool(result["complete"]))

    async def gettransaction(self, txid: str) -> dict[str, JSON]:
        return _d(await self.call("gettransaction", txid))

    async def listunspent(self, *, minconf: int = 1) -> list[Utxo]:
        out = []
        for item in _l(await self.call("listunspent", minconf)):
            entry = _d(item)
            address = entry.get("address")
            out.append(
                Utxo(
                    txid=_s(entry["txid"]),
                    vout=_i(entry["vout"]),
                    amount_sat=_sat(entry["amount"]),
                    script_pubkey=bytes.fromhex(_s(entry["scriptPubKey"])),
                    confirmations=_i(entry["confirmations"]),
                    address=None if address is None else _s(address),
                )
            )
        return out

    async def lockunspent(self, unlock: bool, outpoints: Sequence[tuple[str, int]]) -> bool:
        entries: list[JSON] = [{"txid": txid, "vout": vout} for txid, vout in outpoints]
        return bool(await self.call("lockunspent", unlock, entries))

    async def walletcreatefundedpsbt(
        self,
        outputs: Mapping[str, int],
        *,
        fee_rate_sat_per_vb: int | None = None,
        lock_unspents: bool = True,
    ) -> FundedPsbt:
        """Fund a PSBT paying ``outputs`` (address -> amount_sat), in that order, plus change."""
        options: dict[str, JSON] = {"lockUnspents": lock_unspents}
        if fee_rate_sat_per_vb is not None:
            options["fee_rate"] = fee_rate_sat_per_vb
        outs: list[JSON] = [{address: sat_to_btc(amount)} for address, amount in outputs.items()]
        result = _d(await self.call("walletcreatefundedpsbt", [], outs, 0, options))
        return FundedPsbt(
            psbt=_s(result["psbt"]),
            fee_sat=_sat(result["fee"]),
            change_position=_change_position(result["changepos"]),
        )

    async def walletprocesspsbt(self, psbt: str, *, sign: bool = True) -> ProcessedPsbt:
        result = _d(await self.call("walletprocesspsbt", psbt, sign))
        raw = result.get("hex")
        return ProcessedPsbt(
            psbt=_s(result["psbt"]),
            complete=bool(result["complete"]),
            raw=None if raw is None else bytes.fromhex(_s(raw)),
        )

    async def finalizepsbt(self, psbt: str) -> ProcessedPsbt:
        result = _d(await self.call("finalizepsbt", psbt, True))
        raw = result.get("hex")
        rest = result.get("psbt")
        return ProcessedPsbt(
            psbt=None if rest is None else _s(rest),
            complete=bool(result["complete"]),
            raw=None if raw is None else bytes.fromhex(_s(raw)),
        )


# --- blocking facade -----------------------------------------------------------------------------


class _LoopThread:
    """An asyncio loop running in a daemon thread, for blocking callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="chanlab-rpc-loop", daemon=True
        )
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


class Rpc:
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, method: str, *params: JSON) -> JSON:
        return self._loop.run(self._async.call(method, *params))

    def getblockchaininfo(self) -> ChainInfo:
        return self._loop.run(self._async.getblockchaininfo())

    def getnetworkinfo(self) -> dict[str, JSON]:
        return self._loop.run(self._async.getnetworkinfo())

    def getblockcount(self) -> int:
        return self._loop.run(self._async.getblockcount())

    def getbestblockhash(self) -> str:
        return self._loop.run(self._async.getbestblockhash())

    def getblockhash(self, height: int) -> str:
        return self._loop.run(self._async.getblockhash(height))

    def getblock(self, block_hash: str) -> bytes:
        return self._loop.run(self._async.getblock(block_hash))

    def getblock_verbose(self, block_hash: str) -> dict[str, JSON]:
        return self._loop.run(self._async.getblock_verbose(block_hash))

    def getblockheader(self, block_hash: str) -> dict[str, JSON]:
        return self._loop.run(self._async.getblockheader(block_hash))

    def getrawtransaction(self, txid: str, block_hash: str | None = None) -> bytes:
        return self._loop.run(self._async.getrawtransaction(txid, block_hash))

    def getrawtransaction_verbose(self, txid: str) -> dict[str, JSON]:
        return self._loop.run(self._async.getrawtransaction_verbose(txid))

    def decoderawtransaction(self, raw: bytes) -> dict[str, JSON]:
        return self._loop.run(self._async.decoderawtransaction(raw))

    def sendrawtransaction(self, raw: bytes, *, max_feerate_sat_per_vb: int | None = None) -> str:
        return self._loop.run(
            self._async.sendrawtransaction(raw, max_feerate_sat_per_vb=max_feerate_sat_per_vb)
        )

    def testmempoolaccept(self, raws: Sequence[bytes]) -> list[MempoolAcceptResult]:
        return self._loop.run(self._async.testmempoolaccept(raws))

    def getrawmempool(self) -> list[str]:
        return self._loop.run(self._async.getrawmempool())

    def getmempoolentry(self, txid: str) -> dict[str, JSON]:
        return self._loop.run(self._async.getmempoolentry(txid))

    def gettxout(self, txid: str, vout: int, *, include_mempool: bool = True) -> TxOut | None:
        return self._loop.run(self._async.gettxout(txid, vout, include_mempool=include_mempool))

    def generatetoaddress(self, nblocks: int, address: str) -> list[str]:
        return self._loop.run(self._async.generatetoaddress(nblocks, address))

    def generateblock(self, address: str, transactions: Sequence[bytes | str]) -> str:
        return self._loop.run(self._async.generateblock(address, transactions))

    def invalidateblock(self, block_hash: str) -> None:
        self._loop.run(self._async.invalidateblock(block_hash))

    def reconsiderblock(self, block_hash: str) -> None:
        self._loop.run(self._async.reconsiderblock(block_hash))

    def getzmqnotifications(self) -> list[dict[str, JSON]]:
        return self._loop.run(self._async.getzmqnotifications())

    def uptime(self) -> int:
        return self._loop.run(self._async.uptime())

    def stop(self) -> None:
        self._loop.run(self._async.stop())

    def createwallet(
        self, name: str, *, disable_private_keys: bool = False, blank: bool = False
    ) -> None:
        self._loop.run(
            self._async.createwallet(name, disable_private_keys=disable_private_keys, blank=blank)
        )

    def loadwallet(self, name: str) -> None:
        self._loop.run(self._async.loadwallet(name))

    def unloadwallet(self, name: str) -> None:
        self._loop.run(self._async.unloadwallet(name))

    def listwallets(self) -> list[str]:
        return self._loop.run(self._async.listwallets())

    def listwalletdir(self) -> list[str]:
        return self._loop.run(self._async.listwalletdir())

    def getnewaddress(self, *, label: str = "", address_type: str | None = None) -> str:
        return self._loop.run(self._async.getnewaddress(label=label, address_type=address_type))

    def getaddressinfo(self, address: str) -> dict[str, JSON]:
        return self._loop.run(self._async.getaddressinfo(address))

    def getbalances(self) -> WalletBalances:
        return self._loop.run(self._async.getbalances())

    def sendtoaddress(
        self, address: str, amount_sat: int, *, fee_rate_sat_per_vb: int | None = None
    ) -> str:
        return self._loop.run(
            self._async.sendtoaddress(address, amount_sat, fee_rate_sat_per_vb=fee_rate_sat_per_vb)
        )

    def fundrawtransaction(
        self,
        raw: bytes,
        *,
        fee_rate_sat_per_vb: int | None = None,
        change_position: int | None = None,
        lock_unspents: bool = False,
    ) -> FundedTx:
        return self._loop.run(
            self._async.fundrawtransaction(
                raw,
                fee_rate_sat_per_vb=fee_rate_sat_per_vb,
                change_position=change_position,
                lock_unspents=lock_unspents,
            )
        )

    def signrawtransactionwithwallet(self, raw: bytes) -> SignedTx:
        return self._loop.run(self._async.signrawtransactionwithwallet(raw))

    def gettransaction(self, txid: str) -> dict[str, JSON]:
        return self._loop.run(self._async.gettransaction(txid))

    def listunspent(self, *, minconf: int = 1) -> list[Utxo]:
        return self._loop.run(self._async.listunspent(minconf=minconf))

    def lockunspent(self, unlock: bool, outpoints: Sequence[tuple[str, int]]) -> bool:
        return self._loop.run(self._async.lockunspent(unlock, outpoints))

    def walletcreatefundedpsbt(
        self,
        outputs: Mapping[str, int],
        *,
        fee_rate_sat_per_vb: int | None = None,
        lock_unspents: bool = True,
    ) -> FundedPsbt:
        return self._loop.run(
            self._async.walletcreatefundedpsbt(
                outputs, fee_rate_sat_per_vb=fee_rate_sat_per_vb, lock_unspents=lock_unspents
            )
        )

    def walletprocesspsbt(self, psbt: str, *, sign: bool = True) -> ProcessedPsbt:
        return self._loop.run(self._async.walletprocesspsbt(psbt, sign=sign))

    def finalizepsbt(self, psbt: str) -> ProcessedPsbt:
        return self._loop.run(self._async.finalizepsbt(psbt))
